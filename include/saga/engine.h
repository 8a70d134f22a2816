/* The saga engine (CONTRACT.md section 3): one pure function that applies
 * an input (a start, a reply, a timer firing, an abort, an operator's retry)
 * to a saga's state and returns the new state and the effects the caller
 * must carry out (commands, lifecycle events, timers, history entries).
 *
 * sg_engine_apply does no I/O, reads no clock and keeps no global state; its
 * only randomness comes from a generator whose seed is given in the start
 * input and kept in the state. The same definition, state, input, time and
 * environment always give the same new state and effects, byte for byte, so
 * a saga can be rebuilt by replaying the inputs recorded in its history.
 *
 * Out of memory inside the engine aborts the process: nothing has been
 * committed at that point, so the input is simply processed again later. */
#ifndef SAGA_ENGINE_H
#define SAGA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/def.h"
#include "saga/err.h"
#include "saga/outcome.h"

/* ---- statuses ---- */

typedef enum sg_saga_status {
    SG_SAGA_NONE = 0, /* not started: only before the start input */
    SG_SAGA_RUNNING = 1,
    SG_SAGA_COMPENSATING = 2,
    SG_SAGA_COMPLETED = 3,
    SG_SAGA_COMPENSATED = 4,
    SG_SAGA_FAILED = 5,
} sg_saga_status_t;

typedef enum sg_step_status {
    SG_STEP_PENDING = 1,
    SG_STEP_RUNNING = 2,
    SG_STEP_SUCCEEDED = 3,
    SG_STEP_FAILED = 4,
    SG_STEP_TIMED_OUT = 5,
    SG_STEP_COMPENSATING = 6,
    SG_STEP_COMPENSATED = 7,
    SG_STEP_SKIPPED = 8,
} sg_step_status_t;

/* "running", "compensating", ...; "none" for SG_SAGA_NONE, "?" if unknown. */
const char *sg_saga_status_str(sg_saga_status_t status);
/* The status named 'name', or SG_SAGA_NONE. */
sg_saga_status_t sg_saga_status_parse(const char *name);
/* Completed, compensated: nothing will ever happen to the saga again. A
 * failed saga is not terminal: it waits for an operator. */
bool sg_saga_status_terminal(sg_saga_status_t status);
const char *sg_step_status_str(sg_step_status_t status);
sg_step_status_t sg_step_status_parse(const char *name); /* 0 if unknown */

/* ---- the state of one saga (opaque) ---- */

typedef struct sg_saga sg_saga_t;

void sg_saga_destroy(sg_saga_t *saga);
/* A copy, independent of 'saga' (read-only parts may be shared). */
sg_saga_t *sg_saga_copy(const sg_saga_t *saga);
/* Whether two states are the same, field for field. */
bool sg_saga_equal(const sg_saga_t *a, const sg_saga_t *b);

/* The complete state as JSON (a new reference); its "context" is the
 * saga's own, shared, not to be changed. sg_saga_from_json reads it back. to_json(from_json(to_json(s))) is equal to to_json(s), and so are
 * their dumps with JSON_SORT_KEYS. */
json_t *sg_saga_to_json(const sg_saga_t *saga);
/* On error returns SG_ERR_INVALID with the first problem in errstr. */
sg_err_t sg_saga_from_json(const json_t *json, sg_saga_t **out, char *errstr,
                           size_t errstr_size);

const char *sg_saga_id(const sg_saga_t *saga);
const char *sg_saga_type(const sg_saga_t *saga);
int sg_saga_def_version(const sg_saga_t *saga);
const char *sg_saga_def_sha256(const sg_saga_t *saga);
sg_saga_status_t sg_saga_status(const sg_saga_t *saga);
/* Why the saga left the forward path, or failed; NULL while all is well. */
const char *sg_saga_reason(const sg_saga_t *saga);
/* The saga deadline (epoch ms) while it can still fire, else 0. */
int64_t sg_saga_deadline_ms(const sg_saga_t *saga);
const char *sg_saga_traceparent(const sg_saga_t *saga);
int64_t sg_saga_created_ms(const sg_saga_t *saga);
int64_t sg_saga_updated_ms(const sg_saga_t *saga);
/* {"saga":{"id","type"},"input":...,"steps":{...}} (borrowed). */
const json_t *sg_saga_context(const sg_saga_t *saga);
/* Writes the names of the steps the saga is at, comma-separated: the steps
 * in flight or waiting for a retry, or, for a failed saga, the steps it is
 * stuck on; "" when there are none. Returns the length it needed. */
