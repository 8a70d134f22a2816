/* The transition batch against a real PostgreSQL: everything a transition
 * causes commits together; a message seen before, a stale version or bad
 * input undoes that item alone and the rest of the batch commits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testdb.h"

static sg_store_t *st;

static int setup(void **state) {
    if (testdb_setup(state) != 0 || !(st = testdb_store()))
        return -1;
    return testdb_put_definition(st) == SG_OK ? 0 : -1;
}

static int teardown(void **state) {
    sg_store_destroy(st);
    return testdb_teardown(state);
}

static int64_t count(const char *table, const char *saga_id) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE saga_id = '%s'", table, saga_id);
    return testdb_scalar(sql);
}

static bool seen(const char *message_id) {
    bool s = false;
    assert_int_equal(sg_store_inbox_seen(st, message_id, &s), SG_OK);
    return s;
}

static int64_t version_of(const char *id) {
    sg_store_saga_t *got = NULL;
    if (sg_store_saga_load(st, id, &got) != SG_OK)
        return 0;
    int64_t v = got->version;
    sg_store_free(got);
    return v;
}

/* A creating item with one history entry and one outbox row. */
static sg_store_history_t started = {.event = "saga.started", .detail = "{\"by\": \"test\"}"};

static sg_store_item_t create_item(const sg_store_saga_t *saga, const char *message_id,
                                   sg_store_outmsg_t *msg) {
    return (sg_store_item_t){.message_id = message_id, .saga = saga, .saga_id = saga->id,
                             .history = &started, .nhistory = 1,
                             .outbox = msg, .noutbox = msg ? 1 : 0};
}

static const unsigned char binary[] = {'{', 0, 1, 2, 0xff, '}'};

static void test_batch_commits_inbox_history_outbox_and_timers_together(void **state) {
    (void)state;
    sg_store_saga_t saga = testdb_saga("all-parts", "running", "{\"at\": \"reserve\"}");
    sg_store_history_t history[] = {
        {.event = "saga.started"},
        {.event = "step.sent", .step = "reserve", .detail = "{\"attempt\": 1}"},
        {.event = "step.note", .step = "re\"serve, {x}", .detail = "{\"why\": \"say \\\"no\\\" \\\\ twice\"}"},
    };
    sg_store_outmsg_t msgs[] = {
        {.channel = "kafka:inventory.commands", .key = "all-parts", .payload = binary,
         .payload_len = sizeof binary, .headers = "{\"content-type\": \"application/json\"}"},
        {.channel = "amqp:/events", .payload = "{}", .payload_len = 2},
    };
    sg_store_timer_t arm[] = {
        {.kind = "step_timeout", .step = "reserve", .attempt = 1, .due_at_ms = 4102444800000},
        {.kind = "deadline", .due_at_ms = 4102444800000},
    };
    sg_store_item_t item = {.message_id = "msg-all-1", .saga = &saga, .saga_id = saga.id,
                            .history = history, .nhistory = 3, .outbox = msgs, .noutbox = 2,
                            .arm = arm, .narm = 2};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);
    assert_int_equal(item.new_version, 1);
    assert_true(seen("msg-all-1"));

    sg_store_history_row_t *h = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_history_list(st, "all-parts", &h, &n), SG_OK);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].event, "saga.started");
    assert_null(h[0].step);
    assert_null(h[0].detail);
    assert_string_equal(h[1].event, "step.sent");
    assert_string_equal(h[1].step, "reserve");
    assert_string_equal(h[1].detail, "{\"attempt\": 1}");
    assert_string_equal(h[2].step, "re\"serve, {x}");
    assert_string_equal(h[2].detail, "{\"why\": \"say \\\"no\\\" \\\\ twice\"}");
    assert_true(h[0].seq < h[1].seq && h[1].seq < h[2].seq);
    sg_store_free(h);

    sg_store_outbox_row_t *rows = NULL;
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].channel, "kafka:inventory.commands");
    assert_string_equal(rows[0].saga_id, "all-parts");
    assert_string_equal(rows[0].key, "all-parts");
    assert_int_equal(rows[0].payload_len, sizeof binary);
    assert_memory_equal(rows[0].payload, binary, sizeof binary);
    assert_string_equal(rows[0].headers, "{\"content-type\": \"application/json\"}");
    assert_null(rows[1].key);
    assert_null(rows[1].headers);
    int64_t ids[] = {rows[0].id, rows[1].id};
    sg_store_free(rows);
    assert_int_equal(sg_store_outbox_delete(st, ids, 2), SG_OK);
    assert_int_equal(count("timers", "all-parts"), 2);

    /* The next transition cancels one timer and re-arms the other. */
    sg_store_timer_t cancel[] = {{.kind = "deadline"}};
    sg_store_timer_t rearm[] = {
        {.kind = "step_timeout", .step = "reserve", .attempt = 2, .due_at_ms = 4102444900000}};
    saga.state = "{\"at\": \"charge\"}";
    item = (sg_store_item_t){.message_id = "msg-all-2", .saga = &saga, .saga_id = saga.id,
                             .expected_version = 1, .cancel = cancel, .ncancel = 1,
                             .arm = rearm, .narm = 1};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);
    assert_int_equal(item.new_version, 2);
    assert_int_equal(count("timers", "all-parts"), 1);
    assert_int_equal(testdb_scalar("SELECT attempt FROM timers WHERE saga_id = 'all-parts'"
                                   " AND kind = 'step_timeout' AND step = 'reserve'"),
                     2);
}

