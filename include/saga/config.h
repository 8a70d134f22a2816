/* sagad's configuration (CONTRACT.md section 5): a JSON file, every key
 * optional but database_url, each overridable by an environment variable
 * SAGA_<PATH> (upper case, dots as underscores). Validated at start: every
 * problem is reported at once, and unknown keys are errors. */
#ifndef SAGA_CONFIG_H
#define SAGA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/err.h"

typedef struct sg_config_kv {
    char *key;
    char *value;
} sg_config_kv_t;

typedef enum sg_log_format { SG_LOG_JSON = 0, SG_LOG_TEXT = 1 } sg_log_format_t;
typedef enum sg_log_level {
    SG_LOG_DEBUG = 0,
    SG_LOG_INFO = 1,
    SG_LOG_WARN = 2,
    SG_LOG_ERROR = 3,
} sg_log_level_t;

typedef struct sg_config {
    char *database_url;
    char *sagas_dir;          /* default "sagas" */
    char *migrations_dir;     /* NULL: $SAGA_MIGRATIONS_DIR, share dir, ./migrations */
    char *kafka_brokers;      /* NULL: no Kafka */
    char *kafka_group_id;     /* default "sagad" */
    sg_config_kv_t *kafka_properties;
    size_t nkafka_properties;
    char *amqp_url;           /* NULL: no RabbitMQ */
    int amqp_prefetch;        /* default 256 */
    char **inputs;            /* channels consumed */
    size_t ninputs;
    char *reply_to_kafka;     /* default "kafka:saga.replies" */
    char *reply_to_amqp;      /* default "amqp:/saga.replies" */
    char *events;             /* default "kafka:saga.events" */
    char *http_listen;        /* default "127.0.0.1:9464"; "" turns it off */
    sg_log_format_t log_format;
    sg_log_level_t log_level;
    int64_t max_message_bytes; /* default 1048576 */
    int batch_max;            /* inputs per transaction, default 256 */
    int batch_wait_ms;        /* how long to gather a batch, default 2 */
    int64_t inbox_retention_ms;   /* default 7 days */
    int64_t history_retention_ms; /* of finished sagas; default 30 days */
} sg_config_t;

/* Loads 'path' (NULL: no file, environment and defaults only), applies
 * SAGA_* overrides from 'envp' (NULL-terminated "K=V" strings; NULL means
 * the process environment) and validates. On error, 'errstr' holds every
 * problem, one per line, each "FILE: KEY: message". */
sg_err_t sg_config_load(const char *path, char *const *envp, sg_config_t **out,
                        char *errstr, size_t errstr_size);
void sg_config_destroy(sg_config_t *cfg);

/* The configuration as JSON with secrets redacted, for the start-up log. */
char *sg_config_describe(const sg_config_t *cfg);

/* Calls 'fn' with each secret of the configuration: the passwords of
 * database_url and amqp.url (as written and decoded) and the values of the
 * kafka.properties whose names say they are secret. For sg_log_add_secret. */
void sg_config_secrets(const sg_config_t *cfg, void (*fn)(const char *secret));

#endif
