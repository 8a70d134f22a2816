/* Applying a batch of inputs: every pending work becomes a transition on
 * its saga's latest state and the transitions are committed together with
 * one sg_store_batch.
 *
 * Each item is sent to the database as soon as it is made (see
 * sg_store_stream_add), so the engine and PostgreSQL work side by side.
 *
 * Works of one saga are applied in arrival order, one per round: round k
 * commits the k-th pending input of every saga of the batch in one
 * transaction, and the next input of a saga starts from the state and
 * version the previous one committed. A batch whose sagas each got one
 * input (the usual case) is one round, one transaction. Chaining two inputs
 * of one saga inside the same transaction is not safe with per-item
 * savepoints: if the first fails on a version conflict because another
 * worker wrote exactly one transition, the second's expected version
 * matches and it would commit a state computed from a stale one.
 *
 * Outcomes per item: committed (done); a duplicate message id or a start of
 * an existing saga (done, counted); a version conflict (the saga is
 * reloaded and the input applied again next round); refused by the server
 * (dead-lettered). A lost database connection stops the call with
 * SG_ERR_CONN: works done stay done, the rest is applied on the next call,
 * and the inbox turns whatever did commit into duplicates. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sagad.h"

typedef struct slot {
    const char *saga_id;
    bool loaded;
    bool exists;
    sg_saga_t *state;        /* owned */
    int64_t version;
    const sg_def_t *def;
    bool forgotten;          /* what it held proved stale: read the database */
    char broken[200];        /* why the saga cannot be applied to, "" when it can */
} slot_t;

typedef struct slots {
    slot_t *v;
    size_t n;
    size_t *of_work;         /* slot index of each work */
} slots_t;

/* Ends a call: with 'keep', the states known to be the committed ones go
 * (back) to the cache; after a failed batch nothing is known for sure. */
static void slots_release(sagad_t *d, slots_t *s, bool keep) {
    for (size_t i = 0; i < s->n; i++) {
        slot_t *slot = &s->v[i];
        if (keep && slot->loaded && slot->exists && slot->state && slot->def &&
            !slot->broken[0])
            sg_cache_put(d->cache, slot->saga_id, slot->state, slot->version, slot->def);
        else
            sg_saga_destroy(slot->state);
    }
    free(s->v);
    free(s->of_work);
}

static void slot_forget(slot_t *s) {
    sg_saga_destroy(s->state);
    s->state = NULL;
    s->forgotten = true;
    s->loaded = false;
    s->exists = false;
    s->def = NULL;
    s->broken[0] = '\0';
}

/* One slot per distinct saga id; small batches, so a linear scan. */
static sg_err_t slots_build(slots_t *s, sg_work_t **works, size_t n) {
    s->v = calloc(n ? n : 1, sizeof *s->v);
    s->of_work = calloc(n ? n : 1, sizeof *s->of_work);
    s->n = 0;
    if (!s->v || !s->of_work)
        return SG_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < s->n && strcmp(s->v[j].saga_id, works[i]->saga_id) != 0)
            j++;
        if (j == s->n)
            s->v[s->n++].saga_id = works[i]->saga_id;
        s->of_work[i] = j;
    }
    return SG_OK;
}

static void reject(sg_work_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reject(sg_work_t *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->reason, sizeof w->reason, fmt, ap);
    va_end(ap);
    w->state = WORK_REJECTED;
}

/* Fills a slot from its row: the state, and the definition it runs. */
static sg_err_t slot_fill(sagad_t *d, slot_t *s, const sg_store_saga_t *row) {
    s->loaded = true;
    s->exists = row->id != NULL;
    if (!s->exists)
        return SG_OK;
    s->version = row->version;
    char errstr[200];
    sg_err_t err = sg_transition_saga_from_row(row, &s->state, errstr, sizeof errstr);
    if (!err)
        err = sg_defcache_resolve(d->dc, d->st, row->type, row->definition_version,
                                  row->definition_sha256, &s->def, errstr, sizeof errstr);
    if (err == SG_ERR_CONN)
        return err;
    if (err) {
        snprintf(s->broken, sizeof s->broken, "%s", errstr);
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.saga_id = s->saga_id, .saga_type = row->type},
               "cannot apply inputs to saga: %s", errstr);
    }
    return SG_OK;
}

