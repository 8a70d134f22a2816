/* The outbox relay: rows go to their brokers, and a row is deleted only
 * after its broker said it has it for good: Kafka's delivery report
 * (idempotent producer, acks=all) or RabbitMQ's basic.ack of a publish that
 * was not returned (mandatory flag). A return (no queue bound), a nack or a
 * lost connection record a failure with a backoff; no verdict at all lets
 * the lease run out. So a row may be published twice (a crash between the
 * broker's confirm and the delete), never lost; participants deduplicate
 * by id.
 *
 * Two ways in, one way out:
 *   fresh rows  a worker publishes the rows of its own commit at once,
 *               from memory (sg_relay_publish): no claim, no wait. The
 *               batch wrote them leased to this worker (SAGAD_FRESH_LEASE_MS)
 *               so that other relays leave them alone unless it dies.
 *   the sweep   every second, rows whose lease or backoff ended (a crashed
 *               worker's, failed ones, those sagactl wrote) are claimed
 *               and published the same way.
 * Verdicts are collected without blocking at every turn of the worker loop
 * (sg_relay_collect); the confirmed rows are deleted in the next batch
 * transaction, or on their own when no batch comes. Every row handed to a
 * broker is kept in 'flights', ordered by id, until its verdict. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sagad.h"
#include "saga/str.h"

/* Room for one more element in a growing array of 'n' of 'size' bytes:
 * the array (moved, maybe) or NULL without memory (the old one stays). */
static void *grow(void *v, size_t n, size_t *cap, size_t size) {
    if (n < *cap)
        return v;
    size_t more = *cap ? *cap * 2 : 256;
    void *p = realloc(v, more * size);
    if (p)
        *cap = more;
    return p;
}

void sg_relay_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    sagad_t *d = opaque;
    sg_report_t *reports = grow(d->reports, d->nreports, &d->capreports, sizeof *reports);
    if (!reports)
        return; /* no verdict: the lease brings the row back */
    d->reports = reports;
    sg_report_t *r = &d->reports[d->nreports++];
    r->ref = ref;
    r->err = err;
    sg_str_copy(r->reason, sizeof r->reason, reason);
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

/* ---- the rows in flight ---- */

