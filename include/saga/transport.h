/* What the broker transports (kafka.h, amqp.h) have in common: message
 * headers, pass-through properties, delivery reports and a log hook.
 *
 * Every transport is single-threaded from the caller's view: one handle is
 * used by one thread at a time, and callbacks run inside the calls that
 * poll, flush or destroy that handle, never on another thread. */
#ifndef SAGA_TRANSPORT_H
#define SAGA_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "saga/err.h"

/* A message header (Kafka) or string-valued header-table entry (AMQP).
 * Borrowed from the message that holds it. 'value' may be NULL. */
typedef struct sg_header {
    const char *name;
    const void *value;
    size_t size;
} sg_header_t;

/* A name and a value, e.g. one of config kafka.properties. */
typedef struct sg_kv {
    const char *key;
    const char *value;
} sg_kv_t;

/* The outcome of one published message. 'ref' is the caller's own id given
 * at send time (the outbox row id). 'err' is SG_OK when the broker has the
 * message for good (Kafka: acked by all in-sync replicas; AMQP: confirmed
 * and not returned); otherwise SG_ERR_CONN (worth sending again later) or
 * SG_ERR_INVALID (the broker refuses this message as it is), with 'reason'. */
typedef void sg_delivery_cb(void *opaque, int64_t ref, sg_err_t err, const char *reason);

/* Levels as in syslog: 3 error, 4 warning, 6 info, 7 debug. Messages never
 * contain passwords. */
typedef void sg_log_cb(void *opaque, int level, const char *message);

#endif
