/* The operator's queries and retention against a real PostgreSQL, on a
 * fixed set of sagas whose last changes are spread over a few hours. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testdb.h"

static sg_store_t *st;

static const struct {
    const char *id, *type;
    int version;
    const char *status, *age;
} fixture[] = {
    {"q-1", "order", 1, "running", "1 minute"},
    {"q-2", "order", 1, "completed", "5 minutes"},
    {"q-3", "payment", 1, "compensated", "20 minutes"},
    {"q-4", "order", 1, "running", "40 minutes"},
    {"q-5", "order", 2, "compensating", "90 minutes"},
    {"q-6", "order", 1, "failed", "3 hours"},
    {"q-7", "payment", 1, "completed", "2 hours"},
};

static int setup(void **state) {
    if (testdb_setup(state) != 0 || !(st = testdb_store()) || testdb_put_definition(st) ||
        sg_store_definition_put(st, "order", 2, "22", "{\"v\": 2}") ||
        sg_store_definition_put(st, "payment", 1, "33", "{\"v\": 1}"))
        return -1;
    for (size_t i = 0; i < sizeof fixture / sizeof fixture[0]; i++) {
        sg_store_saga_t saga = testdb_saga(fixture[i].id, fixture[i].status, "{\"big\": 1}");
        saga.type = fixture[i].type;
        saga.definition_version = fixture[i].version;
        if (sg_store_saga_save(st, &saga, 0, NULL) != SG_OK)
            return -1;
        char sql[256];
        snprintf(sql, sizeof sql,
                 "UPDATE sagas SET updated_at = now() - interval '%s' WHERE id = '%s'",
                 fixture[i].age, fixture[i].id);
        if (testdb_exec(sql) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state) {
    sg_store_destroy(st);
    return testdb_teardown(state);
}

/* The listed ids joined by spaces. */
static const char *ids_of(const sg_store_saga_t *sagas, size_t n) {
    static char buf[256];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", sagas[i].id);
    return buf;
}

static const char *list(const char *status, const char *type, int64_t since_ms, int limit) {
    sg_store_filter_t filter = {.status = status, .type = type, .since_ms = since_ms,
                                .limit = limit};
    sg_store_saga_t *sagas = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_sagas_list(st, &filter, &sagas, &n), SG_OK);
    for (size_t i = 0; i < n; i++)
        assert_null(sagas[i].state);
    const char *ids = ids_of(sagas, n);
    sg_store_free(sagas);
    return ids;
}

static void test_list_filters_by_status_type_and_since_newest_first(void **state) {
    (void)state;
    assert_string_equal(list(NULL, NULL, 0, 0), "q-1 q-2 q-3 q-4 q-5 q-7 q-6");
    assert_string_equal(list("running", NULL, 0, 0), "q-1 q-4");
    assert_string_equal(list(NULL, "payment", 0, 0), "q-3 q-7");
    assert_string_equal(list(NULL, NULL, 30 * 60000, 0), "q-1 q-2 q-3");
    assert_string_equal(list("completed", "payment", 0, 0), "q-7");
    assert_string_equal(list(NULL, NULL, 0, 2), "q-1 q-2");
    assert_string_equal(list("running", "payment", 0, 0), "");
}

static void test_stuck_lists_unfinished_sagas_unchanged_for_that_long_oldest_first(void **state) {
    (void)state;
    sg_store_saga_t *sagas = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_sagas_stuck(st, 10 * 60000, 0, &sagas, &n), SG_OK);
    assert_string_equal(ids_of(sagas, n), "q-5 q-4");
    assert_string_equal(sagas[0].status, "compensating");
    assert_int_equal(sagas[0].definition_version, 2);
    sg_store_free(sagas);
    assert_int_equal(sg_store_sagas_stuck(st, 4 * 3600000, 0, &sagas, &n), SG_OK);
    assert_int_equal(n, 0);
}

static void test_counts_are_by_type_and_status(void **state) {
    (void)state;
    sg_store_count_t *c = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_counts(st, &c, &n), SG_OK);
    char buf[512];
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s/%s=%lld ", c[i].type,
                                c[i].status, (long long)c[i].count);
    assert_string_equal(buf, "order/compensating=1 order/completed=1 order/failed=1 "
                             "order/running=2 payment/compensated=1 payment/completed=1 ");
    sg_store_free(c);
}

