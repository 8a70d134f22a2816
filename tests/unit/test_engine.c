/* The saga engine's rules (CONTRACT.md section 3), one test per rule, driven
 * through a small simulated store (engine_sim.h) that also checks, after
 * every apply, the invariants and that an ignored input changed nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "unit/engine_sim.h"

#define OK(x) assert_int_equal((x), SG_OK)

/* a (undo), b, c (undo), d: the plain forward path. */
static const char *DEF_LINEAR =
    "{\"name\":\"linear\",\"version\":1,\"timeout\":\"1m\","
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,\"initial_backoff\":\"100ms\","
    "   \"max_backoff\":\"1s\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"a\",\"command\":{\"type\":\"a.do\",\"channel\":\"kafka:a\",\"data\":{\"x\":\"$.input.x\"}},"
    "   \"compensation\":{\"type\":\"a.undo\",\"channel\":\"kafka:a\",\"data\":{\"ref\":\"$.steps.a.ref\"},"
    "     \"retry\":{\"max_attempts\":3}}},"
    "  {\"name\":\"b\",\"command\":{\"type\":\"b.do\",\"channel\":\"amqp:/b\",\"data\":{\"ref\":\"$.steps.a.ref\"}}},"
    "  {\"name\":\"c\",\"command\":{\"type\":\"c.do\",\"channel\":\"kafka:c\",\"data\":{}},"
    "   \"compensation\":{\"type\":\"c.undo\",\"channel\":\"amqp:x/c\",\"data\":{\"ref\":\"$.steps.c.ref\"}}},"
    "  {\"name\":\"d\",\"command\":{\"type\":\"d.do\",\"channel\":\"kafka:d\",\"data\":{}}}]}";

/* a (undo), group g = p (undo), q (undo), r; then z (undo). */
static const char *DEF_GROUP =
    "{\"name\":\"grouped\",\"version\":1,"
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,\"initial_backoff\":\"100ms\","
    "   \"max_backoff\":\"1s\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"a\",\"command\":{\"type\":\"a.do\",\"channel\":\"kafka:a\"},"
    "   \"compensation\":{\"type\":\"a.undo\",\"channel\":\"kafka:a\"}},"
    "  {\"name\":\"g\",\"parallel\":["
    "    {\"name\":\"p\",\"command\":{\"type\":\"p.do\",\"channel\":\"kafka:p\"},"
    "     \"compensation\":{\"type\":\"p.undo\",\"channel\":\"kafka:p\"}},"
    "    {\"name\":\"q\",\"command\":{\"type\":\"q.do\",\"channel\":\"kafka:q\"},"
    "     \"compensation\":{\"type\":\"q.undo\",\"channel\":\"kafka:q\"}},"
    "    {\"name\":\"r\",\"command\":{\"type\":\"r.do\",\"channel\":\"kafka:r\"}}]},"
    "  {\"name\":\"z\",\"command\":{\"type\":\"z.do\",\"channel\":\"kafka:z\"},"
    "   \"compensation\":{\"type\":\"z.undo\",\"channel\":\"kafka:z\"}}]}";

/* a (undo), piv (pivot), e: nothing after the pivot may compensate. */
static const char *DEF_PIVOT =
    "{\"name\":\"pivoted\",\"version\":1,\"timeout\":\"1m\","
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,\"initial_backoff\":\"100ms\","
    "   \"max_backoff\":\"1s\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"a\",\"command\":{\"type\":\"a.do\",\"channel\":\"kafka:a\"},"
    "   \"compensation\":{\"type\":\"a.undo\",\"channel\":\"kafka:a\"}},"
    "  {\"name\":\"piv\",\"pivot\":true,\"command\":{\"type\":\"piv.do\",\"channel\":\"kafka:piv\"}},"
    "  {\"name\":\"e\",\"command\":{\"type\":\"e.do\",\"channel\":\"kafka:e\"}}]}";

static void open_sim(sim_t *s, const char *text) {
    sg_def_t *def = sim_load_def(text);
    assert_non_null(def);
    sim_init(s, def);
}

static void close_sim(sim_t *s) {
    sg_def_destroy(s->def);
    sim_release(s);
}

static void assert_saga(const sim_t *s, sg_saga_status_t status) {
    assert_string_equal(sg_saga_status_str(sg_saga_status(s->saga)), sg_saga_status_str(status));
}

static void assert_step(const sim_t *s, const char *step, sg_step_status_t status) {
    assert_string_equal(sg_step_status_str(sim_step_status(s, step)), sg_step_status_str(status));
}

/* a's result carries the "ref" that b's data needs. */
static sg_err_t ok_a(sim_t *s) {
    return sim_reply(s, "a", true, "{\"ref\":\"R\"}");
}

/* Answers every attempt of 'step' with a failure until its attempts run
 * out, firing the retry timers in between; 'timeouts' lets them time out. */
