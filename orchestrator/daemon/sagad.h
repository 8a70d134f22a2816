/* sagad's insides, shared by the files of orchestrator/daemon: the daemon's
 * one struct, the unit of work the batch applies, and the phases of the
 * worker loop (worker.c). One thread runs the loop and owns everything here;
 * the HTTP thread only reads the health record, under its lock.
 *
 *   start.c    connect, migrate, load and store definitions, open transports
 *   inputs.c   poll Kafka and RabbitMQ, decode, dead-letter, acknowledge
 *   apply.c    a list of works -> transitions -> sg_store_batch, with version
 *              conflicts reloaded and applied again, lifecycle logs, metrics
 *   relay.c    the outbox: publish, collect verdicts, delete on confirmation
 *   upkeep.c   timers, gauges, retention, readiness
 *   crash.c    the test-only crash points
 */
#ifndef SAGA_DAEMON_SAGAD_H
#define SAGA_DAEMON_SAGAD_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/amqp.h"
#include "saga/cache.h"
#include "saga/config.h"
#include "saga/envelope.h"
#include "saga/http.h"
#include "saga/kafka.h"
#include "saga/log.h"
#include "saga/metrics.h"
#include "saga/store.h"
#include "saga/transition.h"

#define SAGAD_SOURCE "/sagad"
#define SAGAD_IDLE_WAIT_MS 100        /* input wait when the last turn found nothing */
#define SAGAD_VERDICT_WAIT_MS 10      /* the same, while published rows await verdicts */
#define SAGAD_TIMER_TICK_MS 200       /* how often due timers are claimed */
#define SAGAD_SWEEP_MS 1000           /* outbox sweep for leftovers and retries */
#define SAGAD_GAUGES_MS 5000          /* outbox, timers, in-flight gauges */
#define SAGAD_PING_MS 5000            /* broker reachability */
#define SAGAD_RETENTION_MS 60000      /* inbox and history purge */
#define SAGAD_CLOCK_MS 10000          /* wall clock against the database's */
#define SAGAD_LEASE_MS 30000          /* outbox and timer claims */
#define SAGAD_FRESH_LEASE_MS 5000     /* rows of its own commits a worker publishes */
#define SAGAD_RELAY_MAX 256           /* outbox rows per claim */
#define SAGAD_FLUSH_MS 10000          /* wait for broker confirmations */
#define SAGAD_MAX_CONFLICTS 50        /* per input, before it is dead-lettered */
#define SAGAD_CACHE_SAGAS 4096        /* committed saga states kept in memory */
#define SAGAD_SPLIT_MIN 32            /* a batch this big goes out on two connections */

/* ---- one unit of work: an input for one saga ---- */

typedef enum work_state {
    WORK_PENDING = 0,
    WORK_DONE,      /* committed, a duplicate, or nothing to do */
    WORK_REJECTED,  /* to the dead-letter table with 'reason' */
} work_state_t;

typedef struct sg_work {
    const char *saga_id;
    const char *sagatype;     /* start: the definition asked for */
    const char *message_id;   /* inbox key; NULL for none */
    int64_t fired_timer_id;   /* timer inputs */
    sg_input_t in;            /* fields borrowed from the envelope or timer row */
    json_t *owned_data;       /* a reply failure's data, built here */
    int64_t received_us;      /* when polled (sg_mono_us); 0 for timers */
    work_state_t state;
    int conflicts;
    char reason[256];         /* why rejected */
} sg_work_t;

/* ---- a received message ---- */

typedef struct sg_inmsg {
    sg_transport_t transport;
    sg_kafka_msg_t k;
    sg_amqp_msg_t a;
    const void *body;
    size_t len;
    char channel[320];        /* "kafka:<topic>" or "amqp:/<queue>" */
    sg_envelope_t *env;       /* NULL when refused by the decoder */
    sg_work_t work;
} sg_inmsg_t;

/* ---- what /readyz says ---- */

typedef struct sg_health {
    pthread_mutex_t lock;
    bool db_ok;
    bool kafka_ok;
    bool amqp_ok;
    char db_reason[256];
    char kafka_reason[256];
    char amqp_reason[256];
} sg_health_t;

/* A delivery report of the relay. */
typedef struct sg_report {
    int64_t ref;
    sg_err_t err;
    char reason[200];
} sg_report_t;

/* An outbox row handed to its broker, waiting for the verdict. */
typedef struct sg_flight {
    int64_t id;
    int64_t sent_ms;              /* monotonic */
    int attempts;                 /* publishes that failed before this one */
    bool settled;                 /* verdict taken; dropped at the next compaction */
    char *channel;
    char *saga_id;
} sg_flight_t;

typedef struct sagad {
    sg_config_t *cfg;
    const char *migrations_dir;   /* --migrations, or NULL */
    volatile sig_atomic_t *stopping;

    sg_store_t *st;
    sg_store_t *st2;              /* the second connection of large batches */
    bool st2_tried;
    sg_defcache_t *dc;
    sg_cache_t *cache;            /* states this worker committed last */
    sg_metrics_t *metrics;
    sg_http_t *http;
    sg_health_t health;
    sg_transition_env_t tenv;

    /* inputs */
    char **kafka_topics;
    size_t nkafka_topics;
    char **amqp_queues;
    size_t namqp_queues;
    sg_kafka_consumer_t *kc;
    sg_amqp_consumer_t *ac;
    int64_t kafka_consumer_retry_at;
    int64_t amqp_consumer_retry_at;
    int amqp_consumer_backoff;

    /* outputs */
    sg_kafka_producer_t *kp;
    sg_amqp_publisher_t *ap;
    int64_t amqp_publisher_retry_at;
    int amqp_publisher_backoff;
    sg_report_t *reports;         /* verdicts not yet taken */
    size_t nreports;
    size_t capreports;
    sg_flight_t *flights;         /* ordered by id */
    size_t nflights;
    size_t capflights;
    int64_t *done;                /* confirmed rows, to delete */
    size_t ndone;
    size_t capdone;

    /* the batch in hand */
    sg_inmsg_t *msgs;
    size_t nmsgs;
    bool busy;                    /* the last turn found work */

    /* schedule (monotonic ms) */
    int64_t next_timers;
    int64_t next_sweep;
    int64_t next_gauges;
    int64_t next_ping;
    int64_t next_retention;
    int64_t next_clock;
    bool clock_known;             /* the offset to the database was measured */
    int db_backoff;
} sagad_t;

