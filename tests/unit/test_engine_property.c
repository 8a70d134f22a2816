/* Property test of the saga engine: for every example definition in sagas/
 * and a few inline ones (parallel groups, pivots, short compensation
 * budgets), thousands of random but valid input sequences, driven by a
 * simulated participant and a simulated clock. A sequence has a chaotic
 * phase (successes, retryable and final failures, lost replies, late and
 * duplicate replies, stale replies and timers, aborts, operator retries,
 * timeouts, the deadline) and then a calm phase in which the participant
 * answers everything and an operator retries failed sagas.
 *
 * Checked for every sequence, against a model the test keeps on its own:
 *  P1 every saga reaches completed or compensated once answered, with no
 *     timer left armed;
 *  P2 a completed saga ran every step successfully exactly once and sent
 *     no compensation;
 *  P3 a compensated saga sent compensations exactly for the steps with a
 *     compensation that succeeded or whose outcome is unknown (an attempt
 *     timed out or was in flight at an abort or the deadline), and each
 *     was undone exactly once;
 *  P4 compensations go stage by stage in reverse order: no compensation of
 *     an earlier stage before every member of a later one is undone;
 *  P5 nothing is compensated once a pivot step succeeded, or once its
 *     outcome was unknown (it may have happened);
 *  P6 command ids are unique, attempts of a step count up one by one;
 *  P7 replaying the inputs recorded in the history onto a fresh state gives
 *     the same serialized state and the same history;
 *  P8 before the pivot, once a member of a stage failed for good, no member
 *     of that stage is sent again until the saga leaves the forward path;
 *  and, after every apply, the invariants and that ignored inputs change
 *  nothing (engine_sim.h).
 *
 * The master seed is printed; SAGA_PROPERTY_SEED=<n> replays a run and
 * SAGA_PROPERTY_RUNS=<n> sets the sequences per definition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <string.h>

#include "unit/engine_sim.h"

#define DEFAULT_SEED 0x5a6a2024u
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_RUNS 250 /* sequences per definition: keep sanitizer runs short */
#else
#define DEFAULT_RUNS 1000
#endif
#define MAX_STEPS 32
#define MAX_NET 256

/* Parallel group, pivot after it, deadline, short compensation budget. */
static const char *DEF_GROUP_PIVOT =
    "{\"name\":\"group_pivot\",\"version\":1,\"timeout\":\"30s\","
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,\"initial_backoff\":\"100ms\","
    "   \"max_backoff\":\"1s\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"a\",\"command\":{\"type\":\"a.do\",\"channel\":\"kafka:a\",\"data\":{\"i\":\"$.input.id\"}},"
    "   \"compensation\":{\"type\":\"a.undo\",\"channel\":\"kafka:a\",\"data\":{\"r\":\"$.steps.a.ref\"},"
    "     \"retry\":{\"max_attempts\":2}}},"
    "  {\"name\":\"g\",\"parallel\":["
    "    {\"name\":\"p\",\"command\":{\"type\":\"p.do\",\"channel\":\"amqp:/p\",\"data\":{\"r\":\"$.steps.a.ref\"}},"
    "     \"compensation\":{\"type\":\"p.undo\",\"channel\":\"amqp:/p\",\"retry\":{\"max_attempts\":2}}},"
    "    {\"name\":\"q\",\"command\":{\"type\":\"q.do\",\"channel\":\"kafka:q\"},"
    "     \"compensation\":{\"type\":\"q.undo\",\"channel\":\"kafka:q\"}},"
    "    {\"name\":\"r\",\"command\":{\"type\":\"r.do\",\"channel\":\"kafka:r\"}}]},"
    "  {\"name\":\"piv\",\"pivot\":true,\"command\":{\"type\":\"piv.do\",\"channel\":\"kafka:piv\","
    "     \"data\":{\"q\":\"$.steps.q.code\"}}},"
    "  {\"name\":\"e\",\"command\":{\"type\":\"e.do\",\"channel\":\"kafka:e\"}}]}";