/* Fills a slot without the database when it can: from the cache, or as a
 * new saga when its one input is a start (if the saga exists after all,
 * its create fails as a duplicate start, as it should). */
static bool slot_fill_known(sagad_t *d, slot_t *s, const sg_work_t *only) {
    void *state;
    const void *def;
    if (sg_cache_take(d->cache, s->saga_id, &state, &s->version, &def)) {
        s->state = state;
        s->def = def;
        s->loaded = s->exists = true;
        return true;
    }
    if (only && only->in.kind == SG_INPUT_START && !s->forgotten) {
        s->loaded = true;
        s->exists = false;
        return true;
    }
    return false;
}

/* Loads every slot not loaded that a pending work needs: from the cache,
 * or from the database in one query. */
static sg_err_t load_missing(sagad_t *d, slots_t *s, sg_work_t **works, size_t n) {
    const char **ids = calloc(s->n ? s->n : 1, sizeof *ids);
    size_t *which = calloc(s->n ? s->n : 1, sizeof *which);
    bool *want = calloc(s->n ? s->n : 1, sizeof *want);
    const sg_work_t **only = calloc(s->n ? s->n : 1, sizeof *only);
    size_t k = 0;
    sg_err_t err = SG_OK;
    if (!ids || !which || !want || !only) {
        err = SG_ERR_NOMEM;
        goto done;
    }
    /* The pending work of each slot, when it has exactly one. */
    for (size_t i = 0; i < n; i++) {
        size_t j = s->of_work[i];
        if (works[i]->state == WORK_PENDING && !s->v[j].loaded) {
            only[j] = want[j] ? NULL : works[i];
            want[j] = true;
        }
    }
    for (size_t j = 0; j < s->n; j++)
        if (want[j] && slot_fill_known(d, &s->v[j], only[j]))
            want[j] = false;
    for (size_t j = 0; j < s->n; j++)
        if (want[j]) {
            ids[k] = s->v[j].saga_id;
            which[k++] = j;
        }
    if (k == 0)
        goto done;
    sg_store_saga_t *rows = NULL;
    if ((err = sg_store_saga_load_many(d->st, ids, k, &rows)) != SG_OK)
        goto done;
    for (size_t i = 0; i < k && !err; i++)
        err = slot_fill(d, &s->v[which[i]], &rows[i]);
    sg_store_free(rows);
done:
    free(ids);
    free(which);
    free(want);
    free(only);
    return err;
}

static const char *input_name(sg_input_kind_t kind) {
    static const char *const names[] = {[SG_INPUT_START] = "start", [SG_INPUT_REPLY] = "reply",
                                        [SG_INPUT_TIMER] = "timer", [SG_INPUT_ABORT] = "abort",
                                        [SG_INPUT_RETRY] = "retry"};
    return kind >= SG_INPUT_START && kind <= SG_INPUT_RETRY ? names[kind] : "input";
}

static sg_log_ctx_t work_ctx(const sg_work_t *w, const char *type, const char *step,
                             const char *traceparent, char trace[33]) {
    return (sg_log_ctx_t){.saga_id = w->saga_id, .saga_type = type, .step = step,
                          .trace_id = sg_trace_id(traceparent, trace)};
}

/* ---- one work to one item ---- */

typedef struct pick {
    size_t work;
    sg_transition_t *tr;     /* NULL for an item without a transition */
    const sg_saga_t *before; /* the slot's state when made (borrowed) */
    sg_store_item_t item;
} pick_t;

static void duplicate_start(sagad_t *d, sg_work_t *w) {
    char trace[33];
    sg_log_ctx_t ctx = work_ctx(w, w->sagatype, NULL, w->in.traceparent, trace);
    sg_log(SG_LOG_INFO, &ctx, "duplicate start of an existing saga ignored (message '%s')",
           w->message_id ? w->message_id : "");
    sg_metrics_add(d->metrics, SG_M_DUPLICATES, 1, "start");
    w->state = WORK_DONE;
}

