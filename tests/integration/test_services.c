/* The real services of the test stack answer from C, with the client
 * features sagad relies on: a parameterized libpq query; a RabbitMQ publish
 * acknowledged by publisher confirms and a consume with manual ack on a
 * durable queue; a Kafka idempotent producer (acks=all, delivery reports) and
 * a consumer group that reads the messages back and commits its offsets.
 *
 * Connection settings come from SAGA_DATABASE_URL, SAGA_AMQP_URL and
 * SAGA_KAFKA_BROKERS (deploy/local/start.sh writes them to its env file); a
 * missing one fails the test, it is never skipped. Queue, topic and group
 * names are unique per run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "integration/service_env.h"

#define KAFKA_MESSAGES 20
#define WAIT_MS 60000

/* ---- PostgreSQL --------------------------------------------------------- */

static void test_postgres_answers_a_parameterized_query(void **state) {
    (void)state;
    const char *url = require_env("SAGA_DATABASE_URL");
    const char *params[2] = {"41", "saga"};
    PGconn *conn = PQconnectdb(url);
    PGresult *res;

    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        fail_msg("cannot connect to '%s': %s", url, msg);
    }
    res = PQexecParams(conn, "SELECT $1::int + 1, upper($2::text), current_database()",
                       2, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), "42");
    assert_string_equal(PQgetvalue(res, 0, 1), "SAGA");
    assert_string_equal(PQgetvalue(res, 0, 2), PQdb(conn));
    PQclear(res);
    PQfinish(conn);
}

/* ---- RabbitMQ ----------------------------------------------------------- */

static void amqp_check(amqp_rpc_reply_t r, const char *what) {
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        fail_msg("amqp %s failed (reply type %d, library error %s)", what, (int)r.reply_type,
                 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                     ? amqp_error_string2(r.library_error) : "none");
}

static amqp_connection_state_t amqp_connect(const char *url) {
    char copy[1024];
    struct amqp_connection_info ci;
    struct timeval tv = {.tv_sec = 10};
    amqp_connection_state_t conn;
    amqp_socket_t *sock;

    snprintf(copy, sizeof(copy), "%s", url);
    if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK)
        fail_msg("cannot parse SAGA_AMQP_URL '%s'", url);
    conn = amqp_new_connection();
    sock = amqp_tcp_socket_new(conn);
    assert_non_null(sock);
    if (amqp_socket_open_noblock(sock, ci.host, ci.port, &tv) != AMQP_STATUS_OK)
        fail_msg("cannot connect to rabbitmq at %s:%d", ci.host, ci.port);
    amqp_check(amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user,
                          ci.password), "login");
    return conn;
}

static void amqp_close(amqp_connection_state_t conn) {
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* Waits for the broker's basic.ack of the publish with delivery tag 'tag'. */
static void amqp_wait_confirm(amqp_connection_state_t conn, uint64_t tag) {
    struct timeval tv = {.tv_sec = 10};
    amqp_frame_t frame;
    int rc = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
    if (rc != AMQP_STATUS_OK)
        fail_msg("no publisher confirm: %s", amqp_error_string2(rc));
    assert_int_equal(frame.frame_type, AMQP_FRAME_METHOD);
    if (frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
        fail_msg("publish not confirmed: got method 0x%08x instead of basic.ack",
                 (unsigned)frame.payload.method.id);
    assert_int_equal(((amqp_basic_ack_t *)frame.payload.method.decoded)->delivery_tag, tag);
}

static uint32_t amqp_queue_depth(amqp_connection_state_t conn, amqp_channel_t ch,
                                 const char *queue) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        conn, ch, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    amqp_check(amqp_get_rpc_reply(conn), "passive queue.declare");
    assert_non_null(ok);
    return ok->message_count;
}

static void test_rabbitmq_confirms_a_publish_and_removes_an_acked_message(void **state) {
    (void)state;
    const char *url = require_env("SAGA_AMQP_URL");
    const char *body = "{\"specversion\":\"1.0\",\"id\":\"svc-test\"}";
    char queue[128];
    amqp_connection_state_t conn = amqp_connect(url);
    amqp_basic_properties_t props;
    amqp_envelope_t env;
    struct timeval tv = {.tv_sec = 10};

    unique_name(queue, sizeof(queue), "saga.test.services");
    amqp_channel_open(conn, 1);
    amqp_check(amqp_get_rpc_reply(conn), "channel.open");
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
    amqp_check(amqp_get_rpc_reply(conn), "queue.declare");
    amqp_confirm_select(conn, 1);
    amqp_check(amqp_get_rpc_reply(conn), "confirm.select");

    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/cloudevents+json");
    props.delivery_mode = 2;
    assert_int_equal(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue),
                                        1, 0, &props, amqp_cstring_bytes(body)),
                     AMQP_STATUS_OK);
    amqp_wait_confirm(conn, 1);
    assert_int_equal(amqp_queue_depth(conn, 1, queue), 1);

    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    amqp_check(amqp_get_rpc_reply(conn), "basic.consume");
    amqp_check(amqp_consume_message(conn, &env, &tv, 0), "consume");
    assert_int_equal(env.message.body.len, strlen(body));
    assert_memory_equal(env.message.body.bytes, body, strlen(body));
    assert_true(env.message.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
    assert_int_equal(env.message.properties.delivery_mode, 2);
    assert_int_equal(amqp_basic_ack(conn, 1, env.delivery_tag, 0), AMQP_STATUS_OK);
    amqp_destroy_envelope(&env);

    /* Closing the channel would put an unacked message back: a fresh channel
     * seeing an empty queue proves the ack was taken. */
    amqp_check(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS), "channel.close");
    amqp_channel_open(conn, 2);
    amqp_check(amqp_get_rpc_reply(conn), "channel.open");
    assert_int_equal(amqp_queue_depth(conn, 2, queue), 0);
    amqp_queue_delete(conn, 2, amqp_cstring_bytes(queue), 0, 0);
    amqp_check(amqp_get_rpc_reply(conn), "queue.delete");
    amqp_close(conn);
}

