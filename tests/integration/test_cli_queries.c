/* sagactl's read-only commands against a real PostgreSQL: definitions,
 * list, show, stuck and stats over sagas driven by the engine into every
 * state (completed, compensated, failed, running, compensating), in text
 * and in JSON (parsed and checked field by field), and the exit status and
 * message of every error case: no database setting, an unreachable
 * database, an unknown saga, bad filter values, unknown options. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testdb.h"
#include "cli_fixture.h"

#define LONG_ID "a-very-long-saga-id-0123456789-0123456789-0123456789-0123456789"

static const struct {
    const char *id;
    const char *status;
    int64_t (*make)(const char *id);
} SAGAS[] = {
    {"s-completed", "completed", fx_completed},
    {"s-compensated", "compensated", fx_compensated},
    {"s-failed", "failed", fx_failed},
    {"s-running", "running", fx_running},
    {"s-compensating", "compensating", fx_compensating},
};
#define NSAGAS (sizeof SAGAS / sizeof SAGAS[0])
static int64_t versions[NSAGAS];

static int group_setup(void **state) {
    if (fx_setup(state) != 0)
        return -1;
    for (size_t i = 0; i < NSAGAS; i++)
        versions[i] = SAGAS[i].make(SAGAS[i].id);
    fx_start("o-1", "other");
    fx_start(LONG_ID, "shop");
    /* s-running has not changed for 10 minutes. */
    return testdb_exec("UPDATE sagas SET updated_at = now() - interval '10 minutes'"
                       " WHERE id = 's-running'");
}

static const json_t *find_by_id(const json_t *arr, const char *id) {
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(fx_str(v, "id"), id)) return v;
    return NULL;
}

/* ---- definitions ---- */

static void test_definitions_lists_each_version_with_hash_and_running_count(void **state) {
    (void)state;
    cli_run_t r = CLI("definitions", "--json");
    fx_expect_rc(&r, 0);
    json_t *arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 2);
    const json_t *shop = json_array_get(arr, 1);
    assert_string_equal(fx_str(shop, "name"), "shop");
    assert_int_equal(json_integer_value(json_object_get(shop, "version")), 1);
    assert_string_equal(fx_str(shop, "sha256"), sg_defcache_latest(fx.dc, "shop")->sha256);
    /* running, compensating and the long one are unfinished */
    assert_int_equal(json_integer_value(json_object_get(shop, "running")), 3);
    assert_true(fx_is_rfc3339_utc(fx_str(shop, "created_at")));
    json_decref(arr);
    fx_free(&r);

    r = CLI("definitions");
    fx_expect_rc(&r, 0);
    char line[512];
    assert_true(strncmp(r.out, "NAME", 4) == 0);
    fx_line_with(r.out, sg_defcache_latest(fx.dc, "shop")->sha256, line, sizeof line);
    assert_true(strncmp(line, "shop ", 5) == 0);
    assert_non_null(strstr(line, " 3 "));
    fx_free(&r);
}

/* ---- list ---- */

static void test_list_json_is_every_saga_newest_change_first(void **state) {
    (void)state;
    cli_run_t r = CLI("list", "--json");
    fx_expect_rc(&r, 0);
    json_t *arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), NSAGAS + 2);
    for (size_t i = 0; i < NSAGAS; i++) {
        const json_t *s = find_by_id(arr, SAGAS[i].id);
        assert_non_null(s);
        assert_string_equal(fx_str(s, "type"), "shop");
        assert_string_equal(fx_str(s, "status"), SAGAS[i].status);
        assert_true(fx_is_rfc3339_utc(fx_str(s, "updated_at")));
        assert_int_equal(json_integer_value(json_object_get(s, "version")), versions[i]);
    }
    for (size_t i = 1; i < json_array_size(arr); i++)
        assert_true(strcmp(fx_str(json_array_get(arr, i - 1), "updated_at"),
                           fx_str(json_array_get(arr, i), "updated_at")) >= 0);
    /* the one made idle ten minutes ago is last */
    assert_string_equal(fx_str(json_array_get(arr, json_array_size(arr) - 1), "id"), "s-running");
    json_decref(arr);
    fx_free(&r);
}