static void exhaust(sim_t *s, const char *step, bool timeouts, bool undo) {
    sg_timer_kind_t timeout = undo ? SG_TIMER_UNDO_TIMEOUT : SG_TIMER_STEP_TIMEOUT;
    sg_timer_kind_t due = undo ? SG_TIMER_UNDO_RETRY_DUE : SG_TIMER_RETRY_DUE;
    for (;;) {
        OK(timeouts ? sim_fire(s, timeout, step) : sim_fail(s, step, true));
        assert_false(s->last_ignored);
        if (sim_fire(s, due, step) == SG_ERR_NOT_FOUND)
            return;
    }
}

/* ---- forward ---- */

static void test_start_sends_the_first_command_with_rendered_data(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":42}", 7));
    assert_saga(&s, SG_SAGA_RUNNING);
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 1);
    const sg_command_t *c = sim_fx_cmd(&s, 0);
    assert_string_equal(c->id, "s1/a/do/1");
    assert_string_equal(c->type, "a.do");
    assert_string_equal(c->channel->text, "kafka:a");
    assert_string_equal(c->saga_id, "s1");
    assert_string_equal(c->saga_type, "linear");
    assert_string_equal(c->step, "a");
    assert_string_equal(c->replyto, "kafka:saga.replies");
    assert_int_equal(json_integer_value(json_object_get(c->data, "x")), 42);
    assert_int_equal(sim_event_count(&s, "saga.started"), 1);
    assert_non_null(sim_timer(&s, SG_TIMER_STEP_TIMEOUT, "a"));
    assert_int_equal(sim_timer(&s, SG_TIMER_STEP_TIMEOUT, "a")->due, s.now + 1000);
    assert_int_equal(sim_timer(&s, SG_TIMER_DEADLINE, NULL)->due, s.now + 60000);
    assert_int_equal(sg_saga_deadline_ms(s.saga), s.now + 60000);
    char cur[64];
    sg_saga_current_steps(s.saga, cur, sizeof cur);
    assert_string_equal(cur, "a");
    close_sim(&s);
}

static void test_steps_run_in_order_and_results_merge_into_the_context(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_reply(&s, "a", true, "{\"ref\":\"R1\"}"));
    assert_step(&s, "a", SG_STEP_SUCCEEDED);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/b/do/1");
    assert_string_equal(json_string_value(json_object_get(sim_fx_cmd(&s, 0)->data, "ref")), "R1");
    OK(sim_ok(&s, "b"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/c/do/1");
    OK(sim_reply(&s, "c", true, "{\"ref\":\"C\"}"));
    OK(sim_ok(&s, "d"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    const json_t *ctx = sg_saga_context(s.saga);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(ctx, "steps"), "a"), "ref")), "R1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ctx, "saga"), "id")), "s1");
    /* saga.completed carries the final context; nothing stays armed */
    json_t *last = json_array_get(s.events, json_array_size(s.events) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "type")), "saga.completed");
    assert_true(json_equal(json_object_get(json_object_get(last, "data"), "context"), (json_t *)ctx));
    assert_int_equal(s.ntimers, 0);
    assert_int_equal(s.ncmds, 4);
    assert_int_equal(sim_event_count(&s, "saga.step.succeeded"), 4);
    close_sim(&s);
}

