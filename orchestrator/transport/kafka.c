/* Kafka transport over librdkafka (see include/saga/kafka.h).
 *
 * Invariants: a consumer only ever commits offsets that the caller stored,
 * one past a message it finished; a producer reports every message it
 * accepted exactly once, through the delivery callback, including the ones
 * purged at destroy. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "saga/envelope.h"
#include "saga/kafka.h"

/* The log hook; first member of both handles, which are librdkafka's
 * opaque, so callbacks of either can log. */
typedef struct log_target {
    sg_log_cb *log;
    void *log_opaque;
} log_target_t;

struct sg_kafka_consumer {
    log_target_t lt;
    rd_kafka_t *rk;
};

struct sg_kafka_producer {
    log_target_t lt;
    rd_kafka_t *rk;
    sg_delivery_cb *cb;
    void *cb_opaque;
    size_t outstanding; /* accepted, not yet reported */
};

static void say(sg_log_cb *log, void *opaque, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(sg_log_cb *log, void *opaque, int level, const char *fmt, ...) {
    if (!log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(opaque, level, line);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_target_t *t = rd_kafka_opaque(rk);
    if (t)
        say(t->log, t->log_opaque, level, "kafka %s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    log_target_t *t = opaque;
    say(t->log, t->log_opaque, err == RD_KAFKA_RESP_ERR__FATAL ? 3 : 4, "kafka error: %s: %s",
        rd_kafka_err2name(err), reason);
}

static bool set(rd_kafka_conf_t *c, const char *key, const char *value, char *errstr,
                size_t errstr_size) {
    char why[256];
    if (rd_kafka_conf_set(c, key, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return true;
    /* The value may be a secret: name only the property. */
    snprintf(errstr, errstr_size, "invalid kafka property \"%s\": %s", key, why);
    return false;
}

/* A configuration with our defaults, then the caller's properties. */
static rd_kafka_conf_t *make_conf(const sg_kafka_conf_t *conf, const sg_kv_t *defaults,
                                  size_t ndefaults, void *opaque, char *errstr,
                                  size_t errstr_size) {
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (!conf->brokers || !*conf->brokers) {
        snprintf(errstr, errstr_size, "no kafka brokers given");
        goto fail;
    }
    if (!set(c, "bootstrap.servers", conf->brokers, errstr, errstr_size) ||
        !set(c, "client.id", conf->client_id ? conf->client_id : "sagad", errstr, errstr_size))
        goto fail;
    for (size_t i = 0; i < ndefaults; i++)
        if (!set(c, defaults[i].key, defaults[i].value, errstr, errstr_size))
            goto fail;
    for (size_t i = 0; i < conf->nproperties; i++)
        if (!set(c, conf->properties[i].key, conf->properties[i].value, errstr, errstr_size))
            goto fail;
    /* Logs are served by the poll calls, never from librdkafka's threads. */
    if (!set(c, "log.queue", "true", errstr, errstr_size))
        goto fail;
    rd_kafka_conf_set_opaque(c, opaque);
    rd_kafka_conf_set_log_cb(c, on_log);
    rd_kafka_conf_set_error_cb(c, on_error);
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static sg_err_t ping(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "kafka does not answer: %s", rd_kafka_err2str(err));
        return SG_ERR_CONN;
    }
    rd_kafka_metadata_destroy(md);
    return SG_OK;
}

/* ---- consumer ---- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    log_target_t *t = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    say(t->log, t->log_opaque, 6, "kafka rebalance: %s %d partition(s)%s",
        assign ? "assigned" : "revoked", parts->cnt,
        !assign && rd_kafka_assignment_lost(rk) ? " (lost)" : "");
    if (cooperative)
        error = assign ? rd_kafka_incremental_assign(rk, parts)
                       : rd_kafka_incremental_unassign(rk, parts);
    else
        ret = rd_kafka_assign(rk, assign ? parts : NULL);
    if (error) {
        say(t->log, t->log_opaque, 3, "kafka rebalance failed: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (ret) {
        say(t->log, t->log_opaque, 3, "kafka rebalance failed: %s", rd_kafka_err2str(ret));
    }
}

sg_kafka_consumer_t *sg_kafka_consumer_new(const sg_kafka_conf_t *conf,
                                           const char *const *topics, size_t ntopics,
                                           char *errstr, size_t errstr_size) {
    static const sg_kv_t defaults[] = {
        {"enable.auto.offset.store", "false"},
        {"enable.auto.commit", "true"},
        {"auto.commit.interval.ms", "1000"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
    };
    rd_kafka_topic_partition_list_t *subs = NULL;
    sg_kafka_consumer_t *kc = calloc(1, sizeof *kc);
    if (!kc) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    kc->lt.log = conf->log;
    kc->lt.log_opaque = conf->log_opaque;
    if (!conf->group_id || !*conf->group_id) {
        snprintf(errstr, errstr_size, "no kafka consumer group id given");
        goto fail;
    }
    rd_kafka_conf_t *c = make_conf(conf, defaults, sizeof defaults / sizeof defaults[0], kc,
                                   errstr, errstr_size);
    if (!c)
        goto fail;
    if (!set(c, "group.id", conf->group_id, errstr, errstr_size)) {
        rd_kafka_conf_destroy(c);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    kc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, errstr_size);
    if (!kc->rk) {
        rd_kafka_conf_destroy(c);
        goto fail;
    }
    rd_kafka_set_log_queue(kc->rk, NULL);
    rd_kafka_poll_set_consumer(kc->rk);
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(kc->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        goto fail;
    }
    return kc;
fail:
    sg_kafka_consumer_destroy(kc);
    return NULL;
}

void sg_kafka_consumer_destroy(sg_kafka_consumer_t *kc) {
    if (!kc)
        return;
    if (kc->rk) {
        rd_kafka_consumer_close(kc->rk);
        rd_kafka_destroy(kc->rk);
    }
    free(kc);
}

/* Fills 'msg' from 'rkm'; false when out of memory. */
static bool wrap(rd_kafka_message_t *rkm, sg_kafka_msg_t *msg) {
    memset(msg, 0, sizeof *msg);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        size_t count = rd_kafka_header_cnt(hdrs);
        msg->headers = calloc(count ? count : 1, sizeof *msg->headers);
        if (!msg->headers)
            return false;
        for (size_t i = 0; i < count; i++) {
            sg_header_t *h = &msg->headers[msg->nheaders];
            if (rd_kafka_header_get_all(hdrs, i, &h->name, &h->value, &h->size) == 0)
                msg->nheaders++;
        }
    }
    rd_kafka_timestamp_type_t tstype;
    msg->payload = rkm->payload ? rkm->payload : "";
    msg->len = rkm->len;
    msg->key = rkm->key;
    msg->key_len = rkm->key_len;
    msg->topic = rd_kafka_topic_name(rkm->rkt);
    msg->partition = rkm->partition;
    msg->offset = rkm->offset;
    msg->timestamp_ms = rd_kafka_message_timestamp(rkm, &tstype);
    msg->handle = rkm;
    return true;
}

void sg_kafka_msg_release(sg_kafka_msg_t *msg) {
    if (!msg || !msg->handle)
        return;
    free(msg->headers);
    rd_kafka_message_destroy(msg->handle);
    memset(msg, 0, sizeof *msg);
}

/* A consumer error event: fatal ones end the consumer, others are logged
 * (librdkafka recovers from them by itself). */
static sg_err_t consumer_error(sg_kafka_consumer_t *kc, rd_kafka_message_t *rkm,
                               char *errstr, size_t errstr_size) {
    char fatal[256];
    sg_err_t err = SG_OK;
    if (rd_kafka_fatal_error(kc->rk, fatal, sizeof fatal)) {
        snprintf(errstr, errstr_size, "kafka consumer failed: %s", fatal);
        err = SG_ERR_CONN;
    } else {
        say(kc->lt.log, kc->lt.log_opaque, 4, "kafka consumer: %s%s%s",
            rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "",
            rkm->rkt ? ": " : "", rd_kafka_message_errstr(rkm));
    }
    rd_kafka_message_destroy(rkm);
    return err;
}

sg_err_t sg_kafka_consumer_poll(sg_kafka_consumer_t *kc, sg_kafka_msg_t *msgs, size_t max,
                                int timeout_ms, size_t *n, char *errstr, size_t errstr_size) {
    *n = 0;
    while (*n < max) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(kc->rk, *n == 0 ? timeout_ms : 0);
        if (!rkm)
            break;
        if (rkm->err) {
            sg_err_t err = consumer_error(kc, rkm, errstr, errstr_size);
            if (err) {
                for (size_t i = 0; i < *n; i++)
                    sg_kafka_msg_release(&msgs[i]);
                *n = 0;
                return err;
            }
            continue;
        }
        if (!wrap(rkm, &msgs[*n])) {
            /* Hand out what we have; this one is read again next time. */
            sg_kafka_msg_t here = {.topic = rd_kafka_topic_name(rkm->rkt),
                                   .partition = rkm->partition, .offset = rkm->offset};
            sg_err_t err = sg_kafka_consumer_rewind(kc, &here, errstr, errstr_size);
            rd_kafka_message_destroy(rkm);
            if (!err)
                break;
            /* It would be skipped: hand out nothing, so that a new consumer
             * reads all of it again. */
            for (size_t i = 0; i < *n; i++)
                sg_kafka_msg_release(&msgs[i]);
            *n = 0;
            return SG_ERR_CONN;
        }
        (*n)++;
    }
    return SG_OK;
}

/* A one-entry partition list for 'msg' at 'offset'. */
static rd_kafka_topic_partition_list_t *at(const sg_kafka_msg_t *msg, int64_t offset) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition)->offset = offset;
    return list;
}

