/* The saga engine: the rules of CONTRACT.md section 3 as one pure function,
 * sg_engine_apply (see saga/engine.h). Every state change goes through
 * transition(), which checks the edge against the tables below and records
 * it in the history; lifecycle events are derived from transitions.
 *
 * Saga states:
 *
 *     (start)
 *        |
 *        v        a step fails / abort / deadline       nothing to undo
 *     RUNNING ------------------------------------------------------+
 *      |  |  ^ \                                                    |
 *      |  |  |  \ something to undo                                 v
 *      |  |  |   `-----------> COMPENSATING ------------------> COMPENSATED
 *      |  |  |                  |        ^     all undone
 *      |  |  | operator retry   | a      | operator retry
 *      |  |  |                  | compensation ran out of attempts
 *      |  |  |                  v        |
 *      |  +--+----------------> FAILED --+
 *      |   past the pivot: a step ran out of attempts, or the deadline
 *      |   passed; before it: the pivot step's outcome is unknown
 *      v
 *   COMPLETED   (COMPLETED and COMPENSATED are final; FAILED waits for an
 *                operator; abort changes nothing but in RUNNING)
 *
 * Step states (one stage, a single step or a parallel group, runs at a
 * time; a step retries inside RUNNING, waiting for a reply or a backoff):
 *
 *   PENDING --> RUNNING --> SUCCEEDED ----------> COMPENSATING --> COMPENSATED
 *     |  \        |  ^                              ^   (retried inside,
 *     |   \       v  | operator retry               |    until success or
 *     |    `--> FAILED, TIMED_OUT ------------------+    max_attempts)
 *     v        (TIMED_OUT: outcome unknown; FAILED is compensated only
 *   SKIPPED     when one of its attempts timed out or was abandoned)
 *   (pending steps when the saga starts compensating)
 *
 * Decisions where the contract is silent:
 * - A step's outcome is unknown when any of its attempts timed out or was in
 *   flight at an abort or at the deadline; such a step is compensated even
 *   if its last attempt failed cleanly (compensations must tolerate "nothing
 *   to undo" anyway, as for a step that timed out).
 * - A step in flight at an abort or at the deadline becomes TIMED_OUT.
 * - A pivot step whose outcome is unknown (timed out, or in flight at an
 *   abort or the deadline) makes the saga FAILED, not compensating: it may
 *   have happened, and after it nothing may be undone. An operator retry
 *   sends it again.
 * - An abort past the pivot is ignored (the saga can no longer be
 *   compensated, it goes on to complete); an abort of a failed saga too.
 * - The deadline fires at most once; an operator retry does not re-arm it.
 * - A failure with nothing to undo goes from RUNNING straight to
 *   COMPENSATED, with no command sent.
 * - In a failing parallel group, members waiting for a retry are stopped at
 *   once, members in flight are waited for (reply or timeout) without retry.
 *   Past the pivot the other members go on retrying until they settle.
 * - Compensations retry on every failure and timeout, retryable or not; the
 *   members of a compensated group all settle before the saga fails.
 * - Retry delay after attempt n: min(max, initial * multiplier^(n-1)),
 *   times a factor drawn uniformly in [0.8, 1.2], capped at max again.
 * - A failure reply without "retryable": true is not retryable.
 * - An operator retry gives fresh attempts (max_attempts again) but attempt
 *   numbers, and so command ids, keep counting up.
 * - Lifecycle event ids are <sagaid>/event/<n>; a command's traceparent
 *   keeps the saga's trace id with a new span id from the saga's generator;
 *   a saga started without a valid traceparent gets a new trace id.
 *
 * Invariants (sg_saga_check_invariants, asserted after every apply):
 *  I1  the state matches its definition: same hash, same steps in order,
 *      a stage in range, a traceparent and a context (an apply refuses a
 *      state that breaks any invariant, as a stored row may be damaged).
 *  I2  attempt budgets: base <= attempt, attempt - base <= max_attempts.
 *  I3  a step awaits a reply (with the id of its last attempt) or waits for
 *      a retry, never both; it does either iff it is RUNNING, or it is
 *      COMPENSATING in a COMPENSATING saga and has not run out of attempts.
 *  I4  RUNNING saga: stages before the current one SUCCEEDED, after it
 *      PENDING, no step COMPENSATING/COMPENSATED/SKIPPED; 'failing' only
 *      before the pivot.
 *  I5  COMPENSATING saga: not past the pivot, no PENDING or RUNNING step,
 *      some step COMPENSATING.
 *  I6  COMPLETED: every step SUCCEEDED. COMPENSATED: nothing left to undo,
 *      nothing COMPENSATING, PENDING or RUNNING, not past the pivot.
 *  I7  FAILED: nothing in flight nor waiting; stuck in compensation iff some
 *      step is COMPENSATING.
 *  I8  past the pivot iff a pivot step SUCCEEDED; then nothing compensates.
 *  I9  a SUCCEEDED step has its result in context.steps; completion numbers
 *      are unique; COMPENSATING/COMPENSATED steps have a compensation. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_internal.h"

#define B(x) (1u << (x))

static const unsigned saga_edges[] = {
    [SG_SAGA_NONE] = B(SG_SAGA_RUNNING),
    [SG_SAGA_RUNNING] = B(SG_SAGA_COMPENSATING) | B(SG_SAGA_COMPLETED) |
                        B(SG_SAGA_COMPENSATED) | B(SG_SAGA_FAILED),
    [SG_SAGA_COMPENSATING] = B(SG_SAGA_COMPENSATED) | B(SG_SAGA_FAILED),
    [SG_SAGA_COMPLETED] = 0,
    [SG_SAGA_COMPENSATED] = 0,
    [SG_SAGA_FAILED] = B(SG_SAGA_RUNNING) | B(SG_SAGA_COMPENSATING),
};

static const unsigned step_edges[] = {
    [SG_STEP_PENDING] = B(SG_STEP_RUNNING) | B(SG_STEP_FAILED) | B(SG_STEP_SKIPPED),
    [SG_STEP_RUNNING] = B(SG_STEP_SUCCEEDED) | B(SG_STEP_FAILED) | B(SG_STEP_TIMED_OUT),
    [SG_STEP_SUCCEEDED] = B(SG_STEP_COMPENSATING),
    [SG_STEP_FAILED] = B(SG_STEP_RUNNING) | B(SG_STEP_COMPENSATING),
    [SG_STEP_TIMED_OUT] = B(SG_STEP_RUNNING) | B(SG_STEP_COMPENSATING),
    [SG_STEP_COMPENSATING] = B(SG_STEP_COMPENSATED),
    [SG_STEP_COMPENSATED] = 0,
    [SG_STEP_SKIPPED] = 0,
};

static const char *const saga_history_names[] = {
    [SG_SAGA_NONE] = "saga.none", [SG_SAGA_RUNNING] = "saga.running",
    [SG_SAGA_COMPENSATING] = "saga.compensating", [SG_SAGA_COMPLETED] = "saga.completed",
    [SG_SAGA_COMPENSATED] = "saga.compensated", [SG_SAGA_FAILED] = "saga.failed",
};

static const char *const step_history_names[] = {
    [SG_STEP_PENDING] = "step.pending", [SG_STEP_RUNNING] = "step.running",
    [SG_STEP_SUCCEEDED] = "step.succeeded", [SG_STEP_FAILED] = "step.failed",
    [SG_STEP_TIMED_OUT] = "step.timed_out", [SG_STEP_COMPENSATING] = "step.compensating",
    [SG_STEP_COMPENSATED] = "step.compensated", [SG_STEP_SKIPPED] = "step.skipped",
};

static const char *const input_history_names[] = {
    [SG_INPUT_START] = "input.start", [SG_INPUT_REPLY] = "input.reply",
    [SG_INPUT_TIMER] = "input.timer", [SG_INPUT_ABORT] = "input.abort",
    [SG_INPUT_RETRY] = "input.retry",
};

/* One apply in progress. */
typedef struct apply {
    const sg_def_t *def;
    const sg_engine_env_t *env;
    int64_t now;
    sg_saga_t *sg;
    sg_effects_t *fx;
    char *ignored; /* why the input changed nothing, or NULL */
} apply_t;

