/* sagad's HTTP endpoint (libmicrohttpd, its own thread):
 *   GET /metrics  the Prometheus text format
 *   GET /healthz  200 "ok" while the process runs
 *   GET /readyz   200 "ready", or 503 with the reason, from a callback */
#ifndef SAGA_HTTP_H
#define SAGA_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "saga/metrics.h"

/* Says whether the daemon can do its work; fills 'reason' when not. Called
 * from the HTTP thread: it must only read state the daemon publishes. */
typedef bool (*sg_http_ready_fn)(void *arg, char *reason, size_t reason_size);

typedef struct sg_http sg_http_t;

/* Listens on 'listen' ("127.0.0.1:9464", "[::1]:9464"; port 0 picks one). */
sg_http_t *sg_http_new(const char *listen, sg_metrics_t *metrics, sg_http_ready_fn ready,
                       void *ready_arg, char *errstr, size_t errstr_size);
/* The port actually bound. */
int sg_http_port(const sg_http_t *http);
void sg_http_destroy(sg_http_t *http);

#endif