/* ---- Kafka -------------------------------------------------------------- */

typedef struct {
    int delivered;
    int failed;
    char last_error[256];
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    delivery_t *d = opaque;
    (void)rk;
    if (m->err) {
        d->failed++;
        snprintf(d->last_error, sizeof(d->last_error), "%s", rd_kafka_err2str(m->err));
    } else {
        d->delivered++;
    }
}

static const char *kafka_brokers;

static rd_kafka_conf_t *kafka_conf(const char *const *kv) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", kafka_brokers, errstr, sizeof(errstr));
    for (; kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
            fail_msg("kafka config %s=%s: %s", kv[0], kv[1], errstr);
    return conf;
}

static void kafka_produce(const char *topic, delivery_t *d) {
    static const char *const kv[] = {"enable.idempotence", "true", "acks", "all",
                                     "message.timeout.ms", "30000", NULL};
    char errstr[512];
    rd_kafka_conf_t *conf = kafka_conf(kv);
    rd_kafka_t *rk;

    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("cannot create producer: %s", errstr);
    for (int i = 0; i < KAFKA_MESSAGES; i++) {
        char key[32], value[64];
        snprintf(key, sizeof(key), "saga-%d", i % 5);
        snprintf(value, sizeof(value), "message-%d", i);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (err)
            fail_msg("produce: %s", rd_kafka_err2str(err));
    }
    assert_int_equal(rd_kafka_flush(rk, WAIT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

static rd_kafka_t *kafka_group_consumer(const char *group, const char *topic) {
    /* A short session timeout: the dev broker's group coordinator lets a new
     * member in only once the previous generation's session timeout is over. */
    const char *const kv[] = {"group.id", group, "auto.offset.reset", "earliest",
                              "enable.auto.commit", "false", "session.timeout.ms", "6000",
                              "heartbeat.interval.ms", "1000", NULL};
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kafka_conf(kv), errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);

    if (!rk)
        fail_msg("cannot create consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    return rk;
}

/* Counts a consumed message into seen[] by its "message-N" value. */
static int kafka_take(rd_kafka_message_t *m, int *seen) {
    int idx = -1;
    char value[64];
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            print_message("consumer: %s\n", rd_kafka_message_errstr(m));
        return 0;
    }
    snprintf(value, sizeof(value), "%.*s", (int)m->len, (const char *)m->payload);
    if (sscanf(value, "message-%d", &idx) != 1 || idx < 0 || idx >= KAFKA_MESSAGES)
        fail_msg("unexpected message '%s'", value);
    seen[idx]++;
    return 1;
}

static int64_t committed_total(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t total = 0;
    assert_int_equal(rd_kafka_assignment(rk, &parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_true(parts->cnt > 0);
    assert_int_equal(rd_kafka_committed(rk, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset > 0)
            total += parts->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(parts);
    return total;
}

static int assignment_size(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    int n;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    n = parts->cnt;
    rd_kafka_topic_partition_list_destroy(parts);
    return n;
}

static void test_kafka_group_consumer_reads_idempotent_messages_and_commits_offsets(
    void **state) {
    (void)state;
    char topic[128], group[128];
    int seen[KAFKA_MESSAGES] = {0};
    int got = 0, late = 0;
    delivery_t d = {0};
    rd_kafka_t *rk;
    int64_t deadline;

    kafka_brokers = require_env("SAGA_KAFKA_BROKERS");
    unique_name(topic, sizeof(topic), "saga.test.services");
    unique_name(group, sizeof(group), "saga-test-services");
    kafka_produce(topic, &d);
    if (d.failed)
        fail_msg("%d deliveries failed, last: %s", d.failed, d.last_error);
    assert_int_equal(d.delivered, KAFKA_MESSAGES);

    rk = kafka_group_consumer(group, topic);
    deadline = now_ms() + WAIT_MS;
    while (got < KAFKA_MESSAGES && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m) {
            got += kafka_take(m, seen);
            rd_kafka_message_destroy(m);
        }
    }
    for (int i = 0; i < KAFKA_MESSAGES; i++)
        if (seen[i] != 1)
            fail_msg("message-%d was consumed %d times", i, seen[i]);
    assert_int_equal(rd_kafka_commit(rk, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(committed_total(rk), KAFKA_MESSAGES);
    assert_int_equal(rd_kafka_consumer_close(rk), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);

    /* A new member of the same group starts from the committed offsets. */
    rk = kafka_group_consumer(group, topic);
    deadline = now_ms() + WAIT_MS;
    while (assignment_size(rk) == 0 && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m) {
            late += kafka_take(m, seen);
            rd_kafka_message_destroy(m);
        }
    }
    assert_true(assignment_size(rk) > 0);
    deadline = now_ms() + 3000;
    while (now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m) {
            late += kafka_take(m, seen);
            rd_kafka_message_destroy(m);
        }
    }
    assert_int_equal(late, 0);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postgres_answers_a_parameterized_query),
        cmocka_unit_test(test_rabbitmq_confirms_a_publish_and_removes_an_acked_message),
        cmocka_unit_test(test_kafka_group_consumer_reads_idempotent_messages_and_commits_offsets),
    };
    return cmocka_run_group_tests_name("services", tests, NULL, NULL);
}
