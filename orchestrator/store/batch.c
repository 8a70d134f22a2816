/* The transition batch: many transitions, one transaction, one round trip.
 *
 * Everything is sent through libpq's pipeline of prepared statements without
 * waiting for answers, in segments that each end with a Sync. A batch is
 * first sent plain:
 *
 *   BEGIN; [DELETE confirmed outbox rows]                          Sync
 *   <item 1's statements>                                          Sync
 *   ... one segment per item ...
 *   COMMIT                                                         Sync
 *
 * When every item succeeds (the usual case) that is all. When one fails (a
 * seen message id, a version conflict, bad JSON), the transaction is aborted
 * and the COMMIT rolls it back; the batch is then sent again with a
 * savepoint per item, and so are the next SAVEPOINT_BATCHES batches:
 *
 *   BEGIN; [DELETE ...]; SAVEPOINT item                            Sync
 *   ROLLBACK TO SAVEPOINT item; <item 1's statements>;
 *       RELEASE SAVEPOINT item; SAVEPOINT item                     Sync
 *   ... one segment per item ...
 *   ROLLBACK TO SAVEPOINT item; COMMIT                             Sync
 *
 * There, when a statement of an item fails, the server skips the rest of
 * that segment and leaves the transaction aborted; the ROLLBACK TO that
 * opens the next segment undoes the failed item and nothing else, because a
 * successful item re-creates the savepoint after its own work. So one bad
 * item never costs the others, and the client needs no answer before
 * sending the next item. Savepoints are not free (a subtransaction per
 * item), hence the plain first try.
 *
 * Answers are read a few items behind the sending, which keeps the server's
 * unread output small so neither side ever blocks on a full socket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/str.h"
#include "store/store_int.h"

#define READ_BEHIND 16      /* items sent before their answers are read */
#define SAVEPOINT_BATCHES 16 /* batches sent with savepoints after a failed item */

/* How one batch is sent. */
typedef struct plan {
    bool savepoints;
    const char *done;   /* int8[] literal of outbox rows to delete, or NULL */
} plan_t;

