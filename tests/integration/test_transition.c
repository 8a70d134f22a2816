/* The transition module against a real PostgreSQL: a start and a reply made
 * into store items and committed (row, outbox CloudEvents, timers, history),
 * two transitions of one saga chained in one batch, a stale version refused,
 * sg_transition_run_one for an operator's abort, and the definition cache
 * (stored definitions resolved by hash, a changed one refused). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "saga/transition.h"
#include "testdb.h"

#define NOW 1700000000000LL

static const char *const PAIR =
    "{\"name\": \"pair\", \"version\": 1, \"steps\": ["
    " {\"name\": \"reserve\", \"timeout\": \"5s\","
    "  \"command\": {\"type\": \"stock.reserve\", \"channel\": \"kafka:stock\","
    "               \"data\": {\"sku\": \"$.input.sku\"}},"
    "  \"compensation\": {\"type\": \"stock.release\", \"channel\": \"amqp:/stock.undo\","
    "                    \"data\": {\"id\": \"$.steps.reserve.id\"}}},"
    " {\"name\": \"charge\", \"command\": {\"type\": \"card.charge\", \"channel\": \"kafka:cards\"}}]}";

static const sg_transition_env_t ENV = {
    .engine = {.reply_to_kafka = "kafka:saga.replies", .reply_to_amqp = "amqp:/saga.replies"},
    .events = "kafka:saga.events",
    .source = "/test",
};

static sg_def_t *load_def(const char *text) {
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    sg_err_t err = sg_def_load_string("pair.json", text, strlen(text), &def, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.items[i]);
    sg_def_errors_release(&errs);
    assert_int_equal(err, SG_OK);
    return def;
}

typedef struct fixture {
    sg_store_t *st;
    sg_defcache_t *dc;
    const sg_def_t *def;
} fixture_t;

static int fixture_setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char errstr[512];
    f->st = testdb_store();
    f->dc = sg_defcache_new();
    sg_def_set_t *set = sg_def_set_new();
    if (!f->st || !f->dc || !set || sg_def_set_add(set, load_def(PAIR), errstr, sizeof errstr))
        return -1;
    if (sg_defcache_publish(f->dc, f->st, set, errstr, sizeof errstr) != SG_OK) {
        fprintf(stderr, "%s\n", errstr);
        return -1;
    }
    f->def = sg_defcache_latest(f->dc, "pair");
    *state = f;
    return f->def ? 0 : -1;
}

static int fixture_teardown(void **state) {
    fixture_t *f = *state;
    sg_defcache_destroy(f->dc);
    sg_store_destroy(f->st);
    free(f);
    return 0;
}

static sg_transition_t *make_start(fixture_t *f, const char *saga_id, const char *msg_id) {
    json_t *data = json_pack("{s:s}", "sku", "A-1");
    sg_input_t in = {.kind = SG_INPUT_START, .saga_id = saga_id, .seed = 42, .data = data,
                     .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"};
    sg_transition_t *tr = NULL;
    char errstr[512];
    sg_err_t err = sg_transition_make(f->def, NULL, 0, &in, msg_id, 0, NOW, &ENV, &tr, errstr,
                                      sizeof errstr);
    if (err)
        fprintf(stderr, "%s\n", errstr);
    assert_int_equal(err, SG_OK);
    json_decref(data);
    return tr;
}

static sg_transition_t *make_reply(fixture_t *f, const sg_saga_t *before, int64_t version,
                                   const char *causation, const char *msg_id) {
    json_t *data = json_pack("{s:s}", "id", "res-7");
    sg_input_t in = {.kind = SG_INPUT_REPLY, .step = "reserve", .causation_id = causation,
                     .outcome = SG_OUTCOME_SUCCESS, .data = data};
    sg_transition_t *tr = NULL;
    char errstr[512];
    assert_int_equal(sg_transition_make(f->def, before, version, &in, msg_id, 0, NOW + 10, &ENV,
                                        &tr, errstr, sizeof errstr),
                     SG_OK);
    json_decref(data);
    return tr;
}

static void commit(fixture_t *f, sg_transition_t *tr, sg_err_t expect) {
    assert_int_equal(sg_store_batch(f->st, sg_transition_item(tr), 1), SG_OK);
    assert_int_equal(sg_transition_item(tr)->result, expect);
}

static int64_t count(const char *fmt, const char *arg) {
    char sql[512];
    snprintf(sql, sizeof sql, fmt, arg);
    return testdb_scalar(sql);
}

/* The JSON payload of the one outbox row of 'saga' on 'channel'. */
static json_t *outbox_payload(const char *saga, const char *channel, char *headers,
                              size_t headers_size) {
    PGconn *conn = testdb_connect(testdb.conninfo);
    assert_non_null(conn);
    const char *params[] = {saga, channel};
    PGresult *res = PQexecParams(conn,
                                 "SELECT convert_from(payload, 'UTF8'), coalesce(headers::text, ''),"
                                 " key FROM outbox WHERE saga_id = $1 AND channel = $2",
                                 2, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 2), saga);
    if (headers)
        snprintf(headers, headers_size, "%s", PQgetvalue(res, 0, 1));
    json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    PQfinish(conn);
    assert_non_null(j);
    return j;
}