/* Two groups back to back, no deadline, no pivot. */
static const char *DEF_TWO_GROUPS =
    "{\"name\":\"two_groups\",\"version\":1,"
    " \"defaults\":{\"timeout\":\"2s\",\"retry\":{\"max_attempts\":2,\"initial_backoff\":\"50ms\","
    "   \"max_backoff\":\"400ms\",\"multiplier\":3}},"
    " \"steps\":["
    "  {\"name\":\"g1\",\"parallel\":["
    "    {\"name\":\"a\",\"command\":{\"type\":\"a\",\"channel\":\"kafka:a\"},"
    "     \"compensation\":{\"type\":\"a.u\",\"channel\":\"kafka:a\",\"retry\":{\"max_attempts\":3}}},"
    "    {\"name\":\"b\",\"command\":{\"type\":\"b\",\"channel\":\"kafka:b\"},"
    "     \"compensation\":{\"type\":\"b.u\",\"channel\":\"kafka:b\",\"retry\":{\"max_attempts\":3}}}]},"
    "  {\"name\":\"g2\",\"parallel\":["
    "    {\"name\":\"c\",\"command\":{\"type\":\"c\",\"channel\":\"amqp:x/c\",\"data\":{\"b\":\"$.steps.b.id\"}},"
    "     \"compensation\":{\"type\":\"c.u\",\"channel\":\"amqp:x/c\",\"data\":{\"c\":\"$.steps.c.id\"}}},"
    "    {\"name\":\"d\",\"command\":{\"type\":\"d\",\"channel\":\"amqp:x/d\"}},"
    "    {\"name\":\"f\",\"command\":{\"type\":\"f\",\"channel\":\"amqp:x/f\"},"
    "     \"compensation\":{\"type\":\"f.u\",\"channel\":\"amqp:x/f\"}}]},"
    "  {\"name\":\"last\",\"command\":{\"type\":\"l\",\"channel\":\"kafka:l\"},"
    "   \"compensation\":{\"type\":\"l.u\",\"channel\":\"kafka:l\"}}]}";

/* Nothing can be undone, pivot first. */
static const char *DEF_PIVOT_FIRST =
    "{\"name\":\"pivot_first\",\"version\":1,\"timeout\":\"5s\","
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":2,\"initial_backoff\":\"10ms\","
    "   \"max_backoff\":\"20ms\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"go\",\"pivot\":true,\"command\":{\"type\":\"go\",\"channel\":\"kafka:go\"}},"
    "  {\"name\":\"after\",\"command\":{\"type\":\"after\",\"channel\":\"kafka:after\"}}]}";

/* ---- the driver's own random numbers ---- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int pick(rng_t *r, int n) {
    return n > 0 ? (int)(rnd(r) % (uint64_t)n) : 0;
}

static bool chance(rng_t *r, int percent) {
    return pick(r, 100) < percent;
}

/* ---- what participants answer: results that satisfy later templates ---- */

/* Sets root.<path> = value, creating objects and arrays on the way; 'path'
 * is what follows "$.steps.<name>" (".a.b[2].c"). */
static void set_path(json_t *root, const char *path, json_t *value) {
    json_t *cur = root;
    while (*path) {
        char key[128];
        bool index = *path == '[';
        size_t n = strcspn(path + 1, ".[]");
        snprintf(key, sizeof key, "%.*s", (int)n, path + 1);
        path += 1 + n + (index ? 1 : 0);
        bool last = *path == '\0';
        json_t *next = last ? value : json_object();
        if (*path == '[' && !last) {
            json_decref(next);
            next = json_array();
        }
        if (index) {
            size_t k = (size_t)atoi(key);
            while (json_array_size(cur) <= k)
                json_array_append_new(cur, json_object());
            json_t *have = json_array_get(cur, k);
            if (!last && json_typeof(have) == json_typeof(next)) {
                json_decref(next);
                next = json_incref(have);
            }
            json_array_set_new(cur, k, next);
        } else {
            json_t *have = json_object_get(cur, key);
            if (last && (json_is_object(have) || json_is_array(have))) {
                json_decref(value); /* a deeper path needs what is there */
                return;
            }
            if (!last && have && json_typeof(have) == json_typeof(next)) {
                json_decref(next);
                next = json_incref(have);
            }
            json_object_set_new(cur, key, next);
        }
        cur = next;
    }
}

