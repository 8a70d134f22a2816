/* The PostgreSQL store: migrations, saga rows with optimistic versioning,
 * the transition batch (inbox, history, outbox, timers in one transaction),
 * the outbox relay's and the timer wheel's claims, dead letters, retention
 * and the operator's queries. The schema is described in docs/schema.md.
 *
 * One sg_store_t is one database connection: use it from one thread at a
 * time (give each worker thread its own). Every call returns an sg_err_t;
 * the message of the last failure is kept in the handle and read with
 * sg_store_errmsg, as PQerrorMessage does for a connection.
 *
 * A lost connection is always reported as SG_ERR_CONN, and the next call
 * reconnects (and prepares its statements again). A transaction cut by a lost
 * connection either committed or did not: the inbox tells which (a message id
 * seen before was committed).
 *
 * Times cross this interface as milliseconds since the Unix epoch (0 = none).
 * Due times and leases are compared with the database's clock, so the
 * workers' clocks do not need to agree with each other.
 *
 * Results that hold text (rows, messages) are one allocation each: free an
 * array or a single row with sg_store_free. Strings in them are NULL for SQL
 * NULL. */
#ifndef SAGA_STORE_H
#define SAGA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/err.h"

typedef struct sg_store sg_store_t;

/* ---- connection ---- */

/* Connects with a libpq connection string or URI. On failure returns NULL
 * with the cause in errstr (the password is never written there). */
sg_store_t *sg_store_new(const char *conninfo, char *errstr, size_t errstr_size);
void sg_store_destroy(sg_store_t *st);
/* The message of the last failed call ("" after a success). */
const char *sg_store_errmsg(const sg_store_t *st);
/* Frees any result this module returns (NULL is a no-op). */
void sg_store_free(void *p);

/* ---- migrations ---- */

/* Where the SQL files are: 'explicit_dir' when not NULL, else
 * $SAGA_MIGRATIONS_DIR, else the installed share folder when it exists, else
 * "./migrations". Writes the folder into buf. */
void sg_store_migrations_dir(const char *explicit_dir, char *buf, size_t buf_size);

/* Called once per file applied, in order. */
typedef void (*sg_store_migrated_fn)(void *opaque, int version, const char *file);

/* Applies the files NNNN_name.sql of 'dir' not yet recorded in
 * schema_migrations, in version order, each in its own transaction, holding
 * an advisory lock so that concurrent migrators apply each file once. Refuses
 * (SG_ERR_INVALID, naming the file) when an applied file's SHA-256 changed.
 * '*applied' (may be NULL) receives the number of files applied. */
sg_err_t sg_store_migrate(sg_store_t *st, const char *dir, sg_store_migrated_fn on_applied,
                          void *opaque, int *applied);

/* ---- definitions ---- */

/* Stores a definition once. The same name and version with the same sha256
 * is SG_OK (nothing changes); with another sha256 it is SG_ERR_INVALID with
 * a message ending in "bump version". 'body' is JSON text. */
sg_err_t sg_store_definition_put(sg_store_t *st, const char *name, int version,
                                 const char *sha256, const char *body);

typedef struct sg_store_definition {
    const char *name;
    int version;
    const char *sha256;
    const char *body;        /* JSON text; NULL in sg_store_definitions_list */
    int64_t created_at_ms;
    int64_t running;         /* sagas of this version running or compensating */
} sg_store_definition_t;

/* One stored definition with its body, or SG_ERR_NOT_FOUND. */
sg_err_t sg_store_definition_get(sg_store_t *st, const char *name, int version,
                                 sg_store_definition_t **out);
/* Every stored definition (no body), by name then version, with the count
 * of its unfinished sagas. */
sg_err_t sg_store_definitions_list(sg_store_t *st, sg_store_definition_t **out, size_t *n);

/* ---- sagas ---- */

/* A saga row. On writes only the first block is read; loads fill all. The
 * store does not interpret 'state': it is the engine's JSON document. */