static void assert_attr(const json_t *ev, const char *name, const char *value) {
    const json_t *v = json_object_get(ev, name);
    assert_non_null(v);
    assert_string_equal(json_string_value(v), value);
}

static void test_start_commits_row_command_event_timer_and_history(void **state) {
    fixture_t *f = *state;
    sg_transition_t *tr = make_start(f, "s-start", "m-start");
    commit(f, tr, SG_OK);
    assert_int_equal(sg_transition_item(tr)->new_version, 1);
    assert_null(sg_transition_ignored(tr));

    assert_int_equal(count("SELECT count(*) FROM sagas WHERE id = '%s' AND status = 'running'"
                           " AND current_step = 'reserve' AND version = 1",
                           "s-start"),
                     1);
    json_t *cmd = outbox_payload("s-start", "kafka:stock", NULL, 0);
    assert_attr(cmd, "specversion", "1.0");
    assert_attr(cmd, "id", "s-start/reserve/do/1");
    assert_attr(cmd, "type", "stock.reserve");
    assert_attr(cmd, "source", "/test");
    assert_attr(cmd, "sagaid", "s-start");
    assert_attr(cmd, "sagatype", "pair");
    assert_attr(cmd, "sagastep", "reserve");
    assert_attr(cmd, "replyto", "kafka:saga.replies");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cmd, "data"), "sku")),
                        "A-1");
    assert_int_equal(strncmp(json_string_value(json_object_get(cmd, "traceparent")),
                             "00-0af7651916cd43dd8448eb211c80319c-", 36),
                     0);
    json_decref(cmd);
    json_t *ev = outbox_payload("s-start", "kafka:saga.events", NULL, 0);
    assert_attr(ev, "type", "saga.started");
    json_decref(ev);
    assert_int_equal(count("SELECT count(*) FROM timers WHERE saga_id = '%s'"
                           " AND kind = 'step_timeout' AND step = 'reserve'",
                           "s-start"),
                     1);
    assert_true(count("SELECT count(*) FROM saga_history WHERE saga_id = '%s'", "s-start") >= 2);
    assert_int_equal(count("SELECT count(*) FROM inbox WHERE message_id = '%s'", "m-start"), 1);
    sg_transition_destroy(tr);
}

static void test_two_inputs_of_one_saga_chain_in_one_batch(void **state) {
    fixture_t *f = *state;
    sg_transition_t *start = make_start(f, "s-chain", "m-chain-1");
    sg_transition_t *reply = make_reply(f, sg_transition_saga(start), 1, "s-chain/reserve/do/1",
                                        "m-chain-2");
    sg_store_item_t items[2] = {*sg_transition_item(start), *sg_transition_item(reply)};
    assert_int_equal(sg_store_batch(f->st, items, 2), SG_OK);
    assert_int_equal(items[0].result, SG_OK);
    assert_int_equal(items[1].result, SG_OK);
    assert_int_equal(items[1].new_version, 2);
    assert_int_equal(count("SELECT count(*) FROM sagas WHERE id = '%s' AND version = 2"
                           " AND current_step = 'charge'",
                           "s-chain"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM timers WHERE saga_id = '%s' AND step = 'reserve'",
                           "s-chain"),
                     0);
    json_t *charge = outbox_payload("s-chain", "kafka:cards", NULL, 0);
    assert_attr(charge, "id", "s-chain/charge/do/1");
    json_decref(charge);
    sg_transition_destroy(start);
    sg_transition_destroy(reply);
}

