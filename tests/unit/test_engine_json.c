/* The engine's JSON forms: a saga's complete state (what the store keeps),
 * inputs (what the history records for replay) and effects. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "unit/engine_sim.h"

#define OK(x) assert_int_equal((x), SG_OK)

static const char *DEF =
    "{\"name\":\"grouped\",\"version\":3,\"timeout\":\"1h\","
    " \"defaults\":{\"timeout\":\"1s\",\"retry\":{\"max_attempts\":3,\"initial_backoff\":\"100ms\","
    "   \"max_backoff\":\"1s\",\"multiplier\":2}},"
    " \"steps\":["
    "  {\"name\":\"a\",\"command\":{\"type\":\"a.do\",\"channel\":\"kafka:a\",\"data\":{\"n\":\"$.input.n\"}},"
    "   \"compensation\":{\"type\":\"a.undo\",\"channel\":\"kafka:a\"}},"
    "  {\"name\":\"g\",\"parallel\":["
    "    {\"name\":\"p\",\"command\":{\"type\":\"p.do\",\"channel\":\"amqp:/p\"},"
    "     \"compensation\":{\"type\":\"p.undo\",\"channel\":\"amqp:/p\",\"retry\":{\"max_attempts\":2}}},"
    "    {\"name\":\"q\",\"command\":{\"type\":\"q.do\",\"channel\":\"kafka:q\"}}]},"
    "  {\"name\":\"z\",\"command\":{\"type\":\"z.do\",\"channel\":\"kafka:z\"}}]}";

static char *dump(json_t *j) {
    char *t = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return t;
}

/* to_json(from_json(to_json(saga))) is to_json(saga), byte for byte. */
static void assert_round_trip(const sg_saga_t *saga) {
    char *one = dump(sg_saga_to_json(saga));
    json_t *j = json_loads(one, 0, NULL);
    sg_saga_t *back = NULL;
    char err[256];
    OK(sg_saga_from_json(j, &back, err, sizeof err));
    char *two = dump(sg_saga_to_json(back));
    assert_string_equal(one, two);
    /* and the copy behaves like the original */
    sg_saga_t *copy = sg_saga_copy(back);
    char *three = dump(sg_saga_to_json(copy));
    assert_string_equal(one, three);
    free(one);
    free(two);
    free(three);
    json_decref(j);
    sg_saga_destroy(back);
    sg_saga_destroy(copy);
}

static void test_saga_state_round_trips_exactly_in_every_phase(void **state) {
    (void)state;
    sim_t s;
    sim_init(&s, sim_load_def(DEF));
    assert_non_null(s.def);
    OK(sim_start(&s, "order-1", "{\"n\":[1,2.5,\"x\",null,{\"deep\":true}]}", 0xfedcba9876543210ULL));
    assert_round_trip(s.saga);
    OK(sim_reply(&s, "a", true, "{\"r\":\"ü\"}"));
    assert_round_trip(s.saga); /* a parallel group in flight */
    OK(sim_fire(&s, SG_TIMER_STEP_TIMEOUT, "p"));
    assert_round_trip(s.saga); /* waiting for a retry, outcome unknown */
    OK(sim_fail(&s, "q", false));
    assert_int_equal(sg_saga_status(s.saga), SG_SAGA_COMPENSATING);
    assert_round_trip(s.saga); /* compensating p */
    OK(sim_fire(&s, SG_TIMER_UNDO_TIMEOUT, "p"));
    OK(sim_fire(&s, SG_TIMER_UNDO_RETRY_DUE, "p"));
    OK(sim_fire(&s, SG_TIMER_UNDO_TIMEOUT, "p"));
    assert_int_equal(sg_saga_status(s.saga), SG_SAGA_FAILED);
    assert_round_trip(s.saga); /* stuck in compensation, with errors */
    OK(sim_operator_retry(&s));
    OK(sim_ok(&s, "p"));
    OK(sim_ok(&s, "a"));
    assert_int_equal(sg_saga_status(s.saga), SG_SAGA_COMPENSATED);
    assert_round_trip(s.saga);
    sg_def_destroy(s.def);
    sim_release(&s);
}

