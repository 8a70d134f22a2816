/* A transition made ready to commit (see saga/transition.h). The engine's
 * effects are translated one to one: a command or an event becomes an
 * outbox row, a timer effect an arm or a cancel, a history effect a history
 * row. Every string the item points to is owned by the transition, in the
 * 'owned' list, freed with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/envelope.h"
#include "saga/transition.h"

struct sg_transition {
    sg_saga_t *after;
    sg_effects_t *fx;
    const char *ignored;          /* borrowed from fx */
    sg_store_saga_t row;
    sg_store_history_t *history;
    sg_store_outmsg_t *outbox;
    sg_store_timer_t *arm;
    sg_store_timer_t *cancel;
    void **owned;                 /* strings the item points to */
    size_t nowned;
    size_t capowned;
    sg_store_item_t item;
};

/* Keeps 'p' to be freed with the transition; NULL stays NULL. Returns 'p',
 * or NULL (and frees it) when the list cannot grow. */
static void *own(sg_transition_t *tr, void *p) {
    if (!p)
        return NULL;
    if (tr->nowned == tr->capowned) {
        size_t cap = tr->capowned ? tr->capowned * 2 : 16;
        void **list = realloc(tr->owned, cap * sizeof *list);
        if (!list) {
            free(p);
            return NULL;
        }
        tr->owned = list;
        tr->capowned = cap;
    }
    tr->owned[tr->nowned++] = p;
    return p;
}

static char *own_dump(sg_transition_t *tr, const json_t *json) {
    return own(tr, json_dumps(json, JSON_COMPACT));
}

void sg_transition_destroy(sg_transition_t *tr) {
    if (!tr)
        return;
    for (size_t i = 0; i < tr->nowned; i++)
        free(tr->owned[i]);
    free(tr->owned);
    free(tr->history);
    free(tr->outbox);
    free(tr->arm);
    free(tr->cancel);
    sg_effects_destroy(tr->fx);
    sg_saga_destroy(tr->after);
    free(tr);
}

/* The saga row after the transition, with the columns the CLI filters on. */
static sg_err_t fill_row(sg_transition_t *tr, char *errstr, size_t errstr_size) {
    const sg_saga_t *s = tr->after;
    sg_store_saga_t *row = &tr->row;
    row->id = sg_saga_id(s);
    row->type = sg_saga_type(s);
    row->definition_version = sg_saga_def_version(s);
    row->definition_sha256 = sg_saga_def_sha256(s);
    row->status = sg_saga_status_str(sg_saga_status(s));
    row->deadline_at_ms = sg_saga_deadline_ms(s);
    row->traceparent = sg_saga_traceparent(s);
    size_t need = sg_saga_current_steps(s, NULL, 0);
    if (need > 0) {
        char *cur = own(tr, malloc(need + 1));
        if (!cur)
            goto nomem;
        sg_saga_current_steps(s, cur, need + 1);
        row->current_step = cur;
    }
    json_t *state = sg_saga_to_json(s);
    row->state = own_dump(tr, state);
    json_decref(state);
    if (!row->state)
        goto nomem;
    return SG_OK;
nomem:
    snprintf(errstr, errstr_size, "out of memory for saga '%s'", sg_saga_id(s));
    return SG_ERR_NOMEM;
}

/* AMQP wants message_id and correlation_id as properties: the relay reads
 * them from the row's headers. */
static const char *amqp_headers(sg_transition_t *tr, const char *channel, const char *id,
                                const char *saga_id) {
    if (strncmp(channel, "amqp:", 5) != 0)
        return NULL;
    json_t *h = json_pack("{s:s,s:s}", "message_id", id, "correlation_id", saga_id);
    char *text = h ? own_dump(tr, h) : NULL;
    json_decref(h);
    return text;
}

static sg_err_t add_outmsg(sg_transition_t *tr, const char *channel, const sg_event_fields_t *f,
                           char *errstr, size_t errstr_size) {
    char *payload = NULL;
    size_t len = 0;
    sg_err_t err = sg_envelope_encode(f, &payload, &len, errstr, errstr_size);
    if (err)
        return err;
    if (!own(tr, payload)) {
        snprintf(errstr, errstr_size, "out of memory for message '%s'", f->id);
        return SG_ERR_NOMEM;
    }
    sg_store_outmsg_t *m = &tr->outbox[tr->item.noutbox++];
    m->channel = channel;
    m->key = f->sagaid;
    m->payload = payload;
    m->payload_len = len;
    m->headers = amqp_headers(tr, channel, f->id, f->sagaid);
    return SG_OK;
}

