/* Templates: path lookup (keys, indexes, nested arrays, missing values,
 * malformed paths) and rendering ($$ escape, copies of non-string values,
 * the error for a missing value, null for compensations). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "saga/def.h"

static json_t *context(void) {
    json_error_t jerr;
    json_t *ctx = json_loads(
        "{\"saga\": {\"id\": \"s-1\", \"type\": \"order\"},"
        " \"input\": {\"order_id\": 42, \"items\": [{\"sku\": \"a\"}, {\"sku\": \"b\"}],"
        "            \"grid\": [[1, 2], [3, [4, 5]]], \"none\": null, \"flag\": false,"
        "            \"dash-key\": \"d\"},"
        " \"steps\": {\"x\": [\"first\", \"second\"], \"charge\": {\"charge_id\": \"c-9\"}}}",
        0, &jerr);
    assert_non_null(ctx);
    return ctx;
}

static json_t *parse(const char *text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    assert_non_null(j);
    return j;
}

static void test_lookup_follows_keys_and_indexes(void **state) {
    (void)state;
    json_t *ctx = context();
    assert_string_equal(json_string_value(sg_template_lookup(ctx, "$.saga.id")), "s-1");
    assert_int_equal(json_integer_value(sg_template_lookup(ctx, "$.input.order_id")), 42);
    assert_string_equal(json_string_value(sg_template_lookup(ctx, "$.input.items[1].sku")), "b");
    assert_int_equal(json_integer_value(sg_template_lookup(ctx, "$.input.grid[1][1][0]")), 4);
    assert_string_equal(json_string_value(sg_template_lookup(ctx, "$.steps.x[0]")), "first");
    assert_string_equal(json_string_value(sg_template_lookup(ctx, "$.input.dash-key")), "d");
    assert_true(json_is_null(sg_template_lookup(ctx, "$.input.none")));
    assert_true(json_is_false(sg_template_lookup(ctx, "$.input.flag")));
    assert_ptr_equal(sg_template_lookup(ctx, "$.input"), json_object_get(ctx, "input"));
    json_decref(ctx);
}

static void test_lookup_of_a_missing_value_is_null(void **state) {
    (void)state;
    json_t *ctx = context();
    static const char *const missing[] = {
        "$.input.nope",          /* absent key */
        "$.input.items[2]",      /* index out of range */
        "$.input.items.sku",     /* key into an array */
        "$.input[0]",            /* index into an object */
        "$.input.order_id.x",    /* key into a number */
        "$.input.none.x",        /* key into null */
        "$.steps.x[0].y",        /* key into a string */
        "$.steps.unknown.id",    /* a step with no result yet */
    };
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
        assert_null(sg_template_lookup(ctx, missing[i]));
    json_decref(ctx);
}