/* ---- small helpers ---- */

static uint64_t next_random(sg_saga_t *sg) {
    uint64_t z = (sg->rng += 0x9e3779b97f4a7c15ULL); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static json_t *jstr(const char *s) {
    return sg_engine_xjson(s ? json_string(s) : json_null());
}

static int find_step(const sg_def_t *def, const char *name) {
    const sg_step_t *sd = name ? sg_def_step(def, name) : NULL;
    return sd ? sd->index : -1;
}

static bool busy(const step_state_t *st) {
    return st->awaiting || st->retry_at_ms != 0;
}

static const sg_action_t *action(const apply_t *c, int i, bool undo) {
    return undo ? &c->def->steps[i].compensation : &c->def->steps[i].command;
}

static const sg_stage_t *current_stage(const apply_t *c) {
    return &c->def->stages[c->sg->stage];
}

/* A step that succeeded, or whose outcome is unknown, and can be undone. */
static bool needs_undo(const sg_def_t *def, const sg_saga_t *sg, int i) {
    const step_state_t *st = &sg->steps[i];
    if (!def->steps[i].has_compensation)
        return false;
    return st->status == SG_STEP_SUCCEEDED || st->status == SG_STEP_TIMED_OUT ||
           (st->status == SG_STEP_FAILED && st->unknown);
}

static json_t *make_error(const char *code, const char *message, bool retryable) {
    return sg_engine_xjson(json_pack("{s:s,s:s,s:b}", "code", code, "message",
                                     message, "retryable", retryable));
}

static void set_error(step_state_t *st, json_t *error) {
    json_decref(st->error);
    st->error = error;
}

/* "code: message" of an error, for reasons. */
static char *error_text(const json_t *error) {
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    return sg_engine_xprintf("%s%s%s", code ? code : "error", msg ? ": " : "", msg ? msg : "");
}

/* ---- effects ---- */

static void history(apply_t *c, const char *event, const char *step, json_t *detail) {
    sg_effect_t *e = sg_effects_push(c->fx, SG_EFFECT_HISTORY);
    e->history.event = event;
    e->history.step = step ? sg_engine_xstrdup(step) : NULL;
    e->history.detail = sg_engine_xjson(detail);
}

static void event(apply_t *c, const char *type, const char *step, json_t *data) {
    sg_effect_t *e = sg_effects_push(c->fx, SG_EFFECT_EVENT);
    e->event.id = sg_engine_xprintf("%s/event/%d", c->sg->id, ++c->sg->events);
    e->event.type = type;
    e->event.saga_id = sg_engine_xstrdup(c->sg->id);
    e->event.saga_type = sg_engine_xstrdup(c->sg->type);
    e->event.step = step ? sg_engine_xstrdup(step) : NULL;
    e->event.traceparent = sg_engine_xstrdup(c->sg->traceparent);
    e->event.data = sg_engine_xjson(data);
}

static void timer(apply_t *c, sg_effect_kind_t what, sg_timer_kind_t kind, int i,
                  int attempt, int64_t due) {
    sg_effect_t *e = sg_effects_push(c->fx, what);
    e->timer.kind = kind;
    e->timer.step = i >= 0 ? sg_engine_xstrdup(c->sg->steps[i].name) : NULL;
    e->timer.attempt = attempt;
    e->timer.due_at_ms = due;
}

static void cancel_deadline(apply_t *c) {
    if (c->sg->deadline_ms && !c->sg->deadline_fired)
        timer(c, SG_EFFECT_TIMER_CANCEL, SG_TIMER_DEADLINE, -1, 0, c->sg->deadline_ms);
}

static void ignore(apply_t *c, char *why) {
    assert(!c->ignored);
    c->ignored = why;
}

/* ---- the one function that changes a saga's or a step's status ---- */

static void saga_event(apply_t *c, int from, int to) {
    const char *status = sg_saga_status_str(to);
    const sg_saga_t *sg = c->sg;
    json_t *data = sg_engine_xjson(json_pack("{s:s}", "status", status));
    if (sg->reason && to != SG_SAGA_RUNNING && to != SG_SAGA_COMPLETED)
        json_object_set_new(data, "reason", jstr(sg->reason));
    switch (to) {
    case SG_SAGA_RUNNING:
        if (from == SG_SAGA_NONE)
            return event(c, "saga.started", NULL, data);
        json_decref(data); /* resumed by an operator: no event type for it */
        return;
    case SG_SAGA_COMPENSATING: return event(c, "saga.compensating", NULL, data);
    case SG_SAGA_COMPLETED:
        json_object_set_new(data, "context", sg_engine_xjson(json_deep_copy(sg->context)));
        return event(c, "saga.completed", NULL, data);
    case SG_SAGA_COMPENSATED: return event(c, "saga.compensated", NULL, data);
    case SG_SAGA_FAILED: return event(c, "saga.failed", NULL, data);
    default: json_decref(data);
    }
}

static void step_event(apply_t *c, int i, int to) {
    const step_state_t *st = &c->sg->steps[i];
    if (to != SG_STEP_SUCCEEDED && to != SG_STEP_FAILED && to != SG_STEP_TIMED_OUT)
        return;
    json_t *data = sg_engine_xjson(json_pack("{s:s,s:s,s:i}", "status", sg_step_status_str(to),
                                             "step", st->name, "attempt", st->do_attempt));
    if (to != SG_STEP_SUCCEEDED && st->error)
        json_object_set(data, "error", st->error);
    event(c, to == SG_STEP_SUCCEEDED ? "saga.step.succeeded" : "saga.step.failed", st->name, data);
}

static void step_times(apply_t *c, step_state_t *st, int to) {
    if (to == SG_STEP_RUNNING && !st->started_ms)
        st->started_ms = c->now;
    if (to == SG_STEP_SUCCEEDED || to == SG_STEP_FAILED || to == SG_STEP_TIMED_OUT) {
        st->completed_seq = ++c->sg->completions;
        st->ended_ms = c->now;
    }
    if (to == SG_STEP_COMPENSATED || to == SG_STEP_SKIPPED)
        st->ended_ms = c->now;
}

/* Moves the saga (i < 0) or step i to status 'to', with an optional reason,
 * recording the transition and the lifecycle event it implies. */
static void transition(apply_t *c, int i, int to, const char *why) {
    sg_saga_t *sg = c->sg;
    int from;
    bool legal;
    const char *name;
    if (i < 0) {
        from = sg->status;
        legal = saga_edges[from] & B(to);
        sg->status = to;
        if (why && to != SG_SAGA_RUNNING) {
            free(sg->reason);
            sg->reason = sg_engine_xstrdup(why);
        }
        name = saga_history_names[to];
    } else {
        step_state_t *st = &sg->steps[i];
        from = st->status;
        legal = step_edges[from] & B(to);
        st->status = to;
        step_times(c, st, to);
        if (to == SG_STEP_SUCCEEDED && c->def->steps[i].pivot) {
            sg->pivot_passed = true;
            sg->failing = false; /* past the pivot, the stage must go through */
        }
        name = step_history_names[to];
    }
    json_t *detail = sg_engine_xjson(json_pack(
        "{s:s,s:s}", "from", i < 0 ? sg_saga_status_str(from) : sg_step_status_str(from),
        "to", i < 0 ? sg_saga_status_str(to) : sg_step_status_str(to)));
    if (why)
        json_object_set_new(detail, "reason", jstr(why));
    assert(legal);
    if (!legal) /* a bug: keep going, but say so where an operator looks */
        json_object_set_new(detail, "illegal", json_true());
    history(c, name, i < 0 ? NULL : sg->steps[i].name, detail);
    if (i < 0)
        saga_event(c, from, to);
    else
        step_event(c, i, to);
}

/* ---- commands ---- */

/* The template of step i's command or compensation, rendered against the
 * context; NULL with the reason in *why when it cannot be. */
static json_t *render(apply_t *c, int i, bool undo, char **why) {
    const sg_action_t *a = action(c, i, undo);
    if (!a->data)
        return sg_engine_xjson(json_object());
    json_t *data = NULL;
    char err[512];
    if (sg_template_render(a->data, c->sg->context, undo, &data, err, sizeof err) == SG_OK)
        return data;
    *why = sg_engine_xprintf("cannot render the %s data of step \"%s\": %s",
                             undo ? "compensation" : "command", c->sg->steps[i].name, err);
    return NULL;
}

static char *reply_to(const apply_t *c, sg_transport_t transport) {
    const char *k = c->env ? c->env->reply_to_kafka : NULL;
    const char *a = c->env ? c->env->reply_to_amqp : NULL;
    const char *r = transport == SG_TRANSPORT_AMQP ? (a ? a : k) : (k ? k : a);
    return sg_engine_xstrdup(r ? r : "");
}

/* The saga's traceparent with a new span id for one command. */
static char *child_traceparent(apply_t *c) {
    char *tp = sg_engine_xstrdup(c->sg->traceparent);
    uint64_t span = next_random(c->sg);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, span ? span : 1);
    memcpy(tp + 36, hex, 16);
    return tp;
}