/* Adds to results[step] every "$.steps.<step>..." path used in 'tmpl'. */
static void collect_refs(const sg_def_t *def, const json_t *tmpl, json_t *results) {
    if (json_is_string(tmpl)) {
        const char *s = json_string_value(tmpl);
        if (strncmp(s, "$.steps.", 8) != 0)
            return;
        size_t n = strcspn(s + 8, ".[");
        char name[SG_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)n, s + 8);
        if (!sg_def_step(def, name))
            return;
        json_t *obj = json_object_get(results, name);
        if (s[8 + n])
            set_path(obj, s + 8 + n, json_string("v"));
        return;
    }
    size_t k;
    const char *key;
    json_t *v;
    if (json_is_array(tmpl))
        json_array_foreach(tmpl, k, v) collect_refs(def, v, results);
    else if (json_is_object(tmpl))
        json_object_foreach((json_t *)tmpl, key, v) collect_refs(def, v, results);
}

/* Whether 'tmpl' uses a field inside the result of step 'name'. */
static bool uses_field_of(const json_t *tmpl, const char *name) {
    if (json_is_string(tmpl)) {
        const char *s = json_string_value(tmpl);
        size_t n = strlen(name);
        return strncmp(s, "$.steps.", 8) == 0 && strncmp(s + 8, name, n) == 0 &&
               (s[8 + n] == '.' || s[8 + n] == '[');
    }
    size_t k;
    const char *key;
    json_t *v;
    if (json_is_array(tmpl))
        json_array_foreach(tmpl, k, v) if (uses_field_of(v, name)) return true;
    if (json_is_object(tmpl))
        json_object_foreach((json_t *)tmpl, key, v) if (uses_field_of(v, name)) return true;
    return false;
}

/* A participant may answer step i with an empty result (so that a later
 * template fails) unless a step past the pivot needs a field of it: there
 * the saga would stay failed until someone fixes the data, by design. */
static bool empty_result_ok(const sg_def_t *def, int i) {
    int pivot_stage = def->nstages;
    for (int j = 0; j < def->nsteps; j++)
        if (def->steps[j].pivot && def->steps[j].stage < pivot_stage)
            pivot_stage = def->steps[j].stage;
    for (int j = 0; j < def->nsteps; j++)
        if (def->steps[j].stage > pivot_stage && uses_field_of(def->steps[j].command.data, def->steps[i].name))
            return false;
    return true;
}

static json_t *make_results(const sg_def_t *def) {
    json_t *results = json_object();
    for (int i = 0; i < def->nsteps; i++)
        json_object_set_new(results, def->steps[i].name, json_object());
    for (int i = 0; i < def->nsteps; i++) {
        collect_refs(def, def->steps[i].command.data, results);
        if (def->steps[i].has_compensation)
            collect_refs(def, def->steps[i].compensation.data, results);
    }
    return results;
}

/* Start inputs: every "$.input..." path of the definition gets a value. */
static void collect_input_refs(const json_t *tmpl, json_t *input) {
    if (json_is_string(tmpl) && strncmp(json_string_value(tmpl), "$.input", 7) == 0) {
        const char *rest = json_string_value(tmpl) + 7;
        if (*rest)
            set_path(input, rest, json_string("in"));
        return;
    }
    size_t k;
    const char *key;
    json_t *v;
    if (json_is_array(tmpl))
        json_array_foreach(tmpl, k, v) collect_input_refs(v, input);
    else if (json_is_object(tmpl))
        json_object_foreach((json_t *)tmpl, key, v) collect_input_refs(v, input);
}

/* ---- one sequence ---- */

typedef struct reply {
    char step[SG_NAME_MAX + 1];
    char causation[300];
    bool ok;
    bool retryable;
    bool empty; /* a success without the fields later templates need */
} reply_t;

typedef struct model_step {
    int successes;      /* accepted successful replies to its commands */
    int undone;         /* accepted successful replies to its compensations */
    bool unknown;       /* an accepted timeout, or in flight when abandoned */
    bool in_flight;     /* a command sent and not yet answered or timed out */
} model_step_t;

typedef struct run {
    const sg_def_t *def;
    const json_t *results;
    json_t *input;
    uint64_t seed;
    rng_t rng;
    sim_t sim;
    int seen_cmds;      /* commands of the log already handed to the participant */
    reply_t net[MAX_NET];
    int nnet;
    reply_t delivered[MAX_NET]; /* for duplicates */
    int ndelivered;
    model_step_t model[MAX_STEPS];
    bool calm;
    char where[256];    /* definition and seed, for messages */
} run_t;

static void check(run_t *r, bool ok, const char *fmt, ...) {
    if (ok)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *hist = json_dumps(r->sim.history, JSON_INDENT(1));
    fprintf(stderr, "%s\nhistory: %s\n", r->where, hist ? hist : "");
    free(hist);
    fail_msg("%s: %s", r->where, msg);
}