static void test_parallel_group_sends_all_members_at_once_and_waits_for_all(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 3);
    assert_string_equal(sim_fx_cmd(&s, 0)->step, "p");
    assert_string_equal(sim_fx_cmd(&s, 1)->step, "q");
    assert_string_equal(sim_fx_cmd(&s, 2)->step, "r");
    char cur[64];
    sg_saga_current_steps(s.saga, cur, sizeof cur);
    assert_string_equal(cur, "p,q,r");
    OK(sim_ok(&s, "q"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
    OK(sim_ok(&s, "p"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
    OK(sim_ok(&s, "r"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 1);
    assert_string_equal(sim_fx_cmd(&s, 0)->step, "z");
    OK(sim_ok(&s, "z"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    close_sim(&s);
}

/* ---- retries ---- */

static void test_retryable_failure_is_retried_with_backoff_up_to_max_attempts(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    static const struct { int64_t lo, hi; } delays[] = {{80, 120}, {160, 240}};
    for (int n = 0; n < 2; n++) {
        int64_t t0 = s.now;
        OK(sim_fail(&s, "a", true));
        assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
        assert_step(&s, "a", SG_STEP_RUNNING);
        const sim_timer_t *t = sim_timer(&s, SG_TIMER_RETRY_DUE, "a");
        assert_non_null(t);
        assert_in_range(t->due - t0, delays[n].lo, delays[n].hi);
        OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "a"));
        char id[32];
        snprintf(id, sizeof id, "s1/a/do/%d", n + 2);
        assert_string_equal(sim_fx_cmd(&s, 0)->id, id);
    }
    OK(sim_fail(&s, "a", true));
    assert_step(&s, "a", SG_STEP_FAILED);
    assert_int_equal(sg_saga_step_attempts(s.saga, 0), 3);
    assert_null(sim_timer(&s, SG_TIMER_RETRY_DUE, "a"));
    close_sim(&s);
}

static void test_backoff_is_exponential_capped_and_jittered(void **state) {
    (void)state;
    sg_retry_t r = {.max_attempts = 10, .initial_backoff_ms = 100, .max_backoff_ms = 1000,
                    .multiplier = 2.0};
    static const struct { int n; uint64_t random; int64_t want; } cases[] = {
        {1, 200, 100},  /* factor 1.0 */
        {1, 0, 80},     /* factor 0.8 */
        {1, 400, 120},  /* factor 1.2 */
        {1, 401, 80},   /* the draw wraps modulo 401 */
        {2, 200, 200},  {3, 200, 400}, {4, 200, 800},
        {5, 200, 1000}, /* 1600 capped */
        {5, 400, 1000}, /* jitter never passes the cap */
        {5, 0, 800},    {40, 200, 1000},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        assert_int_equal(sg_engine_backoff_ms(&r, cases[k].n, cases[k].random), cases[k].want);
}

static void test_timeout_is_retried_then_times_the_step_out(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_fire(&s, SG_TIMER_STEP_TIMEOUT, "b"));
    assert_step(&s, "b", SG_STEP_RUNNING);
    assert_non_null(sim_timer(&s, SG_TIMER_RETRY_DUE, "b"));
    OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "b"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/b/do/2");
    exhaust(&s, "b", true, false);
    assert_step(&s, "b", SG_STEP_TIMED_OUT);
    assert_int_equal(sim_cmd_count(&s, "b", false), 3);
    assert_string_equal(json_string_value(json_object_get(sg_saga_step_error(s.saga, 1), "code")), "timeout");
    /* b has no compensation: only a is undone */
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    close_sim(&s);
}

static void test_non_retryable_failure_fails_the_step_at_once(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_reply(&s, "a", true, "{\"ref\":\"R\"}"));
    OK(sim_fail(&s, "b", false));
    assert_step(&s, "b", SG_STEP_FAILED);
    assert_int_equal(sg_saga_step_attempts(s.saga, 1), 1);
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    assert_string_equal(json_string_value(json_object_get(sim_fx_cmd(&s, 0)->data, "ref")), "R");
    assert_int_equal(sim_event_count(&s, "saga.step.failed"), 1);
    assert_int_equal(sim_event_count(&s, "saga.compensating"), 1);
    assert_non_null(strstr(sg_saga_reason(s.saga), "declined"));
    close_sim(&s);
}

/* ---- compensation ---- */

static void test_failure_of_the_first_step_compensates_nothing(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_fail(&s, "a", false));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
    assert_int_equal(sim_event_count(&s, "saga.compensating"), 0);
    assert_int_equal(sim_event_count(&s, "saga.compensated"), 1);
    assert_step(&s, "a", SG_STEP_FAILED);
    assert_step(&s, "b", SG_STEP_SKIPPED);
    assert_step(&s, "d", SG_STEP_SKIPPED);
    assert_int_equal(s.ntimers, 0); /* the deadline is cancelled */
    close_sim(&s);
}

static void test_failed_step_compensates_in_reverse_order_of_completion(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_reply(&s, "a", true, "{\"ref\":\"A\"}"));
    OK(sim_ok(&s, "b"));
    OK(sim_reply(&s, "c", true, "{\"ref\":\"C\"}"));
    OK(sim_fail(&s, "d", false));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 1); /* one stage at a time */
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/c/undo/1");
    assert_string_equal(sim_fx_cmd(&s, 0)->type, "c.undo");
    assert_string_equal(sim_fx_cmd(&s, 0)->replyto, "amqp:/saga.replies");
    assert_step(&s, "c", SG_STEP_COMPENSATING);
    OK(sim_ok(&s, "c"));
    assert_step(&s, "c", SG_STEP_COMPENSATED);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    OK(sim_ok(&s, "a"));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    assert_step(&s, "a", SG_STEP_COMPENSATED);
    assert_step(&s, "b", SG_STEP_SUCCEEDED); /* nothing to undo it with */
    assert_step(&s, "d", SG_STEP_FAILED);
    close_sim(&s);
}

static void test_timed_out_step_is_compensated_with_missing_fields_as_null(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    exhaust(&s, "a", true, false);
    assert_step(&s, "a", SG_STEP_COMPENSATING);
    const sg_command_t *c = sim_fx_cmd(&s, 0);
    assert_string_equal(c->id, "s1/a/undo/1");
    assert_true(json_is_null(json_object_get(c->data, "ref")));
    close_sim(&s);
}

