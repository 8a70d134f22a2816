/* The metric families and their series. A family is a row of the table
 * below; a series is one combination of label values, kept in insertion
 * order. Few series exist (types x statuses x steps), so lookups are linear. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/metrics.h"

enum { COUNTER, GAUGE, HISTOGRAM };
#define MAX_LABELS 3
#define MAX_BUCKETS 16

static const double latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30, 0};
/* Finer around the tens of milliseconds a worker's turn takes. */
static const double turn_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                      0.025,  0.03,  0.04,   0.05,  0.1,    0.25, 1,     0};
static const double size_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 0};

static const struct family {
    const char *name;
    int kind;
    const char *help;
    const char *labels[MAX_LABELS];
    const double *buckets; /* histograms: ascending, 0-terminated */
} families[SG_M_COUNT] = {
    [SG_M_SAGAS_STARTED] = {"sagad_sagas_started_total", COUNTER, "Sagas started.", {"type"}, NULL},
    [SG_M_SAGAS_FINISHED] = {"sagad_sagas_finished_total", COUNTER,
                             "Sagas that reached a final status (completed, compensated, failed).",
                             {"type", "status"}, NULL},
    [SG_M_STEPS] = {"sagad_steps_total", COUNTER, "Step outcomes on the forward path.",
                    {"type", "step", "outcome"}, NULL},
    [SG_M_COMPENSATIONS] = {"sagad_compensations_total", COUNTER, "Compensation outcomes.",
                            {"type", "step", "outcome"}, NULL},
    [SG_M_STEP_LATENCY] = {"sagad_step_latency_seconds", HISTOGRAM,
                           "From a command sent to its reply applied.", {"type"}, latency_buckets},
    [SG_M_REPLY_TO_COMMAND] = {"sagad_reply_to_command_seconds", HISTOGRAM,
                               "From a reply taken from its broker to the next command it"
                               " caused handed to the broker (committed on the way).",
                               {0}, turn_buckets},
    [SG_M_TRANSITIONS] = {"sagad_transitions_total", COUNTER, "Transitions committed.", {0}, NULL},
    [SG_M_BATCH_SIZE] = {"sagad_batch_size", HISTOGRAM, "Inputs applied per database transaction.",
                         {0}, size_buckets},
    [SG_M_DB_TX_SECONDS] = {"sagad_db_transaction_seconds", HISTOGRAM,
                            "Duration of one batch transaction.", {0}, latency_buckets},
    [SG_M_VERSION_CONFLICTS] = {"sagad_version_conflicts_total", COUNTER,
                                "Optimistic version conflicts (reloaded and applied again).", {0},
                                NULL},
    [SG_M_DUPLICATES] = {"sagad_duplicates_total", COUNTER,
                         "Inputs ignored as duplicates (message id or saga id seen before).",
                         {"kind"}, NULL},
    [SG_M_DEAD_LETTERS] = {"sagad_dead_letters_total", COUNTER,
                           "Messages stored in the dead-letter table.", {"reason"}, NULL},
    [SG_M_MESSAGES_CONSUMED] = {"sagad_messages_consumed_total", COUNTER,
                                "Messages taken from the brokers.", {"transport"}, NULL},
    [SG_M_MESSAGES_PUBLISHED] = {"sagad_messages_published_total", COUNTER,
                                 "Messages confirmed by the brokers.", {"transport"}, NULL},
    [SG_M_PUBLISH_FAILURES] = {"sagad_publish_failures_total", COUNTER,
                               "Publishes that failed and will be retried.", {"transport"}, NULL},
    [SG_M_OUTBOX_PENDING] = {"sagad_outbox_pending", GAUGE, "Outbox rows not yet published.", {0},
                             NULL},
    [SG_M_TIMERS_PENDING] = {"sagad_timers_pending", GAUGE, "Armed timers.", {0}, NULL},
    [SG_M_SAGAS_IN_FLIGHT] = {"sagad_sagas_in_flight", GAUGE, "Sagas not finished.",
                              {"type", "status"}, NULL},
    [SG_M_CONSUMER_LAG] = {"sagad_kafka_consumer_lag", GAUGE,
                           "Kafka consumer lag reported by librdkafka.", {"topic", "partition"},
                           NULL},
    [SG_M_READY] = {"sagad_ready", GAUGE, "1 when the database and every broker are reachable.",
                    {0}, NULL},
};

typedef struct series {
    char *values[MAX_LABELS];
    double value;                       /* counter, gauge; histogram: sum */
    unsigned long long count;           /* histogram */
    unsigned long long bucket[MAX_BUCKETS];
} series_t;

typedef struct fam_state {
    series_t *series;
    size_t n, cap;
} fam_state_t;

struct sg_metrics {
    pthread_mutex_t lock;
    fam_state_t fam[SG_M_COUNT];
};

static int nlabels(const struct family *f) {
    int n = 0;
    while (n < MAX_LABELS && f->labels[n])
        n++;
    return n;
}