static void test_finished_per_minute_covers_the_last_hour_oldest_first(void **state) {
    (void)state;
    sg_store_count_t *c = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_finished_per_minute(st, &c, &n), SG_OK);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].status, "compensated");
    assert_string_equal(c[1].status, "completed");
    assert_int_equal(c[0].count, 1);
    assert_true(c[0].minute_ms < c[1].minute_ms);
    assert_int_equal(c[0].minute_ms % 60000, 0);
    assert_null(c[0].type);
    sg_store_free(c);
}

static void test_definitions_are_listed_with_their_unfinished_sagas(void **state) {
    (void)state;
    sg_store_definition_t *defs = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_definitions_list(st, &defs, &n), SG_OK);
    assert_int_equal(n, 3);
    assert_string_equal(defs[0].name, "order");
    assert_int_equal(defs[0].version, 1);
    assert_int_equal(defs[0].running, 2);
    assert_null(defs[0].body);
    assert_int_equal(defs[1].version, 2);
    assert_int_equal(defs[1].running, 1);
    assert_string_equal(defs[1].sha256, "22");
    assert_string_equal(defs[2].name, "payment");
    assert_int_equal(defs[2].running, 0);
    sg_store_free(defs);
}

/* ---- retention ---- */

static void test_inbox_purge_deletes_old_entries_only(void **state) {
    (void)state;
    for (int i = 0; i < 25; i++) {
        char id[32];
        snprintf(id, sizeof id, "purge-msg-%02d", i);
        sg_store_item_t item = {.message_id = id, .saga_id = "q-1"};
        assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
        assert_int_equal(item.result, SG_OK);
    }
    assert_int_equal(testdb_exec("UPDATE inbox SET received_at = now() - interval '2 days'"
                                 " WHERE message_id < 'purge-msg-20'"),
                     0);
    int64_t deleted = 0;
    assert_int_equal(sg_store_purge_inbox(st, 86400000, 3, &deleted), SG_OK);
    assert_int_equal(deleted, 20);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM inbox"), 5);
    bool seen = true;
    assert_int_equal(sg_store_inbox_seen(st, "purge-msg-00", &seen), SG_OK);
    assert_false(seen);
}

static void add_history(const char *saga_id, int entries) {
    sg_store_history_t h = {.event = "something"};
    for (int i = 0; i < entries; i++) {
        sg_store_item_t item = {.saga_id = saga_id, .history = &h, .nhistory = 1};
        assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
        assert_int_equal(item.result, SG_OK);
    }
}

static int64_t history_count(const char *saga_id) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM saga_history WHERE saga_id = '%s'", saga_id);
    return testdb_scalar(sql);
}

static void test_history_purge_deletes_old_entries_of_finished_sagas_only(void **state) {
    (void)state;
    /* q-2 and q-7 finished, q-4 runs, q-6 failed: all with old history;
     * q-3 finished with recent history. */
    const char *old[] = {"q-2", "q-7", "q-4", "q-6"};
    for (int i = 0; i < 4; i++)
        add_history(old[i], 3);
    assert_int_equal(testdb_exec("UPDATE saga_history SET at = now() - interval '3 days'"), 0);
    add_history("q-3", 2);

    int64_t deleted = 0;
    assert_int_equal(sg_store_purge_history(st, 86400000, 2, &deleted), SG_OK);
    assert_int_equal(deleted, 6);
    assert_int_equal(history_count("q-2"), 0);
    assert_int_equal(history_count("q-7"), 0);
    assert_int_equal(history_count("q-4"), 3);
    assert_int_equal(history_count("q-6"), 3);
    assert_int_equal(history_count("q-3"), 2);
    assert_int_equal(sg_store_purge_history(st, 86400000, 2, &deleted), SG_OK);
    assert_int_equal(deleted, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_filters_by_status_type_and_since_newest_first),
        cmocka_unit_test(test_stuck_lists_unfinished_sagas_unchanged_for_that_long_oldest_first),
        cmocka_unit_test(test_counts_are_by_type_and_status),
        cmocka_unit_test(test_finished_per_minute_covers_the_last_hour_oldest_first),
        cmocka_unit_test(test_definitions_are_listed_with_their_unfinished_sagas),
        cmocka_unit_test(test_inbox_purge_deletes_old_entries_only),
        cmocka_unit_test(test_history_purge_deletes_old_entries_of_finished_sagas_only),
    };
    return cmocka_run_group_tests_name("store_queries", tests, setup, teardown);
}