static int step_of(const run_t *r, const char *name) {
    const sg_step_t *sd = sg_def_step(r->def, name);
    return sd ? sd->index : -1;
}

static void net_push(run_t *r, const reply_t *rep) {
    if (r->nnet < MAX_NET)
        r->net[r->nnet++] = *rep;
}

/* The participant decides what to do with each new command. */
static void participant(run_t *r) {
    for (; r->seen_cmds < r->sim.ncmds; r->seen_cmds++) {
        const sim_cmd_t *c = &r->sim.cmds[r->seen_cmds];
        int i = step_of(r, c->step);
        if (!c->undo)
            r->model[i].in_flight = true;
        reply_t rep = {.ok = true};
        snprintf(rep.step, sizeof rep.step, "%s", c->step);
        snprintf(rep.causation, sizeof rep.causation, "%s", c->id);
        int roll = pick(&r->rng, 100);
        if (r->calm)
            roll = 0;
        if (!c->undo) {
            if (roll < 55)
                rep.empty = !r->calm && empty_result_ok(r->def, i) && chance(&r->rng, 2);
            else if (roll < 68)
                rep.ok = false, rep.retryable = true;
            else if (roll < 76)
                rep.ok = false, rep.retryable = false;
            else
                continue; /* lost */
        } else {
            if (roll < 60)
                ;
            else if (roll < 82)
                rep.ok = false, rep.retryable = chance(&r->rng, 50);
            else
                continue;
        }
        net_push(r, &rep);
    }
}

/* Updates the model from an applied input. */
static void model_input(run_t *r, const sg_input_t *in) {
    if (r->sim.last_ignored)
        return;
    int i = in->step ? step_of(r, in->step) : -1;
    if (in->kind == SG_INPUT_REPLY) {
        bool undo = strstr(in->causation_id, "/undo/") != NULL;
        if (undo)
            r->model[i].undone += in->outcome == SG_OUTCOME_SUCCESS;
        else {
            r->model[i].in_flight = false;
            r->model[i].successes += in->outcome == SG_OUTCOME_SUCCESS;
        }
    } else if (in->kind == SG_INPUT_TIMER && in->timer == SG_TIMER_STEP_TIMEOUT) {
        r->model[i].in_flight = false;
        r->model[i].unknown = true;
    } else if (in->kind == SG_INPUT_ABORT ||
               (in->kind == SG_INPUT_TIMER && in->timer == SG_TIMER_DEADLINE)) {
        for (int k = 0; k < r->def->nsteps; k++)
            if (r->model[k].in_flight)
                r->model[k].unknown = true, r->model[k].in_flight = false;
    }
}

static long total_applies;

static void apply(run_t *r, const sg_input_t *in) {
    total_applies++;
    sg_err_t err = sim_apply(&r->sim, in);
    check(r, err == SG_OK, "apply failed: %s", sg_err_str(err));
    model_input(r, in);
    participant(r);
}

static void deliver(run_t *r, const reply_t *rep) {
    json_t *data;
    if (rep->ok)
        data = rep->empty ? json_object()
                          : json_deep_copy(json_object_get(r->results, rep->step));
    else
        data = json_pack("{s:s,s:s,s:b}", "code", "boom", "message", "simulated", "retryable",
                         rep->retryable);
    sg_input_t in = {.kind = SG_INPUT_REPLY, .step = rep->step, .causation_id = rep->causation,
                     .outcome = rep->ok ? SG_OUTCOME_SUCCESS : SG_OUTCOME_FAILURE, .data = data};
    apply(r, &in);
    json_decref(data);
    if (r->ndelivered < MAX_NET)
        r->delivered[r->ndelivered++] = *rep;
}

static void deliver_from_net(run_t *r) {
    int k = pick(&r->rng, r->nnet);
    reply_t rep = r->net[k];
    r->net[k] = r->net[--r->nnet];
    deliver(r, &rep);
}

static void fire_timer(run_t *r, bool earliest) {
    int k = 0;
    for (int j = 1; earliest && j < r->sim.ntimers; j++)
        if (r->sim.timers[j].due < r->sim.timers[k].due)
            k = j;
    if (!earliest)
        k = pick(&r->rng, r->sim.ntimers);
    sim_timer_t t = r->sim.timers[k];
    sim_timer_remove(&r->sim, t.kind, t.step);
    if (t.due > r->sim.now)
        r->sim.now = t.due;
    sg_input_t in = {.kind = SG_INPUT_TIMER, .timer = t.kind,
                     .step = t.kind == SG_TIMER_DEADLINE ? NULL : t.step, .attempt = t.attempt};
    apply(r, &in);
}

