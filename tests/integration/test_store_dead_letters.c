/* Dead letters against a real PostgreSQL: stored whole, listed newest
 * first without their bytes, shown with them, replayed once through the
 * outbox to the channel they came from. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testdb.h"

static sg_store_t *st;

static int setup(void **state) {
    if (testdb_setup(state) != 0 || !(st = testdb_store()))
        return -1;
    return 0;
}

static int teardown(void **state) {
    sg_store_destroy(st);
    return testdb_teardown(state);
}

static const unsigned char not_json[] = {0xde, 0xad, 0x00, 0xbe, 0xef};

static void test_dead_letter_is_stored_whole_and_shown_with_its_reason(void **state) {
    (void)state;
    int64_t id = 0;
    assert_int_equal(sg_store_dead_letter_add(st, "kafka:saga.commands", "order-7", not_json,
                                              sizeof not_json, "{\"content-type\": \"x\"}",
                                              "not JSON", &id),
                     SG_OK);
    assert_true(id > 0);
    sg_store_dead_letter_t *dl = NULL;
    assert_int_equal(sg_store_dead_letter_get(st, id, &dl), SG_OK);
    assert_int_equal(dl->id, id);
    assert_string_equal(dl->channel, "kafka:saga.commands");
    assert_string_equal(dl->key, "order-7");
    assert_int_equal(dl->raw_len, sizeof not_json);
    assert_memory_equal(dl->raw, not_json, sizeof not_json);
    assert_string_equal(dl->headers, "{\"content-type\": \"x\"}");
    assert_string_equal(dl->reason, "not JSON");
    assert_true(dl->received_at_ms > 0);
    assert_int_equal(dl->replayed_at_ms, 0);
    sg_store_free(dl);
    assert_int_equal(sg_store_dead_letter_get(st, id + 1000, &dl), SG_ERR_NOT_FOUND);
}

static void test_dead_letters_are_listed_newest_first_in_pages(void **state) {
    (void)state;
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char reason[32];
        snprintf(reason, sizeof reason, "reason %d", i);
        assert_int_equal(sg_store_dead_letter_add(st, "amqp:/saga.replies", NULL, "{}", 2, NULL,
                                                  reason, &ids[i]),
                         SG_OK);
    }
    sg_store_dead_letter_t *page = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_dead_letters_list(st, 0, 3, &page, &n), SG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(page[0].id, ids[4]);
    assert_int_equal(page[2].id, ids[2]);
    assert_string_equal(page[0].reason, "reason 4");
    assert_null(page[0].raw);
    assert_int_equal(page[0].raw_len, 2);
    int64_t last = page[2].id;
    sg_store_free(page);
    assert_int_equal(sg_store_dead_letters_list(st, last, 3, &page, &n), SG_OK);
    assert_true(n >= 2);
    assert_int_equal(page[0].id, ids[1]);
    assert_int_equal(page[1].id, ids[0]);
    sg_store_free(page);
}

static void test_replay_puts_the_letter_in_the_outbox_once(void **state) {
    (void)state;
    int64_t id = 0;
    assert_int_equal(sg_store_dead_letter_add(st, "kafka:saga.replies", "order-9", not_json,
                                              sizeof not_json, "{\"h\": \"v\"}", "unknown sagaid",
                                              &id),
                     SG_OK);
    sg_store_dead_letter_t *dl = NULL;
    assert_int_equal(sg_store_dead_letter_replay(st, id, &dl), SG_OK);
    assert_int_equal(dl->id, id);
    assert_true(dl->replayed_at_ms > 0);
    sg_store_free(dl);

    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].channel, "kafka:saga.replies");
    assert_string_equal(rows[0].key, "order-9");
    assert_null(rows[0].saga_id);
    assert_string_equal(rows[0].headers, "{\"h\": \"v\"}");
    assert_int_equal(rows[0].payload_len, sizeof not_json);
    assert_memory_equal(rows[0].payload, not_json, sizeof not_json);
    sg_store_free(rows);

    assert_int_equal(sg_store_dead_letter_replay(st, id, &dl), SG_ERR_STATE);
    assert_null(dl);
    assert_non_null(strstr(sg_store_errmsg(st), "already replayed"));
    assert_int_equal(sg_store_dead_letter_replay(st, id + 1000, &dl), SG_ERR_NOT_FOUND);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox"), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_letter_is_stored_whole_and_shown_with_its_reason),
        cmocka_unit_test(test_dead_letters_are_listed_newest_first_in_pages),
        cmocka_unit_test(test_replay_puts_the_letter_in_the_outbox_once),
    };
    return cmocka_run_group_tests_name("store_dead_letters", tests, setup, teardown);
}
