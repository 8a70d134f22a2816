/* The participant test tool: a saga participant whose answers are chosen by
 * rules, used by the end-to-end tests, the demo and the benchmark, and a
 * sender of saga messages ("participant send").
 *
 * Modules: participant.c (options, the serve loop), participant_rules.c
 * (rules: which answer a command gets), participant_effects.c (the effects
 * table in PostgreSQL), participant_amqp.c (declaring RabbitMQ queues,
 * exchanges and bindings; the cleanup subcommand), participant_send.c (the
 * send subcommand). */
#ifndef SAGA_TESTS_PARTICIPANT_H
#define SAGA_TESTS_PARTICIPANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/err.h"

/* ---- rules ---- */

typedef enum pt_action {
    PT_SUCCEED = 1, /* success reply with a result */
    PT_FAIL,        /* failure reply, not retryable */
    PT_RETRY,       /* failure reply, retryable */
    PT_SILENT,      /* no reply at all */
} pt_action_t;

typedef enum pt_op { PT_OP_EXISTS = 0, PT_OP_EQ, PT_OP_NE, PT_OP_GT, PT_OP_LT, PT_OP_GE, PT_OP_LE } pt_op_t;

typedef struct pt_rule {
    char *type;          /* command type, "*" for any */
    pt_action_t action;
    int attempt_min;     /* command attempt range (from the command id); 0: open */
    int attempt_max;
    char *when_path;     /* "$.amount": a path into the command's data; NULL: always */
    pt_op_t when_op;
    char *when_value;
    int64_t delay_ms;    /* answer late */
    int repeat;          /* the same reply event sent this many times (>= 1) */
    int dupes;           /* extra replies with fresh ids and the same causationid */
    bool stale;          /* first a reply with a wrong causationid */
    char *code;          /* failure code */
    char *message;       /* failure message */
    json_t *result;      /* success result to send instead of the built-in one */
} pt_rule_t;

typedef struct pt_rules {
    pt_rule_t *v;
    size_t n;
} pt_rules_t;

/* Parses "TYPE:ACTION[:KEY=VALUE,...]" and appends it. */
sg_err_t pt_rules_add_spec(pt_rules_t *rules, const char *spec, char *errstr, size_t errstr_size);
/* Reads a JSON file: an array of rule objects, or {"rules": [...]}. */
sg_err_t pt_rules_add_file(pt_rules_t *rules, const char *path, char *errstr, size_t errstr_size);
void pt_rules_release(pt_rules_t *rules);
/* The first rule that matches the command, or NULL (then: succeed). */
const pt_rule_t *pt_rules_match(const pt_rules_t *rules, const char *type, int attempt,
                                const json_t *data);
const char *pt_action_str(pt_action_t action);

/* The built-in result of a successful command: fields the example sagas'
 * templates read ("reservation_id", "charge_id", "booking_ref", ...), with
 * values derived from the saga id, plus "<step>_id"; for a compensation
 * {"undone": true}. A new reference. */
json_t *pt_default_result(const char *type, const char *step, const char *saga_id, bool undo,
                          const json_t *data);

/* ---- the effects table ---- */

typedef struct pt_effects pt_effects_t;

/* One command as recorded. */
typedef struct pt_effect {
    const char *command_id;
    const char *saga_id;
    const char *step;
    const char *type;
    const char *channel;   /* where it was received */
    bool undo;
    int attempt;           /* the saga's attempt, from the command id */
    const json_t *data;
    const char *outcome;   /* "success", "failure" or "none" (no answer) */
    const json_t *reply;   /* the reply's data */
} pt_effect_t;

/* Connects and creates the table when it is missing. */
pt_effects_t *pt_effects_new(const char *conninfo, char *errstr, size_t errstr_size);
void pt_effects_destroy(pt_effects_t *fx);
sg_err_t pt_effects_begin(pt_effects_t *fx, char *errstr, size_t errstr_size);
sg_err_t pt_effects_commit(pt_effects_t *fx, char *errstr, size_t errstr_size);
void pt_effects_rollback(pt_effects_t *fx);
/* Inserts the command on first receipt, else adds one to its receipts.
 * *receipts is the count after this one; on a redelivery *outcome and
 * *reply are what was recorded the first time (the participant answers a
 * command the same way every time); *reply is a new reference or NULL. */
sg_err_t pt_effects_record(pt_effects_t *fx, const pt_effect_t *e, int *receipts,
                           char **outcome, json_t **reply, char *errstr, size_t errstr_size);

/* ---- RabbitMQ declarations ---- */

/* A binding "EXCHANGE:KEY:QUEUE": a durable direct exchange and a durable
 * queue bound to it with that key. */
typedef struct pt_bind {
    char *exchange;
    char *key;
    char *queue;
} pt_bind_t;

sg_err_t pt_bind_parse(const char *spec, pt_bind_t *b, char *errstr, size_t errstr_size);
void pt_bind_release(pt_bind_t *b);
/* Declares durable queues, and durable direct exchanges with their
 * bindings, on a connection of its own that it closes again. */
sg_err_t pt_amqp_declare(const char *url, const char *const *queues, size_t nqueues,
                         const pt_bind_t *binds, size_t nbinds, char *errstr,
                         size_t errstr_size);

/* Deletes queues and exchanges (those that do not exist are skipped). */
sg_err_t pt_amqp_delete(const char *url, const char *const *queues, size_t nqueues,
                        const char *const *exchanges, size_t nexchanges, char *errstr,
                        size_t errstr_size);

/* ---- common ---- */

extern volatile int pt_stopping;
void pt_on_signals(void);
int64_t pt_now_ms(void);
void pt_sleep_ms(int64_t ms);
void pt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fills 'buf' with 'n' random bytes (never fails: falls back on the clock). */
void pt_random(void *buf, size_t n);

/* ---- subcommands ---- */

int pt_serve_main(int argc, char **argv);
int pt_send_main(int argc, char **argv);
int pt_cleanup_main(int argc, char **argv);
int pt_dump_main(int argc, char **argv);

#endif