size_t sg_saga_current_steps(const sg_saga_t *saga, char *buf, size_t size);

/* Steps, in definition order. */
int sg_saga_step_count(const sg_saga_t *saga);
const char *sg_saga_step_name(const sg_saga_t *saga, int i);
sg_step_status_t sg_saga_step_status(const sg_saga_t *saga, int i);
/* Command attempts sent in all (operator retries included), and
 * compensation attempts. */
int sg_saga_step_attempts(const sg_saga_t *saga, int i);
/* When the step's first command went out (epoch ms), 0 before. */
int64_t sg_saga_step_started_ms(const sg_saga_t *saga, int i);
int sg_saga_step_undo_attempts(const sg_saga_t *saga, int i);
/* The last error of the step ({"code","message","retryable"}), or NULL. */
const json_t *sg_saga_step_error(const sg_saga_t *saga, int i);

/* Checks the state against the invariants written at the top of
 * orchestrator/core/engine.c. Returns SG_OK, or SG_ERR_INTERNAL with the
 * broken invariant in errstr. The engine asserts it after every apply in
 * debug builds. */
sg_err_t sg_saga_check_invariants(const sg_def_t *def, const sg_saga_t *saga,
                                  char *errstr, size_t errstr_size);

/* ---- inputs ---- */

typedef enum sg_input_kind {
    SG_INPUT_START = 1,
    SG_INPUT_REPLY = 2,
    SG_INPUT_TIMER = 3,
    SG_INPUT_ABORT = 4,
    SG_INPUT_RETRY = 5, /* an operator's retry of a failed saga */
} sg_input_kind_t;


/* Timers carry the step and the attempt they were armed for; one that does
 * not match the state any more is stale and ignored. */
typedef enum sg_timer_kind {
    SG_TIMER_STEP_TIMEOUT = 1,   /* "step_timeout": no reply to a command */
    SG_TIMER_RETRY_DUE = 2,      /* "retry_due": backoff over, send again */
    SG_TIMER_UNDO_TIMEOUT = 3,   /* "compensation_timeout" */
    SG_TIMER_UNDO_RETRY_DUE = 4, /* "compensation_retry_due" */
    SG_TIMER_DEADLINE = 5,       /* "deadline": the saga's timeout */
} sg_timer_kind_t;

const char *sg_timer_kind_str(sg_timer_kind_t kind);
sg_timer_kind_t sg_timer_kind_parse(const char *name); /* 0 if unknown */

/* One input. Fields not used by 'kind' are NULL / 0. The engine only reads
 * an input; inputs made by sg_input_from_json own their fields and are
 * released with sg_input_release, inputs built by a caller may point at
 * anything that outlives the call. */
typedef struct sg_input {
    sg_input_kind_t kind;
    /* start */
    const char *saga_id;
    const char *traceparent; /* optional W3C traceparent */
    uint64_t seed;           /* the saga's random generator starts here */
    /* start: the saga input; reply: the result, or for a failure
     * {"code","message","retryable"} (a missing "retryable" is false) */
    json_t *data;
    /* reply, timer */
    const char *step;
    /* reply */
    const char *causation_id;
    sg_outcome_t outcome;
    /* timer */
    sg_timer_kind_t timer;
    int attempt;
    /* abort, retry (optional) */
    const char *reason;
} sg_input_t;

/* {"kind":"reply","step":...,...}: every field set, "seed" as 16 hex
 * digits. A new reference. */
json_t *sg_input_to_json(const sg_input_t *in);
sg_err_t sg_input_from_json(const json_t *json, sg_input_t *in, char *errstr,
                            size_t errstr_size);
/* Frees what sg_input_from_json allocated and zeroes 'in'. */
void sg_input_release(sg_input_t *in);

/* ---- the environment given by the caller ---- */

typedef struct sg_engine_env {
    /* The channel replies come back on, per transport: a command's replyto
     * is the one of its own channel's transport (CONTRACT.md section 5).
     * When that one is NULL the other is used. */
    const char *reply_to_kafka;
    const char *reply_to_amqp;
} sg_engine_env_t;

/* ---- effects ---- */