/* Sends the next attempt of step i's command or compensation with the
 * rendered 'data' (taken). */
static void send(apply_t *c, int i, bool undo, json_t *data) {
    sg_saga_t *sg = c->sg;
    step_state_t *st = &sg->steps[i];
    const sg_action_t *a = action(c, i, undo);
    int attempt = undo ? ++st->undo_attempt : ++st->do_attempt;
    free(st->awaiting);
    st->awaiting = sg_engine_xprintf("%s/%s/%s/%d", sg->id, st->name, undo ? "undo" : "do", attempt);
    st->retry_at_ms = 0;
    sg_command_t *cmd = &sg_effects_push(c->fx, SG_EFFECT_COMMAND)->command;
    cmd->id = sg_engine_xstrdup(st->awaiting);
    cmd->type = a->type;
    cmd->channel = &a->channel;
    cmd->saga_id = sg_engine_xstrdup(sg->id);
    cmd->saga_type = sg_engine_xstrdup(sg->type);
    cmd->step = sg_engine_xstrdup(st->name);
    cmd->undo = undo;
    cmd->attempt = attempt;
    cmd->replyto = reply_to(c, a->channel.transport);
    cmd->traceparent = child_traceparent(c);
    cmd->data = data;
    history(c, "command.sent", st->name,
            json_pack("{s:s,s:s,s:s,s:i,s:b}", "id", cmd->id, "type", a->type, "channel",
                      a->channel.text, "attempt", attempt, "undo", undo));
    if (a->timeout_ms > 0)
        timer(c, SG_EFFECT_TIMER_ARM, undo ? SG_TIMER_UNDO_TIMEOUT : SG_TIMER_STEP_TIMEOUT, i,
              attempt, c->now + a->timeout_ms);
}

int64_t sg_engine_backoff_ms(const sg_retry_t *retry, int n, uint64_t random) {
    double max = retry->max_backoff_ms > 0 ? (double)retry->max_backoff_ms : 1e12;
    double d = (double)retry->initial_backoff_ms;
    for (int k = 1; k < n && d < max; k++)
        d *= retry->multiplier;
    if (d > max)
        d = max;
    int64_t v = (int64_t)d * (800 + (int64_t)(random % 401)) / 1000;
    if (v > (int64_t)max)
        v = (int64_t)max;
    return v < 0 ? 0 : v;
}

/* Arms the backoff timer before the next attempt. */
static void schedule_retry(apply_t *c, int i, bool undo) {
    step_state_t *st = &c->sg->steps[i];
    int attempt = undo ? st->undo_attempt : st->do_attempt;
    int used = attempt - (undo ? st->undo_base : st->do_base);
    int64_t delay = sg_engine_backoff_ms(&action(c, i, undo)->retry, used, next_random(c->sg));
    int64_t due = c->now + delay;
    st->retry_at_ms = due != 0 ? due : 1; /* non-zero marks the wait */
    timer(c, SG_EFFECT_TIMER_ARM, undo ? SG_TIMER_UNDO_RETRY_DUE : SG_TIMER_RETRY_DUE, i,
          attempt, due);
    history(c, "retry.scheduled", st->name,
            json_pack("{s:i,s:b,s:I,s:I}", "attempt", attempt + 1, "undo", undo, "delay_ms",
                      (json_int_t)delay, "due_at_ms", (json_int_t)due));
}