/* Makes the item of one work, or settles the work without one. Returns
 * true when 'p' holds an item to commit. */
static bool prepare(sagad_t *d, slot_t *s, sg_work_t *w, int64_t now, pick_t *p) {
    char errstr[256];
    memset(p, 0, sizeof *p);
    const sg_def_t *def = s->def;
    if (s->exists && w->in.kind == SG_INPUT_START) {
        duplicate_start(d, w);
        return false;
    }
    if (!s->exists && w->in.kind == SG_INPUT_TIMER) {
        /* The saga is gone: drop its timer. */
        p->item.saga_id = w->saga_id;
        p->item.fired_timer_id = w->fired_timer_id;
        return true;
    }
    if (!s->exists && w->in.kind != SG_INPUT_START) {
        reject(w, "unknown sagaid \"%s\"", w->saga_id);
        return false;
    }
    if (!s->exists && !(def = sg_defcache_latest(d->dc, w->sagatype))) {
        reject(w, "unknown sagatype \"%s\"", w->sagatype);
        return false;
    }
    if (s->broken[0]) {
        reject(w, "saga \"%s\" cannot be applied to: %s", w->saga_id, s->broken);
        return false;
    }
    sg_err_t err = sg_transition_make(def, s->state, s->version, &w->in, w->message_id,
                                      w->fired_timer_id, now, &d->tenv, &p->tr, errstr,
                                      sizeof errstr);
    if (err) {
        reject(w, "refused by the engine: %s", errstr);
        return false;
    }
    p->before = s->state;
    p->item = *sg_transition_item(p->tr);
    return true;
}

/* ---- after the commit: logs and metrics of the lifecycle ---- */

static bool finished(sg_saga_status_t st) {
    return st == SG_SAGA_COMPLETED || st == SG_SAGA_COMPENSATED || st == SG_SAGA_FAILED;
}

/* The step's start (epoch ms) in a state; 0 if unknown. */
static int64_t step_started_ms(const sg_saga_t *saga, const char *step) {
    for (int i = 0; i < sg_saga_step_count(saga); i++)
        if (!strcmp(sg_saga_step_name(saga, i), step))
            return sg_saga_step_started_ms(saga, i);
    return 0;
}

static void observe_steps(sagad_t *d, const pick_t *p, const sg_work_t *w, int64_t now) {
    const sg_saga_t *after = sg_transition_saga(p->tr);
    const char *type = sg_saga_type(after);
    const sg_effects_t *fx = sg_transition_effects(p->tr);
    char trace[33];
    for (size_t i = 0; i < sg_effects_count(fx); i++) {
        const sg_effect_t *e = sg_effects_at(fx, i);
        if (e->kind != SG_EFFECT_HISTORY || !e->history.step)
            continue;
        const char *ev = e->history.event;
        sg_log_ctx_t ctx = work_ctx(w, type, e->history.step, sg_saga_traceparent(after), trace);
        if (!strcmp(ev, "step.succeeded") || !strcmp(ev, "step.failed") ||
            !strcmp(ev, "step.timed_out")) {
            sg_metrics_add(d->metrics, SG_M_STEPS, 1, type, e->history.step, ev + 5);
            sg_log(strcmp(ev, "step.succeeded") ? SG_LOG_INFO : SG_LOG_DEBUG, &ctx, "step %s",
                   ev + 5);
            if (w->in.kind == SG_INPUT_REPLY && p->before && w->in.step &&
                !strcmp(w->in.step, e->history.step)) {
                int64_t started = step_started_ms(p->before, e->history.step);
                if (started > 0 && now >= started)
                    sg_metrics_observe(d->metrics, SG_M_STEP_LATENCY,
                                       (double)(now - started) / 1000.0, type);
            }
        } else if (!strcmp(ev, "step.compensated")) {
            sg_metrics_add(d->metrics, SG_M_COMPENSATIONS, 1, type, e->history.step,
                           "compensated");
            sg_log(SG_LOG_DEBUG, &ctx, "step compensated");
        } else if (!strcmp(ev, "compensation.exhausted")) {
            sg_metrics_add(d->metrics, SG_M_COMPENSATIONS, 1, type, e->history.step,
                           "exhausted");
            sg_log(SG_LOG_WARN, &ctx, "compensation ran out of attempts");
        }
    }
}