static const stmt_id_t batch_stmts[] = {
    ST_BEGIN,         ST_COMMIT,         ST_SAVEPOINT,      ST_SAVEPOINT_RELEASE,
    ST_SAVEPOINT_ROLLBACK, ST_INBOX_INSERT, ST_TIMER_DELETE_FIRED, ST_SAGA_CREATE,
    ST_SAGA_UPDATE,   ST_HISTORY_INSERT, ST_OUTBOX_INSERT,  ST_TIMER_CANCEL,
    ST_TIMER_ARM,     ST_OUTBOX_DELETE,  ST_HISTORY_INSERT_MANY,
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

/* Several history entries in one statement: three arrays. */
static bool send_history(sg_store_t *st, const char *saga_id, const sg_store_history_t *h,
                         size_t n) {
    const char **column = malloc(n * sizeof *column);
    char *arrays[3] = {0};
    bool ok = column != NULL;
    for (int c = 0; ok && c < 3; c++) {
        for (size_t i = 0; i < n; i++)
            column[i] = c == 0 ? h[i].event : c == 1 ? h[i].step : h[i].detail;
        ok = (arrays[c] = store_text_array(column, n)) != NULL;
    }
    params_t p = {0};
    params_text(&p, saga_id);
    for (int c = 0; c < 3; c++)
        params_text(&p, arrays[c]);
    ok = ok && queue(st, ST_HISTORY_INSERT_MANY, &p);
    for (int c = 0; c < 3; c++)
        free(arrays[c]);
    free(column);
    return ok;
}

/* The statements of one item, in the order documented in store.h. Returns
 * how many were queued, or -1 when the connection refused one; '*saga_at'
 * is the index of the saga write (-1 when none). */
static int send_item(sg_store_t *st, const plan_t *plan, const sg_store_item_t *it,
                     int *saga_at, int *outbox_at) {
    const char *saga_id = item_saga_id(it);
    int q = 0;
    params_t p;
    *saga_at = *outbox_at = -1;
#define SEND(id)                                                                 \
    do {                                                                         \
        if (!queue(st, id, &p))                                                   \
            return -1;                                                           \
        q++;                                                                     \
    } while (0)
    p = (params_t){0};
    if (plan->savepoints)
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
    if (it->nhistory == 1) {
        const sg_store_history_t *h = &it->history[0];
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, h->event);
        params_text(&p, h->step);
        params_text(&p, h->detail);
        SEND(ST_HISTORY_INSERT);
    } else if (it->nhistory > 1) {
        if (!send_history(st, saga_id, it->history, it->nhistory))
            return -1;
        q++;
    }
    *outbox_at = q;
    for (size_t i = 0; i < it->noutbox; i++) {
        const sg_store_outmsg_t *m = &it->outbox[i];
        p = (params_t){0};
        params_text(&p, saga_id);
        params_text(&p, m->channel);
        params_text(&p, m->key);
        params_bytes(&p, m->payload, m->payload_len);
        params_text(&p, m->headers);
        params_int(&p, st->outbox_lease_ms);
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
    if (plan->savepoints) {
        SEND(ST_SAVEPOINT_RELEASE);
        SEND(ST_SAVEPOINT);
    }
#undef SEND
    return PQpipelineSync(st->conn) == 1 ? q : -1;
}

/* BEGIN, the deletes, and the first savepoint. Returns how many were
 * queued, or -1. */
static int send_begin(sg_store_t *st, const plan_t *plan) {
    params_t p = {0};
    int q = 1;
    if (!queue(st, ST_BEGIN, NULL))
        return -1;
    if (plan->done) {
        params_text(&p, plan->done);
        if (!queue(st, ST_OUTBOX_DELETE, &p))
            return -1;
        q++;
    }
    if (plan->savepoints) {
        if (!queue(st, ST_SAVEPOINT, NULL))
            return -1;
        q++;
    }
    return PQpipelineSync(st->conn) == 1 ? q : -1;
}

static int send_commit(sg_store_t *st, const plan_t *plan) {
    if (plan->savepoints && !queue(st, ST_SAVEPOINT_ROLLBACK, NULL))
        return -1;
    if (!queue(st, ST_COMMIT, NULL))
        return -1;
    return PQpipelineSync(st->conn) == 1 ? (plan->savepoints ? 2 : 1) : -1;
}

/* ---- reading ---- */

typedef struct segment {
    int nqueries;
    int saga_at;        /* index of the saga write, -1 when none */
    int outbox_at;      /* index of the first outbox insert, -1 when none */
    sg_store_outmsg_t *outbox; /* where the inserted rows' ids go */
    size_t noutbox;
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
            if (seg->outbox_at >= 0 && q >= seg->outbox_at &&
                (size_t)(q - seg->outbox_at) < seg->noutbox && PQntuples(res) == 1)
                seg->outbox[q - seg->outbox_at].id = cell_int(res, 0, 0);
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
static sg_err_t finish_control(sg_store_t *st, int nqueries, const char *what) {
    segment_t seg = {.nqueries = nqueries, .saga_at = -1, .outbox_at = -1};
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
static sg_err_t read_item(sg_store_t *st, int nbegin, sg_store_item_t *items, segment_t *segs,
                          size_t k) {
    sg_err_t err = k == 0 ? finish_control(st, nbegin, "cannot begin the batch") : SG_OK;
    return err ? err : finish_item(st, &items[k], &segs[k]);
}

/* Sends and reads one batch. '*failed' tells whether an item failed. */
static sg_err_t run_pipeline(sg_store_t *st, const plan_t *plan, sg_store_item_t *items,
                             size_t n, segment_t *segs, bool *failed) {
    sg_err_t err;
    int nbegin = send_begin(st, plan);
    if (nbegin < 0)
        return store_fail(st, NULL, "batch not sent");
    for (size_t i = 0; i < n; i++) {
        segs[i] = (segment_t){.outbox = items[i].outbox, .noutbox = items[i].noutbox};
        segs[i].nqueries = send_item(st, plan, &items[i], &segs[i].saga_at, &segs[i].outbox_at);
        if (segs[i].nqueries < 0)
            return store_fail(st, NULL, "batch not sent");
        if (i >= READ_BEHIND && (err = read_item(st, nbegin, items, segs, i - READ_BEHIND)))
            return err;
    }
    int ncommit = send_commit(st, plan);
    if (ncommit < 0)
        return store_fail(st, NULL, "batch not sent");
    for (size_t k = n > READ_BEHIND ? n - READ_BEHIND : 0; k < n; k++)
        if ((err = read_item(st, nbegin, items, segs, k)))
            return err;
    if (n == 0 && (err = finish_control(st, nbegin, "cannot begin the batch")))
        return err;
    *failed = false;
    for (size_t k = 0; k < n; k++)
        *failed |= items[k].result != SG_OK;
    return finish_control(st, ncommit, "cannot commit the batch");
}

static void set_all(sg_store_item_t *items, size_t n, sg_err_t err, const char *msg) {
    for (size_t i = 0; i < n; i++) {
        items[i].result = err;
        if (err)
            sg_str_copy(items[i].errmsg, sizeof items[i].errmsg, msg);
    }
}

static void reset_items(sg_store_item_t *items, size_t n) {
    for (size_t i = 0; i < n; i++) {
        items[i].result = SG_OK;
        items[i].new_version = 0;
        items[i].errmsg[0] = '\0';
        for (size_t k = 0; k < items[i].noutbox; k++)
            items[i].outbox[k].id = 0;
    }
}

/* One try in pipeline mode; '*failed' as in run_pipeline. */
static sg_err_t try_batch(sg_store_t *st, const plan_t *plan, sg_store_item_t *items, size_t n,
                          segment_t *segs, bool *failed) {
    reset_items(items, n);
    if (PQenterPipelineMode(st->conn) != 1)
        return store_fail(st, NULL, "cannot enter pipeline mode");
    sg_err_t err = run_pipeline(st, plan, items, n, segs, failed);
    /* After a failure the pipeline may still hold answers: start the next
     * call on a fresh connection rather than read them. */
    if (err || PQexitPipelineMode(st->conn) != 1)
        st->broken = true;
    return err;
}

sg_err_t sg_store_batch_delete(sg_store_t *st, sg_store_item_t *items, size_t n,
                               const int64_t *done, size_t ndone) {
    reset_items(items, n);
    if (n == 0 && ndone == 0)
        return SG_OK;
    plan_t plan = {.savepoints = st->savepoint_batches > 0};
    sg_err_t err = store_ready(st);
    for (size_t i = 0; !err && i < sizeof batch_stmts / sizeof batch_stmts[0]; i++)
        err = store_prepare(st, batch_stmts[i]);
    char *done_text = NULL;
    if (!err && ndone && !(plan.done = done_text = store_ids_array(done, ndone))) {
        store_set_error(st, "out of memory for %zu outbox ids", ndone);
        err = SG_ERR_NOMEM;
    }
    segment_t *segs = err ? NULL : calloc(n ? n : 1, sizeof *segs);
    if (!err && !segs) {
        store_set_error(st, "out of memory for a batch of %zu", n);
        err = SG_ERR_NOMEM;
    }
    bool failed = false;
    if (!err)
        err = try_batch(st, &plan, items, n, segs, &failed);
    if (!err && failed && !plan.savepoints) {
        /* Rolled back: again, each item on its own. */
        plan.savepoints = true;
        st->savepoint_batches = SAVEPOINT_BATCHES;
        err = try_batch(st, &plan, items, n, segs, &failed);
    } else if (!err && plan.savepoints) {
        st->savepoint_batches = failed ? SAVEPOINT_BATCHES : st->savepoint_batches - 1;
    }
    free(segs);
    free(done_text);
    if (err)
        set_all(items, n, err, st->errmsg);
    return err;
}

sg_err_t sg_store_batch(sg_store_t *st, sg_store_item_t *items, size_t n) {
    return sg_store_batch_delete(st, items, n, NULL, 0);
}

void sg_store_set_outbox_lease(sg_store_t *st, int64_t lease_ms) {
    st->outbox_lease_ms = lease_ms > 0 ? lease_ms : 0;
}