/* A reply nobody waits for: an earlier attempt, another step, a made-up id. */
static void stale_reply(run_t *r) {
    if (r->sim.ncmds == 0)
        return;
    const sim_cmd_t *c = &r->sim.cmds[pick(&r->rng, r->sim.ncmds)];
    reply_t rep = {.ok = chance(&r->rng, 50), .retryable = true};
    const sg_step_t *other = &r->def->steps[pick(&r->rng, r->def->nsteps)];
    snprintf(rep.step, sizeof rep.step, "%s", chance(&r->rng, 70) ? c->step : other->name);
    snprintf(rep.causation, sizeof rep.causation, "%s%s", c->id, chance(&r->rng, 50) ? "" : "x");
    const sim_cmd_t *last = sim_last_cmd(&r->sim, rep.step);
    size_t n = strlen(rep.causation);
    if (last && strcmp(last->id, rep.causation) == 0 && n + 1 < sizeof rep.causation) {
        rep.causation[n] = 'x'; /* never the awaited one */
        rep.causation[n + 1] = '\0';
    }
    deliver(r, &rep);
}

/* A timer that is not armed (a stale one, e.g. fired twice). */
static void stale_timer(run_t *r) {
    static const sg_timer_kind_t kinds[] = {SG_TIMER_STEP_TIMEOUT, SG_TIMER_RETRY_DUE,
                                            SG_TIMER_UNDO_TIMEOUT, SG_TIMER_UNDO_RETRY_DUE};
    sg_timer_kind_t kind = kinds[pick(&r->rng, 4)];
    const char *step = r->def->steps[pick(&r->rng, r->def->nsteps)].name;
    int attempt = pick(&r->rng, 4);
    const sim_timer_t *t = sim_timer(&r->sim, kind, step);
    if (t && t->attempt == attempt)
        attempt += 7;
    sg_input_t in = {.kind = SG_INPUT_TIMER, .timer = kind, .step = step, .attempt = attempt};
    apply(r, &in);
}

static void chaos_action(run_t *r) {
    int roll = pick(&r->rng, 100);
    if (roll < 45 && r->nnet > 0)
        deliver_from_net(r);
    else if (roll < 80 && r->sim.ntimers > 0)
        fire_timer(r, chance(&r->rng, 70));
    else if (roll < 85)
        stale_reply(r);
    else if (roll < 89)
        stale_timer(r);
    else if (roll < 93 && r->ndelivered > 0) {
        reply_t dup = r->delivered[pick(&r->rng, r->ndelivered)];
        deliver(r, &dup);
    } else if (roll < 95) {
        sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = "chaos"};
        apply(r, &in);
    } else if (roll < 99) {
        sg_input_t in = {.kind = SG_INPUT_RETRY};
        apply(r, &in);
    } else {
        sg_input_t in = {.kind = SG_INPUT_START, .saga_id = "saga-1", .seed = 1};
        apply(r, &in);
    }
}

/* Everything is answered; failed sagas are retried by an operator. */
static void calm_phase(run_t *r) {
    r->calm = true;
    r->nnet = 0; /* whatever was still travelling is lost */
    r->seen_cmds = r->sim.ncmds;
    for (int k = r->sim.ncmds - 1; k >= 0; k--) { /* answer what is awaited */
        const sim_cmd_t *c = &r->sim.cmds[k];
        const sim_cmd_t *last = sim_last_cmd(&r->sim, c->step);
        if (last == c) {
            reply_t rep = {.ok = true};
            snprintf(rep.step, sizeof rep.step, "%s", c->step);
            snprintf(rep.causation, sizeof rep.causation, "%s", c->id);
            net_push(r, &rep);
        }
    }
    int retries = 0;
    for (int n = 0; n < 2000; n++) {
        sg_saga_status_t st = sg_saga_status(r->sim.saga);
        if (sg_saga_status_terminal(st))
            return;
        if (r->nnet > 0)
            deliver_from_net(r);
        else if (r->sim.ntimers > 0 && st != SG_SAGA_FAILED)
            fire_timer(r, true);
        else {
            check(r, st == SG_SAGA_FAILED, "saga %s with nothing in flight",
                  sg_saga_status_str(st));
            check(r, ++retries < 50, "operator retries never end");
            sg_input_t in = {.kind = SG_INPUT_RETRY, .reason = "calm"};
            apply(r, &in);
        }
    }
    check(r, false, "P1: the saga never finished (%s)", sg_saga_status_str(sg_saga_status(r->sim.saga)));
}