static void test_step_that_failed_after_an_earlier_timeout_is_compensated(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_ok(&s, "b"));
    OK(sim_fire(&s, SG_TIMER_STEP_TIMEOUT, "c"));
    OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "c"));
    OK(sim_fail(&s, "c", false));
    assert_step(&s, "c", SG_STEP_COMPENSATING); /* attempt 1 may have happened */
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/c/undo/1");
    close_sim(&s);
}

static void test_parallel_group_members_are_compensated_together(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_ok(&s, "r"));
    OK(sim_ok(&s, "p"));
    OK(sim_ok(&s, "q"));
    OK(sim_fail(&s, "z", false));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 2);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/p/undo/1");
    assert_string_equal(sim_fx_cmd(&s, 1)->id, "s1/q/undo/1");
    OK(sim_ok(&s, "q"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0); /* p is still undoing */
    OK(sim_ok(&s, "p"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    OK(sim_ok(&s, "a"));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    close_sim(&s);
}

static void test_compensation_is_retried_on_every_failure_until_it_succeeds(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_fail(&s, "b", false));
    OK(sim_fail(&s, "a", false)); /* not retryable: a compensation retries anyway */
    assert_non_null(sim_timer(&s, SG_TIMER_UNDO_RETRY_DUE, "a"));
    OK(sim_fire(&s, SG_TIMER_UNDO_RETRY_DUE, "a"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/2");
    OK(sim_fire(&s, SG_TIMER_UNDO_TIMEOUT, "a"));
    OK(sim_fire(&s, SG_TIMER_UNDO_RETRY_DUE, "a"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/3");
    OK(sim_ok(&s, "a"));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    close_sim(&s);
}

static void test_compensation_out_of_attempts_fails_the_saga(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_fail(&s, "b", false));
    exhaust(&s, "a", false, true);
    assert_saga(&s, SG_SAGA_FAILED);
    assert_step(&s, "a", SG_STEP_COMPENSATING);
    assert_int_equal(sg_saga_step_undo_attempts(s.saga, 0), 3);
    assert_int_equal(sim_event_count(&s, "saga.failed"), 1);
    assert_non_null(strstr(sg_saga_reason(s.saga), "compensation of step \"a\""));
    char cur[64];
    sg_saga_current_steps(s.saga, cur, sizeof cur);
    assert_string_equal(cur, "a");
    close_sim(&s);
}

/* ---- failures inside a parallel group ---- */

static void test_failure_in_group_waits_for_in_flight_siblings_then_compensates(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_fail(&s, "p", false));
    assert_saga(&s, SG_SAGA_RUNNING);
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
    OK(sim_ok(&s, "q"));
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 0);
    OK(sim_fire(&s, SG_TIMER_STEP_TIMEOUT, "r")); /* not retried: the group is failing */
    assert_step(&s, "r", SG_STEP_TIMED_OUT);
    assert_int_equal(sim_cmd_count(&s, "r", false), 1);
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_int_equal(sim_count(&s, SG_EFFECT_COMMAND), 1); /* q only: p failed, r has none */
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/q/undo/1");
    OK(sim_ok(&s, "q"));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    close_sim(&s);
}

static void test_failure_in_group_stops_the_retries_of_siblings(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_fail(&s, "q", true));
    assert_non_null(sim_timer(&s, SG_TIMER_RETRY_DUE, "q"));
    OK(sim_fail(&s, "p", false));
    assert_null(sim_timer(&s, SG_TIMER_RETRY_DUE, "q"));
    assert_step(&s, "q", SG_STEP_FAILED);
    assert_saga(&s, SG_SAGA_RUNNING); /* r is in flight */
    OK(sim_ok(&s, "r"));
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    assert_int_equal(sim_cmd_count(&s, "q", false), 1);
    close_sim(&s);
}

/* ---- pivot ---- */

static void test_after_the_pivot_every_failure_is_retried_then_the_saga_fails(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_ok(&s, "piv"));
    OK(sim_fail(&s, "e", false)); /* not retryable, retried anyway */
    assert_step(&s, "e", SG_STEP_RUNNING);
    assert_non_null(sim_timer(&s, SG_TIMER_RETRY_DUE, "e"));
    OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "e"));
    OK(sim_fail(&s, "e", false));
    OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "e"));
    OK(sim_fail(&s, "e", false));
    assert_saga(&s, SG_SAGA_FAILED);
    assert_step(&s, "e", SG_STEP_FAILED);
    assert_int_equal(sim_cmd_count(&s, "e", false), 3);
    assert_int_equal(sim_first_undo(&s, "a"), -1);
    assert_step(&s, "a", SG_STEP_SUCCEEDED);
    assert_non_null(strstr(sg_saga_reason(s.saga), "pivot"));
    close_sim(&s);
}

