/* Channels: the kafka and amqp forms parse into their parts; anything else
 * is refused with the reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "saga/def.h"

static void test_kafka_channel_names_a_topic(void **state) {
    (void)state;
    sg_channel_t ch;
    char err[256];
    assert_int_equal(sg_channel_parse("kafka:orders.v1_x-y", &ch, err, sizeof err), SG_OK);
    assert_int_equal(ch.transport, SG_TRANSPORT_KAFKA);
    assert_string_equal(ch.text, "kafka:orders.v1_x-y");
    assert_string_equal(ch.topic, "orders.v1_x-y");
    assert_null(ch.exchange);
    assert_null(ch.routing_key);
    sg_channel_release(&ch);
    assert_null(ch.text);
}

static void test_amqp_channel_names_exchange_and_routing_key(void **state) {
    (void)state;
    sg_channel_t ch;
    char err[256];
    assert_int_equal(sg_channel_parse("amqp:payments/charge.eu/fr", &ch, err, sizeof err), SG_OK);
    assert_int_equal(ch.transport, SG_TRANSPORT_AMQP);
    assert_null(ch.topic);
    assert_string_equal(ch.exchange, "payments");
    assert_string_equal(ch.routing_key, "charge.eu/fr");
    sg_channel_release(&ch);

    assert_int_equal(sg_channel_parse("amqp:/fraud.commands", &ch, err, sizeof err), SG_OK);
    assert_string_equal(ch.exchange, "");
    assert_string_equal(ch.routing_key, "fraud.commands");
    sg_channel_release(&ch);

    /* a fanout exchange needs no routing key */
    assert_int_equal(sg_channel_parse("amqp:events/", &ch, err, sizeof err), SG_OK);
    assert_string_equal(ch.exchange, "events");
    assert_string_equal(ch.routing_key, "");
    sg_channel_release(&ch);
}

static void test_bad_channels_are_refused_with_the_reason(void **state) {
    (void)state;
    char topic250[300] = "kafka:";
    memset(topic250 + 6, 'a', 250);
    topic250[256] = '\0';
    const struct {
        const char *text;
        const char *err;
    } bad[] = {
        {"kafak:orders", "unknown transport \"kafak\""},
        {":orders", "unknown transport \"\""},
        {"Kafka:orders", "unknown transport \"Kafka\""},
        {"orders", "invalid channel \"orders\": use kafka:<topic>, amqp:<exchange>/<routing-key> "
                   "or amqp:/<queue>"},
        {"kafka:", "empty kafka topic"},
        {"kafka:.", "invalid kafka topic \".\": use letters, digits, \".\", \"_\" and \"-\""},
        {"kafka:a:b", "invalid kafka topic \"a:b\": use letters, digits, \".\", \"_\" and \"-\""},
        {topic250, "kafka topic longer than 249 characters"},
        {"amqp:", "amqp channel without \"/\": use amqp:<exchange>/<routing-key> or amqp:/<queue>"},
        {"amqp:/", "empty queue name: use amqp:/<queue>"},
        {"amqp:a b/c", "invalid amqp exchange \"a b\": use at most 255 letters, digits, \"-\", "
                       "\"_\", \".\" and \":\""},
        {"amqp:x/a\tb", "invalid amqp routing key \"a\\u0009b\": at most 255 bytes, no control "
                        "characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sg_channel_t ch;
        char err[256] = "";
        assert_int_equal(sg_channel_parse(bad[i].text, &ch, err, sizeof err), SG_ERR_INVALID);
        assert_string_equal(err, bad[i].err);
        assert_null(ch.text);
        assert_int_equal(ch.transport, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_channel_names_a_topic),
        cmocka_unit_test(test_amqp_channel_names_exchange_and_routing_key),
        cmocka_unit_test(test_bad_channels_are_refused_with_the_reason),
    };
    return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}