/* ---- the forward path ---- */

static void begin_compensation(apply_t *c, const char *why);
static void settle_forward(apply_t *c);

static void complete(apply_t *c) {
    cancel_deadline(c);
    transition(c, -1, SG_SAGA_COMPLETED, NULL);
}

static void fail_forward(apply_t *c, const char *why) {
    c->sg->failing = false;
    c->sg->stuck_in_compensation = false;
    transition(c, -1, SG_SAGA_FAILED, why);
}

/* Sends every member of the current stage that has not succeeded, each with
 * a fresh attempts budget. If a template cannot be rendered, nothing is
 * sent: that member fails and the stage settles. */
static void launch_stage(apply_t *c, const char *why) {
    const sg_stage_t *sd = current_stage(c);
    json_t **data = sg_engine_xcalloc((size_t)sd->count, sizeof *data);
    bool ok = true;
    for (int m = 0; m < sd->count; m++) {
        int i = sd->first + m;
        step_state_t *st = &c->sg->steps[i];
        char *err = NULL;
        if (st->status == SG_STEP_SUCCEEDED || (data[m] = render(c, i, false, &err)))
            continue;
        ok = false;
        set_error(st, make_error("template", err, false));
        if (st->status == SG_STEP_PENDING)
            transition(c, i, SG_STEP_FAILED, err);
        free(err);
    }
    for (int m = 0; m < sd->count; m++) {
        int i = sd->first + m;
        if (!data[m])
            continue;
        if (!ok) {
            json_decref(data[m]);
            continue;
        }
        c->sg->steps[i].do_base = c->sg->steps[i].do_attempt;
        transition(c, i, SG_STEP_RUNNING, why);
        send(c, i, false, data[m]);
    }
    free(data);
    if (!ok)
        settle_forward(c);
}

static void start_stage(apply_t *c, int k) {
    c->sg->stage = k;
    c->sg->failing = false;
    launch_stage(c, NULL);
}

/* The first member of the current stage that did not succeed, and whether
 * a pivot member's outcome is unknown. */
static int stage_trouble(const apply_t *c, bool *pivot_unknown) {
    const sg_stage_t *sd = current_stage(c);
    int bad = -1;
    *pivot_unknown = false;
    for (int i = sd->first; i < sd->first + sd->count; i++) {
        const step_state_t *st = &c->sg->steps[i];
        if (st->status == SG_STEP_SUCCEEDED)
            continue;
        if (bad < 0)
            bad = i;
        if (c->def->steps[i].pivot && st->unknown)
            *pivot_unknown = true;
    }
    return bad;
}

/* Leaves a stage in which something did not succeed: fail past (or at an
 * unknown) pivot, else compensate. */
static void leave_stage(apply_t *c, int bad, bool pivot_unknown, const char *why) {
    char *msg;
    const step_state_t *st = &c->sg->steps[bad];
    char *err = st->error ? error_text(st->error) : sg_engine_xstrdup(sg_step_status_str(st->status));
    if (why)
        msg = sg_engine_xstrdup(why);
    else
        msg = sg_engine_xprintf("step \"%s\" %s: %s", st->name, sg_step_status_str(st->status), err);
    if (c->sg->pivot_passed || pivot_unknown) {
        char *full = pivot_unknown && !c->sg->pivot_passed
                         ? sg_engine_xprintf("%s; the outcome of a pivot step is unknown", msg)
                         : sg_engine_xprintf("%s; past the pivot, nothing can be compensated", msg);
        fail_forward(c, full);
        free(full);
    } else
        begin_compensation(c, msg);
    free(msg);
    free(err);
}

/* Called whenever a member of the current stage settles: goes on when every
 * member succeeded, waits while one is in flight. */
static void settle_forward(apply_t *c) {
    const sg_stage_t *sd = current_stage(c);
    for (int i = sd->first; i < sd->first + sd->count; i++)
        if (busy(&c->sg->steps[i]))
            return;
    bool pivot_unknown;
    int bad = stage_trouble(c, &pivot_unknown);
    if (bad >= 0)
        leave_stage(c, bad, pivot_unknown, NULL);
    else if (c->sg->stage + 1 < c->def->nstages)
        start_stage(c, c->sg->stage + 1);
    else
        complete(c);
}

/* Step i of the current stage failed for good. Before the pivot the stage
 * is failing: members waiting for a retry stop now, members in flight are
 * waited for without retry. */
static void gave_up(apply_t *c, int i) {
    sg_saga_t *sg = c->sg;
    if (!sg->pivot_passed) {
        sg->failing = true;
        const sg_stage_t *sd = current_stage(c);
        for (int j = sd->first; j < sd->first + sd->count; j++) {
            step_state_t *st = &sg->steps[j];
            if (j == i || st->retry_at_ms == 0)
                continue;
            timer(c, SG_EFFECT_TIMER_CANCEL, SG_TIMER_RETRY_DUE, j, st->do_attempt, st->retry_at_ms);
            st->retry_at_ms = 0;
            char *why = sg_engine_xprintf("not retried: step \"%s\" failed", sg->steps[i].name);
            transition(c, j, st->last_timed_out ? SG_STEP_TIMED_OUT : SG_STEP_FAILED, why);
            free(why);
        }
    }
    settle_forward(c);
}

/* Abort or deadline while running: whatever is in flight has an unknown
 * outcome, nothing is retried; then compensate, or fail at or past the
 * pivot. */
static void abandon(apply_t *c, const char *code, const char *why) {
    sg_saga_t *sg = c->sg;
    const sg_stage_t *sd = current_stage(c);
    for (int i = sd->first; i < sd->first + sd->count; i++) {
        step_state_t *st = &sg->steps[i];
        if (st->awaiting) {
            if (c->def->steps[i].command.timeout_ms > 0)
                timer(c, SG_EFFECT_TIMER_CANCEL, SG_TIMER_STEP_TIMEOUT, i, st->do_attempt, 0);
            free(st->awaiting);
            st->awaiting = NULL;
            st->unknown = st->last_timed_out = true;
            set_error(st, make_error(code, why, false));
            transition(c, i, SG_STEP_TIMED_OUT, why);
        } else if (st->retry_at_ms) {
            timer(c, SG_EFFECT_TIMER_CANCEL, SG_TIMER_RETRY_DUE, i, st->do_attempt, st->retry_at_ms);
            st->retry_at_ms = 0;
            transition(c, i, st->last_timed_out ? SG_STEP_TIMED_OUT : SG_STEP_FAILED, why);
        }
    }
    bool pivot_unknown;
    int bad = stage_trouble(c, &pivot_unknown);
    if (bad < 0)
        bad = sd->first;
    leave_stage(c, bad, pivot_unknown, why);
}

/* ---- compensation ---- */

static void settle_undo(apply_t *c);

