/* A tiny stand-in for the store around the saga engine, for the engine
 * tests: it applies inputs, keeps the state, the armed timers (arm and
 * cancel effects), and logs every command, event and history entry, so a
 * test can answer the last command of a step or fire the timer armed for it.
 * Every apply is checked: SG_OK, invariants hold, and an ignored input leaves
 * the serialized state exactly as it was. */
#ifndef SAGA_TEST_ENGINE_SIM_H
#define SAGA_TEST_ENGINE_SIM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/def.h"
#include "saga/engine.h"

#define SIM_MAX_TIMERS 64

typedef struct sim_timer {
    sg_timer_kind_t kind;
    char step[SG_NAME_MAX + 1];
    int attempt;
    int64_t due;
} sim_timer_t;

typedef struct sim_cmd {
    char id[256];
    char step[SG_NAME_MAX + 1];
    bool undo;
    int attempt;
    int seq; /* order of sending */
} sim_cmd_t;

typedef struct sim {
    sg_def_t *def;
    sg_saga_t *saga;
    sg_effects_t *fx;        /* effects of the last apply */
    sg_engine_env_t env;
    int64_t now;
    bool last_ignored;
    char last_ignored_reason[512];
    sim_timer_t timers[SIM_MAX_TIMERS];
    int ntimers;
    sim_cmd_t *cmds;         /* every command sent, in order */
    int ncmds;
    int cmds_cap;
    json_t *events;          /* array of every lifecycle event (as JSON) */
    json_t *history;         /* array of every history entry {event,step,detail} */
} sim_t;

static inline sg_def_t *sim_load_def(const char *text) {
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    if (sg_def_load_string("test.json", text, strlen(text), &def, &errs) != SG_OK) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.items[i]);
        sg_def_errors_release(&errs);
        return NULL;
    }
    return def;
}

static inline void sim_init(sim_t *s, sg_def_t *def) {
    memset(s, 0, sizeof *s);
    s->def = def;
    s->env.reply_to_kafka = "kafka:saga.replies";
    s->env.reply_to_amqp = "amqp:/saga.replies";
    s->now = 1000000;
    s->events = json_array();
    s->history = json_array();
}

static inline void sim_release(sim_t *s) {
    sg_saga_destroy(s->saga);
    sg_effects_destroy(s->fx);
    free(s->cmds);
    json_decref(s->events);
    json_decref(s->history);
    memset(s, 0, sizeof *s);
}

static inline char *sim_state_text(const sg_saga_t *saga) {
    if (!saga)
        return strdup("null");
    json_t *j = sg_saga_to_json(saga);
    char *t = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return t;
}

static inline void sim_timer_remove(sim_t *s, sg_timer_kind_t kind, const char *step) {
    for (int k = 0; k < s->ntimers; k++)
        if (s->timers[k].kind == kind && strcmp(s->timers[k].step, step ? step : "") == 0) {
            s->timers[k] = s->timers[--s->ntimers];
            k--;
        }
}

static inline void sim_take_effect(sim_t *s, const sg_effect_t *e) {
    switch (e->kind) {
    case SG_EFFECT_COMMAND: {
        if (s->ncmds == s->cmds_cap) {
            s->cmds_cap = s->cmds_cap ? 2 * s->cmds_cap : 16;
            s->cmds = realloc(s->cmds, (size_t)s->cmds_cap * sizeof *s->cmds);
            if (!s->cmds)
                abort();
        }
        sim_cmd_t *c = &s->cmds[s->ncmds];
        snprintf(c->id, sizeof c->id, "%s", e->command.id);
        snprintf(c->step, sizeof c->step, "%s", e->command.step);
        c->undo = e->command.undo;
        c->attempt = e->command.attempt;
        c->seq = s->ncmds++;
        break;
    }
    case SG_EFFECT_EVENT:
        json_array_append_new(s->events, json_pack("{s:s,s:s,s:o,s:O}", "id", e->event.id,
                                                   "type", e->event.type, "step",
                                                   e->event.step ? json_string(e->event.step) : json_null(),
                                                   "data", e->event.data));
        break;
    case SG_EFFECT_TIMER_ARM:
        sim_timer_remove(s, e->timer.kind, e->timer.step);
        if (s->ntimers < SIM_MAX_TIMERS) {
            sim_timer_t *t = &s->timers[s->ntimers++];
            t->kind = e->timer.kind;
            snprintf(t->step, sizeof t->step, "%s", e->timer.step ? e->timer.step : "");
            t->attempt = e->timer.attempt;
            t->due = e->timer.due_at_ms;
        }
        break;
    case SG_EFFECT_TIMER_CANCEL:
        sim_timer_remove(s, e->timer.kind, e->timer.step);
        break;
    case SG_EFFECT_HISTORY:
        json_array_append_new(s->history, json_pack("{s:s,s:o,s:O}", "event", e->history.event,
                                                    "step", e->history.step ? json_string(e->history.step) : json_null(),
                                                    "detail", e->history.detail));
        break;
    }
}

