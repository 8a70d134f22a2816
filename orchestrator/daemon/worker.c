/* The worker loop: one thread, named phases, one batch in hand at a time.
 *
 *   poll inputs      up to batch.max messages, waiting at most batch.wait
 *                    (longer when the last turn found nothing to do)
 *   take verdicts    the brokers' confirmations of published outbox rows,
 *                    without waiting
 *   apply batch      decode; apply in one transaction per round, which also
 *                    deletes the confirmed outbox rows; publish the rows
 *                    each commit added; store refused messages as dead
 *                    letters; on a lost database, back off and apply
 *                    again, never acknowledging first
 *   ack inputs       Kafka offsets stored, RabbitMQ deliveries acked
 *   fire timers      due timers through the same apply path
 *   relay outbox     confirmed rows no batch took are deleted; a sweep
 *                    every second for retries and crashed workers' rows
 *   upkeep           gauges, retention, broker pings
 *
 * SIGTERM or SIGINT sets 'stopping': the turn in progress finishes (its
 * batch is committed and acknowledged), then the relay waits for its
 * verdicts within a bound, Kafka offsets are committed and the connections
 * closed. */
#include <string.h>
#include <time.h>

#include "daemon/sagad.h"

/* Set by the worker thread only; read by it too. */
static int64_t clock_offset_ms;

void sg_clock_set_offset(int64_t offset_ms) { clock_offset_ms = offset_ms; }

int64_t sg_clock_offset(void) { return clock_offset_ms; }

int64_t sg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset_ms;
}

int64_t sg_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sg_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *sg_trace_id(const char *traceparent, char buf[33]) {
    if (!traceparent || sg_trace_check(traceparent) != NULL)
        return NULL;
    memcpy(buf, traceparent + 3, 32);
    buf[32] = '\0';
    return buf;
}

bool sg_daemon_sleep(sagad_t *d, int ms) {
    while (ms > 0 && !*d->stopping) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return !*d->stopping;
}

bool sg_daemon_db_backoff(sagad_t *d, const char *what) {
    d->db_backoff = d->db_backoff ? d->db_backoff * 2 : 100;
    if (d->db_backoff > 5000)
        d->db_backoff = 5000;
    sg_health_set(d, HEALTH_DB, false, what);
    sg_log_warn("database unavailable, retrying in %d ms: %s", d->db_backoff, what);
    return sg_daemon_sleep(d, d->db_backoff);
}

void sg_daemon_db_ok(sagad_t *d) {
    d->db_backoff = 0;
    sg_health_set(d, HEALTH_DB, true, NULL);
}

/* ---- phases ---- */

static void worker_poll_inputs(sagad_t *d) {
    sg_inputs_poll(d);
    d->busy = d->nmsgs > 0;
}

static void relay_failed(sagad_t *d, sg_err_t err, const char *what) {
    if (err == SG_ERR_CONN)
        sg_health_set(d, HEALTH_DB, false, sg_store_errmsg(d->st));
    else if (err)
        sg_log_error("outbox relay: %s: %s: %s", what, sg_err_str(err), sg_store_errmsg(d->st));
}

static void worker_take_verdicts(sagad_t *d) {
    relay_failed(d, sg_relay_collect(d), "recording a failed publish");
}

/* Applies the batch until every message is settled; false when the daemon
 * stopped first (then nothing is acknowledged). */
static bool worker_apply_batch(sagad_t *d) {
    if (d->nmsgs == 0)
        return true;
    sg_inputs_decode(d);
    sg_work_t *works[d->nmsgs];
    for (;;) {
        size_t n = 0;
        for (size_t i = 0; i < d->nmsgs; i++)
            if (d->msgs[i].work.state == WORK_PENDING)
                works[n++] = &d->msgs[i].work;
        sg_err_t err = n ? sg_apply_works(d, works, n) : SG_OK;
        if (!err)
            err = sg_inputs_dead_letter(d);
        if (!err) {
            if (d->db_backoff)
                sg_daemon_db_ok(d);
            return true;
        }
        if (!sg_daemon_db_backoff(d, sg_store_errmsg(d->st)))
            return false;
    }
}

static void worker_ack_inputs(sagad_t *d, bool settled) {
    if (settled)
        sg_inputs_ack(d);
    sg_inputs_release(d);
}

static void worker_fire_due_timers(sagad_t *d, int64_t now) {
    sg_upkeep_fire_timers(d, now);
}

static void worker_relay_outbox(sagad_t *d, int64_t now) {
    relay_failed(d, sg_relay_delete_done(d), "deleting published rows");
    if (now < d->next_sweep)
        return;
    d->next_sweep = now + SAGAD_SWEEP_MS;
    relay_failed(d, sg_relay_sweep(d, 4), "sweep");
}

static void worker_upkeep(sagad_t *d, int64_t now) {
    sg_upkeep_clock(d, now);
    sg_upkeep_gauges(d, now);
    sg_upkeep_retention(d, now);
    sg_upkeep_ping(d, now);
}

int sg_daemon_run(sagad_t *d) {
    sg_log_info("sagad ready: batch.max %d, batch.wait %d ms", d->cfg->batch_max,
                d->cfg->batch_wait_ms);
    d->next_retention = sg_mono_ms() + SAGAD_RETENTION_MS / 6;
    sg_upkeep_clock(d, sg_mono_ms());
    while (!*d->stopping) {
        sg_inputs_reconnect(d, sg_mono_ms());
        worker_poll_inputs(d);
        worker_take_verdicts(d);
        bool settled = worker_apply_batch(d);
        worker_ack_inputs(d, settled);
        int64_t now = sg_mono_ms();
        worker_fire_due_timers(d, now);
        worker_relay_outbox(d, now);
        worker_upkeep(d, now);
    }
    sg_log_info("stopping: flushing the outbox");
    relay_failed(d, sg_relay_drain(d, SAGAD_FLUSH_MS), "flushing");
    sg_log_info("stopped");
    return 0;
}