static void test_a_message_seen_before_is_a_duplicate_and_changes_nothing(void **state) {
    (void)state;
    sg_store_saga_t saga = testdb_saga("dup", "running", "{\"n\": 1}");
    sg_store_outmsg_t msg = {.channel = "kafka:x", .payload = "a", .payload_len = 1};
    sg_store_item_t item = create_item(&saga, "msg-dup", &msg);
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);

    /* Redelivered: the same message id, whatever the transition says. */
    saga.state = "{\"n\": 2}";
    item = create_item(&saga, "msg-dup", &msg);
    item.expected_version = 1;
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_ERR_DUPLICATE);
    assert_int_equal(version_of("dup"), 1);
    assert_int_equal(count("saga_history", "dup"), 1);
    assert_int_equal(count("outbox", "dup"), 1);

    /* And twice within one batch: the second is the duplicate. */
    sg_store_saga_t other = testdb_saga("dup-2", "running", "{}");
    sg_store_item_t twice[] = {create_item(&other, "msg-dup-2", NULL),
                               create_item(&other, "msg-dup-2", NULL)};
    twice[1].expected_version = 1;
    assert_int_equal(sg_store_batch(st, twice, 2), SG_OK);
    assert_int_equal(twice[0].result, SG_OK);
    assert_int_equal(twice[1].result, SG_ERR_DUPLICATE);
    assert_int_equal(version_of("dup-2"), 1);
}

static void test_bad_items_in_the_middle_leave_the_others_committed(void **state) {
    (void)state;
    /* A saga at version 2 for the conflicting item to miss. */
    sg_store_saga_t moved = testdb_saga("mid-moved", "running", "{\"v\": 1}");
    assert_int_equal(sg_store_saga_save(st, &moved, 0, NULL), SG_OK);
    moved.state = "{\"v\": 2}";
    assert_int_equal(sg_store_saga_save(st, &moved, 1, NULL), SG_OK);
    sg_store_saga_t seen_saga = testdb_saga("mid-seen", "running", "{}");
    sg_store_item_t first = create_item(&seen_saga, "msg-mid-seen", NULL);
    assert_int_equal(sg_store_batch(st, &first, 1), SG_OK);

    sg_store_saga_t a = testdb_saga("mid-a", "running", "{}");
    sg_store_saga_t stale = testdb_saga("mid-moved", "compensating", "{\"v\": \"stale\"}");
    sg_store_saga_t again = testdb_saga("mid-seen", "failed", "{}");
    sg_store_saga_t bad = testdb_saga("mid-bad", "running", "{not json");
    sg_store_saga_t e = testdb_saga("mid-e", "running", "{}");
    sg_store_outmsg_t msg = {.channel = "kafka:mid", .payload = "m", .payload_len = 1};
    sg_store_item_t items[] = {
        create_item(&a, "msg-mid-a", &msg),
        create_item(&stale, "msg-mid-stale", &msg),
        create_item(&again, "msg-mid-seen", &msg),
        create_item(&bad, "msg-mid-bad", &msg),
        create_item(&e, "msg-mid-e", &msg),
    };
    items[1].expected_version = 1;
    items[2].expected_version = 1;
    assert_int_equal(sg_store_batch(st, items, 5), SG_OK);
    assert_int_equal(items[0].result, SG_OK);
    assert_int_equal(items[1].result, SG_ERR_CONFLICT);
    assert_int_equal(items[2].result, SG_ERR_DUPLICATE);
    assert_int_equal(items[3].result, SG_ERR_INVALID);
    assert_true(items[3].errmsg[0] != '\0');
    assert_int_equal(items[4].result, SG_OK);

    /* The good ones committed with everything they carried. */
    assert_int_equal(version_of("mid-a"), 1);
    assert_int_equal(version_of("mid-e"), 1);
    assert_int_equal(count("outbox", "mid-a"), 1);
    assert_int_equal(count("saga_history", "mid-e"), 1);
    assert_true(seen("msg-mid-a") && seen("msg-mid-e"));
    /* The others left no trace, their inbox entries included: a redelivery
     * of the conflicting or bad message will be applied again. */
    assert_int_equal(version_of("mid-moved"), 2);
    assert_int_equal(count("outbox", "mid-moved"), 0);
    assert_false(seen("msg-mid-stale"));
    assert_false(seen("msg-mid-bad"));
    assert_int_equal(version_of("mid-bad"), 0);
    assert_int_equal(count("saga_history", "mid-bad"), 0);
    assert_int_equal(count("saga_history", "mid-seen"), 1);
}