static void test_a_stale_version_is_a_conflict_and_commits_nothing(void **state) {
    fixture_t *f = *state;
    sg_transition_t *start = make_start(f, "s-stale", "m-stale-1");
    commit(f, start, SG_OK);
    sg_transition_t *first = make_reply(f, sg_transition_saga(start), 1, "s-stale/reserve/do/1",
                                        "m-stale-2");
    commit(f, first, SG_OK);
    /* Made from the state at version 1 again: another worker's view. */
    sg_transition_t *late = make_reply(f, sg_transition_saga(start), 1, "s-stale/reserve/do/1",
                                       "m-stale-3");
    commit(f, late, SG_ERR_CONFLICT);
    assert_int_equal(count("SELECT count(*) FROM inbox WHERE message_id = '%s'", "m-stale-3"), 0);
    assert_int_equal(count("SELECT version FROM sagas WHERE id = '%s'", "s-stale"), 2);
    sg_transition_destroy(start);
    sg_transition_destroy(first);
    sg_transition_destroy(late);
}

static void test_run_one_aborts_and_sends_the_compensation_over_amqp(void **state) {
    fixture_t *f = *state;
    sg_transition_t *start = make_start(f, "s-abort", "m-abort-1");
    commit(f, start, SG_OK);
    sg_transition_t *reply = make_reply(f, sg_transition_saga(start), 1, "s-abort/reserve/do/1",
                                        "m-abort-2");
    commit(f, reply, SG_OK);

    sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = "operator"};
    sg_transition_t *tr = NULL;
    char errstr[512];
    assert_int_equal(sg_transition_run_one(f->st, f->dc, "s-abort", &in, NULL, NOW + 20, &ENV,
                                           &tr, errstr, sizeof errstr),
                     SG_OK);
    assert_non_null(tr);
    assert_int_equal(sg_saga_status(sg_transition_saga(tr)), SG_SAGA_COMPENSATING);
    assert_int_equal(count("SELECT count(*) FROM sagas WHERE id = '%s'"
                           " AND status = 'compensating' AND version = 3",
                           "s-abort"),
                     1);
    char headers[512];
    json_t *undo = outbox_payload("s-abort", "amqp:/stock.undo", headers, sizeof headers);
    assert_attr(undo, "id", "s-abort/reserve/undo/1");
    assert_attr(undo, "replyto", "amqp:/saga.replies");
    assert_string_equal(json_string_value(json_object_get(json_object_get(undo, "data"), "id")),
                        "res-7");
    json_decref(undo);
    json_t *h = json_loads(headers, 0, NULL);
    assert_non_null(h);
    assert_attr(h, "message_id", "s-abort/reserve/undo/1");
    assert_attr(h, "correlation_id", "s-abort");
    json_decref(h);
    sg_transition_destroy(tr);
    sg_transition_destroy(start);
    sg_transition_destroy(reply);
}

static void test_run_one_applies_each_input_on_the_latest_version(void **state) {
    fixture_t *f = *state;
    sg_transition_t *start = make_start(f, "s-twice", "m-twice-1");
    commit(f, start, SG_OK);
    sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = "first"};
    char errstr[512];
    sg_transition_t *tr = NULL;
    assert_int_equal(sg_transition_run_one(f->st, f->dc, "s-twice", &in, "op-1", NOW + 5, &ENV,
                                           &tr, errstr, sizeof errstr),
                     SG_OK);
    assert_null(sg_transition_ignored(tr));
    sg_transition_destroy(tr);
    /* The second abort finds the saga no longer running: recorded, ignored. */
    in.reason = "second";
    assert_int_equal(sg_transition_run_one(f->st, f->dc, "s-twice", &in, "op-2", NOW + 6, &ENV,
                                           &tr, errstr, sizeof errstr),
                     SG_OK);
    assert_non_null(sg_transition_ignored(tr));
    assert_int_equal(count("SELECT version FROM sagas WHERE id = '%s'", "s-twice"), 3);
    assert_int_equal(count("SELECT count(*) FROM saga_history WHERE saga_id = '%s'"
                           " AND detail ? 'ignored'",
                           "s-twice"),
                     1);
    sg_transition_destroy(tr);
    sg_transition_destroy(start);
}