/* Index of the first flight whose id is >= 'id'. */
static size_t flight_at(const sagad_t *d, int64_t id) {
    size_t lo = 0, hi = d->nflights;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->flights[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static sg_flight_t *flight_find(sagad_t *d, int64_t id) {
    size_t i = flight_at(d, id);
    return i < d->nflights && d->flights[i].id == id && !d->flights[i].settled ? &d->flights[i]
                                                                             : NULL;
}

static void flight_clear(sg_flight_t *f) {
    free(f->channel);
    free(f->saga_id);
    f->channel = f->saga_id = NULL;
    f->settled = true;
}

/* Registers a row about to be handed to its broker (a row claimed again
 * replaces its old entry). False without memory: then it is not sent, and
 * its lease brings it back. */
static bool flight_add(sagad_t *d, int64_t id, int attempts, const char *channel,
                       const char *saga_id) {
    size_t i = flight_at(d, id);
    if (i == d->nflights || d->flights[i].id != id) {
        sg_flight_t *flights = grow(d->flights, d->nflights, &d->capflights, sizeof *flights);
        if (!flights)
            return false;
        d->flights = flights;
        memmove(&d->flights[i + 1], &d->flights[i], (d->nflights - i) * sizeof *d->flights);
        d->nflights++;
    } else {
        flight_clear(&d->flights[i]);
    }
    sg_flight_t *f = &d->flights[i];
    *f = (sg_flight_t){.id = id, .sent_ms = sg_mono_ms(), .attempts = attempts,
                       .channel = strdup(channel), .saga_id = saga_id ? strdup(saga_id) : NULL};
    if (!f->channel || (saga_id && !f->saga_id)) {
        flight_clear(f);
        return false;
    }
    return true;
}

/* Drops settled entries, and those with no verdict for longer than any
 * lease (the sweep has their rows again). */
static void flights_compact(sagad_t *d, int64_t now) {
    size_t k = 0;
    for (size_t i = 0; i < d->nflights; i++) {
        sg_flight_t *f = &d->flights[i];
        if (!f->settled && now - f->sent_ms > SAGAD_LEASE_MS)
            flight_clear(f);
        if (!f->settled)
            d->flights[k++] = *f;
    }
    d->nflights = k;
}

static bool done_add(sagad_t *d, int64_t id) {
    int64_t *done = grow(d->done, d->ndone, &d->capdone, sizeof *done);
    if (!done)
        return false;
    d->done = done;
    d->done[d->ndone++] = id;
    return true;
}

/* ---- sending ---- */

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
 * added here. */
static void publish(sagad_t *d, const sg_store_outbox_row_t *row) {
    sg_channel_t ch;
    char errstr[256], mid[256], cid[256];
    if (!flight_add(d, row->id, row->attempts, row->channel, row->saga_id))
        return;
    sg_err_t err = sg_channel_parse(row->channel, &ch, errstr, sizeof errstr);
    if (err) {
        sg_relay_delivery(d, row->id, SG_ERR_INVALID, errstr);
        return;
    }
    if (ch.transport == SG_TRANSPORT_KAFKA && !d->kp) {
        err = SG_ERR_INVALID;
        snprintf(errstr, sizeof errstr, "no kafka configured for channel \"%s\"", row->channel);
    } else if (ch.transport == SG_TRANSPORT_KAFKA) {
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
}

void sg_relay_publish(sagad_t *d, const char *saga_id, const sg_store_outmsg_t *m) {
    if (m->id <= 0)
        return;
    sg_store_outbox_row_t row = {
        .id = m->id, .saga_id = saga_id, .channel = m->channel, .key = m->key,
        .payload = m->payload, .payload_len = m->payload_len, .headers = m->headers,
    };
    publish(d, &row);
}

sg_err_t sg_relay_sweep(sagad_t *d, int max_rounds) {
    sg_relay_connect(d);
    for (int round = 0; round < max_rounds; round++) {
        sg_store_outbox_row_t *rows = NULL;
        size_t n = 0;
        sg_err_t err = sg_store_outbox_claim(d->st, SAGAD_RELAY_MAX, SAGAD_LEASE_MS, &rows, &n);
        if (err)
            return err;
        for (size_t i = 0; i < n; i++)
            publish(d, &rows[i]);
        sg_store_free(rows);
        if (n < SAGAD_RELAY_MAX)
            return SG_OK;
    }
    return SG_OK;
}

/* ---- verdicts ---- */

static const char *transport_name(const char *channel) {
    return strncmp(channel, "amqp:", 5) == 0 ? "amqp" : "kafka";
}

/* Reads the verdicts that arrived, without waiting. */
static void poll_brokers(sagad_t *d) {
    char errstr[256];
    if (d->kp)
        sg_kafka_producer_poll(d->kp, 0);
    if (d->ap && sg_amqp_publisher_connected(d->ap) &&
        sg_amqp_publisher_outstanding(d->ap) > 0 &&
        sg_amqp_publisher_poll(d->ap, 0, errstr, sizeof errstr) != SG_OK) {
        sg_log_warn("rabbitmq: %s", errstr);
        sg_health_set(d, HEALTH_AMQP, false, errstr);
    }
}

sg_err_t sg_relay_collect(sagad_t *d) {
    poll_brokers(d);
    sg_err_t err = SG_OK;
    for (size_t i = 0; i < d->nreports; i++) {
        const sg_report_t *r = &d->reports[i];
        sg_flight_t *f = flight_find(d, r->ref);
        if (!f)
            continue; /* a late verdict of a row sent again since */
        if (r->err == SG_OK) {
            if (!done_add(d, f->id))
                continue; /* no memory: the lease brings the row back */
            sg_metrics_add(d->metrics, SG_M_MESSAGES_PUBLISHED, 1, transport_name(f->channel));
            flight_clear(f);
            continue;
        }
        sg_metrics_add(d->metrics, SG_M_PUBLISH_FAILURES, 1, transport_name(f->channel));
        sg_log(SG_LOG_WARN, &(sg_log_ctx_t){.saga_id = f->saga_id},
               "publish to '%s' failed (attempt %d), retrying later: %s", f->channel,
               f->attempts + 1, r->reason);
        /* Without the database the lease brings the row back instead. */
        if (!err)
            err = sg_store_outbox_fail(d->st, f->id, r->reason, backoff_ms(f->attempts));
        flight_clear(f);
    }
    d->nreports = 0;
    flights_compact(d, sg_mono_ms());
    return err;
}

void sg_relay_deleting(sagad_t *d) {
    if (d->ndone)
        sg_crash_point("after_publish");
}

sg_err_t sg_relay_delete_done(sagad_t *d) {
    if (d->ndone == 0)
        return SG_OK;
    sg_relay_deleting(d);
    sg_err_t err = sg_store_outbox_delete(d->st, d->done, d->ndone);
    if (!err)
        d->ndone = 0;
    return err;
}

sg_err_t sg_relay_drain(sagad_t *d, int timeout_ms) {
    char errstr[256];
    sg_err_t err = sg_relay_sweep(d, 8);
    if (d->kp && sg_kafka_producer_flush(d->kp, timeout_ms, errstr, sizeof errstr))
        sg_log_warn("kafka: %s", errstr);
    if (d->ap && sg_amqp_publisher_connected(d->ap) &&
        sg_amqp_publisher_flush(d->ap, timeout_ms, errstr, sizeof errstr))
        sg_log_warn("rabbitmq: %s", errstr);
    sg_err_t cerr = sg_relay_collect(d);
    sg_err_t derr = sg_relay_delete_done(d);
    return err ? err : cerr ? cerr : derr;
}

void sg_relay_release(sagad_t *d) {
    for (size_t i = 0; i < d->nflights; i++)
        flight_clear(&d->flights[i]);
    free(d->flights);
    free(d->done);
    free(d->reports);
    d->flights = NULL;
    d->done = NULL;
    d->reports = NULL;
    d->nflights = d->ndone = d->nreports = 0;
}
