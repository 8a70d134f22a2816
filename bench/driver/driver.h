/* bench-driver: the benchmark's load generator and participant in one
 * program. It starts sagas, answers every step command at once, watches the
 * lifecycle events for the end of each saga, and measures, all on one
 * monotonic clock in one process:
 *
 *   step latency   from handing a reply to the broker client to receiving
 *                  the saga's next command: the whole way reply -> broker ->
 *                  sagad -> commit -> publish -> broker -> here, so an upper
 *                  bound of sagad's own "reply consumed to command published"
 *   first command  from sending saga.start to receiving the first command
 *   saga duration  from saga.start sent to saga.completed received
 *
 * Modules: driver.c (options, the loop), driver_io.c (the brokers),
 * driver_stats.c (samples, percentiles, the JSON report). */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/err.h"
#include "saga/transport.h"

int64_t bd_now_ns(void);
void bd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- samples ---- */

/* A growable list of durations in microseconds, in the order taken, each
 * with the time it was taken. */
typedef struct bd_samples {
    int64_t *at_ns;
    int64_t *us;
    size_t n, cap;
} bd_samples_t;

void bd_samples_add(bd_samples_t *s, int64_t at_ns, int64_t us);
void bd_samples_release(bd_samples_t *s);
/* {"n", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"} of the samples
 * taken in [from_ns, to_ns) (to_ns 0: no end). A new reference. */
json_t *bd_samples_summary(const bd_samples_t *s, int64_t from_ns, int64_t to_ns);

/* ---- brokers ---- */

typedef enum bd_transport { BD_KAFKA = 1, BD_AMQP = 2 } bd_transport_t;

typedef struct bd_io bd_io_t;

/* One received message, borrowed until the next bd_io_poll. */
typedef struct bd_msg {
    const char *source;   /* the topic or queue */
    const void *body;
    size_t len;
} bd_msg_t;

typedef struct bd_io_conf {
    bd_transport_t transport;
    const char *brokers;           /* Kafka bootstrap servers */
    const char *amqp_url;
    const char *const *consume;    /* topics or queues */
    size_t nconsume;
    const sg_kv_t *kafka_props;
    size_t nkafka_props;
    sg_delivery_cb *on_delivery;
    void *opaque;
} bd_io_conf_t;

bd_io_t *bd_io_new(const bd_io_conf_t *conf, char *errstr, size_t errstr_size);
void bd_io_destroy(bd_io_t *io);
/* Sends 'payload' to a channel text ("kafka:<topic>", "amqp:<ex>/<key>");
 * 'ref' comes back through the delivery callback. */
sg_err_t bd_io_send(bd_io_t *io, const char *channel, const char *key, const char *msg_id,
                    const char *payload, size_t len, int64_t ref, char *errstr,
                    size_t errstr_size);
/* Waits up to 'timeout_ms' for messages; hands out at most 'max'. The
 * previous poll's messages are acknowledged and released first. */
sg_err_t bd_io_poll(bd_io_t *io, bd_msg_t *msgs, size_t max, int timeout_ms, size_t *n,
                    char *errstr, size_t errstr_size);
/* Serves delivery reports without waiting. */
void bd_io_serve(bd_io_t *io);
/* Messages sent and not yet reported. */
size_t bd_io_outstanding(bd_io_t *io);
/* Waits up to 'timeout_ms' for every report. */
void bd_io_flush(bd_io_t *io, int timeout_ms);

#endif