static void test_list_filters_by_status_type_since_and_limit(void **state) {
    (void)state;
    cli_run_t r = CLI("list", "--status", "failed", "--json");
    fx_expect_rc(&r, 0);
    json_t *arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(fx_str(json_array_get(arr, 0), "id"), "s-failed");
    json_decref(arr);
    fx_free(&r);

    r = CLI("list", "--type", "other", "--json");
    fx_expect_rc(&r, 0);
    arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(fx_str(json_array_get(arr, 0), "id"), "o-1");
    json_decref(arr);
    fx_free(&r);

    r = CLI("list", "--since", "5m", "--json");
    fx_expect_rc(&r, 0);
    arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), NSAGAS + 1);
    assert_null(find_by_id(arr, "s-running"));
    json_decref(arr);
    fx_free(&r);

    r = CLI("list", "--limit", "2", "--json");
    fx_expect_rc(&r, 0);
    arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
    fx_free(&r);

    r = CLI("list", "--status", "running", "--type", "nothing");
    fx_expect_rc(&r, 0);
    assert_string_equal(r.out, "no sagas match\n");
    fx_free(&r);
}

/* The STATUS column starts at the same place on every line. */
static void test_list_text_is_an_aligned_table_with_ages(void **state) {
    (void)state;
    cli_run_t r = CLI("list");
    fx_expect_rc(&r, 0);
    const char *header_status = strstr(r.out, "STATUS");
    assert_non_null(header_status);
    size_t col = (size_t)(header_status - r.out);
    char line[512];
    for (size_t i = 0; i < NSAGAS; i++) {
        fx_line_with(r.out, SAGAS[i].id, line, sizeof line);
        assert_true(strlen(line) > col);
        assert_true(strncmp(line + col, SAGAS[i].status, strlen(SAGAS[i].status)) == 0);
        assert_non_null(strstr(line, "shop v1"));
        assert_non_null(strstr(line, "s ago"));
    }
    fx_line_with(r.out, "s-running", line, sizeof line);
    assert_non_null(strstr(line, "10m ago"));
    assert_non_null(strstr(r.out, LONG_ID)); /* not a terminal: nothing is cut */
    fx_free(&r);
}

static void test_list_shortens_long_ids_only_to_fit_the_width(void **state) {
    (void)state;
    cli_run_t r = fx_cli_env(testdb.conninfo, "80", (const char *const[]){"list", NULL});
    fx_expect_rc(&r, 0);
    assert_null(strstr(r.out, LONG_ID));
    char line[512];
    fx_line_with(r.out, "a-very-long-saga-id", line, sizeof line);
    assert_non_null(strstr(line, "\xe2\x80\xa6"));
    /* short ids stay whole */
    assert_non_null(strstr(r.out, "s-compensating"));
    fx_free(&r);
}

/* ---- show ---- */

static void check_show_json(size_t i) {
    cli_run_t r = CLI("show", SAGAS[i].id, "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    assert_string_equal(fx_str(doc, "id"), SAGAS[i].id);
    assert_string_equal(fx_str(doc, "type"), "shop");
    assert_int_equal(json_integer_value(json_object_get(doc, "definition_version")), 1);
    assert_string_equal(fx_str(doc, "status"), SAGAS[i].status);
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), versions[i]);
    assert_true(fx_is_rfc3339_utc(fx_str(doc, "created_at")));
    assert_true(fx_is_rfc3339_utc(fx_str(doc, "updated_at")));
    assert_string_equal(fx_str(json_object_get(doc, "input"), "order"), SAGAS[i].id);
    const json_t *steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 3);
    const char *names[] = {"reserve", "charge", "ship"};
    for (size_t k = 0; k < 3; k++) {
        const json_t *s = json_array_get(steps, k);
        assert_string_equal(fx_str(s, "name"), names[k]);
        assert_true(json_is_string(json_object_get(s, "status")));
        assert_true(json_is_integer(json_object_get(s, "attempts")));
    }
    const json_t *history = json_object_get(doc, "history");
    assert_true(json_array_size(history) > 3);
    assert_string_equal(fx_str(json_array_get(history, 0), "event"), "input.start");
    size_t k;
    const json_t *h;
    json_int_t seq = 0;
    const char *at = "";
    json_array_foreach(history, k, h) {
        assert_true(json_integer_value(json_object_get(h, "seq")) > seq);
        seq = json_integer_value(json_object_get(h, "seq"));
        assert_true(fx_is_rfc3339_utc(fx_str(h, "at")));
        assert_true(strcmp(fx_str(h, "at"), at) >= 0);
        at = fx_str(h, "at");
        assert_non_null(json_object_get(h, "step"));
        assert_non_null(json_object_get(h, "detail"));
    }
    json_decref(doc);
    fx_free(&r);
}

