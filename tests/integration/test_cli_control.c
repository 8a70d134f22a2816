/* sagactl abort and retry against a real PostgreSQL: they go through the
 * transition path (engine, versioned update, history, outbox), so their
 * commands and lifecycle events wait in the outbox for the daemon's relay;
 * the engine's refusals are recorded and exit 1; and each races a
 * concurrent update of the same saga without losing either: the loser
 * reloads and applies its input again, the final version counts every
 * transition and the history holds both inputs.
 *
 * The races are made deterministic with a gate: a trigger on the inbox
 * makes the transaction of a chosen message id wait on an advisory lock the
 * test holds. Both sagactl and sg_transition_run_one load the saga before
 * their transaction's inbox insert, so a run held there has read the saga
 * and will write it with that version. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "testdb.h"
#include "cli_fixture.h"

#define GATE_KEY "4242"

static int group_setup(void **state) {
    if (fx_setup(state) != 0)
        return -1;
    return testdb_exec(
        "CREATE TABLE race_gate (prefix text NOT NULL);"
        "CREATE FUNCTION race_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN"
        "  IF EXISTS (SELECT 1 FROM race_gate WHERE NEW.message_id LIKE prefix || '%') THEN"
        "   PERFORM pg_advisory_lock(" GATE_KEY ");"
        "   PERFORM pg_advisory_unlock(" GATE_KEY ");"
        "  END IF;"
        "  RETURN NEW;"
        " END $$;"
        "CREATE TRIGGER race_gate BEFORE INSERT ON inbox"
        " FOR EACH ROW EXECUTE FUNCTION race_gate_wait();");
}

/* ---- helpers ---- */

static json_t *show(const char *id) {
    cli_run_t r = CLI("show", id, "--json");
    fx_expect_rc(&r, 0);
    json_t *doc = fx_json(&r);
    fx_free(&r);
    return doc;
}

static json_int_t version_of(const json_t *doc) {
    return json_integer_value(json_object_get(doc, "version"));
}

static const char *step_status(const json_t *doc, size_t k) {
    return fx_str(json_array_get(json_object_get(doc, "steps"), k), "status");
}

/* The index in the history of the n-th (0-based) entry of 'event', or -1. */
static int history_index(const json_t *doc, const char *event, int n) {
    const json_t *history = json_object_get(doc, "history");
    size_t i;
    const json_t *h;
    json_array_foreach(history, i, h) {
        if (!strcmp(fx_str(h, "event"), event) && n-- == 0)
            return (int)i;
    }
    return -1;
}

static const json_t *history_at(const json_t *doc, int i) {
    return json_array_get(json_object_get(doc, "history"), (size_t)i);
}

static bool ignored(const json_t *entry) {
    const json_t *why = json_object_get(json_object_get(entry, "detail"), "ignored");
    return why && !json_is_null(why);
}

/* The outbox payload of the message 'msg_id' of 'saga' on 'channel', or
 * NULL when there is none. */
static json_t *outbox_message(const char *saga, const char *channel, const char *msg_id) {
    PGconn *conn = testdb_connect(testdb.conninfo);
    assert_non_null(conn);
    const char *params[] = {saga, channel, msg_id};
    PGresult *res = PQexecParams(conn,
                                 "SELECT convert_from(payload, 'UTF8') FROM outbox"
                                 " WHERE saga_id = $1 AND channel = $2"
                                 " AND convert_from(payload, 'UTF8')::jsonb->>'id' = $3",
                                 3, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    json_t *j = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    PQclear(res);
    PQfinish(conn);
    return j;
}

static bool outbox_has_type(const char *saga, const char *channel, const char *type) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM outbox WHERE saga_id = '%s' AND channel = '%s'"
             " AND convert_from(payload, 'UTF8')::jsonb->>'type' = '%s'",
             saga, channel, type);
    return testdb_scalar(sql) > 0;
}

/* ---- the gate ---- */

static PGconn *gate_close(const char *prefix) {
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM race_gate; INSERT INTO race_gate VALUES ('%s')",
             prefix);
    assert_int_equal(testdb_exec(sql), 0);
    PGconn *gate = testdb_connect(testdb.conninfo);
    assert_non_null(gate);
    PGresult *res = PQexec(gate, "SELECT pg_advisory_lock(" GATE_KEY ")");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    return gate;
}