typedef struct sg_store_saga {
    const char *id;
    const char *type;
    int definition_version;
    const char *definition_sha256;
    const char *status;        /* running, compensating, completed, compensated, failed */
    const char *current_step;  /* NULL when none */
    int64_t deadline_at_ms;    /* 0 = none */
    const char *traceparent;   /* NULL when none */
    const char *state;         /* JSON text */
    /* filled by loads */
    int64_t version;           /* number of applied transitions */
    int64_t created_at_ms;
    int64_t updated_at_ms;
} sg_store_saga_t;

/* Loads one saga (SG_ERR_NOT_FOUND when there is none). */
sg_err_t sg_store_saga_load(sg_store_t *st, const char *id, sg_store_saga_t **out);
/* Loads the sagas 'ids[0..n-1]' in one round trip: (*out)[i] belongs to ids[i]
 * and has id == NULL when there is no such saga. */
sg_err_t sg_store_saga_load_many(sg_store_t *st, const char *const *ids, size_t n,
                                 sg_store_saga_t **out);
/* Writes one saga in its own transaction. expected_version 0 creates it
 * (version 1; an existing id is SG_ERR_DUPLICATE); otherwise updates it only
 * if its version is still expected_version (else SG_ERR_CONFLICT: reload and
 * apply again). '*new_version' (may be NULL) receives the version written. */
sg_err_t sg_store_saga_save(sg_store_t *st, const sg_store_saga_t *saga,
                            int64_t expected_version, int64_t *new_version);

/* Whether a message id is in the inbox (was committed). */
sg_err_t sg_store_inbox_seen(sg_store_t *st, const char *message_id, bool *seen);

/* ---- the transition batch ---- */

typedef struct sg_store_history {
    const char *event;    /* "step.succeeded", "reply.ignored", ... */
    const char *step;     /* NULL when the saga as a whole */
    const char *detail;   /* JSON text, NULL for none */
} sg_store_history_t;

typedef struct sg_store_outmsg {
    const char *channel;  /* "kafka:orders" */
    const char *key;      /* NULL for none */
    const void *payload;
    size_t payload_len;
    const char *headers;  /* JSON object of strings, NULL for none */
    int64_t id;           /* out: the row's id, once its item committed */
} sg_store_outmsg_t;

/* A timer is one per saga, kind and step ("" for saga-wide timers). */
typedef struct sg_store_timer {
    const char *kind;     /* "step_timeout", "retry", "deadline", ... */
    const char *step;     /* "" or NULL for none */
    int attempt;
    int64_t due_at_ms;    /* ignored when cancelling */
} sg_store_timer_t;

/* One transition. Every pointer is borrowed for the call only; nothing is
 * copied but what goes to the server. Every part is optional. */
typedef struct sg_store_item {
    const char *message_id;         /* inbox entry; seen before => SG_ERR_DUPLICATE */
    const sg_store_saga_t *saga;    /* the row after the transition; NULL = no row change */
    const char *saga_id;            /* the saga concerned; NULL: saga->id */
    int64_t expected_version;       /* 0 = create the row */
    int64_t fired_timer_id;         /* the claimed timer this input was; 0 = none */
    const sg_store_history_t *history;
    size_t nhistory;
    sg_store_outmsg_t *outbox;      /* each row's id is written back */
    size_t noutbox;
    const sg_store_timer_t *arm;    /* insert or replace (new id, unclaimed) */
    size_t narm;
    const sg_store_timer_t *cancel; /* by kind and step */
    size_t ncancel;
    /* out */
    sg_err_t result;                /* SG_OK, SG_ERR_DUPLICATE, SG_ERR_CONFLICT, ... */
    int64_t new_version;            /* the version written, when saga != NULL */
    char errmsg[160];               /* why, when result is an error */
} sg_store_item_t;