static void test_pivot_failure_compensates_the_steps_before_it(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_fail(&s, "piv", false));
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    close_sim(&s);
}

static void test_pivot_with_unknown_outcome_fails_the_saga(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    exhaust(&s, "piv", true, false);
    assert_saga(&s, SG_SAGA_FAILED);
    assert_step(&s, "piv", SG_STEP_TIMED_OUT);
    assert_int_equal(sim_first_undo(&s, "a"), -1);
    /* an operator retry sends the pivot again */
    OK(sim_operator_retry(&s));
    assert_saga(&s, SG_SAGA_RUNNING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/piv/do/4");
    OK(sim_ok(&s, "piv"));
    OK(sim_ok(&s, "e"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    close_sim(&s);
}

/* ---- deadline and abort ---- */

static void test_deadline_compensates_including_the_step_in_flight(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_ok(&s, "b"));
    OK(sim_fire(&s, SG_TIMER_DEADLINE, NULL));
    assert_step(&s, "c", SG_STEP_COMPENSATING);
    assert_step(&s, "d", SG_STEP_SKIPPED);
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/c/undo/1");
    assert_null(sim_timer(&s, SG_TIMER_STEP_TIMEOUT, "c"));
    assert_non_null(strstr(sg_saga_reason(s.saga), "deadline"));
    assert_int_equal(sg_saga_deadline_ms(s.saga), 0);
    /* the late reply of c's command changes nothing */
    OK(sim_reply_to(&s, "c", "s1/c/do/1", true, "{}"));
    assert_true(s.last_ignored);
    close_sim(&s);
}

static void test_deadline_past_the_pivot_fails_the_saga(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_ok(&s, "piv"));
    OK(sim_fire(&s, SG_TIMER_DEADLINE, NULL));
    assert_saga(&s, SG_SAGA_FAILED);
    assert_step(&s, "e", SG_STEP_TIMED_OUT);
    assert_int_equal(sim_first_undo(&s, "a"), -1);
    /* retried, it goes on without a deadline */
    OK(sim_operator_retry(&s));
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/e/do/2");
    OK(sim_ok(&s, "e"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    close_sim(&s);
}

static void test_abort_while_running_compensates_the_step_in_flight(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_ok(&s, "b"));
    OK(sim_abort(&s, "customer cancelled"));
    assert_false(s.last_ignored);
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/c/undo/1");
    assert_string_equal(sg_saga_reason(s.saga), "aborted: customer cancelled");
    assert_null(sim_timer(&s, SG_TIMER_DEADLINE, NULL));
    OK(sim_ok(&s, "c"));
    OK(sim_ok(&s, "a"));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    close_sim(&s);
}

static void test_abort_while_the_pivot_is_in_flight_fails_the_saga(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_abort(&s, "stop"));
    assert_saga(&s, SG_SAGA_FAILED); /* the pivot may have happened: nothing is undone */
    assert_step(&s, "piv", SG_STEP_TIMED_OUT);
    assert_int_equal(sim_first_undo(&s, "a"), -1);
    assert_non_null(strstr(sg_saga_reason(s.saga), "outcome of a pivot step is unknown"));
    close_sim(&s);
}

/* Brings a fresh saga of DEF_PIVOT to 'status'. */
static void reach(sim_t *s, sg_saga_status_t status) {
    OK(sim_start(s, "s1", NULL, 3));
    OK(sim_ok(s, "a"));
    switch (status) {
    case SG_SAGA_COMPENSATING: OK(sim_fail(s, "piv", false)); break;
    case SG_SAGA_COMPENSATED: OK(sim_fail(s, "piv", false)); OK(sim_ok(s, "a")); break;
    case SG_SAGA_COMPLETED: OK(sim_ok(s, "piv")); OK(sim_ok(s, "e")); break;
    case SG_SAGA_FAILED: OK(sim_ok(s, "piv")); exhaust(s, "e", false, false); break;
    default: break;
    }
    assert_saga(s, status);
}

static void test_abort_changes_nothing_unless_running(void **state) {
    (void)state;
    static const sg_saga_status_t statuses[] = {SG_SAGA_COMPENSATING, SG_SAGA_COMPENSATED,
                                                SG_SAGA_COMPLETED, SG_SAGA_FAILED};
    for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++) {
        sim_t s;
        open_sim(&s, DEF_PIVOT);
        reach(&s, statuses[k]);
        int ncmds = s.ncmds;
        OK(sim_abort(&s, "stop"));
        assert_true(s.last_ignored); /* the simulator checks the state is unchanged */
        assert_non_null(strstr(s.last_ignored_reason, sg_saga_status_str(statuses[k])));
        assert_int_equal(s.ncmds, ncmds);
        close_sim(&s);
    }
}

