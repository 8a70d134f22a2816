/* The store's connection: open, lose, reopen. Each public call starts with
 * store_ready, which reconnects when the previous call lost the connection
 * (or left it inside a transaction), and statements are prepared again on
 * the new connection when first used. A failure is classified once here:
 * a lost connection (SG_ERR_CONN) is told apart from everything else so the
 * caller can back off and retry, knowing the inbox says what committed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* Notices ("relation already exists, skipping") are not for the user. */
static void ignore_notice(void *opaque, const char *message) {
    (void)opaque;
    (void)message;
}

static PGconn *connect_db(const char *conninfo) {
    /* expand_dbname lets 'conninfo' be a URI or key=value string, while the
     * application name stays a default the string can override. */
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {conninfo, "sagad", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

static void conn_message(const PGconn *conn, char *buf, size_t size) {
    const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    snprintf(buf, size, "%.*s", (int)len, msg);
}

sg_store_t *sg_store_new(const char *conninfo, char *errstr, size_t errstr_size) {
    sg_store_t *st = calloc(1, sizeof *st);
    if (!st || !(st->conninfo = strdup(conninfo ? conninfo : "")))
        goto nomem;
    st->conn = connect_db(st->conninfo);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        char cause[400];
        conn_message(st->conn, cause, sizeof cause);
        snprintf(errstr, errstr_size, "cannot connect to the database: %s", cause);
        sg_store_destroy(st);
        return NULL;
    }
    return st;
nomem:
    snprintf(errstr, errstr_size, "cannot connect to the database: out of memory");
    sg_store_destroy(st);
    return NULL;
}

void sg_store_destroy(sg_store_t *st) {
    if (!st)
        return;
    store_stream_release(st);
    PQfinish(st->conn);
    free(st->conninfo);
    free(st);
}

const char *sg_store_errmsg(const sg_store_t *st) {
    return st ? st->errmsg : "no store";
}

void sg_store_free(void *p) {
    free(p);
}

void store_set_error(sg_store_t *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->errmsg, sizeof st->errmsg, fmt, ap);
    va_end(ap);
}

sg_err_t store_ready(sg_store_t *st) {
    st->errmsg[0] = '\0';
    if (st->conn && !st->broken && PQstatus(st->conn) == CONNECTION_OK &&
        PQtransactionStatus(st->conn) == PQTRANS_IDLE &&
        PQpipelineStatus(st->conn) == PQ_PIPELINE_OFF)
        return SG_OK;
    PQfinish(st->conn);
    memset(st->prepared, 0, sizeof st->prepared);
    st->conn = connect_db(st->conninfo);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        char cause[400];
        conn_message(st->conn, cause, sizeof cause);
        store_set_error(st, "cannot connect to the database: %s", cause);
        st->broken = true;
        return SG_ERR_CONN;
    }
    st->broken = false;
    return SG_OK;
}

static bool sqlstate_is(const char *state, const char *code) {
    return state && !strcmp(state, code);
}

/* Lost connections, a server shutting down or starting up: SG_ERR_CONN. */
static bool conn_lost(const PGconn *conn, const char *state) {
    if (PQstatus(conn) != CONNECTION_OK)
        return true;
    if (!state)
        return false;
    return !strncmp(state, "08", 2) || sqlstate_is(state, "57P01") ||
           sqlstate_is(state, "57P02") || sqlstate_is(state, "57P03");
}

sg_err_t store_classify(const PGconn *conn, const PGresult *res) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (conn_lost(conn, state) || (!res && PQstatus(conn) != CONNECTION_OK))
        return SG_ERR_CONN;
    if (!state)
        return SG_ERR_INTERNAL;
    if (sqlstate_is(state, "23505")) {
        const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
        if (constraint && (!strcmp(constraint, "inbox_pkey") || !strcmp(constraint, "sagas_pkey")))
            return SG_ERR_DUPLICATE;
        return SG_ERR_INVALID;
    }
    /* The versioned update found another version; a deadlock or a
     * serialization failure is the same race seen by the server. */
    if (sqlstate_is(state, "SGVER") || sqlstate_is(state, "40P01") ||
        sqlstate_is(state, "40001"))
        return SG_ERR_CONFLICT;
    if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))
        return SG_ERR_INVALID;
    return SG_ERR_INTERNAL;
}

void store_result_message(const PGconn *conn, const PGresult *res, char *buf, size_t size) {
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg)
        snprintf(buf, size, "%s", msg);
    else
        conn_message(conn, buf, size);
}

sg_err_t store_fail(sg_store_t *st, const PGresult *res, const char *what) {
    sg_err_t err = store_classify(st->conn, res);
    char cause[400];
    store_result_message(st->conn, res, cause, sizeof cause);
    store_set_error(st, "%s: %s", what, cause);
    if (err == SG_ERR_CONN)
        st->broken = true;
    return err;
}

sg_err_t store_prepare(sg_store_t *st, stmt_id_t id) {
    if (st->prepared[id])
        return SG_OK;
    const stmt_t *s = &sg_store_stmts[id];
    PGresult *res = PQprepare(st->conn, s->name, s->sql, s->nparams, NULL);
    sg_err_t err = SG_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = store_fail(st, res, "cannot prepare a statement");
    else
        st->prepared[id] = true;
    PQclear(res);
    return err;
}

static bool result_ok(const PGresult *res) {
    ExecStatusType status = PQresultStatus(res);
    return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

PGresult *store_exec(sg_store_t *st, stmt_id_t id, const params_t *p, sg_err_t *err) {
    *err = store_prepare(st, id);
    if (*err)
        return NULL;
    const stmt_t *s = &sg_store_stmts[id];
    PGresult *res = PQexecPrepared(st->conn, s->name, p ? p->n : 0, p ? p->values : NULL,
                                   p ? p->lengths : NULL, p ? p->formats : NULL, 0);
    if (result_ok(res))
        return res;
    *err = store_fail(st, res, "database error");
    PQclear(res);
    return NULL;
}

sg_err_t store_command(sg_store_t *st, const char *sql, const char *what) {
    PGresult *res = PQexec(st->conn, sql);
    sg_err_t err = result_ok(res) ? SG_OK : store_fail(st, res, what);
    PQclear(res);
    return err;
}
