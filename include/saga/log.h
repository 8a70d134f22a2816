/* sagad's log: one JSON object per line (or plain text), with time, level,
 * message and, where they apply, saga id, saga type, step and trace id.
 * Thread-safe. Messages must never contain secrets: redact connection
 * strings with sg_redact before logging them; and every secret registered
 * with sg_log_add_secret is masked as *** in every line, wherever it shows
 * up (a library's error text that quotes a password, for one). */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

#include <stddef.h>
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

/* Registers a secret to mask. Copied; up to 32 are kept. Secrets shorter
 * than 4 bytes are not masked: they would hide ordinary words. */
void sg_log_add_secret(const char *secret);
/* Forgets every registered secret. */
void sg_log_clear_secrets(void);
/* Copies 'text' to 'buf' with every registered secret masked; always
 * NUL-terminated, cut short when it does not fit. For text that goes
 * elsewhere than the log (stderr at start-up). */
void sg_log_scrub(const char *text, char *buf, size_t buf_size);

void sg_log(sg_log_level_t level, const sg_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sg_log_debug(...) sg_log(SG_LOG_DEBUG, NULL, __VA_ARGS__)
#define sg_log_info(...) sg_log(SG_LOG_INFO, NULL, __VA_ARGS__)
#define sg_log_warn(...) sg_log(SG_LOG_WARN, NULL, __VA_ARGS__)
#define sg_log_error(...) sg_log(SG_LOG_ERROR, NULL, __VA_ARGS__)

#endif