static sg_err_t add_command(sg_transition_t *tr, const sg_command_t *c, int64_t now_ms,
                            const char *source, char *errstr, size_t errstr_size) {
    sg_event_fields_t f = {
        .id = c->id, .source = source, .type = c->type, .time_ms = now_ms,
        .sagaid = c->saga_id, .sagatype = c->saga_type, .sagastep = c->step,
        .replyto = c->replyto, .traceparent = c->traceparent, .data = c->data,
    };
    return add_outmsg(tr, c->channel->text, &f, errstr, errstr_size);
}

static sg_err_t add_event(sg_transition_t *tr, const sg_event_t *e, int64_t now_ms,
                          const sg_transition_env_t *env, char *errstr, size_t errstr_size) {
    if (!env->events)
        return SG_OK;
    sg_event_fields_t f = {
        .id = e->id, .source = env->source ? env->source : SG_TRANSITION_SOURCE,
        .type = e->type, .time_ms = now_ms, .sagaid = e->saga_id, .sagatype = e->saga_type,
        .sagastep = e->step, .traceparent = e->traceparent, .data = e->data,
    };
    return add_outmsg(tr, env->events, &f, errstr, errstr_size);
}

static void add_timer(sg_store_timer_t *t, const sg_timer_t *et) {
    t->kind = sg_timer_kind_str(et->kind);
    t->step = et->step;
    t->attempt = et->attempt;
    t->due_at_ms = et->due_at_ms;
}

static sg_err_t add_history(sg_transition_t *tr, const sg_history_t *h) {
    sg_store_history_t *row = &tr->history[tr->item.nhistory++];
    row->event = h->event;
    row->step = h->step;
    row->detail = h->detail ? own_dump(tr, h->detail) : NULL;
    if (h->detail && !row->detail)
        return SG_ERR_NOMEM;
    if (tr->item.nhistory == 1 && h->detail) {
        const json_t *why = json_object_get(h->detail, "ignored");
        tr->ignored = json_is_string(why) ? json_string_value(why) : NULL;
    }
    return SG_OK;
}

/* Translates every effect into the item's arrays (each sized for all). */
static sg_err_t fill_effects(sg_transition_t *tr, int64_t now_ms, const sg_transition_env_t *env,
                             char *errstr, size_t errstr_size) {
    size_t n = sg_effects_count(tr->fx);
    tr->history = calloc(n ? n : 1, sizeof *tr->history);
    tr->outbox = calloc(n ? n : 1, sizeof *tr->outbox);
    tr->arm = calloc(n ? n : 1, sizeof *tr->arm);
    tr->cancel = calloc(n ? n : 1, sizeof *tr->cancel);
    if (!tr->history || !tr->outbox || !tr->arm || !tr->cancel) {
        snprintf(errstr, errstr_size, "out of memory for %zu effects", n);
        return SG_ERR_NOMEM;
    }
    const char *source = env->source ? env->source : SG_TRANSITION_SOURCE;
    sg_err_t err = SG_OK;
    for (size_t i = 0; i < n && !err; i++) {
        const sg_effect_t *e = sg_effects_at(tr->fx, i);
        switch (e->kind) {
        case SG_EFFECT_COMMAND:
            err = add_command(tr, &e->command, now_ms, source, errstr, errstr_size);
            break;
        case SG_EFFECT_EVENT:
            err = add_event(tr, &e->event, now_ms, env, errstr, errstr_size);
            break;
        case SG_EFFECT_TIMER_ARM:
            add_timer(&tr->arm[tr->item.narm++], &e->timer);
            break;
        case SG_EFFECT_TIMER_CANCEL:
            add_timer(&tr->cancel[tr->item.ncancel++], &e->timer);
            break;
        case SG_EFFECT_HISTORY:
            if ((err = add_history(tr, &e->history)) != SG_OK)
                snprintf(errstr, errstr_size, "out of memory for a history entry");
            break;
        }
    }
    tr->item.history = tr->history;
    tr->item.outbox = tr->outbox;
    tr->item.arm = tr->arm;
    tr->item.cancel = tr->cancel;
    return err;
}