static void observe_commit(sagad_t *d, const pick_t *p, const sg_work_t *w, int64_t now) {
    const sg_saga_t *after = sg_transition_saga(p->tr);
    const char *type = sg_saga_type(after);
    sg_saga_status_t from = p->before ? sg_saga_status(p->before) : SG_SAGA_NONE;
    sg_saga_status_t to = sg_saga_status(after);
    char trace[33], steps[256];
    sg_saga_current_steps(after, steps, sizeof steps);
    sg_log_ctx_t ctx = work_ctx(w, type, steps[0] ? steps : NULL, sg_saga_traceparent(after),
                                trace);
    sg_metrics_add(d->metrics, SG_M_TRANSITIONS, 1);
    const char *ignored = sg_transition_ignored(p->tr);
    if (ignored)
        sg_log(SG_LOG_DEBUG, &ctx, "%s ignored: %s", input_name(w->in.kind), ignored);
    if (from == SG_SAGA_NONE) {
        sg_metrics_add(d->metrics, SG_M_SAGAS_STARTED, 1, type);
        sg_log(SG_LOG_INFO, &ctx, "saga started on version %d", sg_saga_def_version(after));
    }
    if (from != to && from != SG_SAGA_NONE) {
        const char *why = sg_saga_reason(after);
        sg_log(to == SG_SAGA_FAILED ? SG_LOG_WARN : SG_LOG_INFO, &ctx, "saga %s -> %s%s%s",
               sg_saga_status_str(from), sg_saga_status_str(to), why ? ": " : "",
               why ? why : "");
    }
    if (from != to && finished(to))
        sg_metrics_add(d->metrics, SG_M_SAGAS_FINISHED, 1, type, sg_saga_status_str(to));
    observe_steps(d, p, w, now);
}

static bool caused_command(const sg_transition_t *tr) {
    const sg_effects_t *fx = sg_transition_effects(tr);
    for (size_t i = 0; i < sg_effects_count(fx); i++)
        if (sg_effects_at(fx, i)->kind == SG_EFFECT_COMMAND)
            return true;
    return false;
}

/* ---- one round ---- */

static void settle(sagad_t *d, slots_t *s, pick_t *p, sg_work_t *w, int64_t now) {
    slot_t *slot = &s->v[s->of_work[p->work]];
    sg_store_item_t *it = &p->item;
    char trace[33];
    sg_log_ctx_t ctx = work_ctx(w, slot->state ? sg_saga_type(slot->state) : w->sagatype, NULL,
                                w->in.traceparent, trace);
    switch (it->result) {
    case SG_OK:
        w->state = WORK_DONE;
        if (!p->tr) {
            sg_log(SG_LOG_WARN, &ctx, "timer of an unknown saga dropped");
            return;
        }
        observe_commit(d, p, w, now);
        for (size_t i = 0; i < it->noutbox; i++)
            sg_relay_publish(d, it->saga_id, &it->outbox[i]);
        if (w->in.kind == SG_INPUT_REPLY && w->received_us && caused_command(p->tr))
            sg_metrics_observe(d->metrics, SG_M_REPLY_TO_COMMAND,
                               (double)(sg_mono_us() - w->received_us) / 1e6);
        sg_saga_destroy(slot->state);
        slot->state = sg_transition_take_saga(p->tr);
        slot->version = it->new_version;
        slot->exists = true;
        if (!slot->def)
            slot->def = sg_defcache_latest(d->dc, sg_saga_type(slot->state));
        return;
    case SG_ERR_DUPLICATE:
        w->state = WORK_DONE;
        if (w->in.kind == SG_INPUT_START && it->expected_version == 0 &&
            !strstr(it->errmsg, "inbox")) {
            duplicate_start(d, w);
            slot_forget(slot);
            return;
        }
        sg_metrics_add(d->metrics, SG_M_DUPLICATES, 1, "message");
        sg_log(SG_LOG_INFO, &ctx, "duplicate message '%s' ignored",
               w->message_id ? w->message_id : "");
        return;
    case SG_ERR_CONFLICT:
        sg_metrics_add(d->metrics, SG_M_VERSION_CONFLICTS, 1);
        slot_forget(slot);
        if (++w->conflicts >= SAGAD_MAX_CONFLICTS)
            reject(w, "version conflicts did not resolve after %d attempts", w->conflicts);
        else
            sg_log(SG_LOG_DEBUG, &ctx, "version conflict, applying again");
        return;
    default:
        slot_forget(slot);
        if (w->in.kind == SG_INPUT_TIMER) {
            w->state = WORK_DONE; /* the lease brings it back */
            sg_log(SG_LOG_ERROR, &ctx, "timer refused by the database: %s", it->errmsg);
        } else {
            reject(w, "refused by the database: %s", it->errmsg);
        }
        return;
    }
}

