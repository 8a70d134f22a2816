/* What the worker does besides inputs and the relay, each on its own
 * schedule: fire due timers (through the same apply path as messages),
 * refresh the gauges, purge old inbox and history rows, ping the brokers,
 * follow the database's clock, and keep the health record that /readyz and
 * sagad_ready report. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/sagad.h"

/* ---- health ---- */

void sg_health_set(sagad_t *d, int which, bool ok, const char *reason) {
    sg_health_t *h = &d->health;
    pthread_mutex_lock(&h->lock);
    bool *flag = which == HEALTH_DB ? &h->db_ok : which == HEALTH_KAFKA ? &h->kafka_ok : &h->amqp_ok;
    char *why = which == HEALTH_DB      ? h->db_reason
                : which == HEALTH_KAFKA ? h->kafka_reason
                                        : h->amqp_reason;
    bool was = *flag;
    *flag = ok;
    snprintf(why, sizeof h->db_reason, "%s", ok ? "" : reason ? reason : "unreachable");
    bool ready = h->db_ok && h->kafka_ok && h->amqp_ok;
    pthread_mutex_unlock(&h->lock);
    static const char *const names[] = {"database", "kafka", "rabbitmq"};
    if (was != ok && ok)
        sg_log_info("%s reachable", names[which]);
    else if (was != ok)
        sg_log_warn("%s unreachable: %s", names[which], reason ? reason : "");
    sg_metrics_set(d->metrics, SG_M_READY, ready ? 1 : 0);
}

bool sg_upkeep_ready(void *arg, char *reason, size_t reason_size) {
    sagad_t *d = arg;
    sg_health_t *h = &d->health;
    pthread_mutex_lock(&h->lock);
    bool ok = h->db_ok && h->kafka_ok && h->amqp_ok;
    snprintf(reason, reason_size, "%s%s%s%s%s%s%s%s", h->db_ok ? "" : "database: ",
             h->db_reason, !h->db_ok && (!h->kafka_ok || !h->amqp_ok) ? "; " : "",
             h->kafka_ok ? "" : "kafka: ", h->kafka_reason,
             !h->kafka_ok && !h->amqp_ok ? "; " : "", h->amqp_ok ? "" : "rabbitmq: ",
             h->amqp_reason);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* The offset is the database's clock minus the middle of the round trip
 * on the wall clock. A failed reading keeps the last offset. */
void sg_upkeep_clock(sagad_t *d, int64_t now) {
    if (now < d->next_clock)
        return;
    d->next_clock = now + SAGAD_CLOCK_MS;
    struct timespec t0, t1;
    int64_t db_ms;
    clock_gettime(CLOCK_REALTIME, &t0);
    if (sg_store_clock(d->st, &db_ms) != SG_OK)
        return;
    clock_gettime(CLOCK_REALTIME, &t1);
    int64_t wall = ((int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000 +
                    (int64_t)t1.tv_sec * 1000 + t1.tv_nsec / 1000000) / 2;
    int64_t offset = db_ms - wall, change = offset - sg_clock_offset();
    bool first = !d->clock_known;
    sg_clock_set_offset(offset);
    d->clock_known = true;
    if ((offset > 1000 || offset < -1000) && (first || change > 1000 || change < -1000))
        sg_log_warn("the wall clock is %" PRId64 " ms off the database's: due times follow the "
                    "database's", -offset);
}

void sg_upkeep_ping(sagad_t *d, int64_t now) {
    if (now < d->next_ping)
        return;
    d->next_ping = now + SAGAD_PING_MS;
    char errstr[256];
    if (d->kp || d->kc) {
        sg_err_t err = d->kp ? sg_kafka_producer_ping(d->kp, 1000, errstr, sizeof errstr)
                             : sg_kafka_consumer_ping(d->kc, 1000, errstr, sizeof errstr);
        sg_health_set(d, HEALTH_KAFKA, err == SG_OK, errstr);
    }
    if (d->ac || d->ap) {
        bool ok = (!d->ac || sg_amqp_consumer_connected(d->ac)) &&
                  (!d->ap || sg_amqp_publisher_connected(d->ap));
        sg_health_set(d, HEALTH_AMQP, ok, "not connected");
    }
}

/* ---- timers ---- */

typedef struct timer_work {
    sg_work_t work;
    char message_id[48];
} timer_work_t;

/* One claimed timer as a work; false for a kind this version does not know. */
static bool timer_to_work(const sg_store_timer_row_t *t, timer_work_t *tw) {
    memset(tw, 0, sizeof *tw);
    sg_timer_kind_t kind = sg_timer_kind_parse(t->kind);
    if (!kind) {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.saga_id = t->saga_id},
               "timer of unknown kind '%s' left alone", t->kind);
        return false;
    }
    snprintf(tw->message_id, sizeof tw->message_id, "timer:%" PRId64, t->id);
    tw->work.saga_id = t->saga_id;
    tw->work.message_id = tw->message_id;
    tw->work.fired_timer_id = t->id;
    tw->work.in.kind = SG_INPUT_TIMER;
    tw->work.in.timer = kind;
    tw->work.in.step = t->step && t->step[0] ? t->step : NULL;
    tw->work.in.attempt = t->attempt;
    return true;
}

