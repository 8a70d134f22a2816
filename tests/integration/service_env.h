/* Shared by the integration tests that talk to the stack's brokers: the
 * connection settings from the environment (a missing one fails the test),
 * unique names per run, a monotonic clock, and delivery reports by ref. */
#ifndef SAGA_TEST_SERVICE_ENV_H
#define SAGA_TEST_SERVICE_ENV_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "saga/transport.h"

#define MAX_REFS 64

static inline const char *require_env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: start the stack with deploy/local/start.sh and "
                 "source its env file (tests/run.sh does both)", name);
    return v;
}

static inline void unique_name(char *buf, size_t size, const char *prefix) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "%s.%ld.%ld.%ld", prefix, (long)getpid(), (long)ts.tv_sec,
             ts.tv_nsec / 1000);
}

static inline int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Delivery reports, by ref. */
typedef struct reports {
    int count[MAX_REFS];
    sg_err_t err[MAX_REFS];
    char reason[MAX_REFS][256];
    int total;
} reports_t;

static inline void reports_on_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    reports_t *r = opaque;
    assert_true(ref >= 0 && ref < MAX_REFS);
    r->count[ref]++;
    r->err[ref] = err;
    snprintf(r->reason[ref], sizeof r->reason[ref], "%s", reason);
    r->total++;
}

#endif
