/* The outbox relay's and the timer wheel's claims against a real
 * PostgreSQL: racing workers never get the same row at once, leases bring
 * back what a worker did not finish, failures back off. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

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

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Puts 'n' outbox rows on 'channel' whose payloads are "0".."n-1". */
static void put_outbox(const char *channel, int n) {
    enum { PER_ITEM = 10 };
    char payloads[PER_ITEM][16];
    sg_store_outmsg_t msgs[PER_ITEM];
    for (int done = 0; done < n;) {
        int k = 0;
        for (; k < PER_ITEM && done < n; k++, done++) {
            snprintf(payloads[k], sizeof payloads[k], "%d", done);
            msgs[k] = (sg_store_outmsg_t){.channel = channel, .key = "k",
                                          .payload = payloads[k],
                                          .payload_len = strlen(payloads[k])};
        }
        sg_store_item_t item = {.saga_id = "relay-source", .outbox = msgs, .noutbox = (size_t)k};
        assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
        assert_int_equal(item.result, SG_OK);
    }
}

/* Claims and deletes everything on the channel; returns how many. */
static size_t drain(const char *channel) {
    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0, total = 0;
    do {
        assert_int_equal(sg_store_outbox_claim(st, 100, 60000, &rows, &n), SG_OK);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(rows[i].channel, channel);
            assert_int_equal(sg_store_outbox_delete(st, &rows[i].id, 1), SG_OK);
        }
        total += n;
        sg_store_free(rows);
    } while (n > 0);
    return total;
}

/* ---- outbox ---- */

enum { RELAYS = 4, ROWS = 1000 };

typedef struct relay {
    int *published;        /* per payload number */
    pthread_mutex_t *lock;
    sg_err_t failure;
    char failure_msg[512];
} relay_t;

static void *relay_run(void *arg) {
    relay_t *r = arg;
    sg_store_t *own = testdb_store();
    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0;
    if (!own) {
        r->failure = SG_ERR_CONN;
        return NULL;
    }
    do {
        if ((r->failure = sg_store_outbox_claim(own, 25, 60000, &rows, &n)))
            break;
        int64_t ids[25];
        for (size_t i = 0; i < n; i++) {
            char text[16];
            snprintf(text, sizeof text, "%.*s", (int)rows[i].payload_len,
                     (const char *)rows[i].payload);
            pthread_mutex_lock(r->lock);
            r->published[atoi(text)]++;
            pthread_mutex_unlock(r->lock);
            ids[i] = rows[i].id;
        }
        sg_store_free(rows);
        r->failure = sg_store_outbox_delete(own, ids, n);
    } while (!r->failure && n > 0);
    if (r->failure)
        snprintf(r->failure_msg, sizeof r->failure_msg, "%s", sg_store_errmsg(own));
    sg_store_destroy(own);
    return NULL;
}

static void test_four_relays_publish_every_row_exactly_once(void **state) {
    (void)state;
    put_outbox("kafka:relayed", ROWS);
    static int published[ROWS];
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    relay_t relays[RELAYS];
    pthread_t threads[RELAYS];
    for (int i = 0; i < RELAYS; i++) {
        relays[i] = (relay_t){.published = published, .lock = &lock};
        pthread_create(&threads[i], NULL, relay_run, &relays[i]);
    }
    for (int i = 0; i < RELAYS; i++) {
        pthread_join(threads[i], NULL);
        if (relays[i].failure)
            fail_msg("relay %d: %s", i, relays[i].failure_msg);
    }
    for (int i = 0; i < ROWS; i++)
        if (published[i] != 1)
            fail_msg("row %d published %d times", i, published[i]);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox"), 0);
}

