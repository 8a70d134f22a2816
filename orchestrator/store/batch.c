/* The transition batch: many transitions, one transaction, one round trip.
 *
 * Everything is sent through libpq's pipeline of prepared statements without
 * waiting for answers, in segments that each end with a Sync:
 *
 *   BEGIN; SAVEPOINT item                                          Sync
 *   ROLLBACK TO SAVEPOINT item; <item 1's statements>;
 *       RELEASE SAVEPOINT item; SAVEPOINT item                     Sync
 *   ... one segment per item ...
 *   ROLLBACK TO SAVEPOINT item; COMMIT                             Sync
 *
 * When a statement of an item fails (a seen message id, a version conflict,
 * bad JSON), the server skips the rest of that segment and leaves the
 * transaction aborted; the ROLLBACK TO that opens the next segment undoes
 * the failed item and nothing else, because a successful item re-creates the
 * savepoint after its own work. So one bad item never costs the others, and
 * the client needs no answer before sending the next item.
 *
 * Answers are read a few items behind the sending, which keeps the server's
 * unread output small so neither side ever blocks on a full socket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define READ_BEHIND 16 /* items sent before their answers are read */

static const stmt_id_t batch_stmts[] = {
    ST_BEGIN,         ST_COMMIT,         ST_SAVEPOINT,      ST_SAVEPOINT_RELEASE,
    ST_SAVEPOINT_ROLLBACK, ST_INBOX_INSERT, ST_TIMER_DELETE_FIRED, ST_SAGA_CREATE,
    ST_SAGA_UPDATE,   ST_HISTORY_INSERT, ST_OUTBOX_INSERT,  ST_TIMER_CANCEL,
    ST_TIMER_ARM,
};

/* ---- sending ---- */

static bool queue(sg_store_t *st, stmt_id_t id, const params_t *p) {
    const stmt_t *s = &sg_store_stmts[id];
    return PQsendQueryPrepared(st->conn, s->name, p ? p->n : 0, p ? p->values : NULL,
                               p ? p->lengths : NULL, p ? p->formats : NULL, 0) == 1;
}

static const char *item_saga_id(const sg_store_item_t *it) {
    return it->saga_id ? it->saga_id : it->saga ? it->saga->id : NULL;
}

static const char *timer_step(const sg_store_timer_t *t) {
    return t->step ? t->step : "";
}

/* The statements of one item, in the order documented in store.h. Returns
 * how many were queued, or -1 when the connection refused one; '*saga_at'
 * is the index of the saga write (-1 when none). */
static int send_item(sg_store_t *st, const sg_store_item_t *it, int *saga_at) {
    const char *saga_id = item_saga_id(it);
    int q = 0;
    params_t p;
    *saga_at = -1;
#define SEND(id)                                                                 \
    do {                                                                         \
        if (!queue(st, id, &p))                                                   \
            return -1;                                                           \
        q++;                                                                     \
    } while (0)
    p = (params_t){0};
    SEND(ST_SAVEPOINT_ROLLBACK);
    if (it->message_id) {
        p = (params_t){0};
        params_text(&p, it->message_id);
        params_text(&p, saga_id);
        SEND(ST_INBOX_INSERT);
    }
    if (it->fired_timer_id) {
        p = (params_t){0};
        params_text(&p, saga_id);
        params_int(&p, it->fired_timer_id);
        SEND(ST_TIMER_DELETE_FIRED);
    }
    if (it->saga) {
        p = (params_t){0};
        if (it->expected_version == 0)
            saga_create_params(&p, it->saga);
        else
            saga_update_params(&p, it->saga, it->expected_version);
        *saga_at = q;
        SEND(it->expected_version == 0 ? ST_SAGA_CREATE : ST_SAGA_UPDATE);
    }
    for (size_t i = 0; i < it->nhistory; i++) {
        const sg_store_history_t *h = &it->history[i];
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, h->event);
        params_text(&p, h->step);
        params_text(&p, h->detail);
        SEND(ST_HISTORY_INSERT);
    }
    for (size_t i = 0; i < it->noutbox; i++) {
        const sg_store_outmsg_t *m = &it->outbox[i];
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, m->channel);
        params_text(&p, m->key);
        params_bytes(&p, m->payload, m->payload_len);
        params_text(&p, m->headers);
        SEND(ST_OUTBOX_INSERT);
    }
    for (size_t i = 0; i < it->ncancel; i++) {
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, it->cancel[i].kind);
        params_text(&p, timer_step(&it->cancel[i]));
        SEND(ST_TIMER_CANCEL);
    }
    for (size_t i = 0; i < it->narm; i++) {
        const sg_store_timer_t *t = &it->arm[i];
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, t->kind);
        params_text(&p, timer_step(t));
        params_int(&p, t->attempt);
        params_time(&p, t->due_at_ms);
        SEND(ST_TIMER_ARM);
    }
    p = (params_t){0};
    SEND(ST_SAVEPOINT_RELEASE);
    SEND(ST_SAVEPOINT);
#undef SEND
    return PQpipelineSync(st->conn) == 1 ? q : -1;
}

static bool send_pair(sg_store_t *st, stmt_id_t a, stmt_id_t b) {
    return queue(st, a, NULL) && queue(st, b, NULL) && PQpipelineSync(st->conn) == 1;
}

/* ---- reading ---- */

typedef struct segment {
    int nqueries;
    int saga_at;        /* index of the saga write, -1 when none */
    PGresult *error;    /* the first failed statement, owned */
    int64_t version;    /* what the saga write returned */
} segment_t;

