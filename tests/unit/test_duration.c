/* Durations: "<number><ms|s|m|h>" in whole positive milliseconds, and
 * their shortest exact written form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "saga/def.h"

static void test_units_and_decimals_parse_to_milliseconds(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"1ms", 1}, {"250ms", 250}, {"30s", 30000}, {"1.5s", 1500}, {"0.001s", 1},
        {"15m", 900000}, {"0.5m", 30000}, {"2h", 7200000}, {"1.25h", 4500000},
        {"007s", 7000}, {"1.000s", 1000}, {"8760h", 31536000000LL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        char err[128] = "";
        assert_int_equal(sg_duration_parse(ok[i].text, &ms, err, sizeof err), SG_OK);
        assert_int_equal(ms, ok[i].ms);
    }
}

static void test_bad_durations_are_refused_with_the_reason(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *err;
    } bad[] = {
        {"", "invalid duration \"\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"30", "invalid duration \"30\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"s", "invalid duration \"s\": expected <number><ms|s|m|h>, as in \"30s\""},
        {".5s", "invalid duration \".5s\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"1.s", "invalid duration \"1.s\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"1 s", "invalid duration \"1 s\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"1S", "invalid duration \"1S\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"+1s", "invalid duration \"+1s\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"1d", "invalid duration \"1d\": expected <number><ms|s|m|h>, as in \"30s\""},
        {"0ms", "invalid duration \"0ms\": must be greater than zero"},
        {"0.0h", "invalid duration \"0.0h\": must be greater than zero"},
        {"-1s", "invalid duration \"-1s\": must be greater than zero"},
        {"0.5ms", "invalid duration \"0.5ms\": not a whole number of milliseconds"},
        {"1.0001s", "invalid duration \"1.0001s\": not a whole number of milliseconds"},
        {"1.0000000001h", "invalid duration \"1.0000000001h\": not a whole number of milliseconds"},
        {"99999999999999999999ms", "invalid duration \"99999999999999999999ms\": too large"},
        {"300000h", "invalid duration \"300000h\": too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = -1;
        char err[128] = "";
        assert_int_equal(sg_duration_parse(bad[i].text, &ms, err, sizeof err), SG_ERR_INVALID);
        assert_string_equal(err, bad[i].err);
        assert_int_equal(ms, 0);
    }
}

static void test_format_writes_the_shortest_exact_form(void **state) {
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {1, "1ms"}, {1500, "1500ms"}, {2000, "2s"}, {90000, "90s"}, {120000, "2m"},
        {5400000, "90m"}, {7200000, "2h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        int64_t back = 0;
        sg_duration_format(cases[i].ms, buf, sizeof buf);
        assert_string_equal(buf, cases[i].text);
        assert_int_equal(sg_duration_parse(buf, &back, buf, sizeof buf), SG_OK);
        assert_int_equal(back, cases[i].ms);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_and_decimals_parse_to_milliseconds),
        cmocka_unit_test(test_bad_durations_are_refused_with_the_reason),
        cmocka_unit_test(test_format_writes_the_shortest_exact_form),
    };
    return cmocka_run_group_tests_name("duration", tests, NULL, NULL);
}
