/* The error type: names and retry classes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "saga/err.h"

static void test_conflict_and_lost_connection_are_retriable(void **state) {
    (void)state;
    assert_true(sg_err_retriable(SG_ERR_CONFLICT));
    assert_true(sg_err_retriable(SG_ERR_CONN));
    assert_false(sg_err_retriable(SG_ERR_INVALID));
    assert_false(sg_err_retriable(SG_ERR_TEMPLATE));
}

static void test_every_error_has_a_name(void **state) {
    (void)state;
    for (int e = SG_OK; e >= SG_ERR_INTERNAL; e--)
        assert_string_not_equal(sg_err_str((sg_err_t)e), "unknown error");
    assert_string_equal(sg_err_str((sg_err_t)-999), "unknown error");
    assert_string_equal(sg_err_str(SG_ERR_CONFLICT), "version conflict");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conflict_and_lost_connection_are_retriable),
        cmocka_unit_test(test_every_error_has_a_name),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