sg_metrics_t *sg_metrics_new(void) {
    sg_metrics_t *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void free_series(fam_state_t *fs) {
    for (size_t i = 0; i < fs->n; i++)
        for (int l = 0; l < MAX_LABELS; l++)
            free(fs->series[i].values[l]);
    free(fs->series);
    fs->series = NULL;
    fs->n = fs->cap = 0;
}

void sg_metrics_destroy(sg_metrics_t *m) {
    if (!m)
        return;
    for (int i = 0; i < SG_M_COUNT; i++)
        free_series(&m->fam[i]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* The series for these label values; created when 'create'. Lock held. */
static series_t *find(sg_metrics_t *m, sg_metric_t id, va_list ap, bool create) {
    const struct family *f = &families[id];
    fam_state_t *fs = &m->fam[id];
    const char *vals[MAX_LABELS] = {0};
    int n = nlabels(f);
    for (int l = 0; l < n; l++) {
        vals[l] = va_arg(ap, const char *);
        if (!vals[l])
            vals[l] = "";
    }
    for (size_t i = 0; i < fs->n; i++) {
        int l = 0;
        while (l < n && !strcmp(fs->series[i].values[l], vals[l]))
            l++;
        if (l == n)
            return &fs->series[i];
    }
    if (!create)
        return NULL;
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 8;
        series_t *s = realloc(fs->series, cap * sizeof *s);
        if (!s)
            return NULL;
        fs->series = s;
        fs->cap = cap;
    }
    series_t *s = &fs->series[fs->n];
    memset(s, 0, sizeof *s);
    for (int l = 0; l < n; l++)
        s->values[l] = strdup(vals[l]);
    fs->n++;
    return s;
}

void sg_metrics_add(sg_metrics_t *m, sg_metric_t id, double v, ...) {
    if (!m || id >= SG_M_COUNT || families[id].kind == HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    pthread_mutex_lock(&m->lock);
    series_t *s = find(m, id, ap, true);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&m->lock);
    va_end(ap);
}

void sg_metrics_set(sg_metrics_t *m, sg_metric_t id, double v, ...) {
    if (!m || id >= SG_M_COUNT || families[id].kind != GAUGE)
        return;
    va_list ap;
    va_start(ap, v);
    pthread_mutex_lock(&m->lock);
    series_t *s = find(m, id, ap, true);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&m->lock);
    va_end(ap);
}

void sg_metrics_observe(sg_metrics_t *m, sg_metric_t id, double v, ...) {
    if (!m || id >= SG_M_COUNT || families[id].kind != HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    pthread_mutex_lock(&m->lock);
    series_t *s = find(m, id, ap, true);
    if (s) {
        s->value += v;
        s->count++;
        for (int b = 0; families[id].buckets[b] != 0; b++)
            if (v <= families[id].buckets[b])
                s->bucket[b]++;
    }
    pthread_mutex_unlock(&m->lock);
    va_end(ap);
}

void sg_metrics_reset(sg_metrics_t *m, sg_metric_t id) {
    if (!m || id >= SG_M_COUNT)
        return;
    pthread_mutex_lock(&m->lock);
    free_series(&m->fam[id]);
    pthread_mutex_unlock(&m->lock);
}

double sg_metrics_value(sg_metrics_t *m, sg_metric_t id, ...) {
    if (!m || id >= SG_M_COUNT)
        return 0;
    va_list ap;
    va_start(ap, id);
    pthread_mutex_lock(&m->lock);
    series_t *s = find(m, id, ap, false);
    double v = !s ? 0 : families[id].kind == HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->lock);
    va_end(ap);
    return v;
}

/* A growing output buffer. */
typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out_t;

static void emit(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out_t *o, const char *fmt, ...) {
    for (;;) {
        if (o->failed)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (n > 0 ? (size_t)n : 0);
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

/* Label values escaped as the exposition format wants: \\ \" \n. */
static void emit_labels(out_t *o, const struct family *f, const series_t *s, const char *le) {
    int n = nlabels(f);
    if (n == 0 && !le)
        return;
    emit(o, "{");
    for (int l = 0; l < n; l++) {
        emit(o, "%s%s=\"", l ? "," : "", f->labels[l]);
        for (const char *p = s->values[l]; *p; p++) {
            if (*p == '\\' || *p == '"')
                emit(o, "\\%c", *p);
            else if (*p == '\n')
                emit(o, "\\n");
            else
                emit(o, "%c", *p);
        }
        emit(o, "\"");
    }
    if (le)
        emit(o, "%sle=\"%s\"", n ? "," : "", le);
    emit(o, "}");
}

static void emit_family(out_t *o, const struct family *f, const fam_state_t *fs) {
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kinds[f->kind]);
    if (fs->n == 0 && nlabels(f) == 0 && f->kind != HISTOGRAM) {
        emit(o, "%s 0\n", f->name);
        return;
    }
    for (size_t i = 0; i < fs->n; i++) {
        const series_t *s = &fs->series[i];
        if (f->kind != HISTOGRAM) {
            emit(o, "%s", f->name);
            emit_labels(o, f, s, NULL);
            emit(o, " %.17g\n", s->value);
            continue;
        }
        for (int b = 0; f->buckets[b] != 0; b++) {
            char le[32];
            snprintf(le, sizeof le, "%g", f->buckets[b]);
            emit(o, "%s_bucket", f->name);
            emit_labels(o, f, s, le);
            emit(o, " %llu\n", s->bucket[b]);
        }
        emit(o, "%s_bucket", f->name);
        emit_labels(o, f, s, "+Inf");
        emit(o, " %llu\n%s_sum", s->count, f->name);
        emit_labels(o, f, s, NULL);
        emit(o, " %.17g\n%s_count", s->value, f->name);
        emit_labels(o, f, s, NULL);
        emit(o, " %llu\n", s->count);
    }
}

char *sg_metrics_render(sg_metrics_t *m) {
    out_t o = {malloc(4096), 0, 4096, false};
    if (!o.buf)
        return NULL;
    o.buf[0] = '\0';
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < SG_M_COUNT; i++)
        emit_family(&o, &families[i], &m->fam[i]);
    pthread_mutex_unlock(&m->lock);
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
