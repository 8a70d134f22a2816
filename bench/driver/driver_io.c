/* The driver's brokers: one producer or publisher for everything it sends,
 * one consumer for everything it reads, on Kafka or on RabbitMQ. Messages
 * handed out by a poll are acknowledged (RabbitMQ) and released at the next
 * poll; the driver never needs them again, and keeps no Kafka offsets. */
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "saga/amqp.h"
#include "saga/def.h"
#include "saga/kafka.h"

#define POLL_MAX 512
#define CHANNEL_CACHE 8

struct bd_io {
    bd_transport_t transport;
    sg_kafka_producer_t *kp;
    sg_kafka_consumer_t *kc;
    sg_amqp_publisher_t *ap;
    sg_amqp_consumer_t *ac;
    sg_kafka_msg_t kmsgs[POLL_MAX];
    sg_amqp_msg_t amsgs[POLL_MAX];
    size_t nheld;
    struct {
        char *text;
        sg_channel_t ch;
    } cache[CHANNEL_CACHE];
    size_t ncache;
};

static void io_log(void *opaque, int level, const char *message) {
    static int all = -1;
    if (all < 0)
        all = getenv("BENCH_DRIVER_LOG_ALL") != NULL;
    if (level <= 4 || all)
        bd_log("%s: %s", (const char *)opaque, message);
}

static sg_err_t kafka_open(bd_io_t *io, const bd_io_conf_t *c, char *errstr, size_t errstr_size) {
    sg_kafka_conf_t kc = {.brokers = c->brokers, .group_id = "bench-driver",
                          .client_id = "bench-driver", .properties = c->kafka_props,
                          .nproperties = c->nkafka_props, .log = io_log, .log_opaque = "kafka"};
    io->kp = sg_kafka_producer_new(&kc, c->on_delivery, c->opaque, errstr, errstr_size);
    if (!io->kp)
        return SG_ERR_CONN;
    io->kc = sg_kafka_consumer_new(&kc, c->consume, c->nconsume, errstr, errstr_size);
    return io->kc ? SG_OK : SG_ERR_CONN;
}

static sg_err_t amqp_open(bd_io_t *io, const bd_io_conf_t *c, char *errstr, size_t errstr_size) {
    sg_amqp_conf_t ac = {.url = c->amqp_url, .prefetch = 1000, .log = io_log,
                         .log_opaque = "rabbitmq"};
    io->ap = sg_amqp_publisher_new(&ac, c->on_delivery, c->opaque, errstr, errstr_size);
    if (!io->ap || sg_amqp_publisher_connect(io->ap, errstr, errstr_size))
        return SG_ERR_CONN;
    io->ac = sg_amqp_consumer_new(&ac, c->consume, c->nconsume, errstr, errstr_size);
    if (!io->ac || sg_amqp_consumer_connect(io->ac, errstr, errstr_size))
        return SG_ERR_CONN;
    return SG_OK;
}

bd_io_t *bd_io_new(const bd_io_conf_t *conf, char *errstr, size_t errstr_size) {
    bd_io_t *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->transport = conf->transport;
    sg_err_t err = conf->transport == BD_KAFKA ? kafka_open(io, conf, errstr, errstr_size)
                                               : amqp_open(io, conf, errstr, errstr_size);
    if (err) {
        bd_io_destroy(io);
        return NULL;
    }
    return io;
}

static void release_held(bd_io_t *io) {
    if (io->transport == BD_AMQP && io->nheld && sg_amqp_consumer_connected(io->ac)) {
        char why[256];
        if (sg_amqp_consumer_ack(io->ac, &io->amsgs[io->nheld - 1], true, why, sizeof why))
            bd_log("rabbitmq ack: %s", why);
    }
    for (size_t i = 0; i < io->nheld; i++) {
        if (io->transport == BD_KAFKA)
            sg_kafka_msg_release(&io->kmsgs[i]);
        else
            sg_amqp_msg_release(&io->amsgs[i]);
    }
    io->nheld = 0;
}

