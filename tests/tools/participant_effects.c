/* The participant's effects table: one row per command id, so tests count
 * effects exactly. A command is inserted on its first receipt with the
 * answer the participant chose; a redelivery of the same id only adds one
 * to 'attempts' (the receipts) and gets the recorded answer back, so the
 * participant answers one command the same way every time and never applies
 * it twice. 'seq' orders first receipts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "participant.h"

struct pt_effects {
    PGconn *pg;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS participant_effects ("
    " command_id text PRIMARY KEY,"
    " saga_id text NOT NULL,"
    " step text,"
    " type text NOT NULL,"
    " undo boolean NOT NULL,"
    " attempt integer,"
    " channel text,"
    " data jsonb,"
    " outcome text NOT NULL,"
    " reply jsonb,"
    " received_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " last_received_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " attempts integer NOT NULL DEFAULT 1,"
    " seq bigint GENERATED ALWAYS AS IDENTITY)";

static const char UPSERT[] =
    "INSERT INTO participant_effects"
    " (command_id, saga_id, step, type, undo, attempt, channel, data, outcome, reply)"
    " VALUES ($1, $2, $3, $4, $5::boolean, $6::integer, $7, $8::jsonb, $9, $10::jsonb)"
    " ON CONFLICT (command_id) DO UPDATE"
    " SET attempts = participant_effects.attempts + 1, last_received_at = clock_timestamp()"
    " RETURNING attempts, outcome, reply::text";

/* Runs a statement without parameters; SG_ERR_CONN when the connection is
 * gone, SG_ERR_INTERNAL when the server refused it. */
static sg_err_t exec(pt_effects_t *fx, const char *sql, char *errstr, size_t errstr_size) {
    PGresult *res = PQexec(fx->pg, sql);
    ExecStatusType st = PQresultStatus(res);
    sg_err_t err = SG_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "postgresql: %s", PQerrorMessage(fx->pg));
        err = PQstatus(fx->pg) == CONNECTION_OK ? SG_ERR_INTERNAL : SG_ERR_CONN;
    }
    PQclear(res);
    return err;
}

static sg_err_t create_table(pt_effects_t *fx, char *errstr, size_t errstr_size) {
    sg_err_t err = exec(fx, "BEGIN", errstr, errstr_size);
    if (!err) /* several participants may start at once */
        err = exec(fx, "SELECT pg_advisory_xact_lock(7428001)", errstr, errstr_size);
    if (!err)
        err = exec(fx, SCHEMA, errstr, errstr_size);
    if (!err) /* for the tests' queries by saga and step */
        err = exec(fx, "CREATE INDEX IF NOT EXISTS participant_effects_saga"
                       " ON participant_effects (saga_id, step, undo)", errstr, errstr_size);
    if (!err)
        err = exec(fx, "COMMIT", errstr, errstr_size);
    if (err)
        PQclear(PQexec(fx->pg, "ROLLBACK"));
    return err;
}

pt_effects_t *pt_effects_new(const char *conninfo, char *errstr, size_t errstr_size) {
    pt_effects_t *fx = calloc(1, sizeof *fx);
    if (!fx) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    fx->pg = PQconnectdb(conninfo);
    if (PQstatus(fx->pg) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "cannot connect to postgresql: %s", PQerrorMessage(fx->pg));
        goto fail;
    }
    PQclear(PQexec(fx->pg, "SET client_min_messages = warning"));
    if (create_table(fx, errstr, errstr_size))
        goto fail;
    return fx;
fail:
    pt_effects_destroy(fx);
    return NULL;
}

void pt_effects_destroy(pt_effects_t *fx) {
    if (!fx)
        return;
    PQfinish(fx->pg);
    free(fx);
}

sg_err_t pt_effects_begin(pt_effects_t *fx, char *errstr, size_t errstr_size) {
    if (PQstatus(fx->pg) != CONNECTION_OK) {
        PQreset(fx->pg);
        if (PQstatus(fx->pg) != CONNECTION_OK) {
            snprintf(errstr, errstr_size, "postgresql: %s", PQerrorMessage(fx->pg));
            return SG_ERR_CONN;
        }
    }
    return exec(fx, "BEGIN", errstr, errstr_size);
}

sg_err_t pt_effects_commit(pt_effects_t *fx, char *errstr, size_t errstr_size) {
    return exec(fx, "COMMIT", errstr, errstr_size);
}

void pt_effects_rollback(pt_effects_t *fx) {
    if (PQstatus(fx->pg) == CONNECTION_OK)
        PQclear(PQexec(fx->pg, "ROLLBACK"));
}

sg_err_t pt_effects_record(pt_effects_t *fx, const pt_effect_t *e, int *receipts,
                           char **outcome, json_t **reply, char *errstr, size_t errstr_size) {
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", e->attempt);
    char *data = e->data ? json_dumps(e->data, JSON_COMPACT) : NULL;
    char *rep = e->reply ? json_dumps(e->reply, JSON_COMPACT) : NULL;
    const char *params[10] = {e->command_id, e->saga_id, e->step,  e->type,    e->undo ? "t" : "f",
                              attempt,       e->channel, data,     e->outcome, rep};
    PGresult *res = PQexecParams(fx->pg, UPSERT, 10, NULL, params, NULL, NULL, 0);
    sg_err_t err = SG_OK;
    *outcome = NULL;
    *reply = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(errstr, errstr_size, "cannot record command '%s': %s", e->command_id,
                 PQerrorMessage(fx->pg));
        err = PQstatus(fx->pg) == CONNECTION_OK ? SG_ERR_INTERNAL : SG_ERR_CONN;
        goto done;
    }
    *receipts = atoi(PQgetvalue(res, 0, 0));
    *outcome = strdup(PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 2))
        *reply = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
done:
    PQclear(res);
    free(data);
    free(rep);
    return err;
}