/* ---- the properties ---- */

static bool needs_undo(const run_t *r, int i) {
    return r->def->steps[i].has_compensation && (r->model[i].successes > 0 || r->model[i].unknown);
}

static bool pivot_succeeded_or_unknown(const run_t *r) {
    for (int i = 0; i < r->def->nsteps; i++)
        if (r->def->steps[i].pivot && (r->model[i].successes > 0 || r->model[i].unknown))
            return true;
    return false;
}

static void check_outcome(run_t *r) {
    sg_saga_status_t st = sg_saga_status(r->sim.saga);
    const sg_def_t *def = r->def;
    int undos = 0;
    for (int k = 0; k < r->sim.ncmds; k++)
        undos += r->sim.cmds[k].undo;
    check(r, r->sim.ntimers == 0, "P1: %d timers still armed when the saga is %s", r->sim.ntimers,
          sg_saga_status_str(st));
    for (int i = 0; i < def->nsteps; i++)
        check(r, r->model[i].successes <= 1, "step %s succeeded %d times", def->steps[i].name,
              r->model[i].successes);
    if (st == SG_SAGA_COMPLETED) {
        for (int i = 0; i < def->nsteps; i++)
            check(r, r->model[i].successes == 1, "P2: completed, step %s succeeded %d times",
                  def->steps[i].name, r->model[i].successes);
        check(r, undos == 0, "P2: completed with %d compensations sent", undos);
        return;
    }
    if (pivot_succeeded_or_unknown(r))
        check(r, undos == 0, "P5: %d compensations sent after the pivot", undos);
    check(r, st == SG_SAGA_COMPENSATED, "P1: ended %s", sg_saga_status_str(st));
    check(r, !pivot_succeeded_or_unknown(r), "P5: compensated after the pivot succeeded or was unknown");
    for (int i = 0; i < def->nsteps; i++) {
        bool sent = sim_first_undo(&r->sim, def->steps[i].name) >= 0;
        check(r, sent == needs_undo(r, i), "P3: step %s: compensation sent %d, needed %d",
              def->steps[i].name, sent, needs_undo(r, i));
        check(r, r->model[i].undone == (sent ? 1 : 0), "P3: step %s undone %d times",
              def->steps[i].name, r->model[i].undone);
    }
}

/* P4: a compensation of stage s is sent only when every member of the
 * stages after s that needed one was undone. */
static void check_undo_order(run_t *r) {
    const sg_def_t *def = r->def;
    int done_before[MAX_STEPS]; /* log index of the accepted undo success, or big */
    for (int i = 0; i < def->nsteps; i++)
        done_before[i] = INT32_MAX;
    size_t k;
    json_t *h;
    int sent = 0;
    json_array_foreach(r->sim.history, k, h) {
        const char *ev = json_string_value(json_object_get(h, "event"));
        const char *step = json_string_value(json_object_get(h, "step"));
        if (strcmp(ev, "command.sent") == 0)
            sent++;
        if (strcmp(ev, "step.compensated") == 0)
            done_before[step_of(r, step)] = sent;
    }
    /* the first compensation command of each step, in sending order */
    for (int a = 0; a < r->sim.ncmds; a++) {
        const sim_cmd_t *c = &r->sim.cmds[a];
        if (!c->undo || sim_first_undo(&r->sim, c->step) != a)
            continue;
        int stage = def->steps[step_of(r, c->step)].stage;
        for (int j = 0; j < def->nsteps; j++) {
            if (def->steps[j].stage <= stage || sim_first_undo(&r->sim, def->steps[j].name) < 0)
                continue;
            check(r, done_before[j] <= a, "P4: %s compensated before %s of a later stage was undone",
                  c->step, def->steps[j].name);
        }
    }
}