typedef enum sg_effect_kind {
    SG_EFFECT_COMMAND = 1,
    SG_EFFECT_EVENT = 2,
    SG_EFFECT_TIMER_ARM = 3,
    SG_EFFECT_TIMER_CANCEL = 4,
    SG_EFFECT_HISTORY = 5,
} sg_effect_kind_t;

/* A command to publish on 'channel'. */
typedef struct sg_command {
    char *id;            /* <sagaid>/<step>/<do|undo>/<attempt> */
    const char *type;    /* borrowed from the definition */
    const sg_channel_t *channel; /* borrowed from the definition */
    char *saga_id;
    char *saga_type;
    char *step;
    bool undo;           /* a compensation */
    int attempt;
    char *replyto;
    char *traceparent;   /* the saga's trace id, a new span id */
    json_t *data;        /* the rendered template */
} sg_command_t;

/* A lifecycle event for the events channel. */
typedef struct sg_event {
    char *id;            /* <sagaid>/event/<n>: deterministic */
    const char *type;    /* "saga.started", ... (static) */
    char *saga_id;
    char *saga_type;
    char *step;          /* NULL unless the event is about a step */
    char *traceparent;   /* the saga's */
    json_t *data;        /* {"status":...,("step"),...} */
} sg_event_t;

/* A timer to arm, or to cancel (by saga, kind and step; 'attempt' and
 * 'due_at_ms' are informative there). 'step' is NULL for the deadline. */
typedef struct sg_timer {
    sg_timer_kind_t kind;
    char *step;
    int attempt;
    int64_t due_at_ms;
} sg_timer_t;

/* A history entry: "input.<kind>" for every input (detail {"input", "now_ms"}
 * and "ignored": why, when it changed nothing), "saga.<status>" and
 * "step.<status>" for transitions (detail {"from","to","reason"}),
 * "command.sent", "retry.scheduled", "compensation.exhausted". */
typedef struct sg_history {
    const char *event; /* static */
    char *step;        /* NULL when not about one step */
    json_t *detail;
} sg_history_t;

typedef struct sg_effect {
    sg_effect_kind_t kind;
    union {
        sg_command_t command; /* SG_EFFECT_COMMAND */
        sg_event_t event;     /* SG_EFFECT_EVENT */
        sg_timer_t timer;     /* SG_EFFECT_TIMER_ARM, SG_EFFECT_TIMER_CANCEL */
        sg_history_t history; /* SG_EFFECT_HISTORY */
    };
} sg_effect_t;

typedef struct sg_effects sg_effects_t;

size_t sg_effects_count(const sg_effects_t *fx);
/* Why the input was ignored (then the effects are one history entry and
 * the state is unchanged: no need to write it), or NULL if it applied. */
const char *sg_effects_ignored(const sg_effects_t *fx);
const sg_effect_t *sg_effects_at(const sg_effects_t *fx, size_t i);
/* The effects as a JSON array (for logs and tests). A new reference. */
json_t *sg_effects_to_json(const sg_effects_t *fx);
void sg_effects_destroy(sg_effects_t *fx);

/* ---- the engine ---- */

/* Applies 'in' at time 'now_ms' (epoch milliseconds) to 'saga' (NULL for a
 * start) of definition 'def'. 'saga' is not changed. On SG_OK, *out is the
 * new state (a new object, equal to 'saga' when the input was ignored) and
 * *effects what to do, in order; the caller owns both. An input that does
 * not apply (a stale reply, a start of an existing saga, ...) is not an
 * error: it is recorded in a history entry with the reason and changes
 * nothing else. Returns SG_ERR_INVALID, with the reason in errstr, when the
 * call itself is wrong: a missing field, no saga for a non-start input, a
 * saga of another definition. */
sg_err_t sg_engine_apply(const sg_def_t *def, const sg_saga_t *saga,
                         const sg_input_t *in, int64_t now_ms,
                         const sg_engine_env_t *env, sg_saga_t **out,
                         sg_effects_t **effects, char *errstr,
                         size_t errstr_size);

/* The retry delay after failed attempt number 'n' (1-based) of an action:
 * min(max, initial * multiplier^(n-1)), then jittered by a factor drawn
 * uniformly from [0.8, 1.2] with 'random', and capped at max again. */
int64_t sg_engine_backoff_ms(const sg_retry_t *retry, int n, uint64_t random);

#endif