static void test_unconfirmed_rows_come_back_when_the_lease_ends(void **state) {
    (void)state;
    put_outbox("kafka:leased", 3);
    sg_store_outbox_row_t *rows = NULL, *again = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_outbox_claim(st, 10, 300, &rows, &n), SG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(sg_store_outbox_claim(st, 10, 300, &again, &n), SG_OK);
    assert_int_equal(n, 0);
    sleep_ms(600);
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &again, &n), SG_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(again[i].id, rows[i].id);
    int64_t ids[] = {again[0].id, again[1].id, again[2].id};
    assert_int_equal(sg_store_outbox_delete(st, ids, 3), SG_OK);
    sg_store_free(rows);
    sg_store_free(again);
    assert_int_equal(drain("kafka:leased"), 0);
}

static void test_a_failed_publish_backs_off_with_the_error_recorded(void **state) {
    (void)state;
    put_outbox("kafka:failing", 1);
    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 1);
    int64_t id = rows[0].id;
    assert_int_equal(rows[0].attempts, 0);
    sg_store_free(rows);

    assert_int_equal(sg_store_outbox_fail(st, id, "broker 'k1' down", 3600000), SG_OK);
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 0);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox WHERE attempts = 1"
                                   " AND last_error = 'broker ''k1'' down'"
                                   " AND next_attempt_at > now() + interval '50 minutes'"),
                     1);

    assert_int_equal(sg_store_outbox_fail(st, id, "again", 0), SG_OK);
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].attempts, 2);
    assert_int_equal(sg_store_outbox_delete(st, &rows[0].id, 1), SG_OK);
    sg_store_free(rows);
}

/* The rows a worker publishes itself: the batch gives each row's id back,
 * other relays do not see them while the writer's lease lasts, and the
 * next batch deletes the confirmed ones in its own transaction. */
static void test_fresh_rows_come_back_with_ids_leased_to_their_writer(void **state) {
    (void)state;
    sg_store_set_outbox_lease(st, 400);
    sg_store_outmsg_t msgs[] = {
        {.channel = "kafka:fresh", .key = "f", .payload = "a", .payload_len = 1},
        {.channel = "kafka:fresh", .key = "f", .payload = "b", .payload_len = 1},
    };
    sg_store_item_t item = {.saga_id = "fresh-source", .outbox = msgs, .noutbox = 2};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);
    assert_true(msgs[0].id > 0 && msgs[1].id > msgs[0].id);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM outbox WHERE id IN (%lld, %lld)",
             (long long)msgs[0].id, (long long)msgs[1].id);
    assert_int_equal(testdb_scalar(sql), 2);

    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 0); /* the writer's lease */

    /* Row 0 confirmed: deleted with the next batch, which commits its own
     * item too; row 1 was not, and comes back to the sweep. */
    sg_store_outmsg_t next = {.channel = "kafka:fresh", .payload = "c", .payload_len = 1};
    sg_store_item_t item2 = {.saga_id = "fresh-source", .outbox = &next, .noutbox = 1};
    assert_int_equal(sg_store_batch_delete(st, &item2, 1, &msgs[0].id, 1), SG_OK);
    assert_int_equal(item2.result, SG_OK);
    assert_int_equal(testdb_scalar(sql), 1);
    sleep_ms(700);
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].id, msgs[1].id);
    assert_int_equal(rows[1].id, next.id);
    int64_t ids[] = {rows[0].id, rows[1].id};
    sg_store_free(rows);
    /* A batch of deletes alone. */
    assert_int_equal(sg_store_batch_delete(st, NULL, 0, ids, 2), SG_OK);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox WHERE channel = 'kafka:fresh'"),
                     0);
    sg_store_set_outbox_lease(st, 0);
}

/* A batch whose plain first try fails on one item is sent again with
 * savepoints: the deletes and the good items commit once, the bad undone. */
