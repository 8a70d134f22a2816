/* The RabbitMQ transport against a real RabbitMQ (the local stack's):
 * confirmed publishes with the contract's properties, unroutable publishes
 * reported failed although the broker acks them, a missing exchange refused
 * without harming the channel, prefetch, acks with 'multiple', nack and
 * reject, redelivery of unacked messages after a reconnect, and recovery
 * from a broker restart. SAGA_AMQP_URL (and SAGA_AMQP_RESTART_CMD for the
 * restart) must be set: a missing one fails, never skips. Queues are unique
 * per run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga/amqp.h"
#include "integration/service_env.h"

#define WAIT_MS 30000

static sg_amqp_consumer_t *consumer(const char *queue, uint16_t prefetch) {
    char errstr[256];
    sg_amqp_conf_t conf = {.url = require_env("SAGA_AMQP_URL"), .prefetch = prefetch};
    sg_amqp_consumer_t *c = sg_amqp_consumer_new(&conf, &queue, 1, errstr, sizeof errstr);
    if (!c)
        fail_msg("consumer: %s", errstr);
    if (sg_amqp_consumer_connect(c, errstr, sizeof errstr))
        fail_msg("consumer connect: %s", errstr);
    return c;
}

static sg_amqp_publisher_t *publisher(reports_t *r) {
    char errstr[256];
    sg_amqp_conf_t conf = {.url = require_env("SAGA_AMQP_URL")};
    sg_amqp_publisher_t *p = sg_amqp_publisher_new(&conf, reports_on_delivery, r, errstr, sizeof errstr);
    if (!p)
        fail_msg("publisher: %s", errstr);
    if (sg_amqp_publisher_connect(p, errstr, sizeof errstr))
        fail_msg("publisher connect: %s", errstr);
    return p;
}

/* Publishes "m-<ref>" with message id "id-<ref>" to the default exchange. */
static void send_to_queue(sg_amqp_publisher_t *p, const char *queue, int ref) {
    char body[32], id[32], errstr[256];
    snprintf(body, sizeof body, "m-%d", ref);
    snprintf(id, sizeof id, "id-%d", ref);
    if (sg_amqp_publisher_send(p, "", queue, id, "saga-1", body, strlen(body), ref, errstr,
                               sizeof errstr))
        fail_msg("send: %s", errstr);
}

static void flush(sg_amqp_publisher_t *p) {
    char errstr[256];
    if (sg_amqp_publisher_flush(p, WAIT_MS, errstr, sizeof errstr))
        fail_msg("flush: %s", errstr);
}

/* Polls until 'want' deliveries came (or fails after WAIT_MS). */
static void consume(sg_amqp_consumer_t *c, sg_amqp_msg_t *msgs, size_t want) {
    char errstr[256];
    size_t have = 0;
    int64_t deadline = now_ms() + WAIT_MS;
    while (have < want && now_ms() < deadline) {
        size_t n = 0;
        if (sg_amqp_consumer_poll(c, msgs + have, want - have, 200, &n, errstr, sizeof errstr))
            fail_msg("poll: %s", errstr);
        have += n;
    }
    if (have < want)
        fail_msg("only %zu of %zu deliveries came", have, want);
}

/* How many more deliveries come within 'ms' (released at once). */
static size_t count_more(sg_amqp_consumer_t *c, int ms) {
    char errstr[256];
    sg_amqp_msg_t msgs[16];
    size_t total = 0;
    int64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        size_t n = 0;
        assert_int_equal(sg_amqp_consumer_poll(c, msgs, 16, 100, &n, errstr, sizeof errstr), SG_OK);
        for (size_t i = 0; i < n; i++)
            sg_amqp_msg_release(&msgs[i]);
        total += n;
    }
    return total;
}

static bool body_is(const sg_amqp_msg_t *m, const char *text) {
    return m->len == strlen(text) && memcmp(m->body, text, m->len) == 0;
}

static void release_all(sg_amqp_msg_t *msgs, size_t n) {
    for (size_t i = 0; i < n; i++)
        sg_amqp_msg_release(&msgs[i]);
}

