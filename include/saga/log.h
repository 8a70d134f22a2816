/* sagad's log: one JSON object per line (or plain text), with time, level,
 * message and, where they apply, saga id, saga type, step and trace id.
 * Thread-safe. Messages must never contain secrets: redact connection
 * strings with sg_redact before logging them. */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

#include <stdio.h>

#include "saga/config.h"

/* Where a line is about; any field may be NULL. */
typedef struct sg_log_ctx {
    const char *saga_id;
    const char *saga_type;
    const char *step;
    const char *trace_id;
} sg_log_ctx_t;

/* Sets format, threshold and stream (NULL: stderr). Defaults: JSON, info. */
void sg_log_init(sg_log_format_t format, sg_log_level_t level, FILE *out);

void sg_log(sg_log_level_t level, const sg_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sg_log_debug(...) sg_log(SG_LOG_DEBUG, NULL, __VA_ARGS__)
#define sg_log_info(...) sg_log(SG_LOG_INFO, NULL, __VA_ARGS__)
#define sg_log_warn(...) sg_log(SG_LOG_WARN, NULL, __VA_ARGS__)
#define sg_log_error(...) sg_log(SG_LOG_ERROR, NULL, __VA_ARGS__)

#endif
