/* The saga repository against a real PostgreSQL: definitions stored once,
 * sagas created, loaded and updated under the version guard, and writers
 * racing on one saga without losing an update. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>

#include "testdb.h"

static void test_definition_is_stored_once_and_new_content_needs_a_version_bump(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    const char *sha_a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *sha_b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    assert_int_equal(sg_store_definition_put(st, "payment", 1, sha_a, "{\"v\": 1}"), SG_OK);
    assert_int_equal(sg_store_definition_put(st, "payment", 1, sha_a, "{\"v\": 1}"), SG_OK);
    assert_int_equal(sg_store_definition_put(st, "payment", 1, sha_b, "{\"v\": 2}"),
                     SG_ERR_INVALID);
    assert_non_null(strstr(sg_store_errmsg(st), "bump version"));
    assert_non_null(strstr(sg_store_errmsg(st), "'payment'"));
    assert_int_equal(sg_store_definition_put(st, "payment", 2, sha_b, "{\"v\": 2}"), SG_OK);

    sg_store_definition_t *def = NULL;
    assert_int_equal(sg_store_definition_get(st, "payment", 1, &def), SG_OK);
    assert_string_equal(def->sha256, sha_a);
    assert_string_equal(def->body, "{\"v\": 1}");
    sg_store_free(def);
    assert_int_equal(sg_store_definition_get(st, "payment", 3, &def), SG_ERR_NOT_FOUND);
    assert_null(def);
    sg_store_destroy(st);
}

static void test_saga_is_created_loaded_and_updated_from_its_version(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    assert_int_equal(testdb_put_definition(st), SG_OK);

    sg_store_saga_t saga = testdb_saga("saga-crud", "running", "{\"step\": 1}");
    saga.deadline_at_ms = 4102444800000; /* 2100-01-01 */
    int64_t version = 0;
    assert_int_equal(sg_store_saga_save(st, &saga, 0, &version), SG_OK);
    assert_int_equal(version, 1);

    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "saga-crud", &got), SG_OK);
    assert_string_equal(got->id, "saga-crud");
    assert_string_equal(got->type, "order");
    assert_int_equal(got->definition_version, 1);
    assert_string_equal(got->definition_sha256, TESTDB_DEF_SHA);
    assert_string_equal(got->status, "running");
    assert_string_equal(got->current_step, "reserve");
    assert_string_equal(got->traceparent, saga.traceparent);
    assert_int_equal(got->deadline_at_ms, 4102444800000);
    assert_string_equal(got->state, "{\"step\": 1}");
    assert_int_equal(got->version, 1);
    assert_true(got->created_at_ms > 0 && got->updated_at_ms >= got->created_at_ms);
    sg_store_free(got);

    saga.status = "completed";
    saga.current_step = NULL;
    saga.deadline_at_ms = 0;
    saga.state = "{\"step\": 2}";
    assert_int_equal(sg_store_saga_save(st, &saga, 1, &version), SG_OK);
    assert_int_equal(version, 2);
    assert_int_equal(sg_store_saga_load(st, "saga-crud", &got), SG_OK);
    assert_string_equal(got->status, "completed");
    assert_null(got->current_step);
    assert_int_equal(got->deadline_at_ms, 0);
    assert_string_equal(got->state, "{\"step\": 2}");
    assert_int_equal(got->version, 2);
    sg_store_free(got);
    sg_store_destroy(st);
}

static void test_update_from_a_stale_version_is_a_conflict_and_changes_nothing(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    assert_int_equal(testdb_put_definition(st), SG_OK);
    sg_store_saga_t saga = testdb_saga("saga-stale", "running", "{\"n\": 1}");
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_OK);
    saga.state = "{\"n\": 2}";
    assert_int_equal(sg_store_saga_save(st, &saga, 1, NULL), SG_OK);

    saga.state = "{\"n\": 99}";
    int64_t version = -1;
    assert_int_equal(sg_store_saga_save(st, &saga, 1, &version), SG_ERR_CONFLICT);
    assert_int_equal(version, -1);
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "saga-stale", &got), SG_OK);
    assert_int_equal(got->version, 2);
    assert_string_equal(got->state, "{\"n\": 2}");
    sg_store_free(got);

    /* The connection is still good after a conflict. */
    assert_int_equal(sg_store_saga_save(st, &saga, 2, &version), SG_OK);
    assert_int_equal(version, 3);
    sg_store_destroy(st);
}

static void test_creating_an_existing_saga_is_a_duplicate(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    assert_int_equal(testdb_put_definition(st), SG_OK);
    sg_store_saga_t saga = testdb_saga("saga-twice", "running", "{\"first\": true}");
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_OK);
    saga.state = "{\"first\": false}";
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_ERR_DUPLICATE);
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "saga-twice", &got), SG_OK);
    assert_string_equal(got->state, "{\"first\": true}");
    sg_store_free(got);
    sg_store_destroy(st);
}

static void test_saga_of_an_unknown_definition_or_with_bad_state_is_refused(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    sg_store_saga_t saga = testdb_saga("saga-bad", "running", "{}");
    saga.type = "no_such_definition";
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_ERR_INVALID);
    saga = testdb_saga("saga-bad", "running", "{not json");
    assert_int_equal(testdb_put_definition(st), SG_OK);
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_ERR_INVALID);
    saga = testdb_saga("saga-bad", "sleeping", "{}");
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_ERR_INVALID);
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "saga-bad", &got), SG_ERR_NOT_FOUND);
    assert_null(got);
    sg_store_destroy(st);
}