static void test_abort_past_the_pivot_is_ignored(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    OK(sim_start(&s, "s1", NULL, 1));
    OK(sim_ok(&s, "a"));
    OK(sim_ok(&s, "piv"));
    OK(sim_abort(&s, "too late"));
    assert_true(s.last_ignored);
    assert_non_null(strstr(s.last_ignored_reason, "pivot"));
    OK(sim_ok(&s, "e"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    close_sim(&s);
}

/* ---- operator retry ---- */

static void test_operator_retry_resumes_a_stuck_compensation_with_fresh_attempts(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(ok_a(&s));
    OK(sim_fail(&s, "b", false));
    exhaust(&s, "a", false, true);
    assert_saga(&s, SG_SAGA_FAILED);
    OK(sim_operator_retry(&s));
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/4"); /* ids stay unique */
    OK(sim_fail(&s, "a", true)); /* a fresh budget: retried again */
    assert_non_null(sim_timer(&s, SG_TIMER_UNDO_RETRY_DUE, "a"));
    OK(sim_fire(&s, SG_TIMER_UNDO_RETRY_DUE, "a"));
    OK(sim_ok(&s, "a"));
    assert_saga(&s, SG_SAGA_COMPENSATED);
    close_sim(&s);
}

static void test_operator_retry_resumes_a_stuck_step_past_the_pivot(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    reach(&s, SG_SAGA_FAILED);
    char cur[64];
    sg_saga_current_steps(s.saga, cur, sizeof cur);
    assert_string_equal(cur, "e");
    OK(sim_operator_retry(&s));
    assert_saga(&s, SG_SAGA_RUNNING);
    assert_step(&s, "e", SG_STEP_RUNNING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/e/do/4");
    OK(sim_ok(&s, "e"));
    assert_saga(&s, SG_SAGA_COMPLETED);
    close_sim(&s);
}

static void test_operator_retry_changes_nothing_unless_failed(void **state) {
    (void)state;
    static const sg_saga_status_t statuses[] = {SG_SAGA_RUNNING, SG_SAGA_COMPENSATING,
                                                SG_SAGA_COMPENSATED, SG_SAGA_COMPLETED};
    for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++) {
        sim_t s;
        open_sim(&s, DEF_PIVOT);
        reach(&s, statuses[k]);
        OK(sim_operator_retry(&s));
        assert_true(s.last_ignored);
        assert_non_null(strstr(s.last_ignored_reason, "only a failed saga"));
        close_sim(&s);
    }
}

/* ---- stale inputs ---- */

typedef enum { REPLY, TIMER, START } stale_kind_t;

static void test_late_duplicate_and_stale_inputs_change_nothing_but_the_history(void **state) {
    (void)state;
    static const struct {
        const char *what;
        stale_kind_t kind;
        const char *step, *causation;
        sg_timer_kind_t timer;
        int attempt;
        const char *reason; /* part of the recorded reason */
    } cases[] = {
        {"late reply to an earlier attempt", REPLY, "b", "s1/b/do/1", 0, 0, "waits for a reply to \"s1/b/do/2\""},
        {"duplicate reply to a finished step", REPLY, "a", "s1/a/do/1", 0, 0, "waits for no reply"},
        {"wrong causation id", REPLY, "b", "s1/zz/do/2", 0, 0, "not to \"s1/zz/do/2\""},
        {"wrong step", REPLY, "c", "s1/b/do/2", 0, 0, "step \"c\" is pending"},
        {"unknown step", REPLY, "nope", "s1/nope/do/1", 0, 0, "unknown step \"nope\""},
        {"timeout of an earlier attempt", TIMER, "b", NULL, SG_TIMER_STEP_TIMEOUT, 1, "stale step_timeout"},
        {"retry due while in flight", TIMER, "b", NULL, SG_TIMER_RETRY_DUE, 2, "waits for no retry"},
        {"compensation timer while running", TIMER, "a", NULL, SG_TIMER_UNDO_TIMEOUT, 1, "stale compensation_timeout"},
        {"timer of an unknown step", TIMER, "nope", NULL, SG_TIMER_STEP_TIMEOUT, 1, "unknown step"},
        {"second start", START, NULL, NULL, 0, 0, "already exists"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sim_t s;
        open_sim(&s, DEF_LINEAR);
        OK(sim_start(&s, "s1", "{\"x\":1}", 7));
        OK(sim_reply(&s, "a", true, "{\"ref\":\"R\"}"));
        OK(sim_fail(&s, "b", true));
        OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "b")); /* b waits for s1/b/do/2 */
        size_t nhist = json_array_size(s.history);
        if (cases[k].kind == REPLY)
            OK(sim_reply_to(&s, cases[k].step, cases[k].causation, true, "{}"));
        else if (cases[k].kind == TIMER) {
            sg_input_t in = {.kind = SG_INPUT_TIMER, .timer = cases[k].timer,
                             .step = cases[k].step, .attempt = cases[k].attempt};
            OK(sim_apply(&s, &in));
        } else
            OK(sim_start(&s, "s1", "{\"x\":1}", 7));
        if (!s.last_ignored || !strstr(s.last_ignored_reason, cases[k].reason))
            fail_msg("%s: ignored %d, reason \"%s\"", cases[k].what, s.last_ignored, s.last_ignored_reason);
        assert_int_equal(json_array_size(s.history), nhist + 1);
        OK(sim_ok(&s, "b")); /* and the saga goes on */
        assert_false(s.last_ignored);
        close_sim(&s);
    }
}

static void test_inputs_after_the_saga_finished_change_nothing(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_PIVOT);
    reach(&s, SG_SAGA_COMPLETED);
    OK(sim_reply_to(&s, "e", "s1/e/do/1", true, "{}"));
    assert_true(s.last_ignored);
    assert_non_null(strstr(s.last_ignored_reason, "the saga is completed"));
    sg_input_t deadline = {.kind = SG_INPUT_TIMER, .timer = SG_TIMER_DEADLINE};
    OK(sim_apply(&s, &deadline));
    assert_true(s.last_ignored);
    close_sim(&s);
}