/* Starts compensating the stage that completed last among those with
 * something to undo, all its members at once; COMPENSATED when none is
 * left. */
static void next_undo_stage(apply_t *c) {
    const sg_def_t *def = c->def;
    sg_saga_t *sg = c->sg;
    int last = -1;
    for (int i = 0; i < sg->nsteps; i++)
        if (needs_undo(def, sg, i) &&
            (last < 0 || sg->steps[i].completed_seq > sg->steps[last].completed_seq))
            last = i;
    if (last < 0) {
        transition(c, -1, SG_SAGA_COMPENSATED, NULL);
        return;
    }
    const sg_stage_t *sd = &def->stages[def->steps[last].stage];
    for (int i = sd->first; i < sd->first + sd->count; i++) {
        if (!needs_undo(def, sg, i))
            continue;
        char *err = NULL;
        json_t *data = render(c, i, true, &err);
        transition(c, i, SG_STEP_COMPENSATING, NULL);
        if (data)
            send(c, i, true, data);
        else {
            set_error(&sg->steps[i], make_error("template", err, false));
            history(c, "compensation.exhausted", sg->steps[i].name, json_pack("{s:s}", "reason", err));
            free(err);
        }
    }
    settle_undo(c);
}

static void begin_compensation(apply_t *c, const char *why) {
    sg_saga_t *sg = c->sg;
    sg->failing = false;
    cancel_deadline(c);
    bool any = false;
    for (int i = 0; i < sg->nsteps; i++) {
        if (sg->steps[i].status == SG_STEP_PENDING)
            transition(c, i, SG_STEP_SKIPPED, NULL);
        any = any || needs_undo(c->def, sg, i);
    }
    if (!any) {
        char *msg = sg_engine_xprintf("%s; nothing to compensate", why);
        transition(c, -1, SG_SAGA_COMPENSATED, msg);
        free(msg);
        return;
    }
    transition(c, -1, SG_SAGA_COMPENSATING, why);
    next_undo_stage(c);
}

/* Called whenever a compensation settles: the next stage when all of this
 * one are undone, FAILED when one ran out of attempts. */
static void settle_undo(apply_t *c) {
    sg_saga_t *sg = c->sg;
    int stuck = -1;
    for (int i = 0; i < sg->nsteps; i++) {
        const step_state_t *st = &sg->steps[i];
        if (st->status != SG_STEP_COMPENSATING)
            continue;
        if (busy(st))
            return;
        if (stuck < 0)
            stuck = i;
    }
    if (stuck < 0) {
        next_undo_stage(c);
        return;
    }
    const step_state_t *st = &sg->steps[stuck];
    char *err = st->error ? error_text(st->error) : sg_engine_xstrdup("failed");
    char *why = sg_engine_xprintf("compensation of step \"%s\" failed after %d attempts: %s",
                                  st->name, st->undo_attempt - st->undo_base, err);
    sg->stuck_in_compensation = true;
    transition(c, -1, SG_SAGA_FAILED, why);
    free(why);
    free(err);
}

/* ---- outcomes of one attempt ---- */

/* An attempt of step i failed ('error' taken) or timed out. */
static void attempt_failed(apply_t *c, int i, json_t *error, bool timed_out) {
    sg_saga_t *sg = c->sg;
    step_state_t *st = &sg->steps[i];
    bool undo = st->status == SG_STEP_COMPENSATING;
    const sg_retry_t *retry = &action(c, i, undo)->retry;
    free(st->awaiting);
    st->awaiting = NULL;
    set_error(st, error);
    if (undo) {
        if (st->undo_attempt - st->undo_base < retry->max_attempts)
            return schedule_retry(c, i, true);
        history(c, "compensation.exhausted", st->name,
                json_pack("{s:i,s:O}", "attempts", st->undo_attempt - st->undo_base, "error", error));
        return settle_undo(c);
    }
    st->unknown = st->unknown || timed_out;
    st->last_timed_out = timed_out;
    bool retryable = timed_out || sg->pivot_passed || json_is_true(json_object_get(error, "retryable"));
    bool left = st->do_attempt - st->do_base < retry->max_attempts;
    if (retryable && left && !sg->failing)
        return schedule_retry(c, i, false);
    char *err = error_text(error);
    char *why = sg_engine_xprintf("%s (attempt %d, %s)", err, st->do_attempt,
                                  sg->failing && retryable && left ? "the stage is failing"
                                  : !retryable ? "not retryable" : "no attempts left");
    transition(c, i, timed_out ? SG_STEP_TIMED_OUT : SG_STEP_FAILED, why);
    free(why);
    free(err);
    gave_up(c, i);
}

/* A new attempt after the backoff. */
static void retry_due(apply_t *c, int i, bool undo) {
    step_state_t *st = &c->sg->steps[i];
    char *err = NULL;
    st->retry_at_ms = 0;
    json_t *data = render(c, i, undo, &err);
    if (data)
        return send(c, i, undo, data);
    set_error(st, make_error("template", err, false));
    if (undo) {
        history(c, "compensation.exhausted", st->name, json_pack("{s:s}", "reason", err));
        settle_undo(c);
    } else {
        transition(c, i, SG_STEP_FAILED, err);
        gave_up(c, i);
    }
    free(err);
}

/* ---- inputs ---- */