static void test_a_failed_item_costs_neither_the_deletes_nor_the_others(void **state) {
    (void)state;
    put_outbox("kafka:to-delete", 2);
    sg_store_outbox_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_outbox_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 2);
    int64_t ids[] = {rows[0].id, rows[1].id};
    sg_store_free(rows);
    sg_store_outmsg_t m1 = {.channel = "kafka:after", .payload = "1", .payload_len = 1};
    sg_store_outmsg_t m2 = {.channel = "kafka:after", .payload = "2", .payload_len = 1};
    sg_store_item_t items[] = {
        {.message_id = "plain-ok-1", .saga_id = "plain", .outbox = &m1, .noutbox = 1},
        {.message_id = "plain-ok-1", .saga_id = "plain"}, /* seen in this very batch */
        {.message_id = "plain-ok-2", .saga_id = "plain", .outbox = &m2, .noutbox = 1},
    };
    assert_int_equal(sg_store_batch_delete(st, items, 3, ids, 2), SG_OK);
    assert_int_equal(items[0].result, SG_OK);
    assert_int_equal(items[1].result, SG_ERR_DUPLICATE);
    assert_int_equal(items[2].result, SG_OK);
    assert_true(m1.id > 0 && m2.id > m1.id);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox WHERE channel = 'kafka:to-delete'"),
                     0);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox WHERE channel = 'kafka:after'"),
                     2);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM inbox WHERE message_id LIKE 'plain-ok-%'"),
                     2);
    assert_int_equal(drain("kafka:after"), 2);
}

/* ---- timers ---- */

#define PAST 1000           /* 1970: due by any clock */
#define FUTURE 4102444800000 /* 2100 */

/* Arms one timer per saga id "<prefix>-<i>". */
static void arm_timers(const char *prefix, int n, int64_t due_at_ms) {
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        sg_store_timer_t t = {.kind = "step_timeout", .step = "reserve", .attempt = 1,
                              .due_at_ms = due_at_ms};
        sg_store_item_t item = {.saga_id = id, .arm = &t, .narm = 1};
        assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
        assert_int_equal(item.result, SG_OK);
    }
}

enum { WHEELS = 4, DUE = 200 };

typedef struct wheel {
    int *fired;            /* per timer number */
    pthread_mutex_t *lock;
    int foreign;           /* claimed timers that were not due */
    sg_err_t failure;
} wheel_t;

static void *wheel_run(void *arg) {
    wheel_t *w = arg;
    sg_store_t *own = testdb_store();
    sg_store_timer_row_t *rows = NULL;
    size_t n = 0;
    if (!own) {
        w->failure = SG_ERR_CONN;
        return NULL;
    }
    do {
        if ((w->failure = sg_store_timers_claim(own, 7, 60000, &rows, &n)))
            break;
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(w->lock);
            if (strncmp(rows[i].saga_id, "due-", 4) == 0)
                w->fired[atoi(rows[i].saga_id + 4)]++;
            else
                w->foreign++;
            pthread_mutex_unlock(w->lock);
        }
        sg_store_free(rows);
    } while (n > 0);
    sg_store_destroy(own);
    return NULL;
}

static void test_due_timers_are_claimed_once_by_racing_workers(void **state) {
    (void)state;
    arm_timers("due", DUE, PAST);
    arm_timers("later", 20, FUTURE);
    static int fired[DUE];
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    wheel_t wheels[WHEELS];
    pthread_t threads[WHEELS];
    for (int i = 0; i < WHEELS; i++) {
        wheels[i] = (wheel_t){.fired = fired, .lock = &lock};
        pthread_create(&threads[i], NULL, wheel_run, &wheels[i]);
    }
    for (int i = 0; i < WHEELS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(wheels[i].failure, SG_OK);
        assert_int_equal(wheels[i].foreign, 0);
    }
    for (int i = 0; i < DUE; i++)
        if (fired[i] != 1)
            fail_msg("timer due-%d claimed %d times", i, fired[i]);
    /* Claimed, not handled: they stay until their transitions delete them. */
    assert_int_equal(testdb_scalar("SELECT count(*) FROM timers WHERE saga_id LIKE 'due-%'"
                                   " AND claimed_until > now()"),
                     DUE);
    assert_int_equal(testdb_exec("DELETE FROM timers"), 0);
}

static sg_store_timer_row_t *claim_one(int64_t lease_ms) {
    sg_store_timer_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_timers_claim(st, 10, lease_ms, &rows, &n), SG_OK);
    assert_int_equal(n, 1);
    return rows;
}

