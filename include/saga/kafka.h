/* Kafka transport over librdkafka: a group consumer whose offsets are
 * stored only for messages the caller has finished with, and an idempotent
 * producer with per-message delivery reports.
 *
 * Consumer: enable.auto.offset.store=false, enable.auto.commit=true (so only
 * offsets the caller stored with sg_kafka_consumer_store are ever committed,
 * in the background, on rebalance and on close), auto.offset.reset=earliest
 * (a new group reads what was sent before it first joined). Rebalances, eager
 * or cooperative, are handled inside. A message whose offset is not stored
 * is delivered again after a restart or a rebalance; in the same session,
 * sg_kafka_consumer_rewind makes it come again.
 *
 * Producer: enable.idempotence=true, acks=all, linger.ms=2. Every message
 * gets the header "content-type: application/cloudevents+json".
 *
 * Given properties are applied after these defaults, so they override them
 * (for TLS, SASL, tuning). librdkafka reconnects by itself: a lost broker
 * shows as log lines and failed deliveries, not as an error of the calls;
 * sg_kafka_*_ping tells whether the cluster answers. */
#ifndef SAGA_KAFKA_H
#define SAGA_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/err.h"
#include "saga/transport.h"

typedef struct sg_kafka_conf {
    const char *brokers;        /* bootstrap.servers */
    const char *group_id;       /* consumer only */
    const char *client_id;      /* NULL: "sagad" */
    const sg_kv_t *properties;  /* passed to librdkafka as they are */
    size_t nproperties;
    sg_log_cb *log;             /* NULL: no logging */
    void *log_opaque;
} sg_kafka_conf_t;

/* ---- consumer ---- */

typedef struct sg_kafka_consumer sg_kafka_consumer_t;

/* A consumed message. Every field is borrowed from the handle and valid
 * until sg_kafka_msg_release. */
typedef struct sg_kafka_msg {
    const void *payload;
    size_t len;
    const void *key;            /* NULL when the message has no key */
    size_t key_len;
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;       /* -1 when unknown */
    sg_header_t *headers;
    size_t nheaders;
    void *handle;               /* private */
} sg_kafka_msg_t;

/* Joins the group and subscribes to 'topics'. */
sg_kafka_consumer_t *sg_kafka_consumer_new(const sg_kafka_conf_t *conf,
                                           const char *const *topics, size_t ntopics,
                                           char *errstr, size_t errstr_size);
/* Commits the stored offsets, leaves the group, frees. NULL is a no-op. */
void sg_kafka_consumer_destroy(sg_kafka_consumer_t *kc);

/* Fills msgs[0..*n) with up to 'max' messages: waits up to 'timeout_ms' for
 * the first, then takes what is already there. Returns SG_ERR_CONN only when
 * the consumer cannot go on (a fatal error): no message is handed out then;
 * destroy it and make another. */
sg_err_t sg_kafka_consumer_poll(sg_kafka_consumer_t *kc, sg_kafka_msg_t *msgs, size_t max,
                                int timeout_ms, size_t *n, char *errstr, size_t errstr_size);

/* Marks 'msg' done: its offset + 1 will be committed. Storing an offset
 * marks every earlier message of that partition done too, so store in
 * order. SG_ERR_STATE when the partition is no longer assigned to this
 * consumer (the new owner will see the message again). */
sg_err_t sg_kafka_consumer_store(sg_kafka_consumer_t *kc, const sg_kafka_msg_t *msg,
                                 char *errstr, size_t errstr_size);

/* Makes the consumer read the partition of 'msg' again from 'msg' on. */
sg_err_t sg_kafka_consumer_rewind(sg_kafka_consumer_t *kc, const sg_kafka_msg_t *msg,
                                  char *errstr, size_t errstr_size);

/* Commits the stored offsets now and waits for the answer. */
sg_err_t sg_kafka_consumer_commit(sg_kafka_consumer_t *kc, char *errstr, size_t errstr_size);

/* SG_OK when a broker answers a metadata request within 'timeout_ms'. */
sg_err_t sg_kafka_consumer_ping(sg_kafka_consumer_t *kc, int timeout_ms, char *errstr,
                                size_t errstr_size);

/* Frees one message from sg_kafka_consumer_poll. */
void sg_kafka_msg_release(sg_kafka_msg_t *msg);

/* ---- producer ---- */

typedef struct sg_kafka_producer sg_kafka_producer_t;

/* 'cb' gets one report per message sent, during poll, flush or destroy. */
sg_kafka_producer_t *sg_kafka_producer_new(const sg_kafka_conf_t *conf, sg_delivery_cb *cb,
                                           void *cb_opaque, char *errstr, size_t errstr_size);
/* Messages not yet delivered are reported failed (SG_ERR_CONN, "purged")
 * before it returns: flush first to avoid that. NULL is a no-op. */
void sg_kafka_producer_destroy(sg_kafka_producer_t *kp);

/* Queues one message (copied). 'key' is the saga id. On SG_OK exactly one
 * report for 'ref' follows; on an error none does. SG_ERR_CONN when the
 * local queue is full or the producer hit a fatal error (then destroy it
 * and make another). */
sg_err_t sg_kafka_producer_send(sg_kafka_producer_t *kp, const char *topic, const char *key,
                                const void *payload, size_t len, int64_t ref, char *errstr,
                                size_t errstr_size);

/* Serves delivery reports, waiting up to 'timeout_ms' for one. */
void sg_kafka_producer_poll(sg_kafka_producer_t *kp, int timeout_ms);

/* Waits until every queued message is reported, at most 'timeout_ms'.
 * SG_ERR_CONN with the count still waiting when the time ran out. */
sg_err_t sg_kafka_producer_flush(sg_kafka_producer_t *kp, int timeout_ms, char *errstr,
                                 size_t errstr_size);

/* Messages queued or in flight, not yet reported. */
size_t sg_kafka_producer_outstanding(sg_kafka_producer_t *kp);

sg_err_t sg_kafka_producer_ping(sg_kafka_producer_t *kp, int timeout_ms, char *errstr,
                                size_t errstr_size);

#endif