static bool traceparent_valid(const char *tp) {
    if (!tp || strlen(tp) != SG_TRACEPARENT_LEN || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return false;
    bool trace_zero = true, span_zero = true;
    for (int k = 0; k < SG_TRACEPARENT_LEN; k++) {
        if (k == 2 || k == 35 || k == 52)
            continue;
        if (!strchr("0123456789abcdef", tp[k]) || tp[k] == '\0')
            return false;
        if (k > 2 && k < 35 && tp[k] != '0')
            trace_zero = false;
        if (k > 35 && k < 52 && tp[k] != '0')
            span_zero = false;
    }
    return !trace_zero && !span_zero && strncmp(tp, "ff", 2) != 0;
}

static void init_traceparent(apply_t *c, const char *given) {
    sg_saga_t *sg = c->sg;
    if (traceparent_valid(given)) {
        memcpy(sg->traceparent, given, SG_TRACEPARENT_LEN + 1);
        return;
    }
    uint64_t hi = next_random(sg), lo = next_random(sg), span = next_random(sg);
    snprintf(sg->traceparent, sizeof sg->traceparent, "00-%016" PRIx64 "%016" PRIx64 "-%016" PRIx64 "-01",
             hi, lo | 1, span | 1);
}

static void on_start(apply_t *c, const sg_input_t *in) {
    const sg_def_t *def = c->def;
    if (c->sg)
        return ignore(c, sg_engine_xprintf("saga \"%s\" already exists", c->sg->id));
    sg_saga_t *sg = c->sg = sg_saga_new_empty(def->nsteps);
    sg->id = sg_engine_xstrdup(in->saga_id);
    sg->type = sg_engine_xstrdup(def->name);
    sg->def_version = def->version;
    snprintf(sg->def_sha256, sizeof sg->def_sha256, "%s", def->sha256);
    for (int i = 0; i < def->nsteps; i++) {
        sg->steps[i].name = sg_engine_xstrdup(def->steps[i].name);
        sg->steps[i].status = SG_STEP_PENDING;
    }
    sg->rng = in->seed;
    sg->created_ms = c->now;
    sg->context = sg_engine_xjson(json_pack("{s:{s:s,s:s},s:o,s:{}}", "saga", "id", sg->id,
                                            "type", sg->type, "input",
                                            in->data ? json_deep_copy(in->data) : json_object(),
                                            "steps"));
    init_traceparent(c, in->traceparent);
    transition(c, -1, SG_SAGA_RUNNING, NULL);
    if (def->timeout_ms > 0) {
        sg->deadline_ms = c->now + def->timeout_ms;
        timer(c, SG_EFFECT_TIMER_ARM, SG_TIMER_DEADLINE, -1, 0, sg->deadline_ms);
    }
    if (def->nstages == 0)
        complete(c);
    else
        start_stage(c, 0);
}

/* context.steps.<name> = result. The context is shared with the state the
 * apply started from: replace it (sharing what did not change). */
static void merge_result(sg_saga_t *sg, const char *name, const json_t *result) {
    json_t *ctx = sg_engine_xjson(json_copy(sg->context));
    json_t *steps = sg_engine_xjson(json_copy(json_object_get(ctx, "steps")));
    json_object_set_new(steps, name, sg_engine_xjson(result ? json_deep_copy(result) : json_null()));
    json_object_set_new(ctx, "steps", steps);
    json_decref(sg->context);
    sg->context = ctx;
}

static json_t *failure_error(const json_t *data) {
    if (json_is_object(data) && json_is_string(json_object_get(data, "code")))
        return sg_engine_xjson(json_deep_copy(data));
    json_t *e = make_error("unknown", "failure reply without an error code", false);
    if (json_is_object(data))
        json_object_update_missing(e, (json_t *)data);
    return e;
}

static void on_reply(apply_t *c, const sg_input_t *in) {
    sg_saga_t *sg = c->sg;
    if (sg->status != SG_SAGA_RUNNING && sg->status != SG_SAGA_COMPENSATING)
        return ignore(c, sg_engine_xprintf("the saga is %s", sg_saga_status_str(sg->status)));
    int i = find_step(c->def, in->step);
    if (i < 0)
        return ignore(c, sg_engine_xprintf("unknown step \"%s\"", in->step));
    step_state_t *st = &sg->steps[i];
    if (!st->awaiting)
        return ignore(c, sg_engine_xprintf("step \"%s\" is %s and waits for no reply", st->name,
                                           sg_step_status_str(st->status)));
    if (strcmp(st->awaiting, in->causation_id) != 0)
        return ignore(c, sg_engine_xprintf("step \"%s\" waits for a reply to \"%s\", not to \"%s\"",
                                           st->name, st->awaiting, in->causation_id));
    bool undo = st->status == SG_STEP_COMPENSATING;
    if (action(c, i, undo)->timeout_ms > 0)
        timer(c, SG_EFFECT_TIMER_CANCEL, undo ? SG_TIMER_UNDO_TIMEOUT : SG_TIMER_STEP_TIMEOUT, i,
              undo ? st->undo_attempt : st->do_attempt, 0);
    if (in->outcome != SG_OUTCOME_SUCCESS)
        return attempt_failed(c, i, failure_error(in->data), false);
    free(st->awaiting);
    st->awaiting = NULL;
    if (undo) {
        transition(c, i, SG_STEP_COMPENSATED, NULL);
        return settle_undo(c);
    }
    set_error(st, NULL);
    merge_result(sg, st->name, in->data);
    transition(c, i, SG_STEP_SUCCEEDED, NULL);
    settle_forward(c);
}

static void on_deadline(apply_t *c) {
    sg_saga_t *sg = c->sg;
    if (sg->status != SG_SAGA_RUNNING || sg->deadline_fired || !sg->deadline_ms)
        return ignore(c, sg_engine_xprintf("the deadline does not apply: the saga is %s%s",
                                           sg_saga_status_str(sg->status),
                                           sg->deadline_fired ? " and its deadline already passed" : ""));
    sg->deadline_fired = true;
    abandon(c, "deadline", "the saga deadline passed");
}

static void on_timer(apply_t *c, const sg_input_t *in) {
    if (in->timer == SG_TIMER_DEADLINE)
        return on_deadline(c);
    int i = find_step(c->def, in->step);
    if (i < 0)
        return ignore(c, sg_engine_xprintf("unknown step \"%s\"", in->step ? in->step : ""));
    step_state_t *st = &c->sg->steps[i];
    bool undo = in->timer == SG_TIMER_UNDO_TIMEOUT || in->timer == SG_TIMER_UNDO_RETRY_DUE;
    bool timeout = in->timer == SG_TIMER_STEP_TIMEOUT || in->timer == SG_TIMER_UNDO_TIMEOUT;
    int attempt = undo ? st->undo_attempt : st->do_attempt;
    bool live = st->status == (undo ? SG_STEP_COMPENSATING : SG_STEP_RUNNING) &&
                (timeout ? st->awaiting != NULL : st->retry_at_ms != 0) &&
                c->sg->status == (undo ? SG_SAGA_COMPENSATING : SG_SAGA_RUNNING);
    if (!live || attempt != in->attempt)
        return ignore(c, sg_engine_xprintf("stale %s timer for attempt %d: step \"%s\" is %s at attempt %d%s",
                                           sg_timer_kind_str(in->timer), in->attempt, st->name,
                                           sg_step_status_str(st->status), attempt,
                                           live ? "" : timeout ? " and waits for no reply"
                                                             : " and waits for no retry"));
    if (!timeout)
        return retry_due(c, i, undo);
    char *msg = sg_engine_xprintf("no reply to \"%s\" within %" PRId64 "ms", st->awaiting,
                                  action(c, i, undo)->timeout_ms);
    attempt_failed(c, i, make_error("timeout", msg, true), true);
    free(msg);
}

static void on_abort(apply_t *c, const sg_input_t *in) {
    sg_saga_t *sg = c->sg;
    if (sg->status != SG_SAGA_RUNNING)
        return ignore(c, sg_engine_xprintf("the saga is %s: an abort changes nothing",
                                           sg_saga_status_str(sg->status)));
    if (sg->pivot_passed)
        return ignore(c, sg_engine_xprintf("the saga is past its pivot step and can no longer be compensated"));
    char *why = sg_engine_xprintf("aborted%s%s", in->reason ? ": " : "", in->reason ? in->reason : "");
    abandon(c, "aborted", why);
    free(why);
}

/* An operator's retry of a failed saga: fresh attempts for what it is stuck
 * on, the compensations or the current stage. */
static void on_retry(apply_t *c, const sg_input_t *in) {
    sg_saga_t *sg = c->sg;
    if (sg->status != SG_SAGA_FAILED)
        return ignore(c, sg_engine_xprintf("the saga is %s: only a failed saga can be retried",
                                           sg_saga_status_str(sg->status)));
    char *why = sg_engine_xprintf("operator retry%s%s", in->reason ? ": " : "",
                                  in->reason ? in->reason : "");
    if (!sg->stuck_in_compensation) {
        sg->failing = false;
        if (sg->deadline_ms && !sg->deadline_fired && sg->deadline_ms <= c->now)
            sg->deadline_fired = true; /* it passed while failed: no longer applies */
        transition(c, -1, SG_SAGA_RUNNING, why);
        launch_stage(c, why);
        free(why);
        return;
    }
    sg->stuck_in_compensation = false;
    transition(c, -1, SG_SAGA_COMPENSATING, why);
    free(why);
    for (int i = 0; i < sg->nsteps; i++) {
        step_state_t *st = &sg->steps[i];
        if (st->status != SG_STEP_COMPENSATING)
            continue;
        st->undo_base = st->undo_attempt;
        char *err = NULL;
        json_t *data = render(c, i, true, &err);
        if (data) {
            send(c, i, true, data);
            continue;
        }
        set_error(st, make_error("template", err, false));
        history(c, "compensation.exhausted", st->name, json_pack("{s:s}", "reason", err));
        free(err);
    }
    settle_undo(c);
}

typedef void (*handler_t)(apply_t *c, const sg_input_t *in);

static const handler_t handlers[] = {
    [SG_INPUT_START] = on_start, [SG_INPUT_REPLY] = on_reply, [SG_INPUT_TIMER] = on_timer,
    [SG_INPUT_ABORT] = on_abort, [SG_INPUT_RETRY] = on_retry,
};

/* ---- the entry point ---- */

static const char *input_problem(const sg_input_t *in) {
    switch (in->kind) {
    case SG_INPUT_START:
        return in->saga_id && *in->saga_id ? NULL : "a start input needs a saga id";
    case SG_INPUT_REPLY:
        if (!in->step || !in->causation_id)
            return "a reply input needs a step and a causation id";
        return in->outcome == SG_OUTCOME_SUCCESS || in->outcome == SG_OUTCOME_FAILURE
                   ? NULL : "a reply input needs an outcome";
        break;
    case SG_INPUT_TIMER:
        if (in->timer < SG_TIMER_STEP_TIMEOUT || in->timer > SG_TIMER_DEADLINE)
            return "a timer input needs a timer kind";
        return in->timer == SG_TIMER_DEADLINE || in->step ? NULL : "a step timer input needs a step";
    case SG_INPUT_ABORT:
    case SG_INPUT_RETRY:
        return NULL;
    }
    return "unknown input kind";
}

static sg_err_t check_call(const sg_def_t *def, const sg_saga_t *saga, const sg_input_t *in,
                           char *errstr, size_t errstr_size) {
    const char *problem = input_problem(in);
    if (problem) {
        snprintf(errstr, errstr_size, "invalid engine input: %s", problem);
        return SG_ERR_INVALID;
    }
    if (!saga && in->kind != SG_INPUT_START) {
        snprintf(errstr, errstr_size, "invalid engine input: no saga to apply it to");
        return SG_ERR_INVALID;
    }
    if (saga && (strcmp(saga->def_sha256, def->sha256) != 0 || saga->nsteps != def->nsteps)) {
        snprintf(errstr, errstr_size, "saga \"%s\" runs definition %s, not \"%s\" %s", saga->id,
                 saga->def_sha256, def->name, def->sha256);
        return SG_ERR_INVALID;
    }
    char why[256];
    if (saga && sg_saga_check_invariants(def, saga, why, sizeof why) != SG_OK) {
        snprintf(errstr, errstr_size, "saga \"%s\" has a broken state: %s", saga->id, why);
        return SG_ERR_INVALID;
    }
    return SG_OK;
}

sg_err_t sg_engine_apply(const sg_def_t *def, const sg_saga_t *saga, const sg_input_t *in,
                         int64_t now_ms, const sg_engine_env_t *env, sg_saga_t **out,
                         sg_effects_t **effects, char *errstr, size_t errstr_size) {
    *out = NULL;
    *effects = NULL;
    sg_err_t err = check_call(def, saga, in, errstr, errstr_size);
    if (err)
        return err;
    apply_t c = {.def = def, .env = env, .now = now_ms, .fx = sg_effects_new()};
    c.sg = saga ? sg_saga_copy(saga) : NULL;
    json_t *detail = sg_engine_xjson(json_pack("{s:o,s:I}", "input", sg_input_to_json(in),
                                               "now_ms", (json_int_t)now_ms));
    history(&c, input_history_names[in->kind],
            in->kind == SG_INPUT_REPLY || in->kind == SG_INPUT_TIMER ? in->step : NULL,
            json_incref(detail));
    handlers[in->kind](&c, in);
    if (c.ignored) {
        json_object_set_new(detail, "ignored", jstr(c.ignored));
        free(c.ignored);
    } else
        c.sg->updated_ms = now_ms;
    json_decref(detail);
#ifndef NDEBUG
    char why[256];
    if (c.sg && sg_saga_check_invariants(def, c.sg, why, sizeof why) != SG_OK) {
        fprintf(stderr, "saga engine invariant broken: %s\n", why);
        assert(!"saga engine invariant broken");
    }
#endif
    *out = c.sg;
    *effects = c.fx;
    return SG_OK;
}

/* ---- invariants ---- */

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            snprintf(errstr, errstr_size, __VA_ARGS__);   \
            return SG_ERR_INTERNAL;                       \
        }                                                 \
    } while (0)

