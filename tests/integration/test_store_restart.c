/* PostgreSQL restarted (fast shutdown) while a worker commits batches: the
 * store reports the lost connection as SG_ERR_CONN, reconnects on a later
 * call, and when the worker retries what it did not see committed, the
 * inbox makes the batches that did commit duplicates. In the end nothing is
 * lost and nothing is applied twice.
 *
 * Needs SAGA_PG_RESTART_CMD: a shell command that restarts the server when
 * given the shutdown mode as its last word ("... pg_ctl -D DIR -w restart -m").
 * The restart disturbs every client of that server, so this test runs alone
 * (RUN_SERIAL). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "testdb.h"

enum { SAGAS = 8, MIN_ROUNDS = 60, RESTART_AT_ROUND = 15, GIVE_UP_SECONDS = 120 };

static const char *restart_cmd;
static atomic_int round_reached;
static atomic_int restart_done;
static int restart_status;

static int setup(void **state) {
    restart_cmd = getenv("SAGA_PG_RESTART_CMD");
    if (!restart_cmd || !restart_cmd[0]) {
        fprintf(stderr, "SAGA_PG_RESTART_CMD is not set: this test restarts PostgreSQL with "
                        "it (for example \"pg_ctl -D DATA -w restart -m\", run as the "
                        "server's owner; the local stack scripts export it)\n");
        return -1;
    }
    return testdb_setup(state);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *restarter(void *arg) {
    (void)arg;
    while (atomic_load(&round_reached) < RESTART_AT_ROUND)
        sleep_ms(5);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s fast >/dev/null 2>&1", restart_cmd);
    restart_status = system(cmd);
    atomic_store(&restart_done, 1);
    return NULL;
}

typedef struct worker {
    sg_store_t *st;
    char ids[SAGAS][16];
    int conn_errors;
    int duplicates;         /* committed before a lost connection hid it */
} worker_t;

/* Commits one round: for every saga, the message "m-<round>-<saga>" adds
 * one to its counter, with a history entry and an outbox row. Retries until
 * every message is known committed (applied now, or a duplicate of an
 * application whose answer was lost). */
static void run_round(worker_t *w, int round) {
    bool pending[SAGAS];
    int left = SAGAS;
    for (int i = 0; i < SAGAS; i++)
        pending[i] = true;
    time_t start = time(NULL);
    while (left > 0) {
        if (time(NULL) - start > GIVE_UP_SECONDS)
            fail_msg("round %d not committed after %d s: %s", round, GIVE_UP_SECONDS,
                     sg_store_errmsg(w->st));
        const char *ids[SAGAS];
        for (int i = 0; i < SAGAS; i++)
            ids[i] = w->ids[i];
        sg_store_saga_t *cur = NULL;
        sg_err_t err = sg_store_saga_load_many(w->st, ids, SAGAS, &cur);
        if (err == SG_ERR_CONN) {
            w->conn_errors++;
            sleep_ms(50);
            continue;
        }
        assert_int_equal(err, SG_OK);

        sg_store_item_t items[SAGAS];
        sg_store_saga_t next[SAGAS];
        char msg_ids[SAGAS][32], states[SAGAS][32];
        sg_store_history_t h = {.event = "counted"};
        sg_store_outmsg_t out = {.channel = "kafka:counted", .payload = "+1", .payload_len = 2};
        int map[SAGAS], n = 0;
        for (int i = 0; i < SAGAS; i++) {
            if (!pending[i])
                continue;
            json_t *doc = json_loads(cur[i].state, 0, NULL);
            assert_non_null(doc);
            snprintf(states[n], sizeof states[n], "{\"n\": %lld}",
                     (long long)json_integer_value(json_object_get(doc, "n")) + 1);
            json_decref(doc);
            snprintf(msg_ids[n], sizeof msg_ids[n], "m-%d-%d", round, i);
            next[n] = testdb_saga(w->ids[i], "running", states[n]);
            items[n] = (sg_store_item_t){.message_id = msg_ids[n], .saga = &next[n],
                                         .saga_id = w->ids[i],
                                         .expected_version = cur[i].version,
                                         .history = &h, .nhistory = 1,
                                         .outbox = &out, .noutbox = 1};
            map[n++] = i;
        }
        err = sg_store_batch(w->st, items, (size_t)n);
        sg_store_free(cur);
        if (err == SG_ERR_CONN) {
            w->conn_errors++;
            sleep_ms(50);
            continue;
        }
        assert_int_equal(err, SG_OK);
        for (int k = 0; k < n; k++) {
            if (items[k].result == SG_ERR_CONFLICT)
                continue;
            if (items[k].result == SG_ERR_DUPLICATE)
                w->duplicates++;
            else
                assert_int_equal(items[k].result, SG_OK);
            pending[map[k]] = false;
            left--;
        }
    }
}

static void test_restart_mid_run_loses_nothing_and_applies_nothing_twice(void **state) {
    (void)state;
    worker_t w = {.st = testdb_store()};
    assert_non_null(w.st);
    sg_store_t *idle = testdb_store();
    assert_non_null(idle);
    assert_int_equal(testdb_put_definition(w.st), SG_OK);
    for (int i = 0; i < SAGAS; i++) {
        snprintf(w.ids[i], sizeof w.ids[i], "counter-%d", i);
        sg_store_saga_t saga = testdb_saga(w.ids[i], "running", "{\"n\": 0}");
        assert_int_equal(sg_store_saga_save(w.st, &saga, 0, NULL), SG_OK);
    }

    pthread_t thread;
    pthread_create(&thread, NULL, restarter, NULL);
    int rounds = 0;
    for (; rounds < MIN_ROUNDS || !atomic_load(&restart_done); rounds++) {
        run_round(&w, rounds);
        atomic_store(&round_reached, rounds + 1);
    }
    pthread_join(thread, NULL);
    assert_int_equal(restart_status, 0);
    print_message("%d rounds, %d lost-connection errors, %d duplicates after them\n", rounds,
                  w.conn_errors, w.duplicates);
    assert_true(w.conn_errors > 0); /* the restart did hit the run */

    /* Exactly one application per message. */
    const char *ids[SAGAS];
    for (int i = 0; i < SAGAS; i++)
        ids[i] = w.ids[i];
    sg_store_saga_t *final = NULL;
    assert_int_equal(sg_store_saga_load_many(w.st, ids, SAGAS, &final), SG_OK);
    for (int i = 0; i < SAGAS; i++) {
        char expect[32];
        snprintf(expect, sizeof expect, "{\"n\": %d}", rounds);
        assert_string_equal(final[i].state, expect);
        assert_int_equal(final[i].version, 1 + rounds);
    }
    sg_store_free(final);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM inbox"), SAGAS * rounds);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM saga_history"), SAGAS * rounds);
    assert_int_equal(testdb_scalar("SELECT count(*) FROM outbox"), SAGAS * rounds);

    /* A connection that sat idle through the restart: its first call says
     * the connection was lost, the next one reconnects. */
    bool seen = false;
    assert_int_equal(sg_store_inbox_seen(idle, "m-0-0", &seen), SG_ERR_CONN);
    assert_true(sg_store_errmsg(idle)[0] != '\0');
    assert_int_equal(sg_store_inbox_seen(idle, "m-0-0", &seen), SG_OK);
    assert_true(seen);
    sg_store_destroy(idle);
    sg_store_destroy(w.st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_mid_run_loses_nothing_and_applies_nothing_twice),
    };
    return cmocka_run_group_tests_name("store_restart", tests, setup, testdb_teardown);
}
