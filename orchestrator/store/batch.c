/* The transition batch: many transitions, one transaction, one round trip.
 *
 * Everything is sent through libpq's pipeline of prepared statements without
 * waiting for answers, in segments that each end with a Sync. Items are sent
 * as they are handed in (sg_store_stream_add), so the server works on one
 * while the caller makes the next. A batch is first sent plain:
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
 * While items are sent, the answers that have arrived are read without
 * waiting (see read_answers), which also keeps the server's unread output
 * small; the COMMIT's answer is waited for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/str.h"
#include "store/store_int.h"

#define SAVEPOINT_BATCHES 16 /* batches sent with savepoints after a failed item */

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
static int send_item(sg_store_t *st, const store_stream_t *plan, const sg_store_item_t *it,
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
static int send_begin(sg_store_t *st, const store_stream_t *plan) {
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

static int send_commit(sg_store_t *st, const store_stream_t *plan) {
    if (plan->savepoints && !queue(st, ST_SAVEPOINT_ROLLBACK, NULL))
        return -1;
    if (!queue(st, ST_COMMIT, NULL))
        return -1;
    return PQpipelineSync(st->conn) == 1 ? (plan->savepoints ? 2 : 1) : -1;
}

/* ---- reading ---- */


static segment_t control_segment(int nqueries) {
    return (segment_t){.nqueries = nqueries, .saga_at = -1, .outbox_at = -1};
}

/* An answer that ends the batch: a lost connection, or one out of step. */
static sg_err_t lost(sg_store_t *st, PGresult *res) {
    sg_err_t err = store_fail(st, res, "batch not committed");
    PQclear(res);
    return err == SG_ERR_CONN ? err : SG_ERR_INTERNAL;
}

/* One statement's answer. */
static sg_err_t take_answer(sg_store_t *st, segment_t *seg, PGresult *res) {
    int q = seg->got;
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
        return SG_OK;
    case PGRES_FATAL_ERROR:
        if (PQstatus(st->conn) != CONNECTION_OK)
            return lost(st, res);
        if (seg->error)
            PQclear(res);
        else
            seg->error = res;
        return SG_OK;
    default:
        return lost(st, res);
    }
}

/* Reads the answers to one segment: each statement's result followed by a
 * NULL, then the Sync. A statement that failed is kept in seg->error; the
 * ones after it come back PGRES_PIPELINE_ABORTED. Without 'wait' it stops
 * (*done false) at the first answer that has not arrived, and goes on from
 * there when called again. */
static sg_err_t read_segment(sg_store_t *st, segment_t *seg, bool wait, bool *done) {
    *done = false;
    for (;;) {
        if (!wait && PQisBusy(st->conn))
            return SG_OK;
        PGresult *res = PQgetResult(st->conn);
        if (seg->got == seg->nqueries) {
            if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
                return lost(st, res);
            PQclear(res);
            *done = true;
            return SG_OK;
        }
        if (seg->between) {
            if (res)
                return lost(st, res);
            seg->between = false;
            seg->got++;
            continue;
        }
        if (!res)
            return lost(st, NULL);
        sg_err_t err = take_answer(st, seg, res);
        if (err)
            return err;
        seg->between = true;
    }
}

/* The outcome of one item from its segment's answers. */
static sg_err_t finish_item(sg_store_t *st, sg_store_item_t *it, segment_t *seg, bool wait,
                            bool *done) {
    sg_err_t err = read_segment(st, seg, wait, done);
    if (err || !*done)
        return err;
    if (seg->error) {
        it->result = store_classify(st->conn, seg->error);
        store_result_message(st->conn, seg->error, it->errmsg, sizeof it->errmsg);
        if (it->result == SG_ERR_CONN) /* the server is going away */
            err = store_fail(st, seg->error, "batch not committed");
        PQclear(seg->error);
        seg->error = NULL;
    } else if (it->saga) {
        it->new_version = seg->version;
    }
    return err;
}

/* A segment of transaction control (BEGIN or COMMIT): its failure fails the
 * whole batch. */
static sg_err_t finish_control(sg_store_t *st, segment_t *seg, const char *what, bool wait,
                               bool *done) {
    sg_err_t err = read_segment(st, seg, wait, done);
    if (!err && *done && seg->error) {
        err = store_fail(st, seg->error, what);
        if (err != SG_ERR_CONN)
            err = SG_ERR_INTERNAL;
    }
    if (err || *done) {
        PQclear(seg->error);
        seg->error = NULL;
    }
    return err;
}

/* ---- the batch ---- */

static void set_all(sg_store_item_t **items, size_t n, sg_err_t err, const char *msg) {
    for (size_t i = 0; i < n; i++) {
        items[i]->result = err;
        if (err)
            sg_str_copy(items[i]->errmsg, sizeof items[i]->errmsg, msg);
    }
}

static void reset_item(sg_store_item_t *it) {
    it->result = SG_OK;
    it->new_version = 0;
    it->errmsg[0] = '\0';
    for (size_t k = 0; k < it->noutbox; k++)
        it->outbox[k].id = 0;
}

/* Stops the stream on its first error; the connection is started afresh
 * by the next call, since the pipeline may still hold answers. */
static sg_err_t stream_fail(sg_store_t *st, sg_err_t err) {
    if (err && !st->stream.err) {
        st->stream.err = err;
        st->broken = true;
    }
    return st->stream.err;
}

/* Reads the answers that have arrived to what was sent, in order: BEGIN's,
 * then each item's (when a batch is sent again, only the items sent again
 * so far: the others have no answer coming). With 'wait', every one,
 * however long it takes; without, never blocks: while a stream is being
 * sent the thread must not wait on one connection while another of its
 * connections holds an open transaction, or two daemons could wait on
 * each other's locks where the database cannot see it. */
static sg_err_t read_answers(sg_store_t *st, bool wait) {
    store_stream_t *s = &st->stream;
    bool done = true;
    sg_err_t err = SG_OK;
    size_t upto = s->nsent;
    if (!wait && PQconsumeInput(st->conn) != 1)
        return store_fail(st, NULL, "batch not committed");
    if (!s->begin_read) {
        err = finish_control(st, &s->ctl, "cannot begin the batch", wait, &done);
        if (err || !done)
            return err;
        s->begin_read = true;
    }
    while (!err && done && s->nread < upto) {
        err = finish_item(st, s->items[s->nread], &s->segs[s->nread], wait, &done);
        if (!err && done)
            s->nread++;
    }
    return err;
}

/* Frees the answers kept from segments not finished (after an error). */
static void stream_clear(store_stream_t *s) {
    for (size_t k = 0; k < s->n; k++) {
        PQclear(s->segs[k].error);
        s->segs[k].error = NULL;
    }
    PQclear(s->ctl.error);
    s->ctl.error = NULL;
}

/* Sends item k of the stream (already in its list), then reads whatever
 * answers are in. */
static sg_err_t send_next(sg_store_t *st, size_t k) {
    store_stream_t *s = &st->stream;
    sg_store_item_t *it = s->items[k];
    reset_item(it);
    s->segs[k] = (segment_t){.outbox = it->outbox, .noutbox = it->noutbox};
    s->segs[k].nqueries = send_item(st, s, it, &s->segs[k].saga_at, &s->segs[k].outbox_at);
    if (s->segs[k].nqueries < 0)
        return store_fail(st, NULL, "batch not sent");
    s->nsent = k + 1;
    return read_answers(st, false);
}

/* Enters pipeline mode and sends BEGIN (and the deletes). */
static sg_err_t stream_open(sg_store_t *st) {
    store_stream_t *s = &st->stream;
    stream_clear(s);
    s->nread = s->nsent = 0;
    s->sealed = false;
    s->begin_read = false;
    if (PQenterPipelineMode(st->conn) != 1)
        return store_fail(st, NULL, "cannot enter pipeline mode");
    int nbegin = send_begin(st, s);
    s->ctl = control_segment(nbegin);
    return nbegin < 0 ? store_fail(st, NULL, "batch not sent") : SG_OK;
}

static sg_err_t stream_seal(sg_store_t *st) {
    store_stream_t *s = &st->stream;
    if (s->sealed)
        return SG_OK;
    s->sealed = true;
    s->ncommit = send_commit(st, s);
    return s->ncommit < 0 ? store_fail(st, NULL, "batch not sent") : SG_OK;
}

/* Reads every answer left and leaves pipeline mode; '*failed' tells whether
 * an item failed (then the COMMIT rolled everything back). */
static sg_err_t stream_close(sg_store_t *st, bool *failed) {
    store_stream_t *s = &st->stream;
    bool done;
    sg_err_t err = stream_seal(st);
    if (!err)
        err = read_answers(st, true);
    *failed = false;
    for (size_t k = 0; !err && k < s->n; k++)
        *failed |= s->items[k]->result != SG_OK;
    if (!err) {
        s->ctl = control_segment(s->ncommit);
        err = finish_control(st, &s->ctl, "cannot commit the batch", true, &done);
    }
    if (!err && PQexitPipelineMode(st->conn) != 1)
        err = store_fail(st, NULL, "cannot leave pipeline mode");
    return err;
}

void store_stream_release(sg_store_t *st) {
    store_stream_t *s = &st->stream;
    stream_clear(s);
    free(s->done);
    free(s->items);
    free(s->segs);
    *s = (store_stream_t){0};
}

sg_err_t sg_store_stream_begin(sg_store_t *st, const int64_t *done, size_t ndone) {
    store_stream_t *s = &st->stream;
    free(s->done);
    s->done = NULL;
    s->n = s->nread = 0;
    s->err = SG_OK;
    s->open = true;
    s->savepoints = st->savepoint_batches > 0;
    sg_err_t err = store_ready(st);
    for (size_t i = 0; !err && i < sizeof batch_stmts / sizeof batch_stmts[0]; i++)
        err = store_prepare(st, batch_stmts[i]);
    if (!err && ndone && !(s->done = store_ids_array(done, ndone))) {
        store_set_error(st, "out of memory for %zu outbox ids", ndone);
        err = SG_ERR_NOMEM;
    }
    if (!err)
        err = stream_open(st);
    return stream_fail(st, err);
}

sg_err_t sg_store_stream_add(sg_store_t *st, sg_store_item_t *item) {
    store_stream_t *s = &st->stream;
    if (!s->open)
        return SG_ERR_INTERNAL;
    if (s->err) {
        item->result = s->err;
        return s->err;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        sg_store_item_t **items = realloc(s->items, cap * sizeof *items);
        if (items)
            s->items = items;
        segment_t *segs = items ? realloc(s->segs, cap * sizeof *segs) : NULL;
        if (segs)
            s->segs = segs;
        if (!items || !segs) {
            store_set_error(st, "out of memory for a batch of %zu", cap);
            item->result = SG_ERR_NOMEM;
            return stream_fail(st, SG_ERR_NOMEM);
        }
        s->cap = cap;
    }
    s->items[s->n++] = item;
    return stream_fail(st, send_next(st, s->n - 1));
}

sg_err_t sg_store_stream_seal(sg_store_t *st) {
    store_stream_t *s = &st->stream;
    if (!s->open)
        return SG_ERR_INTERNAL;
    return s->err ? s->err : stream_fail(st, stream_seal(st));
}

sg_err_t sg_store_stream_finish(sg_store_t *st) {
    store_stream_t *s = &st->stream;
    if (!s->open)
        return SG_ERR_INTERNAL;
    bool failed = false;
    sg_err_t err = s->err ? s->err : stream_close(st, &failed);
    if (!err && failed && !s->savepoints) {
        /* Rolled back: again, each item on its own. */
        s->savepoints = true;
        st->savepoint_batches = SAVEPOINT_BATCHES;
        err = stream_open(st);
        for (size_t k = 0; !err && k < s->n; k++)
            err = send_next(st, k);
        if (!err)
            err = stream_close(st, &failed);
    } else if (!err && s->savepoints) {
        st->savepoint_batches = failed ? SAVEPOINT_BATCHES : st->savepoint_batches - 1;
    }
    stream_fail(st, err);
    stream_clear(s);
    if (err)
        set_all(s->items, s->n, err, st->errmsg);
    s->open = false;
    free(s->done);
    s->done = NULL;
    return err;
}

sg_err_t sg_store_batch_delete(sg_store_t *st, sg_store_item_t *items, size_t n,
                               const int64_t *done, size_t ndone) {
    for (size_t i = 0; i < n; i++)
        reset_item(&items[i]);
    if (n == 0 && ndone == 0)
        return SG_OK;
    sg_store_stream_begin(st, done, ndone);
    for (size_t i = 0; i < n; i++)
        sg_store_stream_add(st, &items[i]);
    return sg_store_stream_finish(st);
}

sg_err_t sg_store_batch(sg_store_t *st, sg_store_item_t *items, size_t n) {
    return sg_store_batch_delete(st, items, n, NULL, 0);
}

void sg_store_set_outbox_lease(sg_store_t *st, int64_t lease_ms) {
    st->outbox_lease_ms = lease_ms > 0 ? lease_ms : 0;
}