static void test_fired_timer_is_deleted_by_its_transition_but_a_rearmed_one_stays(void **state) {
    (void)state;
    sg_store_saga_t saga = testdb_saga("timed", "running", "{}");
    sg_store_timer_t t = {.kind = "step_timeout", .step = "charge", .attempt = 1,
                          .due_at_ms = PAST};
    sg_store_item_t item = {.saga = &saga, .saga_id = "timed", .arm = &t, .narm = 1};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);

    sg_store_timer_row_t *fired = claim_one(60000);
    assert_string_equal(fired->saga_id, "timed");
    assert_string_equal(fired->kind, "step_timeout");
    assert_string_equal(fired->step, "charge");
    assert_int_equal(fired->attempt, 1);
    assert_int_equal(fired->due_at_ms, PAST);

    /* Before the firing is handled, another transition re-arms the timer. */
    t.attempt = 2;
    item = (sg_store_item_t){.saga = &saga, .saga_id = "timed", .expected_version = 1,
                             .arm = &t, .narm = 1};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);

    /* Handling the old firing deletes nothing... */
    item = (sg_store_item_t){.saga = &saga, .saga_id = "timed", .expected_version = 2,
                             .fired_timer_id = fired->id};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);
    sg_store_free(fired);
    /* ...and the re-armed timer, unclaimed again, fires as itself. */
    fired = claim_one(60000);
    assert_int_equal(fired->attempt, 2);
    item = (sg_store_item_t){.saga = &saga, .saga_id = "timed", .expected_version = 3,
                             .fired_timer_id = fired->id};
    assert_int_equal(sg_store_batch(st, &item, 1), SG_OK);
    assert_int_equal(item.result, SG_OK);
    sg_store_free(fired);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM timers WHERE saga_id = 'timed'"), 0);
}

static void test_an_unhandled_timer_fires_again_when_its_lease_ends(void **state) {
    (void)state;
    arm_timers("lease", 1, PAST);
    sg_store_timer_row_t *first = claim_one(300), *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_timers_claim(st, 10, 300, &rows, &n), SG_OK);
    assert_int_equal(n, 0);
    sleep_ms(600);
    sg_store_timer_row_t *second = claim_one(60000);
    assert_int_equal(second->id, first->id);
    sg_store_free(first);
    sg_store_free(second);
    assert_int_equal(testdb_exec("DELETE FROM timers"), 0);
}

static void test_a_timer_not_yet_due_by_the_database_clock_is_not_claimed(void **state) {
    (void)state;
    int64_t db_now = testdb_scalar("SELECT (extract(epoch from now()) * 1000)::int8");
    arm_timers("soon", 1, db_now + 3600000);
    sg_store_timer_row_t *rows = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_timers_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 0);
    assert_int_equal(testdb_exec("UPDATE timers SET due_at = now() - interval '1 second'"), 0);
    assert_int_equal(sg_store_timers_claim(st, 10, 60000, &rows, &n), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].saga_id, "soon-0");
    sg_store_free(rows);
    assert_int_equal(testdb_exec("DELETE FROM timers"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_relays_publish_every_row_exactly_once),
        cmocka_unit_test(test_unconfirmed_rows_come_back_when_the_lease_ends),
        cmocka_unit_test(test_a_failed_publish_backs_off_with_the_error_recorded),
        cmocka_unit_test(test_fresh_rows_come_back_with_ids_leased_to_their_writer),
        cmocka_unit_test(test_a_failed_item_costs_neither_the_deletes_nor_the_others),
        cmocka_unit_test(test_due_timers_are_claimed_once_by_racing_workers),
        cmocka_unit_test(test_fired_timer_is_deleted_by_its_transition_but_a_rearmed_one_stays),
        cmocka_unit_test(test_an_unhandled_timer_fires_again_when_its_lease_ends),
        cmocka_unit_test(test_a_timer_not_yet_due_by_the_database_clock_is_not_claimed),
    };
    return cmocka_run_group_tests_name("store_relay", tests, setup, teardown);
}