/* Applies 'in' at s->now. Returns the engine's result; on SG_OK the state
 * and logs move on. Aborts the test program on a broken invariant or on an
 * ignored input that changed the state. */
static inline sg_err_t sim_apply(sim_t *s, const sg_input_t *in) {
    sg_saga_t *out = NULL;
    sg_effects_t *fx = NULL;
    char err[512];
    sg_err_t rc = sg_engine_apply(s->def, s->saga, in, s->now, &s->env, &out, &fx, err, sizeof err);
    if (rc != SG_OK)
        return rc;
    if (sg_saga_check_invariants(s->def, out, err, sizeof err) != SG_OK) {
        fprintf(stderr, "invariant broken: %s\n", err);
        abort();
    }
    const char *ignored = sg_effects_ignored(fx);
    s->last_ignored = ignored != NULL;
    snprintf(s->last_ignored_reason, sizeof s->last_ignored_reason, "%s", ignored ? ignored : "");
    if (s->last_ignored) {
        bool same = s->saga && sg_saga_equal(s->saga, out);
        bool only_history = sg_effects_count(fx) == 1;
        if ((s->saga && !same) || !only_history) {
            fprintf(stderr, "an ignored input changed the state or had effects\n");
            abort();
        }
    }
    for (size_t i = 0; i < sg_effects_count(fx); i++)
        sim_take_effect(s, sg_effects_at(fx, i));
    sg_saga_destroy(s->saga);
    sg_effects_destroy(s->fx);
    s->saga = out;
    s->fx = fx;
    return SG_OK;
}

static inline sg_err_t sim_start(sim_t *s, const char *id, const char *input_json, uint64_t seed) {
    json_t *data = input_json ? json_loads(input_json, 0, NULL) : NULL;
    sg_input_t in = {.kind = SG_INPUT_START, .saga_id = id, .seed = seed, .data = data};
    sg_err_t rc = sim_apply(s, &in);
    json_decref(data);
    return rc;
}

/* The last command sent for 'step' (do or undo), or NULL. */
static inline const sim_cmd_t *sim_last_cmd(const sim_t *s, const char *step) {
    for (int k = s->ncmds - 1; k >= 0; k--)
        if (strcmp(s->cmds[k].step, step) == 0)
            return &s->cmds[k];
    return NULL;
}

static inline sg_err_t sim_reply_to(sim_t *s, const char *step, const char *causation,
                                    bool ok, const char *data_json) {
    json_t *data = data_json ? json_loads(data_json, 0, NULL) : NULL;
    sg_input_t in = {.kind = SG_INPUT_REPLY, .step = step, .causation_id = causation,
                     .outcome = ok ? SG_OUTCOME_SUCCESS : SG_OUTCOME_FAILURE, .data = data};
    sg_err_t rc = sim_apply(s, &in);
    json_decref(data);
    return rc;
}

/* Answers the last command of 'step'. */
static inline sg_err_t sim_reply(sim_t *s, const char *step, bool ok, const char *data_json) {
    const sim_cmd_t *c = sim_last_cmd(s, step);
    return sim_reply_to(s, step, c ? c->id : "none", ok, data_json);
}