static void test_show_json_has_every_contract_field_for_each_state(void **state) {
    (void)state;
    for (size_t i = 0; i < NSAGAS; i++)
        check_show_json(i);
}

static const char *step_status(const json_t *doc, size_t k) {
    return fx_str(json_array_get(json_object_get(doc, "steps"), k), "status");
}

static void test_show_json_steps_follow_the_engine(void **state) {
    (void)state;
    cli_run_t r = CLI("show", "s-compensated", "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    assert_string_equal(step_status(doc, 0), "compensated");
    assert_string_equal(step_status(doc, 1), "failed");
    assert_string_equal(step_status(doc, 2), "skipped");
    const json_t *reserve = json_array_get(json_object_get(doc, "steps"), 0);
    assert_int_equal(json_integer_value(json_object_get(reserve, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(reserve, "compensation_attempts")), 1);
    assert_true(fx_is_rfc3339_utc(fx_str(reserve, "compensation_ended_at")));
    const json_t *charge = json_array_get(json_object_get(doc, "steps"), 1);
    assert_string_equal(fx_str(json_object_get(charge, "error"), "code"), "declined");
    assert_true(json_is_null(json_object_get(doc, "current_step")));
    json_decref(doc);
    fx_free(&r);

    r = CLI("show", "s-running", "--json");
    fx_expect_rc(&r, 0);
    doc = fx_json(&r);
    assert_string_equal(fx_str(doc, "current_step"), "charge");
    assert_string_equal(step_status(doc, 0), "succeeded");
    assert_string_equal(step_status(doc, 1), "running");
    assert_string_equal(step_status(doc, 2), "pending");
    json_decref(doc);
    fx_free(&r);
}

static void test_show_text_draws_the_timeline_of_attempts_and_compensations(void **state) {
    (void)state;
    cli_run_t r = CLI("show", "s-compensated");
    fx_expect_rc(&r, 0);
    char line[512];
    assert_non_null(strstr(r.out, "saga        s-compensated\n"));
    assert_non_null(strstr(r.out, "status      compensated"));
    assert_non_null(strstr(r.out, "\nTIMELINE"));
    assert_non_null(strstr(r.out, "\nHISTORY"));
    assert_non_null(strstr(r.out, "\nCONTEXT"));
    const char *timeline = strstr(r.out, "\nTIMELINE");
    fx_line_with(timeline, "do #1", line, sizeof line); /* reserve's command */
    assert_non_null(strstr(line, "success"));
    assert_non_null(strstr(line, "#"));
    fx_line_with(timeline, "undo #1", line, sizeof line);
    assert_non_null(strstr(line, "success"));
    assert_non_null(strstr(line, "<"));
    fx_line_with(timeline, "failure: declined", line, sizeof line);
    assert_non_null(strstr(line, "do #1"));
    fx_line_with(timeline, "  ship ", line, sizeof line);
    assert_non_null(strstr(line, "skipped"));
    fx_free(&r);
}

static void test_show_text_of_a_waiting_step_says_it_waits(void **state) {
    (void)state;
    cli_run_t r = CLI("show", "s-compensating");
    fx_expect_rc(&r, 0);
    char line[512];
    fx_line_with(strstr(r.out, "\nTIMELINE"), "undo #1", line, sizeof line);
    assert_non_null(strstr(line, "waiting for a reply"));
    assert_non_null(strstr(r.out, "current     reserve\n"));
    fx_free(&r);
}

/* ---- stuck ---- */

static void test_stuck_lists_unfinished_sagas_idle_longer_than_the_age(void **state) {
    (void)state;
    cli_run_t r = CLI("stuck", "--json");
    fx_expect_rc(&r, 0);
    json_t *arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(fx_str(json_array_get(arr, 0), "id"), "s-running");
    json_decref(arr);
    fx_free(&r);

    r = CLI("stuck", "--older-than", "1h");
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "no stuck sagas"));
    fx_free(&r);

    r = CLI("stuck", "--older-than", "1s");
    fx_expect_rc(&r, 0);
    char line[512];
    assert_true(strncmp(r.out, "ID", 2) == 0);
    fx_line_with(r.out, "s-running", line, sizeof line);
    assert_non_null(strstr(line, "10m ago"));
    assert_null(strstr(r.out, "s-completed"));
    assert_null(strstr(r.out, "s-failed"));
    fx_free(&r);
}

