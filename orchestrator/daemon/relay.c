/* The outbox relay: claim ready rows under a lease, publish each to its
 * channel, wait for the brokers' verdicts, delete the rows they confirmed
 * and push the others back with a backoff.
 *
 * A row is deleted only after its broker said it has it for good: Kafka's
 * delivery report (idempotent producer, acks=all) or RabbitMQ's basic.ack
 * of a publish that was not returned (mandatory flag). A return (no queue
 * bound), a nack, a lost connection or no verdict in time leave the row:
 * a failure is recorded with a backoff, a missing verdict lets the lease
 * run out. So a row may be published twice (a crash between the broker's
 * confirm and the delete), never lost; participants deduplicate by id.
 *
 * Rows of crashed workers come back when their lease ends, and the sweep
 * that runs every second picks them up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sagad.h"

void sg_relay_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    sagad_t *d = opaque;
    if (d->nreports == d->capreports) {
        size_t cap = d->capreports ? d->capreports * 2 : 256;
        sg_report_t *r = realloc(d->reports, cap * sizeof *r);
        if (!r)
            return; /* no verdict: the lease brings the row back */
        d->reports = r;
        d->capreports = cap;
    }
    sg_report_t *r = &d->reports[d->nreports++];
    r->ref = ref;
    r->err = err;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
}

static int64_t backoff_ms(int attempts) {
    int64_t ms = 250;
    for (int i = 0; i < attempts && ms < 30000; i++)
        ms *= 2;
    return ms < 30000 ? ms : 30000;
}

void sg_relay_connect(sagad_t *d) {
    char errstr[256];
    int64_t now = sg_mono_ms();
    if (!d->ap || sg_amqp_publisher_connected(d->ap) || now < d->amqp_publisher_retry_at)
        return;
    if (sg_amqp_publisher_connect(d->ap, errstr, sizeof errstr) == SG_OK) {
        sg_log_info("rabbitmq publisher connected");
        d->amqp_publisher_backoff = 0;
        return;
    }
    d->amqp_publisher_backoff = d->amqp_publisher_backoff ? d->amqp_publisher_backoff * 2 : 250;
    if (d->amqp_publisher_backoff > 10000)
        d->amqp_publisher_backoff = 10000;
    d->amqp_publisher_retry_at = now + d->amqp_publisher_backoff;
    sg_health_set(d, HEALTH_AMQP, false, errstr);
    sg_log_warn("rabbitmq publisher cannot connect, retrying in %d ms: %s",
                d->amqp_publisher_backoff, errstr);
}

/* message_id and correlation_id from a row's headers (JSON object). */
static void amqp_ids(const char *headers, char *mid, size_t mid_size, char *cid,
                     size_t cid_size) {
    mid[0] = cid[0] = '\0';
    json_t *h = headers ? json_loads(headers, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(h, "message_id"));
    const char *c = json_string_value(json_object_get(h, "correlation_id"));
    snprintf(mid, mid_size, "%s", m ? m : "");
    snprintf(cid, cid_size, "%s", c ? c : "");
    json_decref(h);
}

/* Hands one row to its broker. On an error no report will follow: one is
 * added here. Returns the transport used (0 when none). */
static sg_transport_t publish(sagad_t *d, const sg_store_outbox_row_t *row) {
    sg_channel_t ch;
    char errstr[256], mid[256], cid[256];
    sg_err_t err = sg_channel_parse(row->channel, &ch, errstr, sizeof errstr);
    if (err) {
        sg_relay_delivery(d, row->id, SG_ERR_INVALID, errstr);
        return 0;
    }
    sg_transport_t t = ch.transport;
    if (t == SG_TRANSPORT_KAFKA && !d->kp) {
        err = SG_ERR_INVALID;
        snprintf(errstr, sizeof errstr, "no kafka configured for channel \"%s\"", row->channel);
    } else if (t == SG_TRANSPORT_KAFKA) {
        err = sg_kafka_producer_send(d->kp, ch.topic, row->key, row->payload, row->payload_len,
                                     row->id, errstr, sizeof errstr);
    } else if (!d->ap) {
        err = SG_ERR_INVALID;
        snprintf(errstr, sizeof errstr, "no rabbitmq configured for channel \"%s\"", row->channel);
    } else if (!sg_amqp_publisher_connected(d->ap)) {
        err = SG_ERR_CONN;
        snprintf(errstr, sizeof errstr, "rabbitmq publisher not connected");
    } else {
        amqp_ids(row->headers, mid, sizeof mid, cid, sizeof cid);
        err = sg_amqp_publisher_send(d->ap, ch.exchange, ch.routing_key, mid[0] ? mid : NULL,
                                     cid[0] ? cid : NULL, row->payload, row->payload_len,
                                     row->id, errstr, sizeof errstr);
    }
    if (err)
        sg_relay_delivery(d, row->id, err, errstr);
    sg_channel_release(&ch);
    return t;
}