/* An answer that ends the batch: a lost connection, or one out of step. */
static sg_err_t lost(sg_store_t *st, PGresult *res) {
    sg_err_t err = store_fail(st, res, "batch not committed");
    PQclear(res);
    return err == SG_ERR_CONN ? err : SG_ERR_INTERNAL;
}

/* Reads the answers to one segment: each statement's result followed by a
 * NULL, then the Sync. A statement that failed is kept in seg->error; the
 * ones after it come back PGRES_PIPELINE_ABORTED. */
static sg_err_t read_segment(sg_store_t *st, segment_t *seg) {
    for (int q = 0; q < seg->nqueries; q++) {
        PGresult *res = PQgetResult(st->conn);
        if (!res)
            return lost(st, NULL);
        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
            if (q == seg->saga_at && PQntuples(res) == 1)
                seg->version = cell_int(res, 0, 0);
            /* fall through */
        case PGRES_COMMAND_OK:
        case PGRES_PIPELINE_ABORTED:
            PQclear(res);
            break;
        case PGRES_FATAL_ERROR:
            if (PQstatus(st->conn) != CONNECTION_OK)
                return lost(st, res);
            if (seg->error)
                PQclear(res);
            else
                seg->error = res;
            break;
        default:
            return lost(st, res);
        }
        if ((res = PQgetResult(st->conn)) != NULL)
            return lost(st, res);
    }
    PGresult *sync = PQgetResult(st->conn);
    if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
        return lost(st, sync);
    PQclear(sync);
    return SG_OK;
}

/* The outcome of one item from its segment's answers. */
static sg_err_t finish_item(sg_store_t *st, sg_store_item_t *it, segment_t *seg) {
    sg_err_t err = read_segment(st, seg);
    if (err) {
        PQclear(seg->error);
        return err;
    }
    if (seg->error) {
        it->result = store_classify(st->conn, seg->error);
        store_result_message(st->conn, seg->error, it->errmsg, sizeof it->errmsg);
        if (it->result == SG_ERR_CONN) /* the server is going away */
            err = store_fail(st, seg->error, "batch not committed");
        PQclear(seg->error);
    } else if (it->saga) {
        it->new_version = seg->version;
    }
    return err;
}

/* A segment of transaction control (BEGIN or COMMIT): its failure fails the
 * whole batch. */
static sg_err_t finish_control(sg_store_t *st, const char *what) {
    segment_t seg = {.nqueries = 2, .saga_at = -1};
    sg_err_t err = read_segment(st, &seg);
    if (!err && seg.error) {
        err = store_fail(st, seg.error, what);
        if (err != SG_ERR_CONN)
            err = SG_ERR_INTERNAL;
    }
    PQclear(seg.error);
    return err;
}

/* ---- the batch ---- */

/* Reads item k's answers; the BEGIN segment's come before item 0's. */
static sg_err_t read_item(sg_store_t *st, sg_store_item_t *items, segment_t *segs, size_t k) {
    sg_err_t err = k == 0 ? finish_control(st, "cannot begin the batch") : SG_OK;
    return err ? err : finish_item(st, &items[k], &segs[k]);
}

static sg_err_t run_pipeline(sg_store_t *st, sg_store_item_t *items, size_t n,
                             segment_t *segs) {
    sg_err_t err;
    if (!send_pair(st, ST_BEGIN, ST_SAVEPOINT))
        return store_fail(st, NULL, "batch not sent");
    for (size_t i = 0; i < n; i++) {
        segs[i].nqueries = send_item(st, &items[i], &segs[i].saga_at);
        if (segs[i].nqueries < 0)
            return store_fail(st, NULL, "batch not sent");
        if (i >= READ_BEHIND && (err = read_item(st, items, segs, i - READ_BEHIND)))
            return err;
    }
    if (!send_pair(st, ST_SAVEPOINT_ROLLBACK, ST_COMMIT))
        return store_fail(st, NULL, "batch not sent");
    for (size_t k = n > READ_BEHIND ? n - READ_BEHIND : 0; k < n; k++)
        if ((err = read_item(st, items, segs, k)))
            return err;
    return finish_control(st, "cannot commit the batch");
}

static void set_all(sg_store_item_t *items, size_t n, sg_err_t err, const char *msg) {
    for (size_t i = 0; i < n; i++) {
        items[i].result = err;
        if (err)
            snprintf(items[i].errmsg, sizeof items[i].errmsg, "%s", msg);
    }
}

sg_err_t sg_store_batch(sg_store_t *st, sg_store_item_t *items, size_t n) {
    for (size_t i = 0; i < n; i++) {
        items[i].result = SG_OK;
        items[i].new_version = 0;
        items[i].errmsg[0] = '\0';
    }
    if (n == 0)
        return SG_OK;
    sg_err_t err = store_ready(st);
    for (size_t i = 0; !err && i < sizeof batch_stmts / sizeof batch_stmts[0]; i++)
        err = store_prepare(st, batch_stmts[i]);
    segment_t *segs = err ? NULL : calloc(n, sizeof *segs);
    if (!err && !segs) {
        store_set_error(st, "out of memory for a batch of %zu", n);
        err = SG_ERR_NOMEM;
    }
    if (!err && PQenterPipelineMode(st->conn) != 1)
        err = store_fail(st, NULL, "cannot enter pipeline mode");
    if (!err) {
        /* After a failure the pipeline may still hold answers: start the
         * next call on a fresh connection rather than read them. */
        err = run_pipeline(st, items, n, segs);
        if (err || PQexitPipelineMode(st->conn) != 1)
            st->broken = true;
    }
    free(segs);
    if (err)
        set_all(items, n, err, st->errmsg);
    return err;
}