static void test_items_on_one_saga_in_one_batch_chain_their_versions(void **state) {
    (void)state;
    sg_store_saga_t s1 = testdb_saga("chain", "running", "{\"n\": 1}");
    sg_store_saga_t s2 = testdb_saga("chain", "running", "{\"n\": 2}");
    sg_store_saga_t s3 = testdb_saga("chain", "completed", "{\"n\": 3}");
    sg_store_item_t items[] = {
        create_item(&s1, "msg-chain-1", NULL),
        create_item(&s2, "msg-chain-2", NULL),
        create_item(&s3, "msg-chain-3", NULL),
    };
    items[1].expected_version = 1;
    items[2].expected_version = 2;
    assert_int_equal(sg_store_batch(st, items, 3), SG_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(items[i].result, SG_OK);
        assert_int_equal(items[i].new_version, i + 1);
    }
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "chain", &got), SG_OK);
    assert_string_equal(got->status, "completed");
    assert_string_equal(got->state, "{\"n\": 3}");
    sg_store_free(got);
}

/* A batch larger than the server's unread answers should grow, every
 * seventh item stale. */
static void test_a_large_batch_commits_every_good_item(void **state) {
    (void)state;
    enum { N = 300 };
    static char ids[N][32], msg_ids[N][32];
    static sg_store_saga_t sagas[N];
    static sg_store_item_t items[N];
    sg_store_outmsg_t msg = {.channel = "kafka:large", .payload = "x", .payload_len = 1};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "large-%03d", i);
        snprintf(msg_ids[i], sizeof msg_ids[i], "msg-large-%03d", i);
        sagas[i] = testdb_saga(ids[i], "running", "{}");
        items[i] = create_item(&sagas[i], msg_ids[i], &msg);
        if (i % 7 == 3)
            items[i].expected_version = 5; /* no such saga at version 5 */
    }
    assert_int_equal(sg_store_batch(st, items, N), SG_OK);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].result, i % 7 == 3 ? SG_ERR_CONFLICT : SG_OK);
        ok += items[i].result == SG_OK;
    }
    assert_int_equal(testdb_scalar("SELECT count(*) FROM sagas WHERE id LIKE 'large-%'"), ok);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox WHERE channel = 'kafka:large'"),
                     ok);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM inbox WHERE message_id LIKE 'msg-large-%'"),
                     ok);
}

