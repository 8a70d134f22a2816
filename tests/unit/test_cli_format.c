/* sagactl's output helpers, compiled in from the program's sources: RFC 3339
 * UTC times, ages ("3m ago"), spans, aligned tables, and cutting a column
 * to fit a width with "…" counted in characters, not bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/common.c"
#include "cli/table.c"

static void test_times_are_rfc3339_utc_with_milliseconds(void **state) {
    (void)state;
    char buf[40];
    sg_cli_rfc3339(1700000000123LL, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
    sg_cli_rfc3339(0, buf, sizeof buf);
    assert_string_equal(buf, "");
    json_t *j = sg_cli_json_time(0);
    assert_true(json_is_null(j));
    json_decref(j);
    sg_cli_utc(1700000000999LL, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14 22:13:20 UTC");
}

static void test_ages_read_as_the_largest_whole_unit(void **state) {
    (void)state;
    const int64_t now = 1700000000000LL;
    const struct {
        int64_t ago_ms;
        const char *want;
    } rows[] = {{0, "0s ago"},           {59999, "59s ago"},        {60000, "1m ago"},
                {3599000, "59m ago"},     {3600000, "1h ago"},       {47 * 3600000LL, "47h ago"},
                {48 * 3600000LL, "2d ago"}, {-5000, "0s ago"}};
    char buf[32];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        sg_cli_age(now - rows[i].ago_ms, now, buf, sizeof buf);
        assert_string_equal(buf, rows[i].want);
    }
    sg_cli_age(0, now, buf, sizeof buf);
    assert_string_equal(buf, "-");
}

static void test_spans_keep_two_units_at_most(void **state) {
    (void)state;
    const struct {
        int64_t ms;
        const char *want;
    } rows[] = {{0, "0ms"},       {350, "350ms"},    {1250, "1.2s"},      {12500, "12s"},
                {184000, "3m04s"}, {3720000, "1h02m"}, {-3, "0ms"}};
    char buf[32];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        sg_cli_span(rows[i].ms, buf, sizeof buf);
        assert_string_equal(buf, rows[i].want);
    }
}

static void test_cut_counts_characters_and_ends_with_an_ellipsis(void **state) {
    (void)state;
    char buf[64];
    assert_int_equal(sg_table_width("h\xc3\xa9llo"), 5);
    sg_table_cut("abcdef", 6, buf, sizeof buf);
    assert_string_equal(buf, "abcdef");
    sg_table_cut("abcdef", 4, buf, sizeof buf);
    assert_string_equal(buf, "abc\xe2\x80\xa6");
    assert_int_equal(sg_table_width(buf), 4);
    sg_table_cut("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 3, buf, sizeof buf);
    assert_string_equal(buf, "\xc3\xa9\xc3\xa9\xe2\x80\xa6");
}

/* Prints a table into a string. */
static char *render(sg_table_t *t) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    sg_table_print(t, out, "");
    fclose(out);
    return text;
}

static void test_table_aligns_columns_and_numbers_right(void **state) {
    (void)state;
    unsetenv("COLUMNS");
    const char *headers[] = {"NAME", "N", "NOTE"};
    sg_table_t *t = sg_table_new(3, headers);
    sg_table_align_right(t, 1);
    const char *r1[] = {"a", "1", "x"}, *r2[] = {"longer", "100", NULL};
    sg_table_add(t, r1);
    sg_table_add(t, r2);
    char *text = render(t);
    assert_string_equal(text, "NAME      N  NOTE\n"
                              "a         1  x\n"
                              "longer  100  -\n");
    free(text);
    sg_table_destroy(t);
}

static void test_table_cuts_the_shrinkable_column_only_when_too_wide(void **state) {
    (void)state;
    const char *headers[] = {"ID", "STATUS"};
    sg_table_t *t = sg_table_new(2, headers);
    sg_table_shrinkable(t, 0, 6);
    const char *r1[] = {"0123456789abcdef", "running"};
    sg_table_add(t, r1);
    setenv("COLUMNS", "80", 1);
    char *text = render(t);
    assert_non_null(strstr(text, "0123456789abcdef  running"));
    free(text);
    setenv("COLUMNS", "20", 1); /* 16 + 2 + 7 = 25: cut the id by 5 */
    text = render(t);
    assert_non_null(strstr(text, "0123456789\xe2\x80\xa6  running\n"));
    free(text);
    setenv("COLUMNS", "5", 1); /* never below the minimum */
    text = render(t);
    assert_non_null(strstr(text, "01234\xe2\x80\xa6  running\n"));
    free(text);
    unsetenv("COLUMNS");
    sg_table_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times_are_rfc3339_utc_with_milliseconds),
        cmocka_unit_test(test_ages_read_as_the_largest_whole_unit),
        cmocka_unit_test(test_spans_keep_two_units_at_most),
        cmocka_unit_test(test_cut_counts_characters_and_ends_with_an_ellipsis),
        cmocka_unit_test(test_table_aligns_columns_and_numbers_right),
        cmocka_unit_test(test_table_cuts_the_shrinkable_column_only_when_too_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