static void test_run_one_reports_unknown_saga_and_seen_message(void **state) {
    fixture_t *f = *state;
    sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = "x"};
    char errstr[512];
    assert_int_equal(sg_transition_run_one(f->st, f->dc, "nope", &in, NULL, NOW, &ENV, NULL,
                                           errstr, sizeof errstr),
                     SG_ERR_NOT_FOUND);
    assert_non_null(strstr(errstr, "nope"));
    sg_transition_t *start = make_start(f, "s-dup", "m-dup-1");
    commit(f, start, SG_OK);
    assert_int_equal(sg_transition_run_one(f->st, f->dc, "s-dup", &in, "m-dup-1", NOW, &ENV,
                                           NULL, errstr, sizeof errstr),
                     SG_ERR_DUPLICATE);
    assert_int_equal(count("SELECT version FROM sagas WHERE id = '%s'", "s-dup"), 1);
    sg_transition_destroy(start);
}

static void test_defcache_resolves_stored_definitions_by_hash(void **state) {
    fixture_t *f = *state;
    sg_defcache_t *dc = sg_defcache_new();
    const sg_def_t *def = NULL;
    char errstr[512];
    assert_null(sg_defcache_latest(dc, "pair"));
    assert_int_equal(sg_defcache_resolve(dc, f->st, "pair", 1, f->def->sha256, &def, errstr,
                                         sizeof errstr),
                     SG_OK);
    assert_non_null(def);
    assert_string_equal(def->sha256, f->def->sha256);
    assert_int_equal(def->nsteps, 2);
    assert_int_equal(sg_defcache_resolve(dc, f->st, "pair", 1, TESTDB_DEF_SHA, &def, errstr,
                                         sizeof errstr),
                     SG_ERR_INVALID);
    assert_int_equal(sg_defcache_resolve(dc, f->st, "pair", 9, NULL, &def, errstr, sizeof errstr),
                     SG_ERR_NOT_FOUND);
    sg_defcache_destroy(dc);
}

static void test_defcache_refuses_changed_content_under_the_same_version(void **state) {
    fixture_t *f = *state;
    sg_defcache_t *dc = sg_defcache_new();
    sg_def_set_t *set = sg_def_set_new();
    char errstr[512];
    char changed[2048];
    snprintf(changed, sizeof changed, "%s", PAIR);
    char *at = strstr(changed, "card.charge");
    assert_non_null(at);
    memcpy(at, "card.refund", 11);
    assert_int_equal(sg_def_set_add(set, load_def(changed), errstr, sizeof errstr), SG_OK);
    assert_int_equal(sg_defcache_publish(dc, f->st, set, errstr, sizeof errstr), SG_ERR_INVALID);
    assert_non_null(strstr(errstr, "'pair' version 1"));
    assert_non_null(strstr(errstr, "bump version"));
    sg_defcache_destroy(dc);
}

static int group_setup(void **state) {
    return testdb_setup(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
        T(test_start_commits_row_command_event_timer_and_history),
        T(test_two_inputs_of_one_saga_chain_in_one_batch),
        T(test_a_stale_version_is_a_conflict_and_commits_nothing),
        T(test_run_one_aborts_and_sends_the_compensation_over_amqp),
        T(test_run_one_applies_each_input_on_the_latest_version),
        T(test_run_one_reports_unknown_saga_and_seen_message),
        T(test_defcache_resolves_stored_definitions_by_hash),
        T(test_defcache_refuses_changed_content_under_the_same_version),
#undef T
    };
    return cmocka_run_group_tests_name("transition", tests, group_setup, testdb_teardown);
}
