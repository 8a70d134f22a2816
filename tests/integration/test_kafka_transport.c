/* The Kafka transport against a real broker (the Kafka dev broker of the
 * local stack): delivery reports for produced messages, consuming in a
 * group with key, headers and payload, offsets committed only for messages
 * the caller stored, rewinding, properties passed through to librdkafka,
 * and the consumer lag read from librdkafka's statistics. SAGA_KAFKA_BROKERS must be set: a missing one fails, never
 * skips. Topics and groups are unique per run. */
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

#include "saga/kafka.h"
#include "integration/service_env.h"

#define WAIT_MS 60000

static const char *brokers(void) { return require_env("SAGA_KAFKA_BROKERS"); }

static sg_kafka_producer_t *producer(reports_t *r, const sg_kv_t *props, size_t nprops,
                                     const char *with_brokers) {
    char errstr[256];
    sg_kafka_conf_t conf = {.brokers = with_brokers ? with_brokers : brokers(),
                            .properties = props, .nproperties = nprops};
    sg_kafka_producer_t *kp = sg_kafka_producer_new(&conf, reports_on_delivery, r, errstr, sizeof errstr);
    if (!kp)
        fail_msg("producer: %s", errstr);
    return kp;
}

static sg_kafka_consumer_t *consumer(const char *group, const char *topic) {
    char errstr[256];
    /* The dev broker lets a member that left go only when its session times
     * out: a short session keeps the group's next join quick. Statistics
     * come often, for the lag test. */
    static const sg_kv_t props[] = {{"session.timeout.ms", "6000"},
                                    {"heartbeat.interval.ms", "500"},
                                    {"statistics.interval.ms", "200"}};
    sg_kafka_conf_t conf = {.brokers = brokers(), .group_id = group, .properties = props,
                            .nproperties = 3};
    sg_kafka_consumer_t *kc = sg_kafka_consumer_new(&conf, &topic, 1, errstr, sizeof errstr);
    if (!kc)
        fail_msg("consumer: %s", errstr);
    return kc;
}

/* Sends payloads "<prefix>-0" .. "<prefix>-<n-1>" with refs 0..n-1 and the
 * same key (so one partition, in order), and waits for every report. */
static void produce(const char *topic, const char *key, const char *prefix, int n) {
    reports_t r = {0};
    char errstr[256];
    sg_kafka_producer_t *kp = producer(&r, NULL, 0, NULL);
    for (int i = 0; i < n; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "%s-%d", prefix, i);
        if (sg_kafka_producer_send(kp, topic, key, payload, strlen(payload), i, errstr,
                                   sizeof errstr))
            fail_msg("send: %s", errstr);
    }
    if (sg_kafka_producer_flush(kp, WAIT_MS, errstr, sizeof errstr))
        fail_msg("flush: %s", errstr);
    for (int i = 0; i < n; i++)
        if (r.count[i] != 1 || r.err[i] != SG_OK)
            fail_msg("message %d: %d report(s), last: %s", i, r.count[i], r.reason[i]);
    sg_kafka_producer_destroy(kp);
}

/* Polls until 'want' messages came (or fails after WAIT_MS). */
static void consume(sg_kafka_consumer_t *kc, sg_kafka_msg_t *msgs, size_t want) {
    char errstr[256];
    size_t have = 0;
    int64_t deadline = now_ms() + WAIT_MS;
    while (have < want && now_ms() < deadline) {
        size_t n = 0;
        if (sg_kafka_consumer_poll(kc, msgs + have, want - have, 200, &n, errstr, sizeof errstr))
            fail_msg("poll: %s", errstr);
        have += n;
    }
    if (have < want)
        fail_msg("only %zu of %zu messages came", have, want);
}

static bool payload_is(const sg_kafka_msg_t *m, const char *text) {
    return m->len == strlen(text) && memcmp(m->payload, text, m->len) == 0;
}

static void test_every_produced_message_is_reported_delivered_once(void **state) {
    (void)state;
    char topic[128], errstr[256];
    unique_name(topic, sizeof topic, "t.delivery");
    reports_t r = {0};
    sg_kafka_producer_t *kp = producer(&r, NULL, 0, NULL);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "saga-%d", i % 5);
        assert_int_equal(sg_kafka_producer_send(kp, topic, key, "{}", 2, i, errstr, sizeof errstr),
                         SG_OK);
    }
    assert_int_equal(sg_kafka_producer_outstanding(kp), 20);
    assert_int_equal(sg_kafka_producer_flush(kp, WAIT_MS, errstr, sizeof errstr), SG_OK);
    assert_int_equal(sg_kafka_producer_outstanding(kp), 0);
    assert_int_equal(r.total, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r.count[i], 1);
        assert_int_equal(r.err[i], SG_OK);
    }
    sg_kafka_producer_destroy(kp);
    assert_int_equal(r.total, 20);
}