/* Whether 'id' is "<saga>/<step>/<do|undo>/<attempt>". */
static bool is_command_id(const char *id, const char *saga, const char *step, bool undo,
                          int attempt) {
    const char *parts[] = {saga, "/", step, "/", undo ? "undo" : "do", "/"};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        size_t n = strlen(parts[k]);
        if (strncmp(id, parts[k], n) != 0)
            return false;
        id += n;
    }
    char *end = NULL;
    return *id >= '1' && *id <= '9' && strtol(id, &end, 10) == attempt && *end == '\0';
}

static sg_err_t check_step(const sg_def_t *def, const sg_saga_t *sg, int i, char *errstr,
                           size_t errstr_size) {
    const step_state_t *st = &sg->steps[i];
    const sg_step_t *sd = &def->steps[i];
    const char *n = st->name;
    CHECK(strcmp(st->name, sd->name) == 0, "I1: step %d is \"%s\", not \"%s\"", i, n, sd->name);
    CHECK(st->do_base >= 0 && st->do_base <= st->do_attempt &&
              st->do_attempt - st->do_base <= sd->command.retry.max_attempts,
          "I2: step \"%s\" attempts %d base %d", n, st->do_attempt, st->do_base);
    CHECK(st->undo_base >= 0 && st->undo_base <= st->undo_attempt &&
              (!sd->has_compensation ||
               st->undo_attempt - st->undo_base <= sd->compensation.retry.max_attempts),
          "I2: step \"%s\" compensation attempts %d base %d", n, st->undo_attempt, st->undo_base);
    CHECK(!(st->awaiting && st->retry_at_ms), "I3: step \"%s\" awaits a reply and a retry", n);
    bool undoing = st->status == SG_STEP_COMPENSATING;
    CHECK(!st->awaiting || is_command_id(st->awaiting, sg->id, n, undoing,
                                         undoing ? st->undo_attempt : st->do_attempt),
          "I3: step \"%s\" awaits \"%s\", not its last attempt", n, st->awaiting);
    CHECK(!busy(st) || st->status == SG_STEP_RUNNING || undoing,
          "I3: step \"%s\" is %s with something in flight", n, sg_step_status_str(st->status));
    CHECK(!(st->status == SG_STEP_RUNNING) || busy(st), "I3: step \"%s\" runs with nothing in flight", n);
    CHECK(!undoing || sg->status != SG_SAGA_COMPENSATING || busy(st) ||
              st->undo_attempt - st->undo_base >= sd->compensation.retry.max_attempts ||
              st->error,
          "I3: step \"%s\" compensates with nothing in flight and attempts left", n);
    CHECK(!(undoing || st->status == SG_STEP_COMPENSATED) || sd->has_compensation,
          "I9: step \"%s\" compensates without a compensation", n);
    CHECK(st->status != SG_STEP_SUCCEEDED ||
              json_object_get(json_object_get(sg->context, "steps"), n),
          "I9: step \"%s\" succeeded without a result in the context", n);
    return SG_OK;
}

