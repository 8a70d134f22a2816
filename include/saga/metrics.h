/* Prometheus metrics of sagad: a fixed set of families (the table in
 * daemon/metrics.c), series created on first use by their label values,
 * rendered in the Prometheus text exposition format. Thread-safe. */
#ifndef SAGA_METRICS_H
#define SAGA_METRICS_H

typedef enum sg_metric {
    SG_M_SAGAS_STARTED,      /* counter {type} */
    SG_M_SAGAS_FINISHED,     /* counter {type, status} */
    SG_M_STEPS,              /* counter {type, step, outcome} */
    SG_M_COMPENSATIONS,      /* counter {type, step, outcome} */
    SG_M_STEP_LATENCY,       /* histogram seconds {type}: command sent to reply applied */
    SG_M_REPLY_TO_COMMAND,   /* histogram seconds: reply taken to next command handed on */
    SG_M_TRANSITIONS,        /* counter */
    SG_M_BATCH_SIZE,         /* histogram: inputs per transaction */
    SG_M_DB_TX_SECONDS,      /* histogram seconds: one batch transaction */
    SG_M_VERSION_CONFLICTS,  /* counter */
    SG_M_DUPLICATES,         /* counter {kind}: message, start */
    SG_M_DEAD_LETTERS,       /* counter {reason} */
    SG_M_MESSAGES_CONSUMED,  /* counter {transport} */
    SG_M_MESSAGES_PUBLISHED, /* counter {transport} */
    SG_M_PUBLISH_FAILURES,   /* counter {transport} */
    SG_M_OUTBOX_PENDING,     /* gauge */
    SG_M_TIMERS_PENDING,     /* gauge */
    SG_M_SAGAS_IN_FLIGHT,    /* gauge {type, status} */
    SG_M_CONSUMER_LAG,       /* gauge {topic, partition} */
    SG_M_READY,              /* gauge: 1 when database and brokers are reachable */
    SG_M_COUNT
} sg_metric_t;

typedef struct sg_metrics sg_metrics_t;

sg_metrics_t *sg_metrics_new(void);
void sg_metrics_destroy(sg_metrics_t *m);

/* Adds 'v' to a counter, or to a gauge. The variadic arguments are the
 * label values (const char *), as many as the family has labels. */
void sg_metrics_add(sg_metrics_t *m, sg_metric_t id, double v, ...);
/* Sets a gauge. */
void sg_metrics_set(sg_metrics_t *m, sg_metric_t id, double v, ...);
/* Records one observation in a histogram. */
void sg_metrics_observe(sg_metrics_t *m, sg_metric_t id, double v, ...);
/* Drops every series of a gauge family (before setting a fresh snapshot). */
void sg_metrics_reset(sg_metrics_t *m, sg_metric_t id);
/* The current value of one series (counters and gauges; a histogram's
 * count), 0 when it does not exist. For tests and the CLI. */
double sg_metrics_value(sg_metrics_t *m, sg_metric_t id, ...);

/* The text exposition format; the caller frees it. */
char *sg_metrics_render(sg_metrics_t *m);

#endif