/* ---- committing a round ---- */

/* A round's items go to the database as they are made, so PostgreSQL works
 * on one while the engine makes the next. A large round alternates them
 * over two connections, two transactions committed at once, so that two
 * database backends share the work (one connection is one server process,
 * one core). The items of a round are on distinct sagas, so the two
 * transactions are independent; if either fails the round is not settled at
 * all, and applying it again finds what did commit in the inbox. */
typedef struct round_tx {
    sg_store_t *st[2];
    int nst;
    bool begun;
    size_t added;
    int64_t began_us;
} round_tx_t;

static sg_store_t *second_connection(sagad_t *d) {
    char errstr[256];
    if (!d->st2 && !d->st2_tried) {
        d->st2_tried = true;
        if ((d->st2 = sg_store_new(d->cfg->database_url, errstr, sizeof errstr)))
            sg_store_set_outbox_lease(d->st2, SAGAD_FRESH_LEASE_MS);
        else
            sg_log_warn("no second database connection, batches use one: %s", errstr);
    }
    return d->st2;
}

static void tx_init(sagad_t *d, round_tx_t *tx, size_t expected) {
    *tx = (round_tx_t){.st = {d->st, NULL}, .nst = 1};
    if (expected >= SAGAD_SPLIT_MIN && (tx->st[1] = second_connection(d)))
        tx->nst = 2;
}

/* Sends one item; errors surface at tx_finish. */
static void tx_add(sagad_t *d, round_tx_t *tx, sg_store_item_t *item) {
    if (!tx->begun) {
        tx->begun = true;
        tx->began_us = sg_mono_us();
        sg_relay_deleting(d);
        sg_store_stream_begin(tx->st[0], d->done, d->ndone);
        if (tx->nst == 2)
            sg_store_stream_begin(tx->st[1], NULL, 0);
    }
    sg_store_stream_add(tx->st[tx->added++ % (size_t)tx->nst], item);
}

static sg_err_t tx_finish(sagad_t *d, round_tx_t *tx) {
    if (!tx->begun)
        return SG_OK;
    for (int i = 0; i < tx->nst; i++)
        sg_store_stream_seal(tx->st[i]);
    sg_err_t err = sg_store_stream_finish(tx->st[0]);
    if (tx->nst == 2) {
        sg_err_t err2 = sg_store_stream_finish(tx->st[1]);
        if (err2) {
            sg_log_warn("second half of a batch not committed: %s", sg_store_errmsg(tx->st[1]));
            if (!err)
                err = err2;
        }
    }
    sg_metrics_observe(d->metrics, SG_M_DB_TX_SECONDS,
                       (double)(sg_mono_us() - tx->began_us) / 1e6);
    return err;
}

/* How many items a round can have: one per saga with a pending work and a
 * loaded state. 'seen' is scratch, one per slot, left all false. */
