/* Every SQL statement the store runs, in one table, prepared on first use on
 * each connection. All values travel as parameters; nothing here is ever
 * formatted. Times cross as milliseconds since the epoch (SQL_MS, SQL_TS),
 * and "now" is always the database's clock. */
#include "store/store_int.h"

#define STMT(id, sql, nparams) [id] = {#id, sql, nparams}

const stmt_t sg_store_stmts[ST_COUNT_] = {
    /* ---- the batch: transaction control ---- */
    STMT(ST_BEGIN, "BEGIN", 0),
    STMT(ST_COMMIT, "COMMIT", 0),
    STMT(ST_SAVEPOINT, "SAVEPOINT item", 0),
    STMT(ST_SAVEPOINT_RELEASE, "RELEASE SAVEPOINT item", 0),
    STMT(ST_SAVEPOINT_ROLLBACK, "ROLLBACK TO SAVEPOINT item", 0),

    /* ---- the batch: one transition ---- */
    STMT(ST_INBOX_INSERT, "INSERT INTO inbox (message_id, saga_id) VALUES ($1, $2)", 2),
    STMT(ST_TIMER_DELETE_FIRED, "DELETE FROM timers WHERE saga_id = $1 AND id = $2", 2),
    STMT(ST_SAGA_CREATE,
         "INSERT INTO sagas (id, type, definition_version, definition_sha256, status,"
         " current_step, deadline_at, traceparent, state, version)"
         " VALUES ($1, $2, $3, $4, $5, $6, " SQL_TS("$7") ", $8, $9::jsonb, 1)"
         " RETURNING version",
         9),
    /* The function raises SQLSTATE SGVER when no row matched, so that the
     * rest of the item is skipped and its savepoint rolled back. */
    STMT(ST_SAGA_UPDATE,
         "WITH u AS (UPDATE sagas SET status = $2, current_step = $3,"
         " deadline_at = " SQL_TS("$4") ", state = $5::jsonb,"
         " version = version + 1, updated_at = now()"
         " WHERE id = $1 AND version = $6 RETURNING version)"
         " SELECT saga_require_version((SELECT version FROM u), $1, $6)",
         6),
    STMT(ST_HISTORY_INSERT,
         "INSERT INTO saga_history (saga_id, event, step, detail)"
         " VALUES ($1, $2, $3, $4::jsonb)",
         4),
    /* Several entries at once, in the order of the arrays. */
    STMT(ST_HISTORY_INSERT_MANY,
         "INSERT INTO saga_history (saga_id, event, step, detail)"
         " SELECT $1, h.event, h.step, h.detail::jsonb"
         " FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
         "  AS h(event, step, detail, n) ORDER BY h.n",
         4),
    STMT(ST_OUTBOX_INSERT,
         "INSERT INTO outbox (saga_id, channel, key, payload, headers, next_attempt_at)"
         " VALUES ($1, $2, $3, $4, $5::jsonb, now() + " SQL_INTERVAL("$6") ") RETURNING id",
         6),
    STMT(ST_TIMER_CANCEL, "DELETE FROM timers WHERE saga_id = $1 AND kind = $2 AND step = $3",
         3),
    STMT(ST_TIMER_ARM,
         "INSERT INTO timers (saga_id, kind, step, attempt, due_at)"
         " VALUES ($1, $2, $3, $4, " SQL_TS("$5") ")"
         " ON CONFLICT (saga_id, kind, step) DO UPDATE SET attempt = excluded.attempt,"
         " due_at = excluded.due_at, id = excluded.id, claimed_until = NULL",
         5),

    /* ---- sagas and definitions ---- */
    STMT(ST_INBOX_SEEN, "SELECT 1 FROM inbox WHERE message_id = $1", 1),
    STMT(ST_SAGA_LOAD, "SELECT " SAGA_COLUMNS " FROM sagas s WHERE s.id = $1", 1),
    STMT(ST_SAGA_LOAD_MANY,
         "SELECT t.ord, " SAGA_COLUMNS
         " FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS t(id, ord)"
         " JOIN sagas s ON s.id = t.id",
         1),
    STMT(ST_DEF_INSERT,
         "INSERT INTO saga_definitions (name, version, sha256, body)"
         " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (name, version) DO NOTHING",
         4),
    STMT(ST_DEF_SHA, "SELECT sha256 FROM saga_definitions WHERE name = $1 AND version = $2", 2),
    STMT(ST_DEF_GET,
         "SELECT name, version, sha256, body, " SQL_MS("created_at") ", 0"
         " FROM saga_definitions WHERE name = $1 AND version = $2",
         2),
    STMT(ST_DEF_LIST,
         "SELECT d.name, d.version, d.sha256, NULL::text, " SQL_MS("d.created_at") ","
         " (SELECT count(*) FROM sagas s WHERE s.type = d.name"
         "  AND s.definition_version = d.version"
         "  AND s.status IN ('running', 'compensating'))"
         " FROM saga_definitions d ORDER BY d.name, d.version",
         0),

    /* ---- outbox and timers: claims under a lease ---- */
    STMT(ST_OUTBOX_CLAIM,
         "WITH c AS (SELECT id FROM outbox WHERE next_attempt_at <= now()"
         "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),"
         " u AS (UPDATE outbox o SET next_attempt_at = now() + " SQL_INTERVAL("$2")
         "  FROM c WHERE o.id = c.id"
         "  RETURNING o.id, o.saga_id, o.channel, o.key, o.payload, o.headers, o.attempts)"
         " SELECT * FROM u ORDER BY id",
         2),
    STMT(ST_OUTBOX_DELETE, "DELETE FROM outbox WHERE id = ANY ($1::int8[])", 1),
    STMT(ST_OUTBOX_FAIL,
         "UPDATE outbox SET attempts = attempts + 1, last_error = $2,"
         " next_attempt_at = now() + " SQL_INTERVAL("$3") " WHERE id = $1",
         3),
    STMT(ST_TIMERS_CLAIM,
         "WITH c AS (SELECT saga_id, kind, step FROM timers WHERE due_at <= now()"
         "  AND (claimed_until IS NULL OR claimed_until <= now())"
         "  ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
         " UPDATE timers t SET claimed_until = now() + " SQL_INTERVAL("$2")
         " FROM c WHERE t.saga_id = c.saga_id AND t.kind = c.kind AND t.step = c.step"
         " RETURNING t.id, t.saga_id, t.kind, t.step, t.attempt, " SQL_MS("t.due_at"),
         2),

    /* ---- dead letters ---- */
    STMT(ST_DL_ADD,
         "INSERT INTO dead_letters (channel, key, raw, headers, reason)"
         " VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
         5),
    STMT(ST_DL_LIST,
         "SELECT id, " SQL_MS("received_at") ", channel, key, NULL::bytea, octet_length(raw),"
         " headers, reason, " SQL_MS("replayed_at") " FROM dead_letters"
         " WHERE $1::int8 = 0 OR id < $1 ORDER BY id DESC LIMIT $2",
         2),
    STMT(ST_DL_GET,
         "SELECT id, " SQL_MS("received_at") ", channel, key, raw, octet_length(raw),"
         " headers, reason, " SQL_MS("replayed_at") " FROM dead_letters WHERE id = $1",
         1),
    STMT(ST_DL_REPLAY,
         "WITH d AS (UPDATE dead_letters SET replayed_at = now()"
         "  WHERE id = $1 AND replayed_at IS NULL RETURNING *),"
         " o AS (INSERT INTO outbox (channel, key, payload, headers)"
         "  SELECT channel, key, raw, headers FROM d)"
         " SELECT id, " SQL_MS("received_at") ", channel, key, raw, octet_length(raw),"
         " headers, reason, " SQL_MS("replayed_at") " FROM d",
         1),

    /* ---- retention: one small batch per statement ---- */
    STMT(ST_PURGE_INBOX,
         "DELETE FROM inbox WHERE message_id IN (SELECT message_id FROM inbox"
         " WHERE received_at < now() - " SQL_INTERVAL("$1") " LIMIT $2)",
         2),
    /* Walks old entries in (at, seq) order from the position the previous
     * batch reached, deleting those of finished sagas; returns how many it
     * deleted, how many it looked at, and where it stopped. */
    STMT(ST_PURGE_HISTORY,
         "WITH c AS (SELECT h.saga_id, h.seq, h.at FROM saga_history h"
         "  WHERE h.at < now() - " SQL_INTERVAL("$1")
         "  AND ($2::timestamptz IS NULL OR (h.at, h.seq) > ($2::timestamptz, $3::int8))"
         "  ORDER BY h.at, h.seq LIMIT $4),"
         " d AS (DELETE FROM saga_history h USING c, sagas s"
         "  WHERE h.saga_id = c.saga_id AND h.seq = c.seq AND s.id = c.saga_id"
         "  AND s.status IN ('completed', 'compensated') RETURNING 1),"
         " last AS (SELECT at, seq FROM c ORDER BY at DESC, seq DESC LIMIT 1)"
         " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM c),"
         " (SELECT at::text FROM last), (SELECT seq FROM last)",
         4),

    /* ---- queries for the operator ---- */
    STMT(ST_SAGAS_LIST,
         "SELECT " SAGA_COLUMNS_NO_STATE " FROM sagas s"
         " WHERE ($1::text IS NULL OR s.status = $1) AND ($2::text IS NULL OR s.type = $2)"
         " AND ($3::float8 IS NULL OR s.updated_at >= now() - " SQL_INTERVAL("$3") ")"
         " ORDER BY s.updated_at DESC LIMIT $4",
         4),
    STMT(ST_SAGAS_STUCK,
         "SELECT " SAGA_COLUMNS_NO_STATE " FROM sagas s"
         " WHERE s.status IN ('running', 'compensating')"
         " AND s.updated_at < now() - " SQL_INTERVAL("$1")
         " ORDER BY s.updated_at LIMIT $2",
         2),
    STMT(ST_HISTORY_LIST,
         "SELECT seq, " SQL_MS("at") ", event, step, detail FROM saga_history"
         " WHERE saga_id = $1 ORDER BY seq",
         1),
    STMT(ST_COUNTS,
         "SELECT type, status, count(*), 0 FROM sagas GROUP BY type, status"
         " ORDER BY type, status",
         0),
    STMT(ST_FINISHED,
         "SELECT NULL::text, status, count(*), " SQL_MS("date_trunc('minute', updated_at)")
         " FROM sagas WHERE updated_at >= now() - interval '1 hour'"
         " AND status IN ('completed', 'compensated', 'failed')"
         " GROUP BY 2, 4 ORDER BY 4, 2",
         0),

    /* ---- the database's clock ---- */
    STMT(ST_CLOCK, "SELECT " SQL_MS("clock_timestamp()"), 0),
};