void bd_io_destroy(bd_io_t *io) {
    if (!io)
        return;
    release_held(io);
    sg_kafka_consumer_destroy(io->kc);
    sg_kafka_producer_destroy(io->kp);
    sg_amqp_consumer_destroy(io->ac);
    sg_amqp_publisher_destroy(io->ap);
    for (size_t i = 0; i < io->ncache; i++) {
        free(io->cache[i].text);
        sg_channel_release(&io->cache[i].ch);
    }
    free(io);
}

/* The parsed channel, from a small cache: the driver sends to a handful. */
static const sg_channel_t *channel_of(bd_io_t *io, const char *text, char *errstr,
                                      size_t errstr_size) {
    for (size_t i = 0; i < io->ncache; i++)
        if (!strcmp(io->cache[i].text, text))
            return &io->cache[i].ch;
    if (io->ncache == CHANNEL_CACHE)
        return NULL;
    sg_channel_t *ch = &io->cache[io->ncache].ch;
    if (sg_channel_parse(text, ch, errstr, errstr_size))
        return NULL;
    io->cache[io->ncache].text = strdup(text);
    return &io->cache[io->ncache++].ch;
}

sg_err_t bd_io_send(bd_io_t *io, const char *channel, const char *key, const char *msg_id,
                    const char *payload, size_t len, int64_t ref, char *errstr,
                    size_t errstr_size) {
    const sg_channel_t *ch = channel_of(io, channel, errstr, errstr_size);
    if (!ch)
        return SG_ERR_INVALID;
    if (ch->transport == SG_TRANSPORT_KAFKA && io->kp)
        return sg_kafka_producer_send(io->kp, ch->topic, key, payload, len, ref, errstr,
                                      errstr_size);
    if (ch->transport == SG_TRANSPORT_AMQP && io->ap)
        return sg_amqp_publisher_send(io->ap, ch->exchange, ch->routing_key, msg_id, key,
                                      payload, len, ref, errstr, errstr_size);
    snprintf(errstr, errstr_size, "no client for channel \"%s\"", channel);
    return SG_ERR_INVALID;
}

sg_err_t bd_io_poll(bd_io_t *io, bd_msg_t *msgs, size_t max, int timeout_ms, size_t *n,
                    char *errstr, size_t errstr_size) {
    sg_err_t err;
    release_held(io);
    if (max > POLL_MAX)
        max = POLL_MAX;
    *n = 0;
    if (io->transport == BD_KAFKA) {
        err = sg_kafka_consumer_poll(io->kc, io->kmsgs, max, timeout_ms, &io->nheld, errstr,
                                     errstr_size);
        for (size_t i = 0; i < io->nheld; i++)
            msgs[i] = (bd_msg_t){io->kmsgs[i].topic, io->kmsgs[i].payload, io->kmsgs[i].len};
    } else {
        err = sg_amqp_consumer_poll(io->ac, io->amsgs, max, timeout_ms, &io->nheld, errstr,
                                    errstr_size);
        for (size_t i = 0; i < io->nheld; i++)
            msgs[i] = (bd_msg_t){io->amsgs[i].queue, io->amsgs[i].body, io->amsgs[i].len};
    }
    *n = io->nheld;
    return err;
}

void bd_io_serve(bd_io_t *io) {
    char why[256];
    if (io->kp)
        sg_kafka_producer_poll(io->kp, 0);
    if (io->ap && sg_amqp_publisher_poll(io->ap, 0, why, sizeof why))
        bd_log("rabbitmq publisher: %s", why);
}

size_t bd_io_outstanding(bd_io_t *io) {
    return io->kp ? sg_kafka_producer_outstanding(io->kp) : sg_amqp_publisher_outstanding(io->ap);
}

void bd_io_flush(bd_io_t *io, int timeout_ms) {
    char why[256];
    if (io->kp && sg_kafka_producer_flush(io->kp, timeout_ms, why, sizeof why))
        bd_log("kafka flush: %s", why);
    if (io->ap && sg_amqp_publisher_flush(io->ap, timeout_ms, why, sizeof why))
        bd_log("rabbitmq flush: %s", why);
}
