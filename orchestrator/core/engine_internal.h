/* The engine's private data: the body of sg_saga_t and sg_effects_t, shared
 * by the engine files (engine.c: rules; engine_state.c: state, accessors and
 * JSON; engine_effects.c: the effect list; engine_input.c: inputs). Nothing
 * outside orchestrator/core/engine*.c includes this. */
#ifndef SAGA_CORE_ENGINE_INTERNAL_H
#define SAGA_CORE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/def.h"
#include "saga/engine.h"

#define SG_TRACEPARENT_LEN 55 /* 00-<32 hex>-<16 hex>-<2 hex> */

typedef struct step_state {
    char *name;
    sg_step_status_t status;
    /* Attempt numbers only grow, so command ids stay unique; the budget of
     * max_attempts counts from the base, which an operator retry moves up. */
    int do_attempt;
    int do_base;
    int undo_attempt;
    int undo_base;
    char *awaiting;      /* id of the command whose reply is awaited, or NULL */
    int64_t retry_at_ms; /* != 0: a retry timer is armed, nothing in flight */
    bool unknown;        /* a forward attempt timed out or was abandoned */
    bool last_timed_out; /* the last forward attempt timed out */
    int completed_seq;   /* order in which its forward part ended; 0 = not */
    int64_t started_ms;
    int64_t ended_ms;
    json_t *error;       /* the last error, or NULL */
} step_state_t;

struct sg_saga {
    char *id;
    char *type;
    int def_version;
    char def_sha256[65];
    sg_saga_status_t status;
    int stage;               /* the current forward stage */
    bool failing;            /* forward path given up: waiting for the stage */
    bool pivot_passed;       /* a pivot step succeeded */
    bool stuck_in_compensation; /* when failed: a compensation ran out */
    int64_t deadline_ms;     /* 0 = none */
    bool deadline_fired;
    char traceparent[SG_TRACEPARENT_LEN + 1];
    uint64_t rng;
    int events;              /* lifecycle events emitted so far */
    int completions;         /* forward step endings so far */
    char *reason;
    int64_t created_ms;
    int64_t updated_ms;
    json_t *context;         /* shared by copies: never changed in place */
    step_state_t *steps;
    int nsteps;
};

struct sg_effects {
    sg_effect_t *items;
    size_t count;
    size_t cap;
};

/* Allocation that cannot fail (the engine aborts on out of memory). */
void *sg_engine_xcalloc(size_t n, size_t size);
char *sg_engine_xstrdup(const char *s);
/* printf into a new string. */
char *sg_engine_xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Aborts when a jansson constructor returned NULL. */
json_t *sg_engine_xjson(json_t *j);

sg_saga_t *sg_saga_new_empty(int nsteps);

/* Appends an effect (a zeroed slot of 'kind') and returns it. */
sg_effect_t *sg_effects_push(sg_effects_t *fx, sg_effect_kind_t kind);
sg_effects_t *sg_effects_new(void);

#endif
