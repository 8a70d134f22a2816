/* The daemon's log lines. JSON lines are built with jansson so that any
 * message text is escaped correctly; one mutex keeps lines whole. Each
 * message is scrubbed of the registered secrets before it is written. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "saga/log.h"

#define MAX_SECRETS 32
#define MIN_SECRET 4

static struct {
    pthread_mutex_t lock;
    sg_log_format_t format;
    sg_log_level_t level;
    FILE *out;
    char *secrets[MAX_SECRETS];
    size_t nsecrets;
} logger = {PTHREAD_MUTEX_INITIALIZER, SG_LOG_JSON, SG_LOG_INFO, NULL, {0}, 0};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sg_log_init(sg_log_format_t format, sg_log_level_t level, FILE *out) {
    pthread_mutex_lock(&logger.lock);
    logger.format = format;
    logger.level = level;
    logger.out = out;
    pthread_mutex_unlock(&logger.lock);
}

void sg_log_add_secret(const char *secret) {
    if (!secret || strlen(secret) < MIN_SECRET)
        return;
    pthread_mutex_lock(&logger.lock);
    bool known = false;
    for (size_t i = 0; i < logger.nsecrets && !known; i++)
        known = !strcmp(logger.secrets[i], secret);
    if (!known && logger.nsecrets < MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy)
            logger.secrets[logger.nsecrets++] = copy;
    }
    pthread_mutex_unlock(&logger.lock);
}

void sg_log_clear_secrets(void) {
    pthread_mutex_lock(&logger.lock);
    for (size_t i = 0; i < logger.nsecrets; i++)
        free(logger.secrets[i]);
    logger.nsecrets = 0;
    pthread_mutex_unlock(&logger.lock);
}

/* The registered secret that starts at 'p', or NULL. Lock held. */
static const char *secret_at(const char *p) {
    for (size_t i = 0; i < logger.nsecrets; i++)
        if (!strncmp(p, logger.secrets[i], strlen(logger.secrets[i])))
            return logger.secrets[i];
    return NULL;
}

/* Lock held. */
static void scrub(const char *text, char *buf, size_t size) {
    size_t len = 0;
    if (size == 0)
        return;
    for (const char *p = text; *p && len + 1 < size;) {
        const char *secret = logger.nsecrets ? secret_at(p) : NULL;
        if (!secret) {
            buf[len++] = *p++;
            continue;
        }
        for (const char *s = "***"; *s && len + 1 < size; s++)
            buf[len++] = *s;
        p += strlen(secret);
    }
    buf[len] = '\0';
}

void sg_log_scrub(const char *text, char *buf, size_t buf_size) {
    pthread_mutex_lock(&logger.lock);
    scrub(text ? text : "", buf, buf_size);
    pthread_mutex_unlock(&logger.lock);
}

/* RFC 3339 UTC with milliseconds. */
static void now_rfc3339(char *buf, size_t size) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void write_json(FILE *out, const char *at, sg_log_level_t level,
                       const sg_log_ctx_t *ctx, const char *msg) {
    json_t *o = json_object();
    json_object_set_new(o, "time", json_string(at));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "msg", json_string(msg));
    if (ctx) {
        const struct {
            const char *key;
            const char *val;
        } f[] = {{"saga_id", ctx->saga_id},
                 {"saga_type", ctx->saga_type},
                 {"step", ctx->step},
                 {"trace_id", ctx->trace_id}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            if (f[i].val)
                json_object_set_new(o, f[i].key, json_string(f[i].val));
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (line) {
        fputs(line, out);
        fputc('\n', out);
        free(line);
    }
    json_decref(o);
}

static void write_text(FILE *out, const char *at, sg_log_level_t level,
                       const sg_log_ctx_t *ctx, const char *msg) {
    fprintf(out, "%s %-5s %s", at, level_names[level], msg);
    if (ctx) {
        if (ctx->saga_id)
            fprintf(out, " saga_id=%s", ctx->saga_id);
        if (ctx->saga_type)
            fprintf(out, " saga_type=%s", ctx->saga_type);
        if (ctx->step)
            fprintf(out, " step=%s", ctx->step);
        if (ctx->trace_id)
            fprintf(out, " trace_id=%s", ctx->trace_id);
    }
    fputc('\n', out);
}

void sg_log(sg_log_level_t level, const sg_log_ctx_t *ctx, const char *fmt, ...) {
    if (level < SG_LOG_DEBUG || level > SG_LOG_ERROR)
        level = SG_LOG_ERROR;
    pthread_mutex_lock(&logger.lock);
    if (level < logger.level) {
        pthread_mutex_unlock(&logger.lock);
        return;
    }
    char raw[2048], msg[2048], at[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    scrub(raw, msg, sizeof msg);
    now_rfc3339(at, sizeof at);
    FILE *out = logger.out ? logger.out : stderr;
    if (logger.format == SG_LOG_JSON)
        write_json(out, at, level, ctx, msg);
    else
        write_text(out, at, level, ctx, msg);
    fflush(out);
    pthread_mutex_unlock(&logger.lock);
}