static sg_err_t check_running(const sg_def_t *def, const sg_saga_t *sg, char *errstr,
                              size_t errstr_size) {
    CHECK(sg->stage >= 0 && sg->stage < def->nstages, "I4: stage %d out of range", sg->stage);
    const sg_stage_t *sd = &def->stages[sg->stage];
    for (int i = 0; i < sg->nsteps; i++) {
        sg_step_status_t s = sg->steps[i].status;
        CHECK(s != SG_STEP_COMPENSATING && s != SG_STEP_COMPENSATED && s != SG_STEP_SKIPPED,
              "I4: running saga has step \"%s\" %s", sg->steps[i].name, sg_step_status_str(s));
        CHECK(i >= sd->first || s == SG_STEP_SUCCEEDED, "I4: step \"%s\" before the stage is %s",
              sg->steps[i].name, sg_step_status_str(s));
        CHECK(i < sd->first + sd->count || s == SG_STEP_PENDING,
              "I4: step \"%s\" after the stage is %s", sg->steps[i].name, sg_step_status_str(s));
    }
    CHECK(!sg->failing || !sg->pivot_passed, "I4: failing past the pivot");
    return SG_OK;
}

static int count_status(const sg_saga_t *sg, sg_step_status_t s) {
    int n = 0;
    for (int i = 0; i < sg->nsteps; i++)
        n += sg->steps[i].status == s;
    return n;
}

static sg_err_t check_saga(const sg_def_t *def, const sg_saga_t *sg, char *errstr,
                           size_t errstr_size) {
    int running = count_status(sg, SG_STEP_RUNNING), pending = count_status(sg, SG_STEP_PENDING);
    int undoing = count_status(sg, SG_STEP_COMPENSATING);
    bool busy_any = false, undo_left = false;
    for (int i = 0; i < sg->nsteps; i++) {
        busy_any = busy_any || busy(&sg->steps[i]);
        undo_left = undo_left || needs_undo(def, sg, i);
    }
    switch (sg->status) {
    case SG_SAGA_RUNNING: return check_running(def, sg, errstr, errstr_size);
    case SG_SAGA_COMPENSATING:
        CHECK(!sg->pivot_passed && !running && !pending && undoing > 0,
              "I5: compensating with pivot %d, %d running, %d pending, %d compensating",
              sg->pivot_passed, running, pending, undoing);
        break;
    case SG_SAGA_COMPLETED:
        CHECK(count_status(sg, SG_STEP_SUCCEEDED) == sg->nsteps, "I6: completed with a step not succeeded");
        break;
    case SG_SAGA_COMPENSATED:
        CHECK(!undo_left && !undoing && !pending && !running && !sg->pivot_passed,
              "I6: compensated with something left (undo %d, compensating %d, pending %d, running %d)",
              undo_left, undoing, pending, running);
        break;
    case SG_SAGA_FAILED:
        CHECK(!busy_any, "I7: failed with something in flight");
        CHECK(sg->stuck_in_compensation == (undoing > 0), "I7: failed, stuck in compensation %d, %d compensating",
              sg->stuck_in_compensation, undoing);
        break;
    default: CHECK(0, "bad saga status %d", sg->status);
    }
    return SG_OK;
}

sg_err_t sg_saga_check_invariants(const sg_def_t *def, const sg_saga_t *sg, char *errstr,
                                  size_t errstr_size) {
    CHECK(strcmp(sg->def_sha256, def->sha256) == 0 && sg->nsteps == def->nsteps,
          "I1: saga of another definition");
    CHECK(sg->stage >= 0 && (sg->stage < def->nstages || (sg->stage == 0 && !def->nstages)),
          "I1: stage %d out of range", sg->stage);
    CHECK(strlen(sg->traceparent) == SG_TRACEPARENT_LEN && sg->context &&
              json_is_object(json_object_get(sg->context, "steps")),
          "I1: no traceparent or context");
    bool pivot_ok = false;
    for (int i = 0; i < sg->nsteps; i++) {
        sg_err_t err = check_step(def, sg, i, errstr, errstr_size);
        if (err)
            return err;
        pivot_ok = pivot_ok || (def->steps[i].pivot && sg->steps[i].status == SG_STEP_SUCCEEDED);
        for (int j = 0; j < i; j++)
            CHECK(!sg->steps[i].completed_seq || sg->steps[i].completed_seq != sg->steps[j].completed_seq,
                  "I9: steps \"%s\" and \"%s\" completed together", sg->steps[j].name, sg->steps[i].name);
    }
    CHECK(sg->pivot_passed == pivot_ok, "I8: pivot passed %d but a pivot step succeeded %d",
          sg->pivot_passed, pivot_ok);
    CHECK(!sg->pivot_passed || (!count_status(sg, SG_STEP_COMPENSATING) && !count_status(sg, SG_STEP_COMPENSATED)),
          "I8: compensation past the pivot");
    return check_saga(def, sg, errstr, errstr_size);
}