static void test_confirmed_publish_arrives_with_the_contract_properties(void **state) {
    (void)state;
    char queue[128];
    unique_name(queue, sizeof queue, "q.confirm");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    for (int i = 0; i < 10; i++)
        send_to_queue(p, queue, i);
    flush(p);
    assert_int_equal(r.total, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r.count[i], 1);
        assert_int_equal(r.err[i], SG_OK);
    }
    sg_amqp_msg_t msgs[10];
    consume(c, msgs, 10);
    for (int i = 0; i < 10; i++) {
        char body[32], id[32];
        snprintf(body, sizeof body, "m-%d", i);
        snprintf(id, sizeof id, "id-%d", i);
        assert_true(body_is(&msgs[i], body));
        assert_string_equal(msgs[i].queue, queue);
        assert_string_equal(msgs[i].exchange, "");
        assert_string_equal(msgs[i].routing_key, queue);
        assert_string_equal(msgs[i].content_type, "application/cloudevents+json");
        assert_string_equal(msgs[i].message_id, id);
        assert_string_equal(msgs[i].correlation_id, "saga-1");
        assert_true(msgs[i].persistent);
        assert_false(msgs[i].redelivered);
    }
    char errstr[256];
    assert_int_equal(sg_amqp_consumer_ack(c, &msgs[9], true, errstr, sizeof errstr), SG_OK);
    release_all(msgs, 10);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_unroutable_publish_is_reported_failed_though_acked(void **state) {
    (void)state;
    char queue[128], nowhere[128], errstr[256];
    unique_name(queue, sizeof queue, "q.routable");
    unique_name(nowhere, sizeof nowhere, "q.nowhere");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    send_to_queue(p, queue, 0);
    send_to_queue(p, nowhere, 1);
    assert_int_equal(sg_amqp_publisher_send(p, "amq.direct", "no.binding", "id-2", "saga-1",
                                            "x", 1, 2, errstr, sizeof errstr), SG_OK);
    send_to_queue(p, queue, 3);
    flush(p);
    assert_int_equal(r.total, 4);
    assert_int_equal(r.err[0], SG_OK);
    assert_int_equal(r.err[3], SG_OK);
    assert_int_equal(r.err[1], SG_ERR_NOT_FOUND);
    assert_non_null(strstr(r.reason[1], "312 NO_ROUTE"));
    assert_non_null(strstr(r.reason[1], nowhere));
    assert_int_equal(r.err[2], SG_ERR_NOT_FOUND);
    assert_non_null(strstr(r.reason[2], "exchange \"amq.direct\""));
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.count[i], 1);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_missing_exchange_is_refused_and_publishing_goes_on(void **state) {
    (void)state;
    char queue[128], exchange[128], errstr[256];
    unique_name(queue, sizeof queue, "q.after404");
    unique_name(exchange, sizeof exchange, "x.missing");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    send_to_queue(p, queue, 0); /* in flight while the check fails */
    assert_int_equal(sg_amqp_publisher_send(p, exchange, "k", "id-1", NULL, "x", 1, 1, errstr,
                                            sizeof errstr), SG_ERR_INVALID);
    assert_non_null(strstr(errstr, "404 NOT_FOUND"));
    assert_true(sg_amqp_publisher_connected(p));
    send_to_queue(p, queue, 2);
    flush(p);
    assert_int_equal(r.total, 2);
    assert_int_equal(r.count[1], 0);
    assert_int_equal(r.err[0], SG_OK);
    assert_int_equal(r.err[2], SG_OK);
    sg_amqp_msg_t msgs[2];
    consume(c, msgs, 2);
    assert_true(body_is(&msgs[0], "m-0"));
    assert_true(body_is(&msgs[1], "m-2"));
    release_all(msgs, 2);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_prefetch_bounds_unacked_and_multiple_ack_releases_them(void **state) {
    (void)state;
    char queue[128], errstr[256];
    unique_name(queue, sizeof queue, "q.prefetch");
    sg_amqp_consumer_t *c = consumer(queue, 3);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    for (int i = 0; i < 9; i++)
        send_to_queue(p, queue, i);
    flush(p);

    sg_amqp_msg_t first[3], second[3];
    consume(c, first, 3);
    assert_int_equal(count_more(c, 500), 0); /* the broker holds the rest back */
    /* One ack with 'multiple' on the third settles all three. */
    assert_int_equal(sg_amqp_consumer_ack(c, &first[2], true, errstr, sizeof errstr), SG_OK);
    consume(c, second, 3);
    assert_true(body_is(&second[0], "m-3"));
    assert_true(body_is(&second[2], "m-5"));
    release_all(first, 3);
    /* The acked three never come back, even after a reconnect. */
    assert_int_equal(sg_amqp_consumer_connect(c, errstr, sizeof errstr), SG_OK);
    sg_amqp_msg_t rest[6];
    consume(c, rest, 3);
    for (int i = 0; i < 3; i++) {
        char body[16];
        snprintf(body, sizeof body, "m-%d", 3 + i);
        assert_true(body_is(&rest[i], body));
        assert_true(rest[i].redelivered);
    }
    release_all(second, 3);
    release_all(rest, 3);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_unacked_deliveries_come_again_after_reconnect(void **state) {
    (void)state;
    char queue[128], errstr[256];
    unique_name(queue, sizeof queue, "q.redeliver");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    for (int i = 0; i < 5; i++)
        send_to_queue(p, queue, i);
    flush(p);
    sg_amqp_msg_t msgs[5], again[3];
    consume(c, msgs, 5);
    assert_int_equal(sg_amqp_consumer_ack(c, &msgs[1], true, errstr, sizeof errstr), SG_OK);
    assert_int_equal(sg_amqp_consumer_connect(c, errstr, sizeof errstr), SG_OK);
    /* A delivery of the old connection can no longer be acked. */
    assert_int_equal(sg_amqp_consumer_ack(c, &msgs[2], false, errstr, sizeof errstr),
                     SG_ERR_STATE);
    assert_true(sg_amqp_consumer_connected(c));
    consume(c, again, 3);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "id-%d", 2 + i);
        assert_string_equal(again[i].message_id, id);
        assert_true(again[i].redelivered);
    }
    assert_int_equal(sg_amqp_consumer_ack(c, &again[2], true, errstr, sizeof errstr), SG_OK);
    assert_int_equal(count_more(c, 300), 0);
    release_all(msgs, 5);
    release_all(again, 3);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_nack_requeues_and_reject_drops(void **state) {
    (void)state;
    char queue[128], errstr[256];
    unique_name(queue, sizeof queue, "q.nack");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    send_to_queue(p, queue, 0);
    send_to_queue(p, queue, 1);
    flush(p);
    sg_amqp_msg_t msgs[2], again[1];
    consume(c, msgs, 2);
    assert_int_equal(sg_amqp_consumer_nack(c, &msgs[0], false, false, errstr, sizeof errstr),
                     SG_OK);
    assert_int_equal(sg_amqp_consumer_nack(c, &msgs[1], true, true, errstr, sizeof errstr), SG_OK);
    consume(c, again, 1);
    assert_true(body_is(&again[0], "m-1"));
    assert_true(again[0].redelivered);
    assert_int_equal(sg_amqp_consumer_ack(c, &again[0], false, errstr, sizeof errstr), SG_OK);
    assert_int_equal(count_more(c, 300), 0);
    release_all(msgs, 2);
    release_all(again, 1);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_broker_restart_is_reported_and_reconnect_recovers(void **state) {
    (void)state;
    char queue[128], kept[128], errstr[256];
    const char *restart = require_env("SAGA_AMQP_RESTART_CMD");
    unique_name(queue, sizeof queue, "q.restart");
    unique_name(kept, sizeof kept, "q.kept");
    /* 'kept' is declared (durable) and left without a consumer, so its
     * message stays in the broker across the restart. */
    sg_amqp_consumer_destroy(consumer(kept, 0));
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    send_to_queue(p, kept, 0);
    flush(p);
    assert_int_equal(r.err[0], SG_OK);
    if (system(restart) != 0)
        fail_msg("restart command failed: %s", restart);

    sg_amqp_msg_t msgs[1];
    size_t n = 0;
    assert_int_equal(sg_amqp_consumer_poll(c, msgs, 1, 2000, &n, errstr, sizeof errstr),
                     SG_ERR_CONN);
    assert_int_equal(n, 0);
    assert_false(sg_amqp_consumer_connected(c));
    assert_int_equal(sg_amqp_publisher_poll(p, 2000, errstr, sizeof errstr), SG_ERR_CONN);
    assert_false(sg_amqp_publisher_connected(p));
    assert_int_equal(sg_amqp_publisher_send(p, "", queue, "id-1", NULL, "x", 1, 1, errstr,
                                            sizeof errstr), SG_ERR_CONN);
    assert_int_equal(r.count[1], 0);

    assert_int_equal(sg_amqp_consumer_connect(c, errstr, sizeof errstr), SG_OK);
    assert_int_equal(sg_amqp_publisher_connect(p, errstr, sizeof errstr), SG_OK);
    send_to_queue(p, queue, 2);
    flush(p);
    assert_int_equal(r.err[2], SG_OK);
    consume(c, msgs, 1);
    assert_true(body_is(&msgs[0], "m-2"));
    sg_amqp_msg_release(&msgs[0]);

    /* The persistent message in the durable queue survived the restart. */
    sg_amqp_consumer_t *k = consumer(kept, 0);
    consume(k, msgs, 1);
    assert_true(body_is(&msgs[0], "m-0"));
    assert_int_equal(sg_amqp_consumer_ack(k, &msgs[0], false, errstr, sizeof errstr), SG_OK);
    sg_amqp_msg_release(&msgs[0]);
    sg_amqp_consumer_destroy(k);
    sg_amqp_publisher_destroy(p);
    sg_amqp_consumer_destroy(c);
}

static void test_unconfirmed_publishes_are_reported_failed_on_reconnect_and_close(void **state) {
    (void)state;
    char queue[128], errstr[256];
    unique_name(queue, sizeof queue, "q.unconfirmed");
    sg_amqp_consumer_t *c = consumer(queue, 0);
    reports_t r = {0};
    sg_amqp_publisher_t *p = publisher(&r);
    /* Confirms are never read before the connection goes away. */
    send_to_queue(p, queue, 0);
    send_to_queue(p, queue, 1);
    assert_int_equal(sg_amqp_publisher_outstanding(p), 2);
    assert_int_equal(sg_amqp_publisher_connect(p, errstr, sizeof errstr), SG_OK);
    assert_int_equal(r.total, 2);
    assert_int_equal(r.err[0], SG_ERR_CONN);
    assert_string_equal(r.reason[1], "not confirmed before reconnecting");
    send_to_queue(p, queue, 2);
    sg_amqp_publisher_destroy(p);
    assert_int_equal(r.count[2], 1);
    assert_int_equal(r.err[2], SG_ERR_CONN);
    assert_string_equal(r.reason[2], "publisher closed before the broker confirmed");
    sg_amqp_consumer_destroy(c);
}

static void test_errors_never_show_the_password(void **state) {
    (void)state;
    char errstr[256];
    sg_amqp_conf_t conf = {.url = "amqp://user:s3cret@127.0.0.1:1/%2f", .timeout_ms = 1000};
    reports_t r = {0};
    sg_amqp_publisher_t *p = sg_amqp_publisher_new(&conf, reports_on_delivery, &r, errstr, sizeof errstr);
    assert_non_null(p);
    assert_int_equal(sg_amqp_publisher_connect(p, errstr, sizeof errstr), SG_ERR_CONN);
    assert_non_null(strstr(errstr, "127.0.0.1:1//"));
    assert_null(strstr(errstr, "s3cret"));
    sg_amqp_publisher_destroy(p);
    conf.url = "http://user:s3cret@host/";
    const char *queue = "q";
    assert_null(sg_amqp_consumer_new(&conf, &queue, 1, errstr, sizeof errstr));
    assert_null(strstr(errstr, "s3cret"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confirmed_publish_arrives_with_the_contract_properties),
        cmocka_unit_test(test_unroutable_publish_is_reported_failed_though_acked),
        cmocka_unit_test(test_missing_exchange_is_refused_and_publishing_goes_on),
        cmocka_unit_test(test_prefetch_bounds_unacked_and_multiple_ack_releases_them),
        cmocka_unit_test(test_unacked_deliveries_come_again_after_reconnect),
        cmocka_unit_test(test_nack_requeues_and_reject_drops),
        cmocka_unit_test(test_unconfirmed_publishes_are_reported_failed_on_reconnect_and_close),
        cmocka_unit_test(test_errors_never_show_the_password),
        cmocka_unit_test(test_broker_restart_is_reported_and_reconnect_recovers),
    };
    return cmocka_run_group_tests_name("amqp_transport", tests, NULL, NULL);
}