/* ---- templates ---- */

static void test_unrenderable_template_fails_the_step_with_the_reason(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_ok(&s, "a")); /* no "ref" in the result: b's data cannot be rendered */
    assert_step(&s, "b", SG_STEP_FAILED);
    assert_int_equal(sim_cmd_count(&s, "b", false), 0);
    const json_t *err = sg_saga_step_error(s.saga, 1);
    assert_string_equal(json_string_value(json_object_get(err, "code")), "template");
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "$.steps.a.ref"));
    assert_saga(&s, SG_SAGA_COMPENSATING);
    assert_string_equal(sim_fx_cmd(&s, 0)->id, "s1/a/undo/1");
    assert_true(json_is_null(json_object_get(sim_fx_cmd(&s, 0)->data, "ref")));
    close_sim(&s);
}

/* ---- envelope details ---- */

static void test_replyto_is_the_reply_channel_of_the_command_transport(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    assert_string_equal(sim_fx_cmd(&s, 0)->replyto, "kafka:saga.replies");
    OK(sim_reply(&s, "a", true, "{\"ref\":1}"));
    assert_string_equal(sim_fx_cmd(&s, 0)->replyto, "amqp:/saga.replies");
    close_sim(&s);
    /* without a RabbitMQ reply channel, the Kafka one */
    open_sim(&s, DEF_LINEAR);
    s.env.reply_to_amqp = NULL;
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    OK(sim_reply(&s, "a", true, "{\"ref\":1}"));
    assert_string_equal(sim_fx_cmd(&s, 0)->replyto, "kafka:saga.replies");
    close_sim(&s);
}

static void test_traceparent_keeps_the_trace_id_with_a_new_span_per_command(void **state) {
    (void)state;
    static const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    sim_t s;
    open_sim(&s, DEF_GROUP);
    sg_input_t in = {.kind = SG_INPUT_START, .saga_id = "s1", .traceparent = tp, .seed = 5};
    OK(sim_apply(&s, &in));
    assert_string_equal(sg_saga_traceparent(s.saga), tp);
    OK(sim_ok(&s, "a"));
    char spans[3][17];
    for (int k = 0; k < 3; k++) {
        const char *c = sim_fx_cmd(&s, k)->traceparent;
        assert_int_equal(strlen(c), 55);
        assert_memory_equal(c, tp, 36);          /* version and trace id */
        assert_string_equal(c + 52, "-01");      /* flags */
        snprintf(spans[k], sizeof spans[k], "%.16s", c + 36);
        assert_string_not_equal(spans[k], "00f067aa0ba902b7");
    }
    assert_string_not_equal(spans[0], spans[1]);
    assert_string_not_equal(spans[1], spans[2]);
    close_sim(&s);
    /* without one, the saga gets a trace of its own */
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", NULL, 5));
    assert_int_equal(strlen(sg_saga_traceparent(s.saga)), 55);
    assert_memory_equal(sg_saga_traceparent(s.saga), "00-", 3);
    close_sim(&s);
}

/* ---- purity ---- */

static char *run_script(uint64_t seed) {
    sim_t s;
    open_sim(&s, DEF_GROUP);
    OK(sim_start(&s, "s1", "{\"k\":1}", seed));
    OK(sim_ok(&s, "a"));
    OK(sim_fail(&s, "p", true));
    OK(sim_fire(&s, SG_TIMER_RETRY_DUE, "p"));
    OK(sim_fire(&s, SG_TIMER_STEP_TIMEOUT, "q"));
    OK(sim_fail(&s, "r", false));
    OK(sim_ok(&s, "p"));
    json_t *all = json_pack("{s:o,s:O,s:O}", "state", sg_saga_to_json(s.saga), "history",
                            s.history, "events", s.events);
    json_object_set_new(all, "last", sg_effects_to_json(s.fx));
    char *text = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(all);
    close_sim(&s);
    return text;
}