static void test_load_many_puts_each_saga_at_its_ids_place(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    assert_int_equal(testdb_put_definition(st), SG_OK);
    sg_store_saga_t a = testdb_saga("many-a", "running", "{\"x\": \"a\"}");
    sg_store_saga_t b = testdb_saga("many-\"b\"", "failed", "{\"x\": \"b\"}");
    assert_int_equal(sg_store_saga_save(st, &a, 0, NULL), SG_OK);
    assert_int_equal(sg_store_saga_save(st, &b, 0, NULL), SG_OK);

    const char *ids[] = {"many-\"b\"", "many-missing", "many-a"};
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load_many(st, ids, 3, &got), SG_OK);
    assert_string_equal(got[0].id, "many-\"b\"");
    assert_string_equal(got[0].status, "failed");
    assert_string_equal(got[0].state, "{\"x\": \"b\"}");
    assert_null(got[1].id);
    assert_string_equal(got[2].id, "many-a");
    assert_string_equal(got[2].state, "{\"x\": \"a\"}");
    sg_store_free(got);
    sg_store_destroy(st);
}

/* ---- writers racing on one saga ---- */

enum { WRITERS = 8, UPDATES = 1000 };

typedef struct writer {
    int index;
    int successes;
    int conflicts;
    sg_err_t failure;       /* anything but SG_OK and SG_ERR_CONFLICT */
    char failure_msg[512];
} writer_t;

/* Adds one to this writer's counter in the state it read, and writes it
 * back from the version it read. Odd writers go through the batch with a
 * history entry, even ones through the single save. */
static sg_err_t writer_step(sg_store_t *st, writer_t *w) {
    sg_store_saga_t *cur = NULL;
    sg_err_t err = sg_store_saga_load(st, "race", &cur);
    if (err)
        return err;
    json_t *doc = json_loads(cur->state, 0, NULL);
    char key[16];
    snprintf(key, sizeof key, "w%d", w->index);
    json_object_set_new(doc, key, json_integer(json_integer_value(json_object_get(doc, key)) + 1));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    sg_store_saga_t next = testdb_saga("race", "running", text);
    if (w->index % 2 == 0) {
        err = sg_store_saga_save(st, &next, cur->version, NULL);
    } else {
        sg_store_history_t h = {.event = "counted", .step = key};
        sg_store_item_t item = {.saga = &next, .saga_id = "race",
                                .expected_version = cur->version, .history = &h, .nhistory = 1};
        err = sg_store_batch(st, &item, 1);
        if (!err)
            err = item.result;
    }
    free(text);
    sg_store_free(cur);
    return err;
}

static void *writer_run(void *arg) {
    writer_t *w = arg;
    sg_store_t *st = testdb_store();
    if (!st) {
        w->failure = SG_ERR_CONN;
        return NULL;
    }
    while (w->successes < UPDATES && !w->failure) {
        sg_err_t err = writer_step(st, w);
        if (err == SG_OK)
            w->successes++;
        else if (err == SG_ERR_CONFLICT)
            w->conflicts++;
        else {
            w->failure = err;
            snprintf(w->failure_msg, sizeof w->failure_msg, "%s", sg_store_errmsg(st));
        }
    }
    sg_store_destroy(st);
    return NULL;
}

static void test_eight_writers_racing_on_one_saga_lose_no_update(void **state) {
    (void)state;
    sg_store_t *st = testdb_store();
    assert_non_null(st);
    assert_int_equal(testdb_put_definition(st), SG_OK);
    sg_store_saga_t saga = testdb_saga("race", "running", "{}");
    assert_int_equal(sg_store_saga_save(st, &saga, 0, NULL), SG_OK);

    writer_t writers[WRITERS] = {0};
    pthread_t threads[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        writers[i].index = i;
        pthread_create(&threads[i], NULL, writer_run, &writers[i]);
    }
    int successes = 0, conflicts = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(threads[i], NULL);
        if (writers[i].failure)
            fail_msg("writer %d: %s", i, writers[i].failure_msg);
        successes += writers[i].successes;
        conflicts += writers[i].conflicts;
    }
    assert_int_equal(successes, WRITERS * UPDATES);

    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "race", &got), SG_OK);
    /* Version 1 was the create; each successful update added exactly one. */
    assert_int_equal(got->version, 1 + successes);
    json_t *doc = json_loads(got->state, 0, NULL);
    assert_non_null(doc);
    for (int i = 0; i < WRITERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "w%d", i);
        assert_int_equal(json_integer_value(json_object_get(doc, key)), UPDATES);
    }
    json_decref(doc);
    sg_store_free(got);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM saga_history WHERE saga_id = 'race'"),
                     WRITERS / 2 * UPDATES);
    print_message("%d updates, %d conflicts retried\n", successes, conflicts);
    sg_store_destroy(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definition_is_stored_once_and_new_content_needs_a_version_bump),
        cmocka_unit_test(test_saga_is_created_loaded_and_updated_from_its_version),
        cmocka_unit_test(test_update_from_a_stale_version_is_a_conflict_and_changes_nothing),
        cmocka_unit_test(test_creating_an_existing_saga_is_a_duplicate),
        cmocka_unit_test(test_saga_of_an_unknown_definition_or_with_bad_state_is_refused),
        cmocka_unit_test(test_load_many_puts_each_saga_at_its_ids_place),
        cmocka_unit_test(test_eight_writers_racing_on_one_saga_lose_no_update),
    };
    return cmocka_run_group_tests_name("store_sagas", tests, testdb_setup, testdb_teardown);
}