static void test_consumer_gets_payload_key_position_and_content_type(void **state) {
    (void)state;
    char topic[128], group[128];
    unique_name(topic, sizeof topic, "t.consume");
    unique_name(group, sizeof group, "g.consume");
    produce(topic, "saga-42", "m", 3);
    sg_kafka_consumer_t *kc = consumer(group, topic);
    sg_kafka_msg_t msgs[3];
    consume(kc, msgs, 3);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "m-%d", i);
        assert_true(payload_is(&msgs[i], want));
        assert_int_equal(msgs[i].key_len, 7);
        assert_memory_equal(msgs[i].key, "saga-42", 7);
        assert_string_equal(msgs[i].topic, topic);
        assert_int_equal(msgs[i].partition, msgs[0].partition);
        assert_int_equal(msgs[i].offset, msgs[0].offset + i);
        assert_int_equal(msgs[i].nheaders, 1);
        assert_string_equal(msgs[i].headers[0].name, "content-type");
        assert_int_equal(msgs[i].headers[0].size, strlen("application/cloudevents+json"));
        assert_memory_equal(msgs[i].headers[0].value, "application/cloudevents+json",
                            msgs[i].headers[0].size);
        sg_kafka_msg_release(&msgs[i]);
    }
    sg_kafka_consumer_destroy(kc);
}

static void test_next_consumer_resumes_after_the_last_stored_offset(void **state) {
    (void)state;
    char topic[128], group[128], errstr[256];
    unique_name(topic, sizeof topic, "t.offsets");
    unique_name(group, sizeof group, "g.offsets");
    produce(topic, "saga-1", "m", 10);

    /* The first consumer finishes 6 of the 10 messages, then leaves. */
    sg_kafka_consumer_t *kc = consumer(group, topic);
    sg_kafka_msg_t msgs[10];
    consume(kc, msgs, 10);
    for (int i = 0; i < 6; i++)
        assert_int_equal(sg_kafka_consumer_store(kc, &msgs[i], errstr, sizeof errstr), SG_OK);
    int64_t first_unstored = msgs[6].offset;
    for (int i = 0; i < 10; i++)
        sg_kafka_msg_release(&msgs[i]);
    sg_kafka_consumer_destroy(kc);

    /* The next one of the group gets exactly the 4 that were not stored. */
    kc = consumer(group, topic);
    consume(kc, msgs, 4);
    for (int i = 0; i < 4; i++) {
        char want[16];
        snprintf(want, sizeof want, "m-%d", 6 + i);
        assert_true(payload_is(&msgs[i], want));
        assert_int_equal(msgs[i].offset, first_unstored + i);
    }
    size_t extra = 0;
    assert_int_equal(sg_kafka_consumer_poll(kc, msgs + 4, 1, 1000, &extra, errstr, sizeof errstr),
                     SG_OK);
    assert_int_equal(extra, 0);
    for (int i = 0; i < 4; i++)
        sg_kafka_msg_release(&msgs[i]);
    sg_kafka_consumer_destroy(kc);
}

static void test_consumer_without_stored_offsets_commits_nothing(void **state) {
    (void)state;
    char topic[128], group[128], errstr[256];
    unique_name(topic, sizeof topic, "t.nostore");
    unique_name(group, sizeof group, "g.nostore");
    produce(topic, "saga-1", "m", 3);
    sg_kafka_consumer_t *kc = consumer(group, topic);
    sg_kafka_msg_t msgs[3];
    consume(kc, msgs, 3);
    for (int i = 0; i < 3; i++)
        sg_kafka_msg_release(&msgs[i]);
    assert_int_equal(sg_kafka_consumer_commit(kc, errstr, sizeof errstr), SG_OK);
    sg_kafka_consumer_destroy(kc);

    kc = consumer(group, topic);
    consume(kc, msgs, 3);
    assert_true(payload_is(&msgs[0], "m-0"));
    for (int i = 0; i < 3; i++)
        sg_kafka_msg_release(&msgs[i]);
    sg_kafka_consumer_destroy(kc);
}

static void test_rewind_delivers_a_message_again(void **state) {
    (void)state;
    char topic[128], group[128], errstr[256];
    unique_name(topic, sizeof topic, "t.rewind");
    unique_name(group, sizeof group, "g.rewind");
    produce(topic, "saga-1", "m", 3);
    sg_kafka_consumer_t *kc = consumer(group, topic);
    sg_kafka_msg_t msgs[3], again[2];
    consume(kc, msgs, 3);
    assert_int_equal(sg_kafka_consumer_rewind(kc, &msgs[1], errstr, sizeof errstr), SG_OK);
    consume(kc, again, 2);
    assert_true(payload_is(&again[0], "m-1"));
    assert_true(payload_is(&again[1], "m-2"));
    assert_int_equal(again[0].offset, msgs[1].offset);
    for (int i = 0; i < 3; i++)
        sg_kafka_msg_release(&msgs[i]);
    for (int i = 0; i < 2; i++)
        sg_kafka_msg_release(&again[i]);
    sg_kafka_consumer_destroy(kc);
}

