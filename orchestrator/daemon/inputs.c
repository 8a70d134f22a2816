/* The input side of the worker: take a batch from Kafka and RabbitMQ,
 * decode each message into a work, store the refused ones whole in the
 * dead-letter table, and acknowledge only once every message of the batch
 * is settled (committed, a duplicate, or dead-lettered): Kafka offsets are
 * stored message by message in order, RabbitMQ deliveries acked together
 * with 'multiple' per connection.
 *
 * A message is never dropped: while the database is away the batch stays in
 * hand, unacknowledged; if the process stops meanwhile, the brokers deliver
 * it again and the inbox recognises what had committed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "daemon/sagad.h"

static void msg_release(sg_inmsg_t *m) {
    if (m->transport == SG_TRANSPORT_KAFKA)
        sg_kafka_msg_release(&m->k);
    else if (m->transport == SG_TRANSPORT_AMQP)
        sg_amqp_msg_release(&m->a);
    sg_envelope_destroy(m->env);
    json_decref(m->work.owned_data);
    memset(m, 0, sizeof *m);
}

void sg_inputs_release(sagad_t *d) {
    for (size_t i = 0; i < d->nmsgs; i++)
        msg_release(&d->msgs[i]);
    d->nmsgs = 0;
}

/* ---- poll ---- */

static size_t poll_kafka(sagad_t *d, size_t max, int wait) {
    sg_kafka_msg_t km[256];
    char errstr[256];
    size_t got = 0, n;
    if (max > sizeof km / sizeof km[0])
        max = sizeof km / sizeof km[0];
    sg_err_t err = sg_kafka_consumer_poll(d->kc, km, max, wait, &n, errstr, sizeof errstr);
    int64_t now = sg_mono_us();
    for (size_t i = 0; i < n; i++) {
        sg_inmsg_t *m = &d->msgs[d->nmsgs++];
        m->work.received_us = now;
        m->transport = SG_TRANSPORT_KAFKA;
        m->k = km[i];
        m->body = km[i].payload;
        m->len = km[i].len;
        snprintf(m->channel, sizeof m->channel, "kafka:%s", km[i].topic);
        got++;
    }
    if (err == SG_ERR_CONN) {
        sg_log_error("kafka consumer failed, making a new one: %s", errstr);
        sg_health_set(d, HEALTH_KAFKA, false, errstr);
        d->nmsgs -= got;
        for (size_t i = 0; i < got; i++)
            msg_release(&d->msgs[d->nmsgs + i]);
        sg_kafka_consumer_destroy(d->kc);
        d->kc = NULL;
        return 0;
    } else if (err) {
        sg_log_warn("kafka poll: %s", errstr);
    }
    if (got)
        sg_metrics_add(d->metrics, SG_M_MESSAGES_CONSUMED, (double)got, "kafka");
    return got;
}

static size_t poll_amqp(sagad_t *d, size_t max, int wait) {
    sg_amqp_msg_t am[256];
    char errstr[256];
    size_t n = 0;
    if (max > sizeof am / sizeof am[0])
        max = sizeof am / sizeof am[0];
    sg_err_t err = sg_amqp_consumer_poll(d->ac, am, max, wait, &n, errstr, sizeof errstr);
    if (err == SG_ERR_CONN) {
        sg_log_warn("rabbitmq consumer lost its connection: %s", errstr);
        sg_health_set(d, HEALTH_AMQP, false, errstr);
        d->amqp_consumer_retry_at = 0;
        return 0;
    }
    int64_t now = sg_mono_us();
    for (size_t i = 0; i < n; i++) {
        sg_inmsg_t *m = &d->msgs[d->nmsgs++];
        m->work.received_us = now;
        m->transport = SG_TRANSPORT_AMQP;
        m->a = am[i];
        m->body = am[i].body;
        m->len = am[i].len;
        snprintf(m->channel, sizeof m->channel, "amqp:/%s", am[i].queue);
    }
    if (n)
        sg_metrics_add(d->metrics, SG_M_MESSAGES_CONSUMED, (double)n, "amqp");
    return n;
}

void sg_inputs_poll(sagad_t *d) {
    size_t max = (size_t)d->cfg->batch_max;
    /* Idle, but verdicts still to come: come back soon to delete their rows. */
    int idle = d->nflights || d->ndone ? SAGAD_VERDICT_WAIT_MS : SAGAD_IDLE_WAIT_MS;
    int wait = d->busy ? d->cfg->batch_wait_ms : idle;
    bool amqp = d->ac && sg_amqp_consumer_connected(d->ac);
    if (d->kc)
        poll_kafka(d, max, amqp ? wait / 2 : wait);
    if (amqp && d->nmsgs < max)
        poll_amqp(d, max - d->nmsgs, d->nmsgs ? 0 : (d->kc ? wait / 2 : wait));
    if (!d->kc && !amqp)
        sg_daemon_sleep(d, wait);
}

