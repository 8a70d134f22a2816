/* The store's parts that need no database: where migrations are looked
 * for, and an unreachable database reported at once with its cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "saga/store.h"

static void test_migrations_dir_prefers_the_option_then_the_environment(void **state) {
    (void)state;
    char dir[256];
    setenv("SAGA_MIGRATIONS_DIR", "/from/env", 1);
    sg_store_migrations_dir("/from/option", dir, sizeof dir);
    assert_string_equal(dir, "/from/option");
    sg_store_migrations_dir(NULL, dir, sizeof dir);
    assert_string_equal(dir, "/from/env");
    sg_store_migrations_dir("", dir, sizeof dir);
    assert_string_equal(dir, "/from/env");
}

static void test_migrations_dir_falls_back_to_the_share_folder_or_the_current_one(void **state) {
    (void)state;
    char dir[256];
    unsetenv("SAGA_MIGRATIONS_DIR");
    sg_store_migrations_dir(NULL, dir, sizeof dir);
    size_t len = strlen(dir);
    bool share = len > 17 && strcmp(dir + len - 17, "/sagad/migrations") == 0;
    assert_true(share || strcmp(dir, "migrations") == 0);
}

static void test_unreachable_database_is_reported_with_its_cause(void **state) {
    (void)state;
    char errstr[512] = "";
    sg_store_t *st = sg_store_new("host=127.0.0.1 port=1 dbname=x user=x password=secret"
                                  " connect_timeout=2",
                                  errstr, sizeof errstr);
    assert_null(st);
    assert_non_null(strstr(errstr, "cannot connect to the database"));
    assert_null(strstr(errstr, "secret"));
    sg_store_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_dir_prefers_the_option_then_the_environment),
        cmocka_unit_test(test_migrations_dir_falls_back_to_the_share_folder_or_the_current_one),
        cmocka_unit_test(test_unreachable_database_is_reported_with_its_cause),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