static void test_same_inputs_give_the_same_result_byte_for_byte(void **state) {
    (void)state;
    char *one = run_script(42), *two = run_script(42), *other = run_script(43);
    assert_string_equal(one, two);
    assert_string_not_equal(one, other); /* the seed drives spans and jitter */
    free(one);
    free(two);
    free(other);
}

static void test_calls_that_make_no_sense_are_refused(void **state) {
    (void)state;
    sim_t s;
    open_sim(&s, DEF_LINEAR);
    assert_int_equal(sim_ok(&s, "a"), SG_ERR_INVALID); /* no saga yet */
    OK(sim_start(&s, "s1", "{\"x\":1}", 7));
    sg_input_t bad = {.kind = SG_INPUT_REPLY, .step = "a", .outcome = SG_OUTCOME_SUCCESS};
    assert_int_equal(sim_apply(&s, &bad), SG_ERR_INVALID); /* no causation id */
    sg_def_t *other = sim_load_def(DEF_PIVOT);
    sg_saga_t *out = NULL;
    sg_effects_t *fx = NULL;
    char err[256];
    sg_input_t abort_in = {.kind = SG_INPUT_ABORT};
    assert_int_equal(sg_engine_apply(other, s.saga, &abort_in, 0, &s.env, &out, &fx, err, sizeof err),
                     SG_ERR_INVALID);
    assert_null(out);
    assert_non_null(strstr(err, "runs definition"));
    sg_def_destroy(other);
    close_sim(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_sends_the_first_command_with_rendered_data),
        cmocka_unit_test(test_steps_run_in_order_and_results_merge_into_the_context),
        cmocka_unit_test(test_parallel_group_sends_all_members_at_once_and_waits_for_all),
        cmocka_unit_test(test_retryable_failure_is_retried_with_backoff_up_to_max_attempts),
        cmocka_unit_test(test_backoff_is_exponential_capped_and_jittered),
        cmocka_unit_test(test_timeout_is_retried_then_times_the_step_out),
        cmocka_unit_test(test_non_retryable_failure_fails_the_step_at_once),
        cmocka_unit_test(test_failure_of_the_first_step_compensates_nothing),
        cmocka_unit_test(test_failed_step_compensates_in_reverse_order_of_completion),
        cmocka_unit_test(test_timed_out_step_is_compensated_with_missing_fields_as_null),
        cmocka_unit_test(test_step_that_failed_after_an_earlier_timeout_is_compensated),
        cmocka_unit_test(test_parallel_group_members_are_compensated_together),
        cmocka_unit_test(test_compensation_is_retried_on_every_failure_until_it_succeeds),
        cmocka_unit_test(test_compensation_out_of_attempts_fails_the_saga),
        cmocka_unit_test(test_failure_in_group_waits_for_in_flight_siblings_then_compensates),
        cmocka_unit_test(test_failure_in_group_stops_the_retries_of_siblings),
        cmocka_unit_test(test_after_the_pivot_every_failure_is_retried_then_the_saga_fails),
        cmocka_unit_test(test_pivot_failure_compensates_the_steps_before_it),
        cmocka_unit_test(test_pivot_with_unknown_outcome_fails_the_saga),
        cmocka_unit_test(test_deadline_compensates_including_the_step_in_flight),
        cmocka_unit_test(test_deadline_past_the_pivot_fails_the_saga),
        cmocka_unit_test(test_abort_while_running_compensates_the_step_in_flight),
        cmocka_unit_test(test_abort_while_the_pivot_is_in_flight_fails_the_saga),
        cmocka_unit_test(test_abort_changes_nothing_unless_running),
        cmocka_unit_test(test_abort_past_the_pivot_is_ignored),
        cmocka_unit_test(test_operator_retry_resumes_a_stuck_compensation_with_fresh_attempts),
        cmocka_unit_test(test_operator_retry_resumes_a_stuck_step_past_the_pivot),
        cmocka_unit_test(test_operator_retry_changes_nothing_unless_failed),
        cmocka_unit_test(test_late_duplicate_and_stale_inputs_change_nothing_but_the_history),
        cmocka_unit_test(test_inputs_after_the_saga_finished_change_nothing),
        cmocka_unit_test(test_unrenderable_template_fails_the_step_with_the_reason),
        cmocka_unit_test(test_replyto_is_the_reply_channel_of_the_command_transport),
        cmocka_unit_test(test_traceparent_keeps_the_trace_id_with_a_new_span_per_command),
        cmocka_unit_test(test_same_inputs_give_the_same_result_byte_for_byte),
        cmocka_unit_test(test_calls_that_make_no_sense_are_refused),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