/* Waits until some transaction waits at the gate. */
static void gate_wait_for_waiter(void) {
    for (int i = 0; i < 3000; i++) {
        if (testdb_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                          " AND NOT granted AND objid = " GATE_KEY " AND database ="
                          " (SELECT oid FROM pg_database WHERE datname = current_database())") > 0)
            return;
        usleep(10000);
    }
    fail_msg("nothing reached the gate");
}

static void gate_open(PGconn *gate) {
    PGresult *res = PQexec(gate, "SELECT pg_advisory_unlock(" GATE_KEY ")");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    PQfinish(gate);
    assert_int_equal(testdb_exec("DELETE FROM race_gate"), 0);
}

/* ---- abort ---- */

static void test_abort_compensates_a_running_saga_through_the_outbox(void **state) {
    (void)state;
    int64_t version = fx_running("c-abort");
    cli_run_t r = CLI("abort", "c-abort", "--reason", "customer cancelled", "--json");
    fx_expect_rc(&r, 0);
    json_t *out = fx_json(&r);
    assert_string_equal(fx_str(out, "status"), "compensating");
    assert_int_equal(json_integer_value(json_object_get(out, "version")), version + 1);
    assert_int_equal(json_integer_value(json_object_get(out, "commands")), 1);
    assert_true(json_is_null(json_object_get(out, "ignored")));
    json_decref(out);
    fx_free(&r);

    json_t *doc = show("c-abort");
    assert_string_equal(fx_str(doc, "status"), "compensating");
    assert_int_equal(version_of(doc), version + 1);
    /* charge was in flight: its outcome is unknown, so it is undone first */
    assert_string_equal(step_status(doc, 0), "succeeded");
    assert_string_equal(step_status(doc, 1), "compensating");
    assert_string_equal(step_status(doc, 2), "skipped");
    int i = history_index(doc, "input.abort", 0);
    assert_true(i > 0);
    const json_t *input = json_object_get(json_object_get(history_at(doc, i), "detail"), "input");
    assert_string_equal(fx_str(input, "reason"), "customer cancelled");
    json_decref(doc);

    /* The compensation and the lifecycle event wait for the relay. */
    json_t *cmd = outbox_message("c-abort", "amqp:/cards", "c-abort/charge/undo/1");
    assert_non_null(cmd);
    assert_string_equal(fx_str(cmd, "type"), "card.refund");
    assert_string_equal(fx_str(cmd, "replyto"), "amqp:/saga.replies");
    json_decref(cmd);
    assert_true(outbox_has_type("c-abort", "kafka:saga.events", "saga.compensating"));
}

static void test_abort_text_says_what_happened(void **state) {
    (void)state;
    fx_running("c-abort-text");
    cli_run_t r = CLI("abort", "c-abort-text");
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "saga 'c-abort-text' aborted: now compensating, version 3; "
                                  "1 command queued for the daemon's relay"));
    fx_free(&r);
}

static void test_abort_of_a_finished_saga_is_refused_and_recorded(void **state) {
    (void)state;
    int64_t version = fx_completed("c-done");
    cli_run_t r = CLI("abort", "c-done");
    fx_expect_rc(&r, 1);
    assert_non_null(strstr(r.err, "saga 'c-done' not aborted: "));
    assert_non_null(strstr(r.err, "it stays completed"));
    fx_free(&r);
    json_t *doc = show("c-done");
    assert_string_equal(fx_str(doc, "status"), "completed");
    assert_int_equal(version_of(doc), version + 1);
    int i = history_index(doc, "input.abort", 0);
    assert_true(i > 0);
    assert_true(ignored(history_at(doc, i)));
    json_decref(doc);
}

static void test_abort_of_an_unknown_saga_exits_3(void **state) {
    (void)state;
    cli_run_t r = CLI("abort", "nobody");
    fx_expect_rc(&r, 3);
    assert_non_null(strstr(r.err, "cannot load saga 'nobody': no such saga"));
    fx_free(&r);
    r = CLI("retry", "nobody");
    fx_expect_rc(&r, 3);
    fx_free(&r);
}