/* Waits for the verdicts of what was sent, bounded. */
static void flush(sagad_t *d, bool kafka, bool amqp) {
    char errstr[256];
    if (kafka && sg_kafka_producer_flush(d->kp, SAGAD_FLUSH_MS, errstr, sizeof errstr))
        sg_log_warn("kafka: %s", errstr);
    if (amqp && d->ap && sg_amqp_publisher_flush(d->ap, SAGAD_FLUSH_MS, errstr, sizeof errstr)) {
        sg_log_warn("rabbitmq: %s", errstr);
        if (!sg_amqp_publisher_connected(d->ap))
            sg_health_set(d, HEALTH_AMQP, false, errstr);
    }
}

static const sg_store_outbox_row_t *row_by_id(const sg_store_outbox_row_t *rows, size_t n,
                                              int64_t id) {
    size_t lo = 0, hi = n; /* claimed rows come ordered by id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rows[mid].id == id)
            return &rows[mid];
        if (rows[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const char *transport_name(const char *channel) {
    return strncmp(channel, "amqp:", 5) == 0 ? "amqp" : "kafka";
}

/* Deletes the confirmed rows, records the failures. */
static sg_err_t settle(sagad_t *d, const sg_store_outbox_row_t *rows, size_t n) {
    int64_t *ok = calloc(n ? n : 1, sizeof *ok);
    size_t nok = 0;
    sg_err_t err = SG_OK;
    if (!ok)
        return SG_ERR_NOMEM;
    for (size_t i = 0; i < d->nreports; i++) {
        const sg_report_t *r = &d->reports[i];
        const sg_store_outbox_row_t *row = row_by_id(rows, n, r->ref);
        if (!row)
            continue; /* a late verdict of an earlier claim */
        if (r->err == SG_OK) {
            ok[nok++] = row->id;
            sg_metrics_add(d->metrics, SG_M_MESSAGES_PUBLISHED, 1, transport_name(row->channel));
            continue;
        }
        sg_metrics_add(d->metrics, SG_M_PUBLISH_FAILURES, 1, transport_name(row->channel));
        sg_log(SG_LOG_WARN, &(sg_log_ctx_t){.saga_id = row->saga_id},
               "publish to '%s' failed (attempt %d), retrying later: %s", row->channel,
               row->attempts + 1, r->reason);
        if (!err && (err = sg_store_outbox_fail(d->st, row->id, r->reason,
                                                backoff_ms(row->attempts))) != SG_OK)
            break;
    }
    if (nok)
        sg_crash_point("after_publish");
    if (!err && nok)
        err = sg_store_outbox_delete(d->st, ok, nok);
    free(ok);
    return err;
}

sg_err_t sg_relay_run(sagad_t *d, int max_rounds) {
    sg_relay_connect(d);
    for (int round = 0; round < max_rounds; round++) {
        sg_store_outbox_row_t *rows = NULL;
        size_t n = 0;
        sg_err_t err = sg_store_outbox_claim(d->st, SAGAD_RELAY_MAX, SAGAD_LEASE_MS, &rows, &n);
        if (err)
            return err;
        if (n == 0)
            return SG_OK;
        d->nreports = 0;
        bool kafka = false, amqp = false;
        for (size_t i = 0; i < n; i++) {
            sg_transport_t t = publish(d, &rows[i]);
            kafka |= t == SG_TRANSPORT_KAFKA;
            amqp |= t == SG_TRANSPORT_AMQP;
        }
        flush(d, kafka && d->kp, amqp);
        err = settle(d, rows, n);
        sg_store_free(rows);
        d->nreports = 0;
        if (err)
            return err;
        if (n < SAGAD_RELAY_MAX)
            return SG_OK;
    }
    return SG_OK;
}