/* ---- start.c ---- */
sg_err_t sg_daemon_start(sagad_t *d, char *errstr, size_t errstr_size);
void sg_daemon_stop(sagad_t *d);
/* A consumer group member subscribed to the Kafka inputs. */
sg_kafka_consumer_t *sg_daemon_kafka_consumer(sagad_t *d, char *errstr, size_t errstr_size);

/* ---- worker.c ---- */
int sg_daemon_run(sagad_t *d);
/* Sleeps up to 'ms' unless stopping; returns false when stopping. */
bool sg_daemon_sleep(sagad_t *d, int ms);
/* Waits after a lost database connection (exponential, capped); false when
 * stopping. Logs the cause and marks the database down. */
bool sg_daemon_db_backoff(sagad_t *d, const char *what);
void sg_daemon_db_ok(sagad_t *d);

/* ---- inputs.c ---- */
void sg_inputs_poll(sagad_t *d);
/* Decodes the batch; refused messages are marked rejected. */
void sg_inputs_decode(sagad_t *d);
/* Stores every rejected message in the dead-letter table. SG_ERR_CONN when
 * the database is gone (those not yet stored stay rejected). */
sg_err_t sg_inputs_dead_letter(sagad_t *d);
void sg_inputs_ack(sagad_t *d);
void sg_inputs_release(sagad_t *d);
/* Opens or re-opens what is closed (AMQP consumer, Kafka after a fatal error). */
void sg_inputs_reconnect(sagad_t *d, int64_t now);

/* ---- apply.c ---- */
/* Applies every pending work, in order per saga, committing each round in
 * one sg_store_batch (which also deletes the relay's confirmed rows), and
 * publishes the outbox rows of each commit. Returns SG_ERR_CONN when the
 * database is gone (works already done stay done: call again later). */
sg_err_t sg_apply_works(sagad_t *d, sg_work_t **works, size_t n);
/* The short class of a dead-letter reason, for the metric's label. */
const char *sg_apply_reason_class(const char *reason);

/* ---- relay.c ---- */
/* Publishes a row the worker has just committed (its id set by the batch). */
void sg_relay_publish(sagad_t *d, const char *saga_id, const sg_store_outmsg_t *m);
/* Claims and publishes rows whose lease or backoff ended (at most
 * 'max_rounds' claims). SG_ERR_CONN when the database is gone. */
sg_err_t sg_relay_sweep(sagad_t *d, int max_rounds);
/* Takes the verdicts that arrived, without waiting: confirmed rows join
 * d->done, failed ones get their backoff recorded. */
sg_err_t sg_relay_collect(sagad_t *d);
/* Just before d->done is deleted (the test crash point "after_publish"). */
void sg_relay_deleting(sagad_t *d);
/* Deletes d->done in a transaction of its own. */
sg_err_t sg_relay_delete_done(sagad_t *d);
/* At stop: sweeps, waits up to 'timeout_ms' for every verdict, deletes. */
sg_err_t sg_relay_drain(sagad_t *d, int timeout_ms);
void sg_relay_release(sagad_t *d);
/* Connects the RabbitMQ publisher when it is not (with backoff). */
void sg_relay_connect(sagad_t *d);
void sg_relay_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason);

/* ---- upkeep.c ---- */
void sg_upkeep_fire_timers(sagad_t *d, int64_t now);
void sg_upkeep_gauges(sagad_t *d, int64_t now);
void sg_upkeep_retention(sagad_t *d, int64_t now);
void sg_upkeep_ping(sagad_t *d, int64_t now);
/* Measures how far the wall clock is from the database's and makes
 * sg_now_ms follow the database's (every SAGAD_CLOCK_MS). */
void sg_upkeep_clock(sagad_t *d, int64_t now);
bool sg_upkeep_ready(void *arg, char *reason, size_t reason_size);
void sg_health_set(sagad_t *d, int which, bool ok, const char *reason);
enum { HEALTH_DB, HEALTH_KAFKA, HEALTH_AMQP };

/* ---- crash.c ---- */
/* Test only: exits with status 137 at the Nth passage through 'point' when
 * SAGA_TEST_CRASH_POINT names it (SAGA_TEST_CRASH_AFTER=N, default 1). */
void sg_crash_point(const char *point);

/* ---- time ---- */
/* The database's clock, epoch ms: the wall clock corrected by the offset
 * sg_upkeep_clock measured. Every time the engine computes (due times,
 * deadlines) is compared with the database's now() by the timer claims,
 * so a host clock set wrong must not move them. */
int64_t sg_now_ms(void);
void sg_clock_set_offset(int64_t offset_ms);
int64_t sg_clock_offset(void);
int64_t sg_mono_ms(void);       /* monotonic */
int64_t sg_mono_us(void);       /* monotonic, microseconds */
/* The trace id of a traceparent (32 hex digits) into buf, or NULL. */
const char *sg_trace_id(const char *traceparent, char buf[33]);

#endif