/* Polls a count until it reaches 'want' (5 s at most). */
static bool count_reaches(const char *sql, int64_t want) {
    for (int i = 0; i < 500; i++) {
        if (testdb_scalar(sql) >= want)
            return true;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A daemon streams items over two connections from one thread; if adding
 * an item waited for an earlier item's answer while that item waited on a
 * row lock, the thread would never seal the transaction the lock belongs
 * to. Here one thread holds the lock in stream A and streams into B, whose
 * first item waits on it: every add to B must return at once, more of them
 * than any read-behind would allow, and once A commits, B's stale item
 * comes back a conflict and the rest commit. */
static void test_adding_to_a_stream_never_waits_on_a_row_lock(void **state) {
    (void)state;
    enum { N = 40 };
    alarm(30); /* a wait that never ends fails the test instead of hanging it */
    sg_store_saga_t s1 = testdb_saga("locked", "running", "{\"n\": 1}");
    sg_store_item_t first = create_item(&s1, "msg-locked-1", NULL);
    assert_int_equal(sg_store_batch(st, &first, 1), SG_OK);
    sg_store_t *other = testdb_store();
    assert_non_null(other);

    sg_store_saga_t mine = testdb_saga("locked", "running", "{\"n\": \"mine\"}");
    sg_store_item_t a = create_item(&mine, "msg-locked-a", NULL);
    a.expected_version = 1;
    assert_int_equal(sg_store_stream_begin(st, NULL, 0), SG_OK);
    assert_int_equal(sg_store_stream_add(st, &a), SG_OK);
    /* A holds the row once its update ran: its connection sits idle in
     * its transaction. */
    assert_true(count_reaches("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                              " current_database() AND state = 'idle in transaction'", 1));

    static char ids[N][32], msg_ids[N][32];
    static sg_store_saga_t sagas[N];
    static sg_store_item_t items[N + 1];
    sg_store_saga_t theirs = testdb_saga("locked", "failed", "{\"n\": \"theirs\"}");
    items[0] = create_item(&theirs, "msg-locked-b", NULL);
    items[0].expected_version = 1;
    assert_int_equal(sg_store_stream_begin(other, NULL, 0), SG_OK);
    for (int i = 0; i <= N; i++) {
        if (i > 0) {
            snprintf(ids[i - 1], sizeof ids[i - 1], "unlocked-%02d", i);
            snprintf(msg_ids[i - 1], sizeof msg_ids[i - 1], "msg-unlocked-%02d", i);
            sagas[i - 1] = testdb_saga(ids[i - 1], "running", "{}");
            items[i] = create_item(&sagas[i - 1], msg_ids[i - 1], NULL);
        }
        assert_int_equal(sg_store_stream_add(other, &items[i]), SG_OK);
    }
    assert_true(count_reaches("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                              " current_database() AND wait_event_type = 'Lock'", 1));
    assert_int_equal(sg_store_stream_seal(other), SG_OK);

    assert_int_equal(sg_store_stream_finish(st), SG_OK);
    assert_int_equal(a.result, SG_OK);
    sg_err_t err = sg_store_stream_finish(other);
    if (err)
        fprintf(stderr, "second stream: %s\n", sg_store_errmsg(other));
    assert_int_equal(err, SG_OK);
    assert_int_equal(items[0].result, SG_ERR_CONFLICT);
    for (int i = 1; i <= N; i++)
        assert_int_equal(items[i].result, SG_OK);
    sg_store_saga_t *got = NULL;
    assert_int_equal(sg_store_saga_load(st, "locked", &got), SG_OK);
    assert_int_equal(got->version, 2);
    assert_string_equal(got->state, "{\"n\": \"mine\"}");
    sg_store_free(got);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM sagas WHERE id LIKE 'unlocked-%'"), N);
    sg_store_destroy(other);
    alarm(0);
}

static void test_an_empty_batch_is_nothing(void **state) {
    (void)state;
    assert_int_equal(sg_store_batch(st, NULL, 0), SG_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_commits_inbox_history_outbox_and_timers_together),
        cmocka_unit_test(test_a_message_seen_before_is_a_duplicate_and_changes_nothing),
        cmocka_unit_test(test_bad_items_in_the_middle_leave_the_others_committed),
        cmocka_unit_test(test_items_on_one_saga_in_one_batch_chain_their_versions),
        cmocka_unit_test(test_a_large_batch_commits_every_good_item),
        cmocka_unit_test(test_adding_to_a_stream_never_waits_on_a_row_lock),
        cmocka_unit_test(test_an_empty_batch_is_nothing),
    };
    return cmocka_run_group_tests_name("store_batch", tests, setup, teardown);
}