/* P8: from the history, no command of a failing stage goes out again. */
static void check_failing_stage(run_t *r) {
    int failing = -1;
    bool pivot = false;
    size_t k;
    json_t *h;
    json_array_foreach(r->sim.history, k, h) {
        const char *ev = json_string_value(json_object_get(h, "event"));
        const char *step = json_string_value(json_object_get(h, "step"));
        int i = step ? step_of(r, step) : -1;
        if (strncmp(ev, "saga.", 5) == 0)
            failing = -1;
        else if (strcmp(ev, "step.succeeded") == 0 && r->def->steps[i].pivot)
            pivot = true;
        else if (!pivot && (strcmp(ev, "step.failed") == 0 || strcmp(ev, "step.timed_out") == 0))
            failing = r->def->steps[i].stage;
        else if (strcmp(ev, "command.sent") == 0 && i >= 0 && r->def->steps[i].stage == failing)
            check(r, json_is_true(json_object_get(json_object_get(h, "detail"), "undo")),
                  "P8: %s sent again while its stage is failing", step);
    }
}

/* P6: unique ids; attempts of (step, do|undo) go 1, 2, 3, ... */
static void check_ids(run_t *r) {
    for (int a = 0; a < r->sim.ncmds; a++) {
        const sim_cmd_t *c = &r->sim.cmds[a];
        char want[256];
        snprintf(want, sizeof want, "saga-1/%s/%s/%d", c->step, c->undo ? "undo" : "do", c->attempt);
        check(r, strcmp(want, c->id) == 0, "P6: id %s is not %s", c->id, want);
        int prev = 0;
        for (int b = 0; b < a; b++)
            if (r->sim.cmds[b].undo == c->undo && strcmp(r->sim.cmds[b].step, c->step) == 0)
                prev = r->sim.cmds[b].attempt;
        check(r, c->attempt == prev + 1, "P6: %s follows attempt %d", c->id, prev);
    }
}

/* P7: the inputs of the history, replayed, rebuild the same state. */
static void check_replay(run_t *r) {
    sim_t again;
    sim_init(&again, (sg_def_t *)r->def);
    size_t k;
    json_t *h;
    json_array_foreach(r->sim.history, k, h) {
        const char *ev = json_string_value(json_object_get(h, "event"));
        if (strncmp(ev, "input.", 6) != 0)
            continue;
        json_t *detail = json_object_get(h, "detail");
        sg_input_t in;
        char err[256];
        check(r, sg_input_from_json(json_object_get(detail, "input"), &in, err, sizeof err) == SG_OK,
              "P7: recorded input unreadable: %s", err);
        again.now = json_integer_value(json_object_get(detail, "now_ms"));
        check(r, sim_apply(&again, &in) == SG_OK, "P7: replayed input refused");
        sg_input_release(&in);
    }
    char *a = sim_state_text(r->sim.saga), *b = sim_state_text(again.saga);
    bool same_state = strcmp(a, b) == 0, same_history = json_equal(r->sim.history, again.history);
    free(a);
    free(b);
    sim_release(&again);
    check(r, same_state, "P7: replay gave another state");
    check(r, same_history, "P7: replay gave another history");
}

static int outcome_counts[SG_SAGA_FAILED + 1];

/* How many sequences took each interesting path (printed, so that a change
 * of the driver that stops exercising one shows). */
static const char *const path_names[] = {
    "failed and retried by an operator", "aborted", "deadline passed",
    "compensation ran out of attempts", "failed past the pivot", "template failed",
    "parallel group failing", "ignored inputs", "pivot outcome unknown",
};
#define NPATHS (sizeof path_names / sizeof path_names[0])
static int path_counts[NPATHS];

static void count_paths(const run_t *r) {
    bool seen[NPATHS] = {false};
    size_t k;
    json_t *h;
    json_array_foreach(r->sim.history, k, h) {
        const char *ev = json_string_value(json_object_get(h, "event"));
        json_t *d = json_object_get(h, "detail");
        const char *reason = json_string_value(json_object_get(d, "reason"));
        const json_t *in = json_object_get(d, "input");
        bool ignored = json_object_get(d, "ignored") != NULL;
        const char *kind = json_string_value(json_object_get(in, "kind"));
        seen[0] |= strcmp(ev, "input.retry") == 0 && !ignored;
        seen[1] |= strcmp(ev, "input.abort") == 0 && !ignored;
        seen[2] |= kind && strcmp(kind, "timer") == 0 && !ignored &&
                   strcmp(json_string_value(json_object_get(in, "timer")), "deadline") == 0;
        seen[3] |= strcmp(ev, "compensation.exhausted") == 0;
        seen[4] |= reason && strstr(reason, "past the pivot") != NULL;
        seen[5] |= reason && strstr(reason, "cannot render") != NULL;
        seen[6] |= reason && strstr(reason, "the stage is failing") != NULL;
        seen[7] |= ignored;
        seen[8] |= reason && strstr(reason, "outcome of a pivot step is unknown") != NULL;
    }
    for (size_t p = 0; p < NPATHS; p++)
        path_counts[p] += seen[p];
}