/* ---- decode ---- */

/* A failure reply's data as the engine reads it. */
static json_t *failure_data(const sg_envelope_t *env) {
    return json_pack("{s:s,s:s,s:b}", "code", env->error_code ? env->error_code : "unspecified",
                     "message", env->error_message ? env->error_message : "", "retryable",
                     env->retryable);
}

/* A start without a (valid) traceparent begins a trace of its own: a
 * random trace id, so that it is unique across deployments and after the
 * inbox forgot the message id (the engine's own fallback derives it from
 * the message id). Kept in the envelope, which frees it. */
static void fresh_trace(sg_envelope_t *env) {
    uint8_t bytes[24];
    char tp[SG_TRACEPARENT_LEN + 1];
    if (env->traceparent || getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        return;
    sg_trace_new(bytes, bytes + 16, tp);
    env->traceparent = strdup(tp);
}

static void work_from_envelope(sg_work_t *w, sg_envelope_t *env) {
    if (env->kind == SG_ENVELOPE_START)
        fresh_trace(env);
    w->saga_id = env->saga_id;
    w->message_id = env->id;
    w->in.traceparent = env->traceparent;
    switch (env->kind) {
    case SG_ENVELOPE_START:
        w->in.kind = SG_INPUT_START;
        w->in.saga_id = env->saga_id;
        w->in.data = env->data;
        w->sagatype = env->sagatype;
        /* Seeded by the message id: a redelivered start replays exactly. */
        w->in.seed = 1469598103934665603ULL;
        for (const char *c = env->id; *c; c++)
            w->in.seed = (w->in.seed ^ (unsigned char)*c) * 1099511628211ULL;
        break;
    case SG_ENVELOPE_ABORT:
        w->in.kind = SG_INPUT_ABORT;
        w->in.reason = env->reason;
        break;
    case SG_ENVELOPE_REPLY:
        w->in.kind = SG_INPUT_REPLY;
        w->in.step = env->sagastep;
        w->in.causation_id = env->causationid;
        w->in.outcome = env->outcome;
        if (env->outcome == SG_OUTCOME_FAILURE)
            w->in.data = w->owned_data = failure_data(env);
        else
            w->in.data = env->data;
        break;
    }
}

void sg_inputs_decode(sagad_t *d) {
    size_t max = d->cfg->max_message_bytes > 0 ? (size_t)d->cfg->max_message_bytes : 0;
    for (size_t i = 0; i < d->nmsgs; i++) {
        sg_inmsg_t *m = &d->msgs[i];
        char errstr[256];
        sg_err_t err = sg_envelope_decode(m->body, m->len, max, &m->env, errstr, sizeof errstr);
        if (err) {
            m->work.state = WORK_REJECTED;
            snprintf(m->work.reason, sizeof m->work.reason, "%s", errstr);
            continue;
        }
        work_from_envelope(&m->work, m->env);
        if (m->env->note[0]) {
            char trace[33];
            sg_log(SG_LOG_INFO,
                   &(sg_log_ctx_t){.saga_id = m->env->saga_id,
                                   .trace_id = sg_trace_id(m->env->traceparent, trace)},
                   "message '%s': %s", m->env->id, m->env->note);
        }
    }
}

/* ---- dead letters ---- */

static void header_put(json_t *h, const char *name, const void *value, size_t size) {
    if (!name || !value)
        return;
    json_t *v = json_stringn(value, size);
    if (v)
        json_object_set_new(h, name, v);
}

/* The transport's metadata kept with a dead letter, as a JSON object. */
static char *headers_json(const sg_inmsg_t *m) {
    json_t *h = json_object();
    if (m->transport == SG_TRANSPORT_KAFKA) {
        for (size_t i = 0; i < m->k.nheaders; i++)
            header_put(h, m->k.headers[i].name, m->k.headers[i].value, m->k.headers[i].size);
    } else {
        const char *props[][2] = {{"message_id", m->a.message_id},
                                  {"correlation_id", m->a.correlation_id},
                                  {"content_type", m->a.content_type},
                                  {"exchange", m->a.exchange},
                                  {"routing_key", m->a.routing_key}};
        for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
            if (props[i][1])
                header_put(h, props[i][0], props[i][1], strlen(props[i][1]));
        for (size_t i = 0; i < m->a.nheaders; i++)
            header_put(h, m->a.headers[i].name, m->a.headers[i].value, m->a.headers[i].size);
    }
    char *text = json_object_size(h) ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    return text;
}

static char *key_text(const sg_inmsg_t *m) {
    if (m->transport != SG_TRANSPORT_KAFKA || !m->k.key)
        return NULL;
    json_t *probe = json_stringn(m->k.key, m->k.key_len); /* valid UTF-8 only */
    char *key = probe ? strndup(m->k.key, m->k.key_len) : NULL;
    json_decref(probe);
    return key;
}

static sg_err_t dead_letter_one(sagad_t *d, sg_inmsg_t *m) {
    char *headers = headers_json(m);
    char *key = key_text(m);
    int64_t id = 0;
    sg_err_t err = sg_store_dead_letter_add(d->st, m->channel, key, m->body ? m->body : "",
                                            m->len, headers, m->work.reason, &id);
    free(headers);
    free(key);
    if (err)
        return err;
    m->work.state = WORK_DONE;
    sg_metrics_add(d->metrics, SG_M_DEAD_LETTERS, 1, sg_apply_reason_class(m->work.reason));
    char trace[33];
    sg_log(SG_LOG_WARN,
           &(sg_log_ctx_t){.saga_id = m->env ? m->env->saga_id : NULL,
                           .saga_type = m->env ? m->env->sagatype : NULL,
                           .step = m->env ? m->env->sagastep : NULL,
                           .trace_id = m->env ? sg_trace_id(m->env->traceparent, trace) : NULL},
           "message from '%s' dead-lettered as #%lld: %s", m->channel, (long long)id,
           m->work.reason);
    return SG_OK;
}

sg_err_t sg_inputs_dead_letter(sagad_t *d) {
    for (size_t i = 0; i < d->nmsgs; i++) {
        sg_inmsg_t *m = &d->msgs[i];
        if (m->work.state != WORK_REJECTED)
            continue;
        sg_err_t err = dead_letter_one(d, m);
        if (err == SG_ERR_CONN)
            return err;
        if (err) {
            /* The table refuses it as it is (it cannot, short of a bug):
             * say so loudly rather than loop on it. */
            sg_log_error("cannot dead-letter a message from '%s' (%s): %s", m->channel,
                         m->work.reason, sg_store_errmsg(d->st));
            m->work.state = WORK_DONE;
        }
    }
    return SG_OK;
}

/* ---- acknowledge ---- */

void sg_inputs_ack(sagad_t *d) {
    char errstr[256];
    for (size_t i = 0; i < d->nmsgs; i++) {
        sg_inmsg_t *m = &d->msgs[i];
        if (m->transport != SG_TRANSPORT_KAFKA || !d->kc)
            continue;
        sg_err_t err = sg_kafka_consumer_store(d->kc, &m->k, errstr, sizeof errstr);
        if (err == SG_ERR_STATE)
            sg_log_debug("offset not stored, partition moved: %s", errstr);
        else if (err)
            sg_log_warn("%s", errstr);
    }
    /* The last delivery of each connection acks every earlier one. */
    for (size_t i = d->nmsgs; i-- > 0;) {
        sg_inmsg_t *m = &d->msgs[i];
        if (m->transport != SG_TRANSPORT_AMQP || !d->ac)
            continue;
        bool later = false;
        for (size_t j = i + 1; j < d->nmsgs && !later; j++)
            later = d->msgs[j].transport == SG_TRANSPORT_AMQP &&
                    d->msgs[j].a.connection == m->a.connection;
        if (later)
            continue;
        sg_err_t err = sg_amqp_consumer_ack(d->ac, &m->a, true, errstr, sizeof errstr);
        if (err == SG_ERR_STATE)
            sg_log_debug("ack skipped, the delivery came on an old connection: %s", errstr);
        else if (err)
            sg_log_warn("rabbitmq ack failed, the broker will deliver again: %s", errstr);
    }
}

/* ---- (re)connect ---- */

static void amqp_consumer_connect(sagad_t *d, int64_t now) {
    char errstr[256];
    if (sg_amqp_consumer_connected(d->ac) || now < d->amqp_consumer_retry_at)
        return;
    if (sg_amqp_consumer_connect(d->ac, errstr, sizeof errstr) == SG_OK) {
        sg_log_info("rabbitmq consumer connected, consuming %zu queue(s)", d->namqp_queues);
        d->amqp_consumer_backoff = 0;
        return;
    }
    d->amqp_consumer_backoff = d->amqp_consumer_backoff ? d->amqp_consumer_backoff * 2 : 250;
    if (d->amqp_consumer_backoff > 10000)
        d->amqp_consumer_backoff = 10000;
    d->amqp_consumer_retry_at = now + d->amqp_consumer_backoff;
    sg_health_set(d, HEALTH_AMQP, false, errstr);
    sg_log_warn("rabbitmq consumer cannot connect, retrying in %d ms: %s",
                d->amqp_consumer_backoff, errstr);
}

void sg_inputs_reconnect(sagad_t *d, int64_t now) {
    if (d->ac)
        amqp_consumer_connect(d, now);
    if (!d->kc && d->nkafka_topics && now >= d->kafka_consumer_retry_at) {
        char errstr[256];
        d->kc = sg_daemon_kafka_consumer(d, errstr, sizeof errstr);
        if (!d->kc) {
            d->kafka_consumer_retry_at = now + 5000;
            sg_log_error("cannot make a kafka consumer, retrying in 5 s: %s", errstr);
        }
    }
}