/* ---- stats ---- */

static json_int_t count_of(const json_t *counts, const char *type, const char *status) {
    size_t i;
    const json_t *c;
    json_array_foreach(counts, i, c) {
        if (!strcmp(fx_str(c, "type"), type) && !strcmp(fx_str(c, "status"), status))
            return json_integer_value(json_object_get(c, "count"));
    }
    return 0;
}

static void test_stats_counts_by_type_and_status_and_ended_per_minute(void **state) {
    (void)state;
    cli_run_t r = CLI("stats", "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    const json_t *counts = json_object_get(doc, "counts");
    assert_int_equal(count_of(counts, "shop", "completed"), 1);
    assert_int_equal(count_of(counts, "shop", "compensated"), 1);
    assert_int_equal(count_of(counts, "shop", "failed"), 1);
    assert_int_equal(count_of(counts, "shop", "running"), 2);
    assert_int_equal(count_of(counts, "shop", "compensating"), 1);
    assert_int_equal(count_of(counts, "other", "running"), 1);
    const json_t *hour = json_object_get(doc, "finished_last_hour");
    assert_int_equal(json_integer_value(json_object_get(hour, "completed")), 1);
    assert_int_equal(json_integer_value(json_object_get(hour, "compensated")), 1);
    assert_int_equal(json_integer_value(json_object_get(hour, "failed")), 1);
    const json_t *minutes = json_object_get(doc, "finished_per_minute");
    assert_true(json_array_size(minutes) >= 1);
    json_int_t sum = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(minutes, i, m) {
        assert_true(fx_is_rfc3339_utc(fx_str(m, "minute")));
        sum += json_integer_value(json_object_get(m, "completed")) +
               json_integer_value(json_object_get(m, "compensated")) +
               json_integer_value(json_object_get(m, "failed"));
    }
    assert_int_equal(sum, 3);
    json_decref(doc);
    fx_free(&r);

    r = CLI("stats");
    fx_expect_rc(&r, 0);
    char line[512];
    fx_line_with(r.out, "  shop ", line, sizeof line);
    /* running compensating completed compensated failed total */
    int counts_text[6];
    assert_int_equal(sscanf(line, " shop %d %d %d %d %d %d", &counts_text[0], &counts_text[1],
                            &counts_text[2], &counts_text[3], &counts_text[4], &counts_text[5]),
                     6);
    assert_int_equal(counts_text[0], 2);
    assert_int_equal(counts_text[1], 1);
    assert_int_equal(counts_text[5], 6);
    assert_non_null(strstr(r.out, "3 ended in the last hour"));
    fx_free(&r);
}

/* ---- errors ---- */

static void expect_usage_error(cli_run_t r, const char *message) {
    fx_expect_rc(&r, 2);
    assert_non_null(strstr(r.err, message));
    assert_non_null(strstr(r.err, "usage: sagactl"));
    assert_string_equal(r.out, "");
    fx_free(&r);
}

static void test_bad_filter_values_exit_2_with_the_usage(void **state) {
    (void)state;
    expect_usage_error(CLI("list", "--status", "done"), "unknown status 'done'");
    expect_usage_error(CLI("list", "--since", "5 minutes"), "invalid duration '5 minutes'");
    expect_usage_error(CLI("list", "--since", "-5m"), "invalid duration '-5m'");
    expect_usage_error(CLI("list", "--limit", "0"), "invalid limit '0'");
    expect_usage_error(CLI("list", "--limit", "ten"), "invalid limit 'ten'");
    expect_usage_error(CLI("stuck", "--older-than", "soon"), "invalid duration 'soon'");
    expect_usage_error(CLI("list", "--colour"), "unknown option '--colour'");
    expect_usage_error(CLI("show"), "which saga?");
    expect_usage_error(CLI("show", "a", "b"), "unexpected argument 'b'");
    expect_usage_error(CLI("dead-letters", "show", "x1"), "invalid dead letter id 'x1'");
    expect_usage_error(CLI("dead-letters", "burn"), "unknown subcommand 'burn'");
}

static void test_unknown_saga_exits_3(void **state) {
    (void)state;
    cli_run_t r = CLI("show", "no-such-saga");
    fx_expect_rc(&r, 3);
    assert_non_null(strstr(r.err, "no saga 'no-such-saga'"));
    assert_string_equal(r.out, "");
    fx_free(&r);
}

static void test_missing_database_setting_exits_2(void **state) {
    (void)state;
    const char *commands[] = {"definitions", "list", "show", "stuck", "stats", "dead-letters",
                              "abort", "retry"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        bool needs_id = !strcmp(commands[i], "show") || !strcmp(commands[i], "abort") ||
                        !strcmp(commands[i], "retry");
        const char *args[] = {commands[i], needs_id ? "x" : NULL, NULL};
        cli_run_t r = fx_cli_env(NULL, NULL, args);
        fx_expect_rc(&r, 2);
        assert_non_null(
            strstr(r.err, "no database given: use --db CONNINFO or set SAGA_DATABASE_URL"));
        fx_free(&r);
    }
}

static void test_unreachable_database_exits_1(void **state) {
    (void)state;
    const char *bad = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2";
    cli_run_t r = fx_cli_env(bad, NULL, (const char *const[]){"list", NULL});
    fx_expect_rc(&r, 1);
    assert_non_null(strstr(r.err, "sagactl: list: cannot connect to the database"));
    fx_free(&r);
    /* --db wins over the environment, before or after the command */
    r = fx_cli_env(NULL, NULL, (const char *const[]){"--db", bad, "stats", NULL});
    fx_expect_rc(&r, 1);
    assert_non_null(strstr(r.err, "cannot connect to the database"));
    fx_free(&r);
    const char *show_args[] = {"show", "s-failed", "--db", bad, NULL};
    r = fx_cli_env(testdb.conninfo, NULL, show_args);
    fx_expect_rc(&r, 1);
    fx_free(&r);
}

static void test_every_command_has_help(void **state) {
    (void)state;
    const char *commands[] = {"definitions", "list", "show", "abort", "retry",
                              "stuck", "stats", "dead-letters", "migrate", "validate"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        cli_run_t r = fx_cli_env(NULL, NULL, (const char *const[]){commands[i], "--help", NULL});
        char want[64];
        snprintf(want, sizeof want, "usage: sagactl %s", commands[i]);
        fx_expect_rc(&r, 0);
        assert_true(strncmp(r.out, want, strlen(want)) == 0);
        fx_free(&r);
    }
    cli_run_t r = fx_cli_env(NULL, NULL, (const char *const[]){"--help", NULL});
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "dead-letters"));
    fx_free(&r);
    r = fx_cli_env(NULL, NULL, (const char *const[]){"explode", NULL});
    fx_expect_rc(&r, 2);
    assert_non_null(strstr(r.err, "unknown command 'explode'"));
    fx_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions_lists_each_version_with_hash_and_running_count),
        cmocka_unit_test(test_list_json_is_every_saga_newest_change_first),
        cmocka_unit_test(test_list_filters_by_status_type_since_and_limit),
        cmocka_unit_test(test_list_text_is_an_aligned_table_with_ages),
        cmocka_unit_test(test_list_shortens_long_ids_only_to_fit_the_width),
        cmocka_unit_test(test_show_json_has_every_contract_field_for_each_state),
        cmocka_unit_test(test_show_json_steps_follow_the_engine),
        cmocka_unit_test(test_show_text_draws_the_timeline_of_attempts_and_compensations),
        cmocka_unit_test(test_show_text_of_a_waiting_step_says_it_waits),
        cmocka_unit_test(test_stuck_lists_unfinished_sagas_idle_longer_than_the_age),
        cmocka_unit_test(test_stats_counts_by_type_and_status_and_ended_per_minute),
        cmocka_unit_test(test_bad_filter_values_exit_2_with_the_usage),
        cmocka_unit_test(test_unknown_saga_exits_3),
        cmocka_unit_test(test_missing_database_setting_exits_2),
        cmocka_unit_test(test_unreachable_database_exits_1),
        cmocka_unit_test(test_every_command_has_help),
    };
    return cmocka_run_group_tests(tests, group_setup, fx_teardown);
}
