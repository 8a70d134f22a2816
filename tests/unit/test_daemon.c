/* The daemon's pure helpers: dead-letter reason classes (the label of
 * sagad_dead_letters_total) for every kind of refused message, trace ids
 * for log lines, and the test-only crash points (inert unless armed, exit
 * 137 at the Nth passage when armed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/sagad.h"

static const char *class_of(const char *msg, size_t max_bytes) {
    sg_envelope_t *env = NULL;
    char why[256];
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), max_bytes, &env, why, sizeof why),
                     SG_ERR_INVALID);
    assert_null(env);
    return sg_apply_reason_class(why);
}

static void test_every_kind_of_refused_message_has_a_reason_class(void **state) {
    (void)state;
    const struct {
        const char *msg;
        size_t max;
        const char *cls;
    } cases[] = {
        {"garbage", 0, "not_json"},
        {"", 0, "not_json"},
        {"\xff\xfe{}", 0, "not_utf8"},
        {"[1, 2]", 0, "not_cloudevent"},
        {"{\"specversion\":\"0.3\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"saga.start\"}", 0,
         "not_cloudevent"},
        {"{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"saga.start\"}", 0,
         "missing_attribute"},
        {"{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"saga.start\"}", 0,
         "missing_attribute"},
        {"{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"order.placed\"}", 0,
         "unknown_type"},
        {"{\"specversion\":\"1.0\",\"id\":7,\"source\":\"/s\",\"type\":\"saga.start\"}", 0,
         "invalid_attribute"},
        {"{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"saga.start\","
         "\"sagatype\":\"x\",\"data\":\"text\"}",
         0, "invalid_attribute"},
        {"{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"saga.start\","
         "\"sagatype\":\"x\"}",
         20, "too_large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(class_of(cases[i].msg, cases[i].max), cases[i].cls);
}

static void test_rejections_made_by_the_daemon_have_reason_classes(void **state) {
    (void)state;
    assert_string_equal(sg_apply_reason_class("unknown sagatype \"nope\""), "unknown_sagatype");
    assert_string_equal(sg_apply_reason_class("unknown sagaid \"s-1\""), "unknown_sagaid");
    assert_string_equal(sg_apply_reason_class("refused by the database: bad"), "refused");
    assert_string_equal(sg_apply_reason_class("something new"), "other");
}

static void test_trace_id_is_the_middle_of_a_valid_traceparent(void **state) {
    (void)state;
    char buf[33];
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_string_equal(sg_trace_id(tp, buf), "0af7651916cd43dd8448eb211c80319c");
    assert_null(sg_trace_id("00-zz", buf));
    assert_null(sg_trace_id(NULL, buf));
}

/* Runs 'passages' passages through 'point' in a child with the given
 * environment; returns its exit status and how many passages returned. */
static int crash_child(const char *armed, const char *after, const char *point, int passages,
                       int *returned) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (armed)
            setenv("SAGA_TEST_CRASH_POINT", armed, 1);
        else
            unsetenv("SAGA_TEST_CRASH_POINT");
        if (after)
            setenv("SAGA_TEST_CRASH_AFTER", after, 1);
        sg_log_init(SG_LOG_JSON, SG_LOG_ERROR, NULL);
        for (int i = 0; i < passages; i++) {
            sg_crash_point(point);
            if (write(fds[1], "x", 1) != 1)
                _exit(3);
        }
        _exit(0);
    }
    close(fds[1]);
    char c;
    *returned = 0;
    while (read(fds[0], &c, 1) == 1)
        (*returned)++;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_crash_points_are_inert_unless_armed(void **state) {
    (void)state;
    int returned;
    assert_int_equal(crash_child(NULL, NULL, "after_commit", 5, &returned), 0);
    assert_int_equal(returned, 5);
    assert_int_equal(crash_child("after_publish", NULL, "after_commit", 5, &returned), 0);
    assert_int_equal(returned, 5);
}

static void test_an_armed_crash_point_exits_137_at_the_nth_passage(void **state) {
    (void)state;
    int returned;
    assert_int_equal(crash_child("after_commit", "3", "after_commit", 5, &returned), 137);
    assert_int_equal(returned, 2);
    assert_int_equal(crash_child("after_publish", NULL, "after_publish", 5, &returned), 137);
    assert_int_equal(returned, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_of_refused_message_has_a_reason_class),
        cmocka_unit_test(test_rejections_made_by_the_daemon_have_reason_classes),
        cmocka_unit_test(test_trace_id_is_the_middle_of_a_valid_traceparent),
        cmocka_unit_test(test_crash_points_are_inert_unless_armed),
        cmocka_unit_test(test_an_armed_crash_point_exits_137_at_the_nth_passage),
    };
    return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