static void test_undeliverable_message_is_reported_failed(void **state) {
    (void)state;
    char errstr[256];
    /* Nothing listens on port 1; the given property bounds the wait. */
    const sg_kv_t props[] = {{"message.timeout.ms", "1500"}};
    reports_t r = {0};
    sg_kafka_producer_t *kp = producer(&r, props, 1, "127.0.0.1:1");
    assert_int_equal(sg_kafka_producer_send(kp, "t.nowhere", "k", "{}", 2, 7, errstr,
                                            sizeof errstr), SG_OK);
    assert_int_equal(sg_kafka_producer_flush(kp, WAIT_MS, errstr, sizeof errstr), SG_OK);
    assert_int_equal(r.count[7], 1);
    assert_int_equal(r.err[7], SG_ERR_CONN);
    assert_non_null(strstr(r.reason[7], "not delivered to \"t.nowhere\""));
    assert_int_equal(sg_kafka_producer_ping(kp, 500, errstr, sizeof errstr), SG_ERR_CONN);
    sg_kafka_producer_destroy(kp);
}

static void test_unknown_property_is_refused_by_name(void **state) {
    (void)state;
    char errstr[256];
    const sg_kv_t props[] = {{"no.such.property", "secret-value"}};
    sg_kafka_conf_t conf = {.brokers = brokers(), .properties = props, .nproperties = 1};
    assert_null(sg_kafka_producer_new(&conf, reports_on_delivery, NULL, errstr, sizeof errstr));
    assert_non_null(strstr(errstr, "\"no.such.property\""));
    assert_null(strstr(errstr, "secret-value"));
    conf.group_id = NULL;
    conf.nproperties = 0;
    const char *topic = "t";
    assert_null(sg_kafka_consumer_new(&conf, &topic, 1, errstr, sizeof errstr));
    assert_string_equal(errstr, "no kafka consumer group id given");
}

/* The lag of 'topic' in the consumer's latest statistics, -1 if none. */
static int64_t lag_of(const sg_kafka_consumer_t *kc, const char *topic, int32_t partition,
                      size_t *nparts) {
    size_t n = 0;
    const sg_kafka_lag_t *lag = sg_kafka_consumer_lag(kc, &n);
    int64_t found = -1;
    *nparts = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(lag[i].topic, topic) != 0)
            continue;
        (*nparts)++;
        if (lag[i].partition == partition)
            found = lag[i].lag;
    }
    return found;
}

static void test_consumer_reports_the_lag_behind_its_committed_offset(void **state) {
    (void)state;
    char topic[128], group[128], errstr[256];
    unique_name(topic, sizeof topic, "t.lag");
    unique_name(group, sizeof group, "g.lag");
    produce(topic, "saga-1", "m", 10);
    sg_kafka_consumer_t *kc = consumer(group, topic);
    sg_kafka_msg_t msgs[10];
    consume(kc, msgs, 10);
    int32_t partition = msgs[0].partition;
    /* 4 of the 10 done and committed: 6 behind on that partition. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(sg_kafka_consumer_store(kc, &msgs[i], errstr, sizeof errstr), SG_OK);
    for (int i = 0; i < 10; i++)
        sg_kafka_msg_release(&msgs[i]);
    assert_int_equal(sg_kafka_consumer_commit(kc, errstr, sizeof errstr), SG_OK);
    int64_t lag = -1, deadline = now_ms() + WAIT_MS;
    size_t nparts = 0;
    while (lag != 6 && now_ms() < deadline) {
        size_t got = 0;
        assert_int_equal(sg_kafka_consumer_poll(kc, msgs, 1, 100, &got, errstr, sizeof errstr),
                         SG_OK);
        assert_int_equal(got, 0);
        lag = lag_of(kc, topic, partition, &nparts);
    }
    assert_int_equal(lag, 6);
    /* The other partitions have no committed offset: their lag is unknown. */
    assert_int_equal(nparts, 1);
    sg_kafka_consumer_destroy(kc);
}

static void test_ping_answers_when_the_cluster_is_up(void **state) {
    (void)state;
    char errstr[256];
    reports_t r = {0};
    sg_kafka_producer_t *kp = producer(&r, NULL, 0, NULL);
    assert_int_equal(sg_kafka_producer_ping(kp, 10000, errstr, sizeof errstr), SG_OK);
    sg_kafka_producer_destroy(kp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_produced_message_is_reported_delivered_once),
        cmocka_unit_test(test_consumer_gets_payload_key_position_and_content_type),
        cmocka_unit_test(test_next_consumer_resumes_after_the_last_stored_offset),
        cmocka_unit_test(test_consumer_without_stored_offsets_commits_nothing),
        cmocka_unit_test(test_rewind_delivers_a_message_again),
        cmocka_unit_test(test_undeliverable_message_is_reported_failed),
        cmocka_unit_test(test_unknown_property_is_refused_by_name),
        cmocka_unit_test(test_ping_answers_when_the_cluster_is_up),
        cmocka_unit_test(test_consumer_reports_the_lag_behind_its_committed_offset),
    };
    return cmocka_run_group_tests_name("kafka_transport", tests, NULL, NULL);
}
