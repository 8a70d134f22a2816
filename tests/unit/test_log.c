/* Log lines: one JSON object per line with the saga's fields, text when
 * asked, nothing below the threshold, registered secrets masked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga/log.h"

static char *capture(sg_log_format_t fmt, sg_log_level_t threshold, sg_log_level_t level,
                     const sg_log_ctx_t *ctx, const char *msg) {
    /* static: the stream writes through these pointers until fclose */
    static char *buf;
    static size_t len;
    buf = NULL;
    len = 0;
    FILE *out = open_memstream(&buf, &len);
    sg_log_init(fmt, threshold, out);
    sg_log(level, ctx, "%s", msg);
    sg_log_init(SG_LOG_JSON, SG_LOG_INFO, NULL);
    fclose(out);
    return buf;
}

static void test_json_line_carries_saga_fields(void **state) {
    (void)state;
    sg_log_ctx_t ctx = {"s-1", "order_fulfillment", "charge_payment",
                        "4bf92f3577b34da6a3ce929d0e0e4736"};
    char *line = capture(SG_LOG_JSON, SG_LOG_INFO, SG_LOG_WARN, &ctx, "a \"quoted\"\nmessage");
    assert_non_null(strchr(line, '\n'));
    assert_int_equal(strchr(line, '\n') - line + 1, (long)strlen(line)); /* one line */
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "a \"quoted\"\nmessage");
    assert_string_equal(json_string_value(json_object_get(o, "saga_id")), "s-1");
    assert_string_equal(json_string_value(json_object_get(o, "saga_type")), "order_fulfillment");
    assert_string_equal(json_string_value(json_object_get(o, "step")), "charge_payment");
    assert_string_equal(json_string_value(json_object_get(o, "trace_id")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_non_null(json_string_value(json_object_get(o, "time")));
    json_decref(o);
    free(line);
}

static void test_text_format_and_threshold(void **state) {
    (void)state;
    sg_log_ctx_t ctx = {"s-2", NULL, NULL, NULL};
    char *line = capture(SG_LOG_TEXT, SG_LOG_INFO, SG_LOG_INFO, &ctx, "hello");
    assert_non_null(strstr(line, " info  hello saga_id=s-2\n"));
    free(line);
    line = capture(SG_LOG_JSON, SG_LOG_WARN, SG_LOG_INFO, NULL, "dropped");
    assert_true(line == NULL || line[0] == '\0');
    free(line);
}

static void test_registered_secrets_are_masked_wherever_they_appear(void **state) {
    (void)state;
    sg_log_add_secret("hunter2");
    sg_log_add_secret("s3cr3t-token");
    sg_log_add_secret("pw"); /* too short to mask */
    char *line = capture(SG_LOG_TEXT, SG_LOG_INFO, SG_LOG_ERROR, NULL,
                         "invalid percent-encoded token: \"hunter2\" and s3cr3t-tokens, pw");
    assert_null(strstr(line, "hunter2"));
    assert_null(strstr(line, "s3cr3t-token"));
    assert_non_null(strstr(line, "token: \"***\" and ***s, pw\n"));
    free(line);
    char buf[16];
    sg_log_scrub("a hunter2 b hunter2 c", buf, sizeof buf);
    assert_string_equal(buf, "a *** b *** c");
    sg_log_scrub("hunter2hunter2hunter2hunter2", buf, 8);
    assert_string_equal(buf, "*******");
    sg_log_clear_secrets();
    line = capture(SG_LOG_TEXT, SG_LOG_INFO, SG_LOG_ERROR, NULL, "hunter2");
    assert_non_null(strstr(line, "hunter2"));
    free(line);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_line_carries_saga_fields),
        cmocka_unit_test(test_text_format_and_threshold),
        cmocka_unit_test(test_registered_secrets_are_masked_wherever_they_appear),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