sg_err_t sg_kafka_consumer_store(sg_kafka_consumer_t *kc, const sg_kafka_msg_t *msg,
                                 char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *list = at(msg, msg->offset + 1);
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(kc->rk, list);
    if (!err)
        err = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    if (!err)
        return SG_OK;
    snprintf(errstr, errstr_size, "cannot store offset %lld of \"%s\" [%d]: %s",
             (long long)msg->offset, msg->topic, (int)msg->partition, rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__STATE ? SG_ERR_STATE : SG_ERR_INTERNAL;
}

sg_err_t sg_kafka_consumer_rewind(sg_kafka_consumer_t *kc, const sg_kafka_msg_t *msg,
                                  char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *list = at(msg, msg->offset);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(kc->rk, list, 5000);
    sg_err_t err = SG_OK;
    if (error || list->elems[0].err) {
        snprintf(errstr, errstr_size, "cannot rewind \"%s\" [%d] to %lld: %s", msg->topic,
                 (int)msg->partition, (long long)msg->offset,
                 error ? rd_kafka_error_string(error) : rd_kafka_err2str(list->elems[0].err));
        err = SG_ERR_STATE;
    }
    rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

sg_err_t sg_kafka_consumer_commit(sg_kafka_consumer_t *kc, char *errstr, size_t errstr_size) {
    rd_kafka_resp_err_t err = rd_kafka_commit(kc->rk, NULL, 0);
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return SG_OK;
    snprintf(errstr, errstr_size, "cannot commit offsets: %s", rd_kafka_err2str(err));
    return SG_ERR_CONN;
}

sg_err_t sg_kafka_consumer_ping(sg_kafka_consumer_t *kc, int timeout_ms, char *errstr,
                                size_t errstr_size) {
    return ping(kc->rk, timeout_ms, errstr, errstr_size);
}

/* ---- producer ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    sg_kafka_producer_t *kp = opaque;
    int64_t *ref = rkm->_private;
    sg_err_t err = SG_OK;
    char reason[256] = "";
    if (rkm->err) {
        err = rkm->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                      rkm->err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE
                  ? SG_ERR_INVALID
                  : SG_ERR_CONN;
        snprintf(reason, sizeof reason, "not delivered to \"%s\": %s",
                 rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
    }
    kp->outstanding--;
    kp->cb(kp->cb_opaque, *ref, err, reason);
    free(ref);
}

sg_kafka_producer_t *sg_kafka_producer_new(const sg_kafka_conf_t *conf, sg_delivery_cb *cb,
                                           void *cb_opaque, char *errstr, size_t errstr_size) {
    static const sg_kv_t defaults[] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "2"},
    };
    sg_kafka_producer_t *kp = calloc(1, sizeof *kp);
    if (!kp) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    kp->cb = cb;
    kp->cb_opaque = cb_opaque;
    kp->lt.log = conf->log;
    kp->lt.log_opaque = conf->log_opaque;
    rd_kafka_conf_t *c = make_conf(conf, defaults, sizeof defaults / sizeof defaults[0], kp,
                                   errstr, errstr_size);
    if (!c)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    kp->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, errstr_size);
    if (!kp->rk) {
        rd_kafka_conf_destroy(c);
        goto fail;
    }
    rd_kafka_set_log_queue(kp->rk, NULL);
    return kp;
fail:
    free(kp);
    return NULL;
}

void sg_kafka_producer_destroy(sg_kafka_producer_t *kp) {
    if (!kp)
        return;
    rd_kafka_purge(kp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    /* Purged messages are reported through the same callback. */
    for (int i = 0; i < 100 && kp->outstanding > 0; i++)
        rd_kafka_poll(kp->rk, 50);
    rd_kafka_destroy(kp->rk);
    free(kp);
}

sg_err_t sg_kafka_producer_send(sg_kafka_producer_t *kp, const char *topic, const char *key,
                                const void *payload, size_t len, int64_t ref, char *errstr,
                                size_t errstr_size) {
    char fatal[256];
    if (rd_kafka_fatal_error(kp->rk, fatal, sizeof fatal)) {
        snprintf(errstr, errstr_size, "kafka producer failed: %s", fatal);
        return SG_ERR_CONN;
    }
    int64_t *copy = malloc(sizeof *copy);
    if (!copy) {
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    *copy = ref;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kp->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("content-type", SG_ENVELOPE_CONTENT_TYPE, -1),
        RD_KAFKA_V_OPAQUE(copy), RD_KAFKA_V_END);
    if (!err) {
        kp->outstanding++;
        return SG_OK;
    }
    free(copy);
    snprintf(errstr, errstr_size, "cannot send to \"%s\": %s", topic, rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? SG_ERR_CONN : SG_ERR_INVALID;
}

void sg_kafka_producer_poll(sg_kafka_producer_t *kp, int timeout_ms) {
    rd_kafka_poll(kp->rk, timeout_ms);
}

sg_err_t sg_kafka_producer_flush(sg_kafka_producer_t *kp, int timeout_ms, char *errstr,
                                 size_t errstr_size) {
    if (rd_kafka_flush(kp->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return SG_OK;
    snprintf(errstr, errstr_size, "%zu kafka message(s) still not delivered",
             kp->outstanding);
    return SG_ERR_CONN;
}

size_t sg_kafka_producer_outstanding(sg_kafka_producer_t *kp) {
    return kp->outstanding;
}

sg_err_t sg_kafka_producer_ping(sg_kafka_producer_t *kp, int timeout_ms, char *errstr,
                                size_t errstr_size) {
    return ping(kp->rk, timeout_ms, errstr, errstr_size);
}