void sg_upkeep_fire_timers(sagad_t *d, int64_t now) {
    if (now < d->next_timers)
        return;
    sg_store_timer_row_t *rows = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_timers_claim(d->st, d->cfg->batch_max, SAGAD_LEASE_MS, &rows, &n);
    if (err) {
        d->next_timers = now + SAGAD_TIMER_TICK_MS;
        if (err == SG_ERR_CONN)
            sg_health_set(d, HEALTH_DB, false, sg_store_errmsg(d->st));
        else
            sg_log_error("cannot claim timers: %s", sg_store_errmsg(d->st));
        return;
    }
    /* A full claim means more are due: come back at once. */
    d->next_timers = n >= (size_t)d->cfg->batch_max ? now : now + SAGAD_TIMER_TICK_MS;
    timer_work_t *tw = calloc(n ? n : 1, sizeof *tw);
    sg_work_t **works = calloc(n ? n : 1, sizeof *works);
    size_t k = 0;
    for (size_t i = 0; tw && works && i < n; i++)
        if (timer_to_work(&rows[i], &tw[k]))
            works[k] = &tw[k].work, k++;
    if (k) {
        d->busy = true;
        /* On a lost connection the leases bring the timers back later. */
        if (sg_apply_works(d, works, k) == SG_ERR_CONN)
            sg_health_set(d, HEALTH_DB, false, sg_store_errmsg(d->st));
        for (size_t i = 0; i < k; i++)
            if (works[i]->state == WORK_REJECTED)
                sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.saga_id = works[i]->saga_id},
                       "timer %s not applied: %s", works[i]->message_id, works[i]->reason);
    }
    free(tw);
    free(works);
    sg_store_free(rows);
}

/* ---- gauges and retention ---- */

/* The Kafka consumer's lag per assigned partition; no series while there
 * is no consumer or librdkafka has not reported yet. */
static void lag_gauges(sagad_t *d) {
    size_t n = 0;
    const sg_kafka_lag_t *lag = sg_kafka_consumer_lag(d->kc, &n);
    sg_metrics_reset(d->metrics, SG_M_CONSUMER_LAG);
    for (size_t i = 0; i < n; i++) {
        char partition[16];
        snprintf(partition, sizeof partition, "%d", (int)lag[i].partition);
        sg_metrics_set(d->metrics, SG_M_CONSUMER_LAG, (double)lag[i].lag, lag[i].topic, partition);
    }
}

void sg_upkeep_gauges(sagad_t *d, int64_t now) {
    if (now < d->next_gauges)
        return;
    d->next_gauges = now + SAGAD_GAUGES_MS;
    lag_gauges(d);
    int64_t outbox = 0, timers = 0;
    sg_store_count_t *counts = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_gauges(d->st, &outbox, &timers, &counts, &n);
    /* Also the database's health check while the worker is idle. */
    sg_health_set(d, HEALTH_DB, err != SG_ERR_CONN, sg_store_errmsg(d->st));
    if (err) {
        sg_log_warn("cannot read the gauges: %s", sg_store_errmsg(d->st));
        return;
    }
    sg_metrics_set(d->metrics, SG_M_OUTBOX_PENDING, (double)outbox);
    sg_metrics_set(d->metrics, SG_M_TIMERS_PENDING, (double)timers);
    sg_metrics_reset(d->metrics, SG_M_SAGAS_IN_FLIGHT);
    for (size_t i = 0; i < n; i++)
        sg_metrics_set(d->metrics, SG_M_SAGAS_IN_FLIGHT, (double)counts[i].count, counts[i].type,
                       counts[i].status);
    sg_store_free(counts);
}

void sg_upkeep_retention(sagad_t *d, int64_t now) {
    if (now < d->next_retention)
        return;
    d->next_retention = now + SAGAD_RETENTION_MS;
    int64_t inbox = 0, history = 0;
    if (sg_store_purge_inbox(d->st, d->cfg->inbox_retention_ms, 1000, &inbox) != SG_OK ||
        sg_store_purge_history(d->st, d->cfg->history_retention_ms, 1000, &history) != SG_OK) {
        sg_log_warn("retention purge stopped: %s", sg_store_errmsg(d->st));
        return;
    }
    if (inbox || history)
        sg_log_info("retention: purged %lld inbox entries and %lld history entries",
                    (long long)inbox, (long long)history);
}
