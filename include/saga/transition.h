/* One transition, ready to commit: the bridge between the pure engine and
 * the store, shared by sagad's worker and sagactl's abort and retry.
 *
 * sg_transition_make applies one input to a saga's state with
 * sg_engine_apply and turns the result into an sg_store_item_t: the saga row
 * with its denormalized columns, the history entries as JSON text, the
 * outbox rows (step commands on their channels and lifecycle events on the
 * events channel, each a CloudEvent encoded with sg_envelope_encode, key =
 * the saga id, and for AMQP channels the headers {"message_id",
 * "correlation_id"}), the timers to arm and to cancel, the inbox entry and
 * the fired timer. The transition owns every byte its item points to, so
 * items of many transitions can be copied into one array for
 * sg_store_batch.
 *
 * Definitions: a running saga keeps the exact definition it started with.
 * sg_defcache_t resolves (name, version, sha256): first among the local
 * definitions (loaded from the sagas directory, the ones new sagas start
 * on: the highest version of each name), then among definitions it loaded
 * before from saga_definitions, then from the database, checking the hash.
 *
 * Nothing here is thread-safe: one cache and its transitions belong to one
 * thread, as its store connection does. */
#ifndef SAGA_TRANSITION_H
#define SAGA_TRANSITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/def.h"
#include "saga/engine.h"
#include "saga/err.h"
#include "saga/store.h"

#define SG_TRANSITION_SOURCE "/sagad" /* default CloudEvents source */
#define SG_TRANSITION_MAX_RETRIES 8   /* conflicts sg_transition_run_one retries */

/* ---- definitions ---- */

typedef struct sg_defcache sg_defcache_t;

sg_defcache_t *sg_defcache_new(void);
void sg_defcache_destroy(sg_defcache_t *dc);

/* Takes the definitions of 'set' as the local ones (takes ownership of
 * 'set' on success and on failure) and stores each with
 * sg_store_definition_put. A definition refused by the database (same name
 * and version, other content) is SG_ERR_INVALID with errstr naming it and
 * ending in "bump version"; SG_ERR_CONN when the database is gone. */
sg_err_t sg_defcache_publish(sg_defcache_t *dc, sg_store_t *st, sg_def_set_t *set,
                             char *errstr, size_t errstr_size);

/* The highest local version of 'name' (what a new saga starts on), or NULL. */
const sg_def_t *sg_defcache_latest(const sg_defcache_t *dc, const char *name);

/* The definition a saga runs: local or cached when (name, version) is known
 * with that sha256 ('sha256' NULL: any), else loaded from saga_definitions
 * and cached. SG_ERR_NOT_FOUND when it is not stored, SG_ERR_INVALID when
 * the stored body does not load or its hash differs, SG_ERR_CONN. The
 * definition stays valid as long as the cache. */
sg_err_t sg_defcache_resolve(sg_defcache_t *dc, sg_store_t *st, const char *name, int version,
                             const char *sha256, const sg_def_t **out, char *errstr,
                             size_t errstr_size);

/* ---- one transition ---- */

/* What the caller fixes for every transition. */
typedef struct sg_transition_env {
    sg_engine_env_t engine;   /* reply_to per transport */
    const char *events;       /* channel of lifecycle events; NULL: none sent */
    const char *source;       /* CloudEvents source; NULL: SG_TRANSITION_SOURCE */
} sg_transition_env_t;

typedef struct sg_transition sg_transition_t;

/* Applies 'in' at 'now_ms' to 'before' (NULL for a start; then
 * 'version' must be 0) of definition 'def', whose row is at 'version'.
 * 'message_id' (may be NULL) goes to the inbox; 'fired_timer_id' (0: none)
 * is the claimed timer this input is. On SG_OK *out is the transition. On
 * error (the engine refused the call, a command that cannot be encoded)
 * returns it with errstr. Pointers of 'in' are only read during the call. */
sg_err_t sg_transition_make(const sg_def_t *def, const sg_saga_t *before, int64_t version,
                            const sg_input_t *in, const char *message_id,
                            int64_t fired_timer_id, int64_t now_ms,
                            const sg_transition_env_t *env, sg_transition_t **out,
                            char *errstr, size_t errstr_size);
void sg_transition_destroy(sg_transition_t *tr);

/* The item to commit; after sg_store_batch, copy the batch's item back
 * here (or read the results from the copy). */
sg_store_item_t *sg_transition_item(sg_transition_t *tr);
/* The state after the input (owned by the transition). */
const sg_saga_t *sg_transition_saga(const sg_transition_t *tr);
/* Takes the new state out of the transition (the caller owns it). */
sg_saga_t *sg_transition_take_saga(sg_transition_t *tr);
const sg_effects_t *sg_transition_effects(const sg_transition_t *tr);
/* Why the input changed nothing (a stale reply, ...), or NULL. */
const char *sg_transition_ignored(const sg_transition_t *tr);

/* Reads a saga row's state into the engine's form. SG_ERR_INVALID with
 * errstr when the state document is damaged. */
sg_err_t sg_transition_saga_from_row(const sg_store_saga_t *row, sg_saga_t **out,
                                     char *errstr, size_t errstr_size);

/* Load, apply, commit one input to one existing saga (sagactl abort and
 * retry): loads the row, resolves its definition through 'dc', makes the
 * transition and commits it alone with sg_store_batch; on a version
 * conflict reloads and applies again, up to SG_TRANSITION_MAX_RETRIES
 * times. SG_ERR_NOT_FOUND when there is no such saga, SG_ERR_DUPLICATE when
 * 'message_id' (may be NULL) was seen before, SG_ERR_CONFLICT when the
 * retries ran out. On SG_OK and when 'out' is not NULL, *out is the
 * committed transition (the caller destroys it). */
sg_err_t sg_transition_run_one(sg_store_t *st, sg_defcache_t *dc, const char *saga_id,
                               const sg_input_t *in, const char *message_id, int64_t now_ms,
                               const sg_transition_env_t *env, sg_transition_t **out,
                               char *errstr, size_t errstr_size);

#endif