static void run_sequence(const sg_def_t *def, const json_t *results, const json_t *input,
                         uint64_t seed, int index) {
    run_t *r = calloc(1, sizeof *r);
    r->def = def;
    r->results = results;
    r->seed = seed;
    r->rng.s = seed;
    snprintf(r->where, sizeof r->where, "definition %s, sequence %d, sequence seed %" PRIu64,
             def->name, index, seed);
    sim_init(&r->sim, (sg_def_t *)def);
    r->sim.now = 1700000000000;
    sg_input_t start = {.kind = SG_INPUT_START, .saga_id = "saga-1", .seed = rnd(&r->rng),
                        .data = (json_t *)input};
    apply(r, &start);
    int actions = 5 + pick(&r->rng, 60);
    for (int n = 0; n < actions && !sg_saga_status_terminal(sg_saga_status(r->sim.saga)); n++)
        chaos_action(r);
    calm_phase(r);
    check_outcome(r);
    check_undo_order(r);
    check_ids(r);
    check_failing_stage(r);
    check_replay(r);
    outcome_counts[sg_saga_status(r->sim.saga)]++;
    count_paths(r);
    sim_release(&r->sim);
    free(r);
}

/* ---- the test ---- */

static uint64_t env_u64(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static int total_sequences;

static void run_definition(const sg_def_t *def, uint64_t master, int runs) {
    json_t *results = make_results(def);
    json_t *input = json_object();
    for (int i = 0; i < def->nsteps; i++) {
        collect_input_refs(def->steps[i].command.data, input);
        if (def->steps[i].has_compensation)
            collect_input_refs(def->steps[i].compensation.data, input);
    }
    rng_t seeds = {master ^ (uint64_t)strlen(def->name) * 0x100000001b3ULL};
    for (int k = 0; k < def->name[0]; k++)
        rnd(&seeds);
    for (int n = 0; n < runs; n++) {
        run_sequence(def, results, input, rnd(&seeds), n);
        total_sequences++;
    }
    json_decref(results);
    json_decref(input);
}

static void test_random_sequences_keep_every_saga_property(void **state) {
    (void)state;
    uint64_t master = env_u64("SAGA_PROPERTY_SEED", DEFAULT_SEED);
    int runs = (int)env_u64("SAGA_PROPERTY_RUNS", DEFAULT_RUNS);
    printf("property test: master seed %" PRIu64 " (SAGA_PROPERTY_SEED), %d sequences per definition\n",
           master, runs);
    sg_def_set_t *set = sg_def_set_new();
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_set_load_dir(set, SAGA_SOURCE_DIR "/sagas", &errs), SG_OK);
    sg_def_errors_release(&errs);
    assert_true(sg_def_set_count(set) >= 3);
    for (size_t k = 0; k < sg_def_set_count(set); k++)
        run_definition(sg_def_set_at(set, k), master, runs);
    const char *inline_defs[] = {DEF_GROUP_PIVOT, DEF_TWO_GROUPS, DEF_PIVOT_FIRST};
    for (size_t k = 0; k < sizeof inline_defs / sizeof inline_defs[0]; k++) {
        sg_def_t *def = sim_load_def(inline_defs[k]);
        assert_non_null(def);
        run_definition(def, master, runs);
        sg_def_destroy(def);
    }
    sg_def_set_destroy(set);
    printf("property test: %d sequences, %ld inputs (%d completed, %d compensated), all properties held\n",
           total_sequences, total_applies, outcome_counts[SG_SAGA_COMPLETED],
           outcome_counts[SG_SAGA_COMPENSATED]);
    for (size_t p = 0; p < NPATHS; p++) {
        printf("  %-36s %d sequences\n", path_names[p], path_counts[p]);
        assert_true(path_counts[p] > 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_sequences_keep_every_saga_property),
    };
    return cmocka_run_group_tests_name("engine_property", tests, NULL, NULL);
}