/* Commits 'items' in ONE transaction, sent through a pipeline of prepared
 * statements: one round trip and one commit for the whole batch. Per item,
 * in this order: inbox insert, fired timer deleted, saga created or updated
 * (version-guarded), history appended, outbox rows added, timers cancelled,
 * timers armed.
 *
 * An item whose message was seen before (or that creates an existing saga) is
 * undone and reported SG_ERR_DUPLICATE; one whose saga moved on is undone and
 * reported SG_ERR_CONFLICT; one the server refuses is undone and reported
 * SG_ERR_INVALID; the others commit. Each item runs under its own savepoint
 * only when needed: a batch is first sent without savepoints, and only when
 * one of its items fails is it sent again with one savepoint per item (and
 * so are the next few batches). Returns SG_OK when the transaction
 * committed (look at each item's result), or the error that stopped the
 * whole batch (then every item has that result too): SG_ERR_CONN means the
 * commit may or may not have happened; the inbox tells. */
sg_err_t sg_store_batch(sg_store_t *st, sg_store_item_t *items, size_t n);

/* The same, and in the same transaction the outbox rows 'done' (whose
 * broker confirmed them) are deleted. */
sg_err_t sg_store_batch_delete(sg_store_t *st, sg_store_item_t *items, size_t n,
                               const int64_t *done, size_t ndone);

/* The same batch, handed in item by item: each item is sent to the server
 * as it is added, so the server works on it while the caller makes the
 * next one. begin, any number of add, then finish (which also sends the
 * COMMIT unless seal did already; seal lets several connections commit at
 * once). The items must stay in place until finish returns; its return
 * and each item's result are those of sg_store_batch_delete. After an
 * error begin and add return it and the rest of the stream does nothing
 * until finish, which reports it on every item. No other call may use the
 * connection between begin and finish. */
sg_err_t sg_store_stream_begin(sg_store_t *st, const int64_t *done, size_t ndone);
sg_err_t sg_store_stream_add(sg_store_t *st, sg_store_item_t *item);
sg_err_t sg_store_stream_seal(sg_store_t *st);
sg_err_t sg_store_stream_finish(sg_store_t *st);

/* New outbox rows are taken by the process that wrote them for 'lease_ms'
 * (default 0: ready at once for any relay). A daemon that publishes its own
 * rows right after its commit sets a lease, so that other relays leave
 * them alone unless it dies first. */
void sg_store_set_outbox_lease(sg_store_t *st, int64_t lease_ms);

/* ---- outbox ---- */

typedef struct sg_store_outbox_row {
    int64_t id;
    const char *saga_id;
    const char *channel;
    const char *key;
    const unsigned char *payload;
    size_t payload_len;
    const char *headers;
    int attempts;            /* failures so far */
} sg_store_outbox_row_t;

/* Claims up to 'max' rows ready to publish, oldest first, for 'lease_ms':
 * no other relay gets them until the lease ends (a crashed relay's rows come
 * back then). */
sg_err_t sg_store_outbox_claim(sg_store_t *st, int max, int64_t lease_ms,
                               sg_store_outbox_row_t **out, size_t *n);
/* Deletes rows the broker confirmed. */
sg_err_t sg_store_outbox_delete(sg_store_t *st, const int64_t *ids, size_t n);
/* Records a failed publish: attempts + 1, last_error, not before backoff_ms. */
sg_err_t sg_store_outbox_fail(sg_store_t *st, int64_t id, const char *error, int64_t backoff_ms);

/* ---- timers ---- */

typedef struct sg_store_timer_row {
    int64_t id;              /* changes whenever the timer is armed again */
    const char *saga_id;
    const char *kind;
    const char *step;        /* "" for saga-wide timers */
    int attempt;
    int64_t due_at_ms;
} sg_store_timer_row_t;

/* Claims up to 'max' timers due by the database's clock, for 'lease_ms'. The
 * transition that handles one passes its id as fired_timer_id, which deletes
 * it; an unhandled one fires again when the lease ends. */
sg_err_t sg_store_timers_claim(sg_store_t *st, int max, int64_t lease_ms,
                               sg_store_timer_row_t **out, size_t *n);

/* ---- dead letters ---- */

typedef struct sg_store_dead_letter {
    int64_t id;
    int64_t received_at_ms;
    const char *channel;
    const char *key;
    const unsigned char *raw;   /* NULL in lists */
    size_t raw_len;
    const char *headers;
    const char *reason;
    int64_t replayed_at_ms;     /* 0 = not replayed */
} sg_store_dead_letter_t;

