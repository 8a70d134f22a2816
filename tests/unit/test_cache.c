/* The bounded map sagad keeps committed saga states in: take moves an
 * entry out, put moves it in, a full map evicts what was put longest ago,
 * and everything dropped is freed (ASan checks that nothing leaks). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/cache.h"

static int freed;

static void count_free(void *p) {
    freed++;
    free(p);
}

static char *text(const char *s) { return strdup(s); }

static void test_take_moves_the_entry_out_with_its_version(void **state) {
    (void)state;
    freed = 0;
    sg_cache_t *c = sg_cache_new(4, count_free);
    assert_non_null(c);
    int def = 7;
    assert_true(sg_cache_put(c, "saga-1", text("state 1"), 3, &def));
    assert_int_equal(sg_cache_size(c), 1);
    void *v = NULL;
    int64_t version = 0;
    const void *aux = NULL;
    assert_true(sg_cache_take(c, "saga-1", &v, &version, &aux));
    assert_string_equal(v, "state 1");
    assert_int_equal(version, 3);
    assert_ptr_equal(aux, &def);
    assert_int_equal(sg_cache_size(c), 0);
    assert_false(sg_cache_take(c, "saga-1", &v, &version, &aux)); /* taken */
    free(v);
    sg_cache_destroy(c);
    assert_int_equal(freed, 0);
}

static void test_putting_a_key_again_replaces_and_frees_the_old_value(void **state) {
    (void)state;
    freed = 0;
    sg_cache_t *c = sg_cache_new(4, count_free);
    assert_true(sg_cache_put(c, "s", text("v1"), 1, NULL));
    assert_true(sg_cache_put(c, "s", text("v2"), 2, NULL));
    assert_int_equal(freed, 1);
    assert_int_equal(sg_cache_size(c), 1);
    void *v;
    int64_t version;
    const void *aux;
    assert_true(sg_cache_take(c, "s", &v, &version, &aux));
    assert_string_equal(v, "v2");
    assert_int_equal(version, 2);
    free(v);
    sg_cache_destroy(c);
}

static void test_a_full_map_evicts_what_was_put_longest_ago(void **state) {
    (void)state;
    freed = 0;
    sg_cache_t *c = sg_cache_new(3, count_free);
    char key[16];
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "s%d", i);
        assert_true(sg_cache_put(c, key, text(key), i, NULL));
    }
    /* s0 is taken and put back: now the newest. */
    void *v;
    int64_t version;
    const void *aux;
    assert_true(sg_cache_take(c, "s0", &v, &version, &aux));
    assert_true(sg_cache_put(c, "s0", v, 10, NULL));
    assert_true(sg_cache_put(c, "s3", text("s3"), 3, NULL)); /* evicts s1 */
    assert_int_equal(sg_cache_size(c), 3);
    assert_int_equal(freed, 1);
    assert_false(sg_cache_take(c, "s1", &v, &version, &aux));
    const char *kept[] = {"s0", "s2", "s3"};
    for (size_t i = 0; i < 3; i++) {
        assert_true(sg_cache_take(c, kept[i], &v, &version, &aux));
        assert_string_equal(v, kept[i]);
        free(v);
    }
    sg_cache_destroy(c);
}

static void test_many_puts_stay_within_capacity_and_destroy_frees_the_rest(void **state) {
    (void)state;
    freed = 0;
    sg_cache_t *c = sg_cache_new(64, count_free);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "saga-%d", i % 300);
        assert_true(sg_cache_put(c, key, text(key), i, NULL));
        assert_true(sg_cache_size(c) <= 64);
        if (i % 7 == 0)
            sg_cache_forget(c, key);
    }
    size_t left = sg_cache_size(c);
    int before = freed;
    sg_cache_destroy(c);
    assert_int_equal(freed - before, (int)left);
    assert_int_equal(freed, 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_moves_the_entry_out_with_its_version),
        cmocka_unit_test(test_putting_a_key_again_replaces_and_frees_the_old_value),
        cmocka_unit_test(test_a_full_map_evicts_what_was_put_longest_ago),
        cmocka_unit_test(test_many_puts_stay_within_capacity_and_destroy_frees_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