static inline sg_err_t sim_ok(sim_t *s, const char *step) {
    return sim_reply(s, step, true, "{}");
}

static inline sg_err_t sim_fail(sim_t *s, const char *step, bool retryable) {
    return sim_reply(s, step, false,
                     retryable ? "{\"code\":\"busy\",\"message\":\"try later\",\"retryable\":true}"
                               : "{\"code\":\"declined\",\"message\":\"no\",\"retryable\":false}");
}

static inline const sim_timer_t *sim_timer(const sim_t *s, sg_timer_kind_t kind, const char *step) {
    for (int k = 0; k < s->ntimers; k++)
        if (s->timers[k].kind == kind && strcmp(s->timers[k].step, step ? step : "") == 0)
            return &s->timers[k];
    return NULL;
}

/* Fires the armed timer of 'kind' for 'step' (NULL: the deadline), moving
 * the clock to its due time. SG_ERR_NOT_FOUND when none is armed. */
static inline sg_err_t sim_fire(sim_t *s, sg_timer_kind_t kind, const char *step) {
    const sim_timer_t *t = sim_timer(s, kind, step);
    if (!t)
        return SG_ERR_NOT_FOUND;
    sim_timer_t copy = *t;
    sim_timer_remove(s, kind, step);
    if (copy.due > s->now)
        s->now = copy.due;
    sg_input_t in = {.kind = SG_INPUT_TIMER, .timer = kind, .step = step, .attempt = copy.attempt};
    return sim_apply(s, &in);
}

static inline sg_err_t sim_abort(sim_t *s, const char *reason) {
    sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = reason};
    return sim_apply(s, &in);
}

static inline sg_err_t sim_operator_retry(sim_t *s) {
    sg_input_t in = {.kind = SG_INPUT_RETRY};
    return sim_apply(s, &in);
}

static inline int sim_step_index(const sim_t *s, const char *step) {
    for (int i = 0; i < sg_saga_step_count(s->saga); i++)
        if (strcmp(sg_saga_step_name(s->saga, i), step) == 0)
            return i;
    return -1;
}

static inline sg_step_status_t sim_step_status(const sim_t *s, const char *step) {
    return sg_saga_step_status(s->saga, sim_step_index(s, step));
}

/* Number of effects of 'kind' in the last apply. */
static inline int sim_count(const sim_t *s, sg_effect_kind_t kind) {
    int n = 0;
    for (size_t i = 0; i < sg_effects_count(s->fx); i++)
        n += sg_effects_at(s->fx, i)->kind == kind;
    return n;
}

/* The n-th command of the last apply, or NULL. */
static inline const sg_command_t *sim_fx_cmd(const sim_t *s, int n) {
    for (size_t i = 0; i < sg_effects_count(s->fx); i++) {
        const sg_effect_t *e = sg_effects_at(s->fx, i);
        if (e->kind == SG_EFFECT_COMMAND && n-- == 0)
            return &e->command;
    }
    return NULL;
}

/* Whether any lifecycle event of 'type' was emitted so far. */
static inline int sim_event_count(const sim_t *s, const char *type) {
    int n = 0;
    size_t k;
    json_t *e;
    json_array_foreach(s->events, k, e)
        n += strcmp(json_string_value(json_object_get(e, "type")), type) == 0;
    return n;
}

/* Number of commands sent so far for 'step' (undo or not). */
static inline int sim_cmd_count(const sim_t *s, const char *step, bool undo) {
    int n = 0;
    for (int k = 0; k < s->ncmds; k++)
        n += strcmp(s->cmds[k].step, step) == 0 && s->cmds[k].undo == undo;
    return n;
}

/* Sequence number of the first compensation of 'step', or -1. */
static inline int sim_first_undo(const sim_t *s, const char *step) {
    for (int k = 0; k < s->ncmds; k++)
        if (s->cmds[k].undo && strcmp(s->cmds[k].step, step) == 0)
            return k;
    return -1;
}

#endif