sg_err_t sg_transition_make(const sg_def_t *def, const sg_saga_t *before, int64_t version,
                            const sg_input_t *in, const char *message_id,
                            int64_t fired_timer_id, int64_t now_ms,
                            const sg_transition_env_t *env, sg_transition_t **out,
                            char *errstr, size_t errstr_size) {
    *out = NULL;
    sg_transition_t *tr = calloc(1, sizeof *tr);
    if (!tr) {
        snprintf(errstr, errstr_size, "out of memory for a transition");
        return SG_ERR_NOMEM;
    }
    sg_err_t err = sg_engine_apply(def, before, in, now_ms, &env->engine, &tr->after, &tr->fx,
                                   errstr, errstr_size);
    if (err)
        goto fail;
    if ((err = fill_row(tr, errstr, errstr_size)) != SG_OK)
        goto fail;
    tr->item.saga = &tr->row;
    tr->item.saga_id = tr->row.id;
    tr->item.expected_version = before ? version : 0;
    tr->item.fired_timer_id = fired_timer_id;
    if (message_id && !(tr->item.message_id = own(tr, strdup(message_id)))) {
        snprintf(errstr, errstr_size, "out of memory for message id");
        err = SG_ERR_NOMEM;
        goto fail;
    }
    if ((err = fill_effects(tr, now_ms, env, errstr, errstr_size)) != SG_OK)
        goto fail;
    *out = tr;
    return SG_OK;
fail:
    sg_transition_destroy(tr);
    return err;
}

sg_store_item_t *sg_transition_item(sg_transition_t *tr) { return &tr->item; }

const sg_saga_t *sg_transition_saga(const sg_transition_t *tr) { return tr->after; }

sg_saga_t *sg_transition_take_saga(sg_transition_t *tr) {
    sg_saga_t *s = tr->after;
    tr->after = NULL;
    return s;
}

const sg_effects_t *sg_transition_effects(const sg_transition_t *tr) { return tr->fx; }

const char *sg_transition_ignored(const sg_transition_t *tr) { return tr->ignored; }

sg_err_t sg_transition_saga_from_row(const sg_store_saga_t *row, sg_saga_t **out,
                                     char *errstr, size_t errstr_size) {
    json_error_t jerr;
    *out = NULL;
    json_t *state = row->state ? json_loads(row->state, 0, &jerr) : NULL;
    if (!state) {
        snprintf(errstr, errstr_size, "saga '%s': state is not JSON: %s", row->id,
                 row->state ? jerr.text : "missing");
        return SG_ERR_INVALID;
    }
    char why[256];
    sg_err_t err = sg_saga_from_json(state, out, why, sizeof why);
    json_decref(state);
    if (err)
        snprintf(errstr, errstr_size, "saga '%s': damaged state: %s", row->id, why);
    return err;
}

/* ---- load, apply, commit one ---- */

/* One attempt: SG_ERR_CONFLICT means try again. */
static sg_err_t run_once(sg_store_t *st, sg_defcache_t *dc, const char *saga_id,
                         const sg_input_t *in, const char *message_id, int64_t now_ms,
                         const sg_transition_env_t *env, sg_transition_t **out, char *errstr,
                         size_t errstr_size) {
    sg_store_saga_t *row = NULL;
    sg_saga_t *before = NULL;
    sg_transition_t *tr = NULL;
    const sg_def_t *def;
    sg_err_t err = sg_store_saga_load(st, saga_id, &row);
    if (err) {
        snprintf(errstr, errstr_size, "cannot load saga '%s': %s", saga_id,
                 err == SG_ERR_NOT_FOUND ? "no such saga" : sg_store_errmsg(st));
        goto done;
    }
    if ((err = sg_transition_saga_from_row(row, &before, errstr, errstr_size)) ||
        (err = sg_defcache_resolve(dc, st, row->type, row->definition_version,
                                   row->definition_sha256, &def, errstr, errstr_size)) ||
        (err = sg_transition_make(def, before, row->version, in, message_id, 0, now_ms, env,
                                  &tr, errstr, errstr_size)))
        goto done;
    sg_store_item_t *item = sg_transition_item(tr);
    if ((err = sg_store_batch(st, item, 1)) == SG_OK)
        err = item->result;
    if (err)
        snprintf(errstr, errstr_size, "cannot commit saga '%s': %s", saga_id,
                 item->errmsg[0] ? item->errmsg : sg_store_errmsg(st));
done:
    if (!err && out)
        *out = tr;
    else
        sg_transition_destroy(tr);
    sg_saga_destroy(before);
    sg_store_free(row);
    return err;
}

sg_err_t sg_transition_run_one(sg_store_t *st, sg_defcache_t *dc, const char *saga_id,
                               const sg_input_t *in, const char *message_id, int64_t now_ms,
                               const sg_transition_env_t *env, sg_transition_t **out,
                               char *errstr, size_t errstr_size) {
    if (out)
        *out = NULL;
    sg_err_t err = SG_ERR_CONFLICT;
    for (int i = 0; i <= SG_TRANSITION_MAX_RETRIES && err == SG_ERR_CONFLICT; i++)
        err = run_once(st, dc, saga_id, in, message_id, now_ms, env, out, errstr, errstr_size);
    return err;
}
