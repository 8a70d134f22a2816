/* sagactl dead-letters against a real PostgreSQL: list (newest first, text
 * and JSON with id, received_at, channel, reason), show (the message whole,
 * as text or base64), replay (the bytes, key and headers back in the outbox
 * for the channel they came from, once; a second replay is refused), and
 * the exit statuses of an unknown letter and bad arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testdb.h"
#include "cli_fixture.h"

static const char *const START =
    "{\"specversion\": \"1.0\", \"id\": \"m-1\", \"source\": \"/shop\", \"type\": \"saga.start\","
    " \"sagatype\": \"nosuch\", \"data\": {}}";
static const unsigned char BINARY[] = {0x00, 0xff, 0x10, 0x80, 'x'};
static int64_t text_id, binary_id;

static int group_setup(void **state) {
    if (testdb_setup(state) != 0)
        return -1;
    sg_store_t *st = testdb_store();
    if (!st)
        return -1;
    sg_err_t err = sg_store_dead_letter_add(st, "kafka:saga.commands", "order-9", START,
                                            strlen(START),
                                            "{\"content-type\": \"application/cloudevents+json\"}",
                                            "unknown sagatype \"nosuch\"", &text_id);
    if (!err)
        err = sg_store_dead_letter_add(st, "amqp:/saga.replies", NULL, BINARY, sizeof BINARY,
                                       NULL, "not JSON", &binary_id);
    sg_store_destroy(st);
    return err ? -1 : 0;
}

static int group_teardown(void **state) {
    return testdb_teardown(state);
}

static char id_text[2][24];

static const char *idstr(int64_t id, int slot) {
    snprintf(id_text[slot], sizeof id_text[slot], "%lld", (long long)id);
    return id_text[slot];
}

static void test_list_json_is_newest_first_with_contract_fields(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters", "list", "--json");
    fx_expect_rc(&r, 0);
    json_t *arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 2);
    const json_t *newest = json_array_get(arr, 0), *oldest = json_array_get(arr, 1);
    assert_int_equal(json_integer_value(json_object_get(newest, "id")), binary_id);
    assert_int_equal(json_integer_value(json_object_get(oldest, "id")), text_id);
    assert_string_equal(fx_str(oldest, "channel"), "kafka:saga.commands");
    assert_string_equal(fx_str(oldest, "reason"), "unknown sagatype \"nosuch\"");
    assert_true(fx_is_rfc3339_utc(fx_str(oldest, "received_at")));
    assert_int_equal(json_integer_value(json_object_get(oldest, "size")), strlen(START));
    assert_string_equal(fx_str(newest, "reason"), "not JSON");
    json_decref(arr);
    fx_free(&r);

    /* "list" is the default; --limit and --before page */
    r = CLI("dead-letters", "--limit", "1", "--json");
    fx_expect_rc(&r, 0);
    arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "id")), binary_id);
    json_decref(arr);
    fx_free(&r);
    r = CLI("dead-letters", "--before", idstr(binary_id, 0), "--json");
    fx_expect_rc(&r, 0);
    arr = fx_json(&r);
    assert_int_equal(json_array_size(arr), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "id")), text_id);
    json_decref(arr);
    fx_free(&r);
}

static void test_list_text_is_a_table(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters");
    fx_expect_rc(&r, 0);
    char line[512];
    assert_true(strncmp(r.out, " ID", 3) == 0 || strncmp(r.out, "ID", 2) == 0);
    fx_line_with(r.out, "kafka:saga.commands", line, sizeof line);
    assert_non_null(strstr(line, "unknown sagatype"));
    assert_non_null(strstr(line, "s ago"));
    assert_non_null(strstr(line, " no "));
    fx_free(&r);
}

static void test_show_prints_the_message_whole(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters", "show", idstr(text_id, 0), "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    assert_string_equal(fx_str(doc, "raw"), START);
    assert_string_equal(fx_str(doc, "key"), "order-9");
    assert_string_equal(fx_str(json_object_get(doc, "headers"), "content-type"),
                        "application/cloudevents+json");
    assert_true(json_is_null(json_object_get(doc, "replayed_at")));
    json_decref(doc);
    fx_free(&r);

    r = CLI("dead-letters", "show", idstr(binary_id, 0), "--json");
    fx_expect_rc(&r, 0);
    doc = fx_json(&r);
    assert_true(json_is_null(json_object_get(doc, "raw")));
    assert_string_equal(fx_str(doc, "raw_base64"), "AP8QgHg="); /* 00 ff 10 80 78 */
    json_decref(doc);
    fx_free(&r);

    r = CLI("dead-letters", "show", idstr(text_id, 0));
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "reason       unknown sagatype \"nosuch\"\n"));
    assert_non_null(strstr(r.out, "\"sagatype\": \"nosuch\""));
    fx_free(&r);
}

static void test_show_of_an_unknown_letter_exits_3(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters", "show", "999999");
    fx_expect_rc(&r, 3);
    assert_non_null(strstr(r.err, "no dead letter 999999"));
    fx_free(&r);
    r = CLI("dead-letters", "replay", "999999");
    fx_expect_rc(&r, 3);
    fx_free(&r);
}

static void test_replay_puts_the_message_back_once(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters", "replay", idstr(text_id, 0));
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "queued for kafka:saga.commands"));
    fx_free(&r);
    /* the relay finds the same bytes, key and headers for the same channel */
    PGconn *conn = testdb_connect(testdb.conninfo);
    assert_non_null(conn);
    PGresult *res = PQexec(conn, "SELECT channel, key, convert_from(payload, 'UTF8'),"
                                 " headers->>'content-type' FROM outbox");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), "kafka:saga.commands");
    assert_string_equal(PQgetvalue(res, 0, 1), "order-9");
    assert_string_equal(PQgetvalue(res, 0, 2), START);
    assert_string_equal(PQgetvalue(res, 0, 3), "application/cloudevents+json");
    PQclear(res);
    PQfinish(conn);

    r = CLI("dead-letters", "replay", idstr(text_id, 0));
    fx_expect_rc(&r, 1);
    assert_non_null(strstr(r.err, "was already replayed"));
    fx_free(&r);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox"), 1);

    r = CLI("dead-letters", "show", idstr(text_id, 0), "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    assert_true(fx_is_rfc3339_utc(fx_str(doc, "replayed_at")));
    json_decref(doc);
    fx_free(&r);
}

static void test_bad_arguments_exit_2(void **state) {
    (void)state;
    cli_run_t r = CLI("dead-letters", "replay");
    fx_expect_rc(&r, 2);
    assert_non_null(strstr(r.err, "replay needs a dead letter ID"));
    fx_free(&r);
    r = CLI("dead-letters", "show", "1", "--limit", "3");
    fx_expect_rc(&r, 2);
    fx_free(&r);
    r = CLI("dead-letters", "--limit", "-1");
    fx_expect_rc(&r, 2);
    assert_non_null(strstr(r.err, "invalid limit '-1'"));
    fx_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_json_is_newest_first_with_contract_fields),
        cmocka_unit_test(test_list_text_is_a_table),
        cmocka_unit_test(test_show_prints_the_message_whole),
        cmocka_unit_test(test_show_of_an_unknown_letter_exits_3),
        cmocka_unit_test(test_replay_puts_the_message_back_once),
        cmocka_unit_test(test_bad_arguments_exit_2),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