static void test_saga_state_json_holds_what_the_store_needs(void **state) {
    (void)state;
    sim_t s;
    sim_init(&s, sim_load_def(DEF));
    OK(sim_start(&s, "order-1", "{\"n\":1}", 9));
    json_t *j = sg_saga_to_json(s.saga);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "order-1");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "grouped");
    assert_int_equal(json_integer_value(json_object_get(j, "definition_version")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "definition_sha256")), s.def->sha256);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "running");
    assert_int_equal(json_integer_value(json_object_get(j, "deadline_ms")), s.now + 3600000);
    assert_int_equal(json_array_size(json_object_get(j, "steps")), 4);
    json_t *step = json_array_get(json_object_get(j, "steps"), 0);
    assert_string_equal(json_string_value(json_object_get(step, "awaiting")), "order-1/a/do/1");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "rng"))), 16);
    assert_string_equal(sg_saga_id(s.saga), "order-1");
    assert_int_equal(sg_saga_def_version(s.saga), 3);
    assert_string_equal(sg_saga_def_sha256(s.saga), s.def->sha256);
    assert_int_equal(sg_saga_created_ms(s.saga), s.now);
    json_decref(j);
    sg_def_destroy(s.def);
    sim_release(&s);
}

static void test_broken_saga_states_are_refused(void **state) {
    (void)state;
    sim_t s;
    sim_init(&s, sim_load_def(DEF));
    OK(sim_start(&s, "order-1", "{\"n\":1}", 9));
    static const struct { const char *path, *value, *why; } cases[] = {
        {"status", "\"sleeping\"", "bad status"},
        {"steps", "{}", "\"steps\""},
        {"rng", "\"xyz\"", "bad rng"},
        {"rng", "12", "\"rng\""},
        {"format", "2", "bad format"},
        {"traceparent", "\"00-abc\"", "bad traceparent"},
        {"context", "[]", "\"context\""},
        {"events", "\"1\"", "\"events\""},
        {"step0.status", "\"asleep\"", "bad step status"},
        {"step0.do_attempt", "null", "\"do_attempt\""},
        {"step0.awaiting", "3", "\"awaiting\""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        json_t *j = sg_saga_to_json(s.saga);
        json_t *target = j;
        const char *key = cases[k].path;
        if (strncmp(key, "step0.", 6) == 0) {
            target = json_array_get(json_object_get(j, "steps"), 0);
            key += 6;
        }
        json_object_set_new(target, key, json_loads(cases[k].value, JSON_DECODE_ANY, NULL));
        sg_saga_t *out = (sg_saga_t *)1;
        char err[256] = "";
        assert_int_equal(sg_saga_from_json(j, &out, err, sizeof err), SG_ERR_INVALID);
        assert_null(out);
        if (!strstr(err, cases[k].why))
            fail_msg("%s: \"%s\" does not say %s", cases[k].path, err, cases[k].why);
        json_decref(j);
    }
    sg_saga_t *out = NULL;
    char err[256];
    json_t *arr = json_array();
    assert_int_equal(sg_saga_from_json(arr, &out, err, sizeof err), SG_ERR_INVALID);
    json_decref(arr);
    sg_def_destroy(s.def);
    sim_release(&s);
}

static void test_apply_refuses_a_damaged_state_instead_of_crashing(void **state) {
    (void)state;
    sim_t s;
    sim_init(&s, sim_load_def(DEF));
    OK(sim_start(&s, "order-1", "{\"n\":1}", 9));
    static const struct { const char *path, *value; } cases[] = {
        {"stage", "7"}, {"stage", "-1"}, {"status", "\"completed\""},
        {"step0.awaiting", "\"order-1/a/do/9\""}, {"step0.do_attempt", "12"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        json_t *j = sg_saga_to_json(s.saga);
        json_t *target = j;
        const char *key = cases[k].path;
        if (strncmp(key, "step0.", 6) == 0) {
            target = json_array_get(json_object_get(j, "steps"), 0);
            key += 6;
        }
        json_object_set_new(target, key, json_loads(cases[k].value, JSON_DECODE_ANY, NULL));
        sg_saga_t *damaged = NULL, *out = NULL;
        sg_effects_t *fx = NULL;
        char err[256];
        OK(sg_saga_from_json(j, &damaged, err, sizeof err));
        sg_input_t in = {.kind = SG_INPUT_ABORT};
        assert_int_equal(sg_engine_apply(s.def, damaged, &in, s.now, &s.env, &out, &fx, err, sizeof err),
                         SG_ERR_INVALID);
        assert_non_null(strstr(err, "broken state"));
        assert_null(out);
        sg_saga_destroy(damaged);
        json_decref(j);
    }
    sg_def_destroy(s.def);
    sim_release(&s);
}

/* ---- inputs ---- */

static void test_inputs_round_trip_through_json(void **state) {
    (void)state;
    json_t *data = json_loads("{\"code\":\"x\",\"message\":\"m\",\"retryable\":true}", 0, NULL);
    const sg_input_t inputs[] = {
        {.kind = SG_INPUT_START, .saga_id = "s/1", .seed = UINT64_MAX, .data = data,
         .traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {.kind = SG_INPUT_START, .saga_id = "s2", .seed = 0},
        {.kind = SG_INPUT_REPLY, .step = "a", .causation_id = "s/1/a/do/1",
         .outcome = SG_OUTCOME_FAILURE, .data = data},
        {.kind = SG_INPUT_REPLY, .step = "a", .causation_id = "c", .outcome = SG_OUTCOME_SUCCESS},
        {.kind = SG_INPUT_TIMER, .timer = SG_TIMER_STEP_TIMEOUT, .step = "a", .attempt = 3},
        {.kind = SG_INPUT_TIMER, .timer = SG_TIMER_UNDO_RETRY_DUE, .step = "b", .attempt = 12},
        {.kind = SG_INPUT_TIMER, .timer = SG_TIMER_DEADLINE},
        {.kind = SG_INPUT_ABORT, .reason = "customer \"changed\" mind"},
        {.kind = SG_INPUT_ABORT},
        {.kind = SG_INPUT_RETRY, .reason = "fixed the card service"},
    };
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        json_t *j = sg_input_to_json(&inputs[k]);
        assert_non_null(j);
        sg_input_t back;
        char err[256];
        OK(sg_input_from_json(j, &back, err, sizeof err));
        json_t *again = sg_input_to_json(&back);
        char *a = dump(j), *b = dump(again);
        assert_string_equal(a, b);
        assert_int_equal(back.kind, inputs[k].kind);
        assert_true(back.seed == inputs[k].seed);
        assert_int_equal(back.attempt, inputs[k].attempt);
        assert_int_equal(back.timer, inputs[k].timer);
        assert_int_equal(back.outcome, inputs[k].outcome);
        free(a);
        free(b);
        sg_input_release(&back);
    }
    json_decref(data);
}

static void test_bad_input_json_is_refused_with_the_reason(void **state) {
    (void)state;
    static const struct { const char *json, *why; } cases[] = {
        {"{}", "unknown input kind"},
        {"{\"kind\":\"wake\"}", "unknown input kind \"wake\""},
        {"{\"kind\":\"start\"}", "no \"saga_id\""},
        {"{\"kind\":\"start\",\"saga_id\":\"s\",\"seed\":\"12\"}", "not 16 hex digits"},
        {"{\"kind\":\"start\",\"saga_id\":\"s\",\"seed\":\"000000000000000g\"}", "not 16 hex digits"},
        {"{\"kind\":\"start\",\"saga_id\":5}", "not a string"},
        {"{\"kind\":\"reply\",\"step\":\"a\",\"outcome\":\"success\"}", "no \"causation_id\""},
        {"{\"kind\":\"reply\",\"step\":\"a\",\"causation_id\":\"c\",\"outcome\":\"maybe\"}", "unknown outcome"},
        {"{\"kind\":\"timer\",\"timer\":\"alarm\",\"attempt\":1}", "unknown timer kind"},
        {"{\"kind\":\"timer\",\"timer\":\"retry_due\",\"step\":\"a\"}", "attempt"},
        {"{\"kind\":\"abort\",\"reason\":7}", "not a string"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        json_t *j = json_loads(cases[k].json, 0, NULL);
        assert_non_null(j);
        sg_input_t in;
        char err[256] = "";
        assert_int_equal(sg_input_from_json(j, &in, err, sizeof err), SG_ERR_INVALID);
        if (!strstr(err, cases[k].why))
            fail_msg("%s: \"%s\" does not say %s", cases[k].json, err, cases[k].why);
        assert_int_equal(in.kind, 0); /* released */
        json_decref(j);
    }
}

/* ---- names and effects ---- */

static void test_status_and_timer_names_parse_back(void **state) {
    (void)state;
    for (int k = SG_SAGA_RUNNING; k <= SG_SAGA_FAILED; k++)
        assert_int_equal(sg_saga_status_parse(sg_saga_status_str(k)), k);
    for (int k = SG_STEP_PENDING; k <= SG_STEP_SKIPPED; k++)
        assert_int_equal(sg_step_status_parse(sg_step_status_str(k)), k);
    for (int k = SG_TIMER_STEP_TIMEOUT; k <= SG_TIMER_DEADLINE; k++)
        assert_int_equal(sg_timer_kind_parse(sg_timer_kind_str(k)), k);
    assert_string_equal(sg_step_status_str(SG_STEP_TIMED_OUT), "timed_out");
    assert_string_equal(sg_timer_kind_str(SG_TIMER_UNDO_TIMEOUT), "compensation_timeout");
    assert_int_equal(sg_saga_status_parse("nap"), SG_SAGA_NONE);
    assert_int_equal(sg_step_status_parse(NULL), 0);
    assert_true(sg_saga_status_terminal(SG_SAGA_COMPENSATED));
    assert_false(sg_saga_status_terminal(SG_SAGA_FAILED));
}

static void test_effects_json_lists_every_effect_in_order(void **state) {
    (void)state;
    sim_t s;
    sim_init(&s, sim_load_def(DEF));
    OK(sim_start(&s, "o1", "{\"n\":1}", 9));
    json_t *arr = sg_effects_to_json(s.fx);
    assert_int_equal(json_array_size(arr), sg_effects_count(s.fx));
    static const char *want[] = {"history", "history", "event", "timer.arm", "history",
                                 "command", "history", "timer.arm"};
    assert_int_equal(json_array_size(arr), sizeof want / sizeof want[0]);
    for (size_t k = 0; k < json_array_size(arr); k++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(arr, k), "effect")), want[k]);
    json_t *cmd = json_array_get(arr, 5);
    assert_string_equal(json_string_value(json_object_get(cmd, "id")), "o1/a/do/1");
    assert_string_equal(json_string_value(json_object_get(cmd, "channel")), "kafka:a");
    json_t *input = json_object_get(json_object_get(json_array_get(arr, 0), "detail"), "input");
    assert_string_equal(json_string_value(json_object_get(input, "kind")), "start");
    json_decref(arr);
    assert_null(sg_effects_at(s.fx, 99));
    sg_def_destroy(s.def);
    sim_release(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_saga_state_round_trips_exactly_in_every_phase),
        cmocka_unit_test(test_saga_state_json_holds_what_the_store_needs),
        cmocka_unit_test(test_broken_saga_states_are_refused),
        cmocka_unit_test(test_apply_refuses_a_damaged_state_instead_of_crashing),
        cmocka_unit_test(test_inputs_round_trip_through_json),
        cmocka_unit_test(test_bad_input_json_is_refused_with_the_reason),
        cmocka_unit_test(test_status_and_timer_names_parse_back),
        cmocka_unit_test(test_effects_json_lists_every_effect_in_order),
    };
    return cmocka_run_group_tests_name("engine_json", tests, NULL, NULL);
}