/* Stores a message that cannot be processed, whole. */
sg_err_t sg_store_dead_letter_add(sg_store_t *st, const char *channel, const char *key,
                                  const void *raw, size_t raw_len, const char *headers,
                                  const char *reason, int64_t *id);
/* The newest 'limit' dead letters with an id below 'before_id' (0 = from
 * the newest), without their bytes. */
sg_err_t sg_store_dead_letters_list(sg_store_t *st, int64_t before_id, int limit,
                                    sg_store_dead_letter_t **out, size_t *n);
/* One dead letter with its bytes, or SG_ERR_NOT_FOUND. */
sg_err_t sg_store_dead_letter_get(sg_store_t *st, int64_t id, sg_store_dead_letter_t **out);
/* Takes one back for replay, in one transaction: marks it replayed and puts
 * its bytes, key and headers in the outbox for its channel, so the relay
 * sends it through the input path again. SG_ERR_NOT_FOUND, or SG_ERR_STATE
 * when it was replayed before. */
sg_err_t sg_store_dead_letter_replay(sg_store_t *st, int64_t id, sg_store_dead_letter_t **out);

/* ---- retention ---- */

/* Deletes inbox entries older than 'age_ms', 'batch' rows per transaction;
 * '*deleted' (may be NULL) receives the total. */
sg_err_t sg_store_purge_inbox(sg_store_t *st, int64_t age_ms, int batch, int64_t *deleted);
/* Deletes history entries older than 'age_ms' of finished (completed or
 * compensated) sagas, 'batch' entries examined per transaction. */
sg_err_t sg_store_purge_history(sg_store_t *st, int64_t age_ms, int batch, int64_t *deleted);

/* ---- queries for the operator ---- */

typedef struct sg_store_filter {
    const char *status;      /* NULL = any */
    const char *type;        /* NULL = any */
    int64_t since_ms;        /* changed within this; 0 = any time */
    int limit;               /* <= 0: 100 */
} sg_store_filter_t;

/* Sagas matching the filter, most recently changed first, without state. */
sg_err_t sg_store_sagas_list(sg_store_t *st, const sg_store_filter_t *filter,
                             sg_store_saga_t **out, size_t *n);
/* Sagas running or compensating whose last change is older than 'age_ms',
 * oldest change first, without state. */
sg_err_t sg_store_sagas_stuck(sg_store_t *st, int64_t age_ms, int limit,
                              sg_store_saga_t **out, size_t *n);

typedef struct sg_store_history_row {
    int64_t seq;
    int64_t at_ms;
    const char *event;
    const char *step;
    const char *detail;
} sg_store_history_row_t;

/* A saga's history, oldest first. */
sg_err_t sg_store_history_list(sg_store_t *st, const char *saga_id,
                               sg_store_history_row_t **out, size_t *n);

typedef struct sg_store_count {
    const char *type;
    const char *status;
    int64_t count;
    int64_t minute_ms;       /* sg_store_finished_per_minute only */
} sg_store_count_t;

/* The database's clock (clock_timestamp()), epoch ms: the clock every
 * due time is compared with, so callers derive due times from it too. */
sg_err_t sg_store_clock(sg_store_t *st, int64_t *now_ms);

/* Number of sagas by type and status. */
sg_err_t sg_store_counts(sg_store_t *st, sg_store_count_t **out, size_t *n);
/* Sagas that ended (completed, compensated, failed) per minute and status
 * over the last hour, oldest minute first ('type' is NULL). */
sg_err_t sg_store_finished_per_minute(sg_store_t *st, sg_store_count_t **out, size_t *n);

/* ---- gauges for the daemon's metrics ---- */

/* Outbox rows not yet published, armed timers, and the sagas not finished
 * (running, compensating, failed) counted by type and status, in one round
 * trip of cheap queries. Free *counts with sg_store_free. */
sg_err_t sg_store_gauges(sg_store_t *st, int64_t *outbox_pending, int64_t *timers_pending,
                         sg_store_count_t **counts, size_t *n);

#endif