static size_t round_size(const slots_t *s, sg_work_t **works, size_t n, bool *seen) {
    size_t size = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = s->of_work[i];
        if (works[i]->state == WORK_PENDING && !seen[j] && s->v[j].loaded) {
            seen[j] = true;
            size++;
        }
    }
    memset(seen, 0, (s->n ? s->n : 1) * sizeof *seen);
    return size;
}

/* Picks the first pending work of each saga, commits their items in one
 * batch and settles each. Sets *npicked (0: nothing left to do). */
static sg_err_t round_run(sagad_t *d, slots_t *s, sg_work_t **works, size_t n,
                          size_t *npicked) {
    pick_t *picks = calloc(n ? n : 1, sizeof *picks);
    sg_store_item_t *items = calloc(n ? n : 1, sizeof *items);
    bool *taken = calloc(s->n ? s->n : 1, sizeof *taken);
    size_t k = 0;
    sg_err_t err = SG_OK;
    int64_t now = sg_now_ms();
    round_tx_t tx;
    if (!picks || !items || !taken) {
        err = SG_ERR_NOMEM;
        goto done;
    }
    tx_init(d, &tx, round_size(s, works, n, taken));
    for (size_t i = 0; i < n; i++) {
        size_t j = s->of_work[i];
        if (works[i]->state != WORK_PENDING || taken[j] || !s->v[j].loaded)
            continue;
        if (prepare(d, &s->v[j], works[i], now, &picks[k])) {
            picks[k].work = i;
            items[k] = picks[k].item;
            taken[j] = true;
            tx_add(d, &tx, &items[k]);
            k++;
        }
    }
    *npicked = k;
    err = tx_finish(d, &tx);
    if (err || k == 0)
        goto done;
    d->ndone = 0;
    sg_metrics_observe(d->metrics, SG_M_BATCH_SIZE, (double)k);
    sg_crash_point("after_commit");
    for (size_t i = 0; i < k; i++) {
        picks[i].item = items[i];
        settle(d, s, &picks[i], works[picks[i].work], now);
    }
done:
    for (size_t i = 0; i < k; i++)
        sg_transition_destroy(picks[i].tr);
    free(picks);
    free(items);
    free(taken);
    return err;
}

sg_err_t sg_apply_works(sagad_t *d, sg_work_t **works, size_t n) {
    slots_t s = {0};
    sg_err_t err = slots_build(&s, works, n);
    size_t picked = 1;
    while (!err && picked > 0) {
        err = load_missing(d, &s, works, n);
        if (!err)
            err = round_run(d, &s, works, n, &picked);
    }
    slots_release(d, &s, err == SG_OK);
    if (err && err != SG_ERR_CONN) {
        sg_log_error("batch not applied: %s: %s", sg_err_str(err), sg_store_errmsg(d->st));
        err = SG_ERR_CONN; /* retried after a pause like a lost connection */
    }
    return err;
}

/* Dead-letter reasons by their first words (see saga/envelope.h and the
 * rejections above). */
static const struct {
    const char *prefix;
    const char *cls;
} reason_classes[] = {
    {"message of ", "too_large"},
    {"not UTF-8", "not_utf8"},
    {"not JSON", "not_json"},
    {"JSON nested", "not_json"},
    {"not a CloudEvent", "not_cloudevent"},
    {"unsupported specversion", "not_cloudevent"},
    {"unsupported type", "unknown_type"},
    {"missing attribute", "missing_attribute"},
    {"attribute ", "invalid_attribute"},
    {"unknown sagatype", "unknown_sagatype"},
    {"unknown sagaid", "unknown_sagaid"},
    {"refused by the engine", "refused"},
    {"refused by the database", "refused"},
    {"saga \"", "broken_saga"},
    {"version conflicts", "conflicts"},
};

const char *sg_apply_reason_class(const char *reason) {
    for (size_t i = 0; i < sizeof reason_classes / sizeof reason_classes[0]; i++)
        if (!strncmp(reason, reason_classes[i].prefix, strlen(reason_classes[i].prefix)))
            return reason_classes[i].cls;
    return "other";
}