static void test_abort_uses_the_daemons_channels_from_its_config(void **state) {
    (void)state;
    char path[] = "/tmp/sagactl-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *cfg = "{\"database_url\": \"postgresql:///unused\","
                      " \"kafka\": {\"brokers\": \"127.0.0.1:9\"},"
                      " \"events\": \"kafka:ops.events\","
                      " \"reply_to\": {\"amqp\": \"amqp:/ops.replies\"}}";
    assert_int_equal(write(fd, cfg, strlen(cfg)), (ssize_t)strlen(cfg));
    close(fd);
    fx_running("c-config");
    cli_run_t r = CLI("abort", "c-config", "--config", path);
    unlink(path);
    fx_expect_rc(&r, 0);
    fx_free(&r);
    json_t *cmd = outbox_message("c-config", "amqp:/cards", "c-config/charge/undo/1");
    assert_non_null(cmd);
    assert_string_equal(fx_str(cmd, "replyto"), "amqp:/ops.replies");
    json_decref(cmd);
    assert_true(outbox_has_type("c-config", "kafka:ops.events", "saga.compensating"));

    r = CLI("abort", "c-config", "--config", "/nonexistent/sagad.json");
    fx_expect_rc(&r, 1);
    assert_non_null(strstr(r.err, "cannot load the configuration"));
    fx_free(&r);
}

/* ---- retry ---- */

static void test_retry_resends_the_compensation_a_failed_saga_is_stuck_on(void **state) {
    (void)state;
    int64_t version = fx_failed("c-retry");
    cli_run_t r = CLI("retry", "c-retry");
    fx_expect_rc(&r, 0);
    assert_non_null(strstr(r.out, "saga 'c-retry' resumed: now compensating"));
    fx_free(&r);
    json_t *doc = show("c-retry");
    assert_string_equal(fx_str(doc, "status"), "compensating");
    assert_int_equal(version_of(doc), version + 1);
    assert_false(ignored(history_at(doc, history_index(doc, "input.retry", 0))));
    json_decref(doc);
    json_t *cmd = outbox_message("c-retry", "kafka:stock", "c-retry/reserve/undo/2");
    assert_non_null(cmd);
    assert_string_equal(fx_str(cmd, "type"), "stock.release");
    json_decref(cmd);
    /* the participant answers now: the saga ends compensated */
    fx_reply("c-retry", "reserve", true, 2, NULL);
    doc = show("c-retry");
    assert_string_equal(fx_str(doc, "status"), "compensated");
    json_decref(doc);
}

static void test_retry_of_a_saga_that_has_not_failed_is_refused(void **state) {
    (void)state;
    int64_t version = fx_running("c-busy");
    cli_run_t r = CLI("retry", "c-busy", "--json");
    fx_expect_rc(&r, 1);
    json_t *out = fx_json(&r);
    assert_string_equal(fx_str(out, "status"), "running");
    assert_true(json_is_string(json_object_get(out, "ignored")));
    assert_int_equal(json_integer_value(json_object_get(out, "commands")), 0);
    json_decref(out);
    fx_free(&r);
    json_t *doc = show("c-busy");
    assert_int_equal(version_of(doc), version + 1);
    assert_string_equal(step_status(doc, 1), "running");
    json_decref(doc);
}

/* ---- races ---- */

/* sagactl abort reads version v and waits at the gate; a reply commits
 * v+1; the abort's write conflicts, it reloads and applies on top. */
static void test_abort_racing_a_reply_reloads_and_applies_after_it(void **state) {
    (void)state;
    int64_t version = fx_running("race-abort");
    PGconn *gate = gate_close("sagactl/");
    pid_t pid;
    int fds[2];
    fx_spawn(testdb.conninfo, NULL, (const char *const[]){"abort", "race-abort", NULL}, &pid,
             fds);
    gate_wait_for_waiter();
    fx_reply("race-abort", "charge", false, 1, NULL); /* the concurrent update wins */
    gate_open(gate);
    cli_run_t r = fx_wait(pid, fds);
    fx_expect_rc(&r, 0);
    fx_free(&r);

    json_t *doc = show("race-abort");
    assert_int_equal(version_of(doc), version + 2);
    int reply = history_index(doc, "input.reply", 1); /* charge's */
    int abort = history_index(doc, "input.abort", 0);
    assert_true(reply > 0 && abort > reply);
    assert_false(ignored(history_at(doc, reply)));
    assert_false(ignored(history_at(doc, abort)));
    /* the abort saw the reply: charge had succeeded and is compensated,
     * ship was in flight */
    assert_string_equal(fx_str(doc, "status"), "compensating");
    assert_string_equal(step_status(doc, 1), "compensating");
    assert_string_equal(step_status(doc, 2), "timed_out");
    json_decref(doc);
    json_t *cmd = outbox_message("race-abort", "amqp:/cards", "race-abort/charge/undo/1");
    assert_non_null(cmd);
    json_decref(cmd);
}

typedef struct concurrent {
    const char *saga_id;
    sg_err_t err;
    bool ignored;
    char errstr[512];
} concurrent_t;

/* An abort through sg_transition_run_one on a connection of its own, with a
 * message id the gate holds. */
static void *concurrent_abort(void *arg) {
    concurrent_t *c = arg;
    sg_store_t *st = sg_store_new(testdb.conninfo, c->errstr, sizeof c->errstr);
    sg_defcache_t *dc = sg_defcache_new();
    sg_transition_t *tr = NULL;
    sg_input_t in = {.kind = SG_INPUT_ABORT, .reason = "concurrent"};
    c->err = st && dc ? sg_transition_run_one(st, dc, c->saga_id, &in, "race/abort/1", fx_now(),
                                              &FX_ENV, &tr, c->errstr, sizeof c->errstr)
                      : SG_ERR_CONN;
    c->ignored = tr && sg_transition_ignored(tr);
    sg_transition_destroy(tr);
    sg_defcache_destroy(dc);
    sg_store_destroy(st);
    return NULL;
}

/* A concurrent abort reads version v and waits at the gate; sagactl retry
 * commits v+1; the abort's write conflicts, it reloads and applies on top
 * (the engine refuses an abort of a compensating saga: recorded, ignored). */
static void test_retry_racing_an_abort_wins_and_the_abort_reapplies(void **state) {
    (void)state;
    int64_t version = fx_failed("race-retry");
    PGconn *gate = gate_close("race/");
    concurrent_t c = {.saga_id = "race-retry", .err = SG_ERR_INTERNAL};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, concurrent_abort, &c), 0);
    gate_wait_for_waiter();
    cli_run_t r = CLI("retry", "race-retry");
    fx_expect_rc(&r, 0);
    fx_free(&r);
    gate_open(gate);
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (c.err)
        fprintf(stderr, "concurrent abort: %s\n", c.errstr);
    assert_int_equal(c.err, SG_OK);
    assert_true(c.ignored);

    json_t *doc = show("race-retry");
    assert_int_equal(version_of(doc), version + 2);
    int retry = history_index(doc, "input.retry", 0);
    int abort = history_index(doc, "input.abort", 0);
    assert_true(retry > 0 && abort > retry);
    assert_false(ignored(history_at(doc, retry)));
    assert_true(ignored(history_at(doc, abort)));
    assert_string_equal(fx_str(doc, "status"), "compensating");
    json_decref(doc);
    json_t *cmd = outbox_message("race-retry", "kafka:stock", "race-retry/reserve/undo/2");
    assert_non_null(cmd);
    json_decref(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abort_compensates_a_running_saga_through_the_outbox),
        cmocka_unit_test(test_abort_text_says_what_happened),
        cmocka_unit_test(test_abort_of_a_finished_saga_is_refused_and_recorded),
        cmocka_unit_test(test_abort_of_an_unknown_saga_exits_3),
        cmocka_unit_test(test_abort_uses_the_daemons_channels_from_its_config),
        cmocka_unit_test(test_retry_resends_the_compensation_a_failed_saga_is_stuck_on),
        cmocka_unit_test(test_retry_of_a_saga_that_has_not_failed_is_refused),
        cmocka_unit_test(test_abort_racing_a_reply_reloads_and_applies_after_it),
        cmocka_unit_test(test_retry_racing_an_abort_wins_and_the_abort_reapplies),
    };
    return cmocka_run_group_tests(tests, group_setup, fx_teardown);
}
