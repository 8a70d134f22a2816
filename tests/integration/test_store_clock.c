/* The database's clock as the store reads it (sg_store_clock), and sagad's
 * clock that follows it (sg_upkeep_clock, sg_now_ms): due times are
 * compared with the database's now(), so they are computed from it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "daemon/sagad.h"
#include "testdb.h"

static sg_store_t *st;

static int setup(void **state) {
    return testdb_setup(state) != 0 || !(st = testdb_store()) ? -1 : 0;
}

static int teardown(void **state) {
    sg_store_destroy(st);
    return testdb_teardown(state);
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *DB_NOW = "SELECT (extract(epoch from clock_timestamp()) * 1000)::int8";

static void test_clock_reads_the_database_clock(void **state) {
    (void)state;
    int64_t before = testdb_scalar(DB_NOW), now = 0;
    assert_int_equal(sg_store_clock(st, &now), SG_OK);
    int64_t after = testdb_scalar(DB_NOW);
    assert_true(before <= now);
    assert_true(now <= after);
}

static void test_now_follows_the_offset_to_the_database_clock(void **state) {
    (void)state;
    sg_clock_set_offset(-3600000);
    int64_t wall = wall_ms(), now = sg_now_ms();
    assert_true(now - (wall - 3600000) >= 0 && now - (wall - 3600000) < 1000);
    sg_clock_set_offset(0);
}

static void test_upkeep_measures_the_offset_from_the_database(void **state) {
    (void)state;
    sagad_t d = {.st = st};
    sg_clock_set_offset(-3600000); /* as if the host clock were an hour ahead */
    sg_upkeep_clock(&d, 0);
    assert_true(d.clock_known);
    int64_t db = testdb_scalar(DB_NOW), now = sg_now_ms();
    /* same host: the offset measured is small and now matches the database */
    assert_true(sg_clock_offset() > -1000 && sg_clock_offset() < 1000);
    assert_true(now - db > -1000 && now - db < 1000);
    assert_true(d.next_clock == SAGAD_CLOCK_MS);
    sg_clock_set_offset(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_reads_the_database_clock),
        cmocka_unit_test(test_now_follows_the_offset_to_the_database_clock),
        cmocka_unit_test(test_upkeep_measures_the_offset_from_the_database),
    };
    return cmocka_run_group_tests_name("store_clock", tests, setup, teardown);
}
