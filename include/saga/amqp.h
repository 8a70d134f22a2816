/* RabbitMQ transport over rabbitmq-c (AMQP 0-9-1): a consumer with durable
 * queues, prefetch and manual acks, and a publisher with publisher confirms
 * and the mandatory flag. Each is its own connection, as RabbitMQ advises
 * (a blocked publisher must not stall consuming).
 *
 * The URL is amqp://user:password@host:port/vhost (or amqps://, TLS with
 * peer verification); the vhost is URL-encoded ("%2f" is "/"). Error texts
 * name host, port and vhost, never the password.
 *
 * A lost connection (socket error, missed heartbeats, the server closing the
 * connection or the channel) makes the calls return SG_ERR_CONN; the
 * handle then stays disconnected until sg_amqp_*_connect succeeds. Messages
 * delivered on a lost connection cannot be acked any more: the broker
 * delivers them again (marked redelivered) after the reconnect. Messages
 * published on a lost connection and not yet confirmed are reported failed
 * with SG_ERR_CONN: they may or may not have arrived, send them again.
 *
 * Routing: a channel "amqp:<exchange>/<routing-key>" publishes to that
 * exchange with that key; "amqp:/<queue>" to the default exchange "" with
 * the queue's name as key. Exchange names, routing keys, message ids and
 * correlation ids are AMQP short strings: at most 255 bytes. */
#ifndef SAGA_AMQP_H
#define SAGA_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/err.h"
#include "saga/transport.h"

#define SG_AMQP_DEFAULT_PREFETCH 256
/* The header by which a returned message is matched to its publish. */
#define SG_AMQP_SEQ_HEADER "sagad-publish-seq"

typedef struct sg_amqp_conf {
    const char *url;
    uint16_t prefetch;          /* consumer: basic.qos count; 0: default */
    int heartbeat_s;            /* 0: 30 s; call poll more often than that */
    int timeout_ms;             /* connect and RPC timeout; 0: 5000 */
    sg_log_cb *log;             /* NULL: no logging */
    void *log_opaque;
} sg_amqp_conf_t;

/* ---- consumer ---- */

typedef struct sg_amqp_consumer sg_amqp_consumer_t;

/* A delivery. Every field is owned by the message and valid until
 * sg_amqp_msg_release; optional strings are NULL when absent. */
typedef struct sg_amqp_msg {
    const void *body;
    size_t len;
    const char *queue;          /* the queue it was consumed from */
    const char *exchange;       /* as published ("" for the default) */
    const char *routing_key;
    const char *content_type;
    const char *message_id;
    const char *correlation_id;
    bool redelivered;
    bool persistent;            /* delivery_mode 2 */
    uint64_t delivery_tag;
    uint64_t connection;        /* which connection of the consumer got it */
    sg_header_t *headers;       /* string and byte-array headers only */
    size_t nheaders;
    void *handle;               /* private */
} sg_amqp_msg_t;

/* Checks the URL and makes a consumer of 'queues' (copied). It does not
 * connect: call sg_amqp_consumer_connect. NULL with errstr on a bad URL. */
sg_amqp_consumer_t *sg_amqp_consumer_new(const sg_amqp_conf_t *conf,
                                         const char *const *queues, size_t nqueues,
                                         char *errstr, size_t errstr_size);
void sg_amqp_consumer_destroy(sg_amqp_consumer_t *c);

/* (Re)connects: drops the current connection if any (its unacked messages
 * go back to their queues), then opens one, declares each queue durable,
 * sets the prefetch and starts consuming with manual acks. */
sg_err_t sg_amqp_consumer_connect(sg_amqp_consumer_t *c, char *errstr, size_t errstr_size);
bool sg_amqp_consumer_connected(const sg_amqp_consumer_t *c);

/* Fills msgs[0..*n) with up to 'max' deliveries: waits up to 'timeout_ms'
 * for the first, then takes what has already arrived. On SG_ERR_CONN no
 * message is handed out. */
sg_err_t sg_amqp_consumer_poll(sg_amqp_consumer_t *c, sg_amqp_msg_t *msgs, size_t max,
                               int timeout_ms, size_t *n, char *errstr, size_t errstr_size);

/* Acks 'msg' (with 'multiple': and every earlier unacked delivery of this
 * consumer). SG_ERR_STATE for a message of an earlier connection (it will
 * be delivered again); SG_ERR_CONN when the connection is lost. */
sg_err_t sg_amqp_consumer_ack(sg_amqp_consumer_t *c, const sg_amqp_msg_t *msg,
                              bool multiple, char *errstr, size_t errstr_size);
/* basic.nack: 'requeue' puts the message(s) back, otherwise the broker drops
 * them (or dead-letters them, if the queue says so). Without 'multiple' it
 * is a basic.reject. */
sg_err_t sg_amqp_consumer_nack(sg_amqp_consumer_t *c, const sg_amqp_msg_t *msg,
                               bool multiple, bool requeue, char *errstr, size_t errstr_size);

void sg_amqp_msg_release(sg_amqp_msg_t *msg);

/* ---- publisher ---- */

typedef struct sg_amqp_publisher sg_amqp_publisher_t;

/* 'cb' gets one report per message sent, during poll, flush, connect or
 * destroy: SG_OK when confirmed (basic.ack) and not returned;
 * SG_ERR_NOT_FOUND when returned as unroutable (no queue bound; it may be
 * later); SG_ERR_INVALID when the exchange does not exist; SG_ERR_CONN when
 * nacked or the connection was lost first. It does not connect. */
sg_amqp_publisher_t *sg_amqp_publisher_new(const sg_amqp_conf_t *conf, sg_delivery_cb *cb,
                                           void *cb_opaque, char *errstr, size_t errstr_size);
/* Reports what is not yet confirmed as failed, then closes. */
void sg_amqp_publisher_destroy(sg_amqp_publisher_t *p);

/* (Re)connects and puts the channel in confirm mode; what was not yet
 * confirmed on the old connection is reported failed first. */
sg_err_t sg_amqp_publisher_connect(sg_amqp_publisher_t *p, char *errstr, size_t errstr_size);
bool sg_amqp_publisher_connected(const sg_amqp_publisher_t *p);

/* Publishes persistently, with mandatory set, content_type
 * application/cloudevents+json, and the given message_id and
 * correlation_id (either may be NULL). On SG_OK exactly one report for
 * 'ref' follows. The first publish to an exchange checks that it exists
 * (on a separate channel, so no confirm is lost): SG_ERR_INVALID when it
 * does not, and no report follows. */
sg_err_t sg_amqp_publisher_send(sg_amqp_publisher_t *p, const char *exchange,
                                const char *routing_key, const char *message_id,
                                const char *correlation_id, const void *body, size_t len,
                                int64_t ref, char *errstr, size_t errstr_size);

/* Reads confirms and returns, waiting up to 'timeout_ms' for the first. */
sg_err_t sg_amqp_publisher_poll(sg_amqp_publisher_t *p, int timeout_ms, char *errstr,
                                size_t errstr_size);
/* Polls until every message is reported or 'timeout_ms' passed
 * (SG_ERR_CONN with the count still waiting). */
sg_err_t sg_amqp_publisher_flush(sg_amqp_publisher_t *p, int timeout_ms, char *errstr,
                                 size_t errstr_size);
size_t sg_amqp_publisher_outstanding(const sg_amqp_publisher_t *p);

#endif