static void test_malformed_paths_have_no_value(void **state) {
    (void)state;
    json_t *ctx = context();
    static const char *const malformed[] = {
        "$", "$.", "input.order_id", "$input", "$[0]", "$.input.", "$..input",
        "$.input[", "$.input.items[]", "$.input.items[-1]", "$.input.items[1x]",
        "$.input.items[0", "$.input.order id", "$.input.items[1234567890]", "",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        assert_null(sg_template_lookup(ctx, malformed[i]));
    assert_null(sg_template_lookup(ctx, NULL));
    assert_null(sg_template_lookup(NULL, "$.input"));
    json_decref(ctx);
}

static void render_equal(const char *tmpl_text, bool missing_as_null, const char *want_text) {
    json_t *ctx = context(), *tmpl = parse(tmpl_text), *want = parse(want_text), *out = NULL;
    char *before = json_dumps(tmpl, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char err[256] = "";
    assert_int_equal(sg_template_render(tmpl, ctx, missing_as_null, &out, err, sizeof err), SG_OK);
    if (!json_equal(out, want)) {
        char *got = json_dumps(out, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("rendered %s\nwant %s\n", got, want_text);
        free(got);
        fail();
    }
    /* the template is left as it was */
    char *after = json_dumps(tmpl, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(out);
    json_decref(want);
    json_decref(tmpl);
    json_decref(ctx);
}

static void test_render_replaces_references_in_objects_and_arrays(void **state) {
    (void)state;
    render_equal("{\"id\": \"$.saga.id\", \"order\": \"$.input.order_id\","
                 " \"skus\": [\"$.input.items[0].sku\", [\"$.input.items[1].sku\"]],"
                 " \"deep\": {\"first\": \"$.input.items[0]\"}, \"null\": \"$.input.none\"}",
                 false,
                 "{\"id\": \"s-1\", \"order\": 42, \"skus\": [\"a\", [\"b\"]],"
                 " \"deep\": {\"first\": {\"sku\": \"a\"}}, \"null\": null}");
}

static void test_render_double_dollar_is_a_literal_dollar(void **state) {
    (void)state;
    render_equal("{\"a\": \"$$\", \"b\": \"$$5 off\", \"c\": \"$$.input.order_id\","
                 " \"d\": \"$$$\"}",
                 false, "{\"a\": \"$\", \"b\": \"$5 off\", \"c\": \"$.input.order_id\", \"d\": \"$$\"}");
}

static void test_render_copies_other_values_as_they_are(void **state) {
    (void)state;
    render_equal("{\"n\": 1.5, \"i\": -3, \"t\": true, \"f\": false, \"z\": null,"
                 " \"s\": \"plain\", \"e\": \"\", \"dollar\": \"$\", \"mid\": \"cost $.input\","
                 " \"o\": {}, \"a\": [], \"sp\": \" $.input.order_id\"}",
                 false,
                 "{\"n\": 1.5, \"i\": -3, \"t\": true, \"f\": false, \"z\": null,"
                 " \"s\": \"plain\", \"e\": \"\", \"dollar\": \"$\", \"mid\": \"cost $.input\","
                 " \"o\": {}, \"a\": [], \"sp\": \" $.input.order_id\"}");
}

static void test_render_output_does_not_share_the_context(void **state) {
    (void)state;
    json_t *ctx = context(), *tmpl = parse("{\"items\": \"$.input.items\"}"), *out = NULL;
    char err[256];
    assert_int_equal(sg_template_render(tmpl, ctx, false, &out, err, sizeof err), SG_OK);
    json_array_clear(json_object_get(out, "items"));
    assert_int_equal(json_array_size(json_object_get(json_object_get(ctx, "input"), "items")), 2);
    json_decref(out);
    json_decref(tmpl);
    json_decref(ctx);
}

static void render_fails(const char *tmpl_text, const char *want_err) {
    json_t *ctx = context(), *tmpl = parse(tmpl_text), *out = NULL;
    char err[256] = "";
    assert_int_equal(sg_template_render(tmpl, ctx, false, &out, err, sizeof err), SG_ERR_TEMPLATE);
    assert_null(out);
    assert_string_equal(err, want_err);
    json_decref(tmpl);
    json_decref(ctx);
}

static void test_render_missing_value_fails_naming_path_and_place(void **state) {
    (void)state;
    render_fails("{\"refund\": {\"charge_id\": \"$.steps.charge.charge_idx\"}}",
                 "no value at \"$.steps.charge.charge_idx\" (for $.data.refund.charge_id)");
    render_fails("{\"list\": [1, \"$.input.items[5]\"]}",
                 "no value at \"$.input.items[5]\" (for $.data.list[1])");
    render_fails("{\"odd key\": \"$.steps.x[0].y\"}",
                 "no value at \"$.steps.x[0].y\" (for $.data[\"odd key\"])");
    render_fails("{\"x\": \"$.\"}", "malformed reference \"$.\" (for $.data.x)");
}

static void test_render_missing_value_is_null_for_compensations(void **state) {
    (void)state;
    render_equal("{\"charge_id\": \"$.steps.charge.nope\", \"items\": [\"$.input.items[9]\"],"
                 " \"ok\": \"$.steps.charge.charge_id\"}",
                 true, "{\"charge_id\": null, \"items\": [null], \"ok\": \"c-9\"}");
}

static void test_render_accepts_a_scalar_template(void **state) {
    (void)state;
    render_equal("\"$.input.order_id\"", false, "42");
    render_equal("7", false, "7");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_follows_keys_and_indexes),
        cmocka_unit_test(test_lookup_of_a_missing_value_is_null),
        cmocka_unit_test(test_malformed_paths_have_no_value),
        cmocka_unit_test(test_render_replaces_references_in_objects_and_arrays),
        cmocka_unit_test(test_render_double_dollar_is_a_literal_dollar),
        cmocka_unit_test(test_render_copies_other_values_as_they_are),
        cmocka_unit_test(test_render_output_does_not_share_the_context),
        cmocka_unit_test(test_render_missing_value_fails_naming_path_and_place),
        cmocka_unit_test(test_render_missing_value_is_null_for_compensations),
        cmocka_unit_test(test_render_accepts_a_scalar_template),
    };
    return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
