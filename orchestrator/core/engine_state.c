/* A saga's state: life cycle, accessors, and the exact JSON form the store
 * keeps in one column. sg_saga_from_json(sg_saga_to_json(s)) is equal to s
 * field for field; the 64-bit generator state is written as 16 hex digits.
 * The rules that change a state live in engine.c only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_internal.h"

#define FORMAT_VERSION 1

static const char *const saga_statuses[] = {
    [SG_SAGA_NONE] = "none", [SG_SAGA_RUNNING] = "running",
    [SG_SAGA_COMPENSATING] = "compensating", [SG_SAGA_COMPLETED] = "completed",
    [SG_SAGA_COMPENSATED] = "compensated", [SG_SAGA_FAILED] = "failed",
};

static const char *const step_statuses[] = {
    [SG_STEP_PENDING] = "pending", [SG_STEP_RUNNING] = "running",
    [SG_STEP_SUCCEEDED] = "succeeded", [SG_STEP_FAILED] = "failed",
    [SG_STEP_TIMED_OUT] = "timed_out", [SG_STEP_COMPENSATING] = "compensating",
    [SG_STEP_COMPENSATED] = "compensated", [SG_STEP_SKIPPED] = "skipped",
};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *sg_saga_status_str(sg_saga_status_t status) {
    return (int)status >= 0 && (int)status < NELEM(saga_statuses) ? saga_statuses[status] : "?";
}

sg_saga_status_t sg_saga_status_parse(const char *name) {
    for (int i = 1; name && i < NELEM(saga_statuses); i++)
        if (strcmp(saga_statuses[i], name) == 0)
            return (sg_saga_status_t)i;
    return SG_SAGA_NONE;
}

bool sg_saga_status_terminal(sg_saga_status_t status) {
    return status == SG_SAGA_COMPLETED || status == SG_SAGA_COMPENSATED;
}

const char *sg_step_status_str(sg_step_status_t status) {
    return (int)status > 0 && (int)status < NELEM(step_statuses) ? step_statuses[status] : "?";
}

sg_step_status_t sg_step_status_parse(const char *name) {
    for (int i = 1; name && i < NELEM(step_statuses); i++)
        if (strcmp(step_statuses[i], name) == 0)
            return (sg_step_status_t)i;
    return 0;
}

/* ---- life cycle ---- */

sg_saga_t *sg_saga_new_empty(int nsteps) {
    sg_saga_t *saga = sg_engine_xcalloc(1, sizeof *saga);
    saga->nsteps = nsteps;
    saga->steps = sg_engine_xcalloc((size_t)nsteps, sizeof *saga->steps);
    return saga;
}

void sg_saga_destroy(sg_saga_t *saga) {
    if (!saga)
        return;
    for (int i = 0; saga->steps && i < saga->nsteps; i++) {
        free(saga->steps[i].name);
        free(saga->steps[i].awaiting);
        json_decref(saga->steps[i].error);
    }
    free(saga->steps);
    free(saga->id);
    free(saga->type);
    free(saga->reason);
    json_decref(saga->context);
    free(saga);
}

static char *dup_or_null(const char *s) {
    return s ? sg_engine_xstrdup(s) : NULL;
}

sg_saga_t *sg_saga_copy(const sg_saga_t *saga) {
    sg_saga_t *c = sg_saga_new_empty(saga->nsteps);
    step_state_t *steps = c->steps;
    *c = *saga;
    c->steps = steps;
    c->id = dup_or_null(saga->id);
    c->type = dup_or_null(saga->type);
    c->reason = dup_or_null(saga->reason);
    c->context = saga->context ? json_incref(saga->context) : NULL;
    for (int i = 0; i < saga->nsteps; i++) {
        c->steps[i] = saga->steps[i];
        c->steps[i].name = dup_or_null(saga->steps[i].name);
        c->steps[i].awaiting = dup_or_null(saga->steps[i].awaiting);
        c->steps[i].error = saga->steps[i].error
                                ? sg_engine_xjson(json_deep_copy(saga->steps[i].error))
                                : NULL;
    }
    return c;
}

static bool str_equal(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool json_same(const json_t *a, const json_t *b) {
    return a == b || (a && b && json_equal((json_t *)a, (json_t *)b));
}

static bool step_equal(const step_state_t *a, const step_state_t *b) {
    return str_equal(a->name, b->name) && a->status == b->status &&
           a->do_attempt == b->do_attempt && a->do_base == b->do_base &&
           a->undo_attempt == b->undo_attempt && a->undo_base == b->undo_base &&
           str_equal(a->awaiting, b->awaiting) && a->retry_at_ms == b->retry_at_ms &&
           a->unknown == b->unknown && a->last_timed_out == b->last_timed_out &&
           a->completed_seq == b->completed_seq && a->started_ms == b->started_ms &&
           a->ended_ms == b->ended_ms && json_same(a->error, b->error);
}

bool sg_saga_equal(const sg_saga_t *a, const sg_saga_t *b) {
    if (a == b)
        return true;
    if (!a || !b || a->nsteps != b->nsteps)
        return false;
    bool same = str_equal(a->id, b->id) && str_equal(a->type, b->type) &&
                a->def_version == b->def_version && strcmp(a->def_sha256, b->def_sha256) == 0 &&
                a->status == b->status && a->stage == b->stage && a->failing == b->failing &&
                a->pivot_passed == b->pivot_passed &&
                a->stuck_in_compensation == b->stuck_in_compensation &&
                a->deadline_ms == b->deadline_ms && a->deadline_fired == b->deadline_fired &&
                strcmp(a->traceparent, b->traceparent) == 0 && a->rng == b->rng &&
                a->events == b->events && a->completions == b->completions &&
                str_equal(a->reason, b->reason) && a->created_ms == b->created_ms &&
                a->updated_ms == b->updated_ms && json_same(a->context, b->context);
    for (int i = 0; same && i < a->nsteps; i++)
        same = step_equal(&a->steps[i], &b->steps[i]);
    return same;
}

/* ---- accessors ---- */

const char *sg_saga_id(const sg_saga_t *saga) { return saga->id; }
const char *sg_saga_type(const sg_saga_t *saga) { return saga->type; }
int sg_saga_def_version(const sg_saga_t *saga) { return saga->def_version; }
const char *sg_saga_def_sha256(const sg_saga_t *saga) { return saga->def_sha256; }
sg_saga_status_t sg_saga_status(const sg_saga_t *saga) { return saga->status; }
const char *sg_saga_reason(const sg_saga_t *saga) { return saga->reason; }
const char *sg_saga_traceparent(const sg_saga_t *saga) { return saga->traceparent; }
int64_t sg_saga_created_ms(const sg_saga_t *saga) { return saga->created_ms; }
int64_t sg_saga_updated_ms(const sg_saga_t *saga) { return saga->updated_ms; }
const json_t *sg_saga_context(const sg_saga_t *saga) { return saga->context; }
int sg_saga_step_count(const sg_saga_t *saga) { return saga->nsteps; }

int64_t sg_saga_deadline_ms(const sg_saga_t *saga) {
    bool live = saga->status == SG_SAGA_RUNNING || saga->status == SG_SAGA_FAILED;
    return live && !saga->deadline_fired && !saga->stuck_in_compensation
               ? saga->deadline_ms : 0;
}

static const step_state_t *step_at(const sg_saga_t *saga, int i) {
    return i >= 0 && i < saga->nsteps ? &saga->steps[i] : NULL;
}

const char *sg_saga_step_name(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->name : NULL;
}

sg_step_status_t sg_saga_step_status(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->status : 0;
}

int sg_saga_step_attempts(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->do_attempt : 0;
}

int64_t sg_saga_step_started_ms(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->started_ms : 0;
}

int sg_saga_step_undo_attempts(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->undo_attempt : 0;
}

const json_t *sg_saga_step_error(const sg_saga_t *saga, int i) {
    const step_state_t *st = step_at(saga, i);
    return st ? st->error : NULL;
}

/* A step the saga is at: in flight, waiting to retry, or what a failed saga
 * is stuck on. */
static bool step_is_current(const sg_saga_t *saga, const step_state_t *st) {
    if (st->awaiting || st->retry_at_ms > 0)
        return true;
    if (saga->status != SG_SAGA_FAILED)
        return false;
    if (saga->stuck_in_compensation)
        return st->status == SG_STEP_COMPENSATING;
    return st->status == SG_STEP_FAILED || st->status == SG_STEP_TIMED_OUT;
}

size_t sg_saga_current_steps(const sg_saga_t *saga, char *buf, size_t size) {
    size_t len = 0;
    if (size)
        buf[0] = '\0';
    for (int i = 0; i < saga->nsteps; i++) {
        const step_state_t *st = &saga->steps[i];
        if (!step_is_current(saga, st))
            continue;
        int n = snprintf(len < size ? buf + len : NULL, len < size ? size - len : 0,
                         "%s%s", len ? "," : "", st->name);
        len += (size_t)n;
    }
    if (size && len >= size)
        buf[size - 1] = '\0';
    return len;
}

/* ---- JSON ---- */

static json_t *str_or_null(const char *s) {
    return sg_engine_xjson(s ? json_string(s) : json_null());
}

static json_t *step_to_json(const step_state_t *st) {
    return sg_engine_xjson(json_pack(
        "{s:s,s:s,s:i,s:i,s:i,s:i,s:o,s:I,s:b,s:b,s:i,s:I,s:I,s:O}",
        "name", st->name, "status", sg_step_status_str(st->status),
        "do_attempt", st->do_attempt, "do_base", st->do_base,
        "undo_attempt", st->undo_attempt, "undo_base", st->undo_base,
        "awaiting", str_or_null(st->awaiting), "retry_at_ms", (json_int_t)st->retry_at_ms,
        "unknown", st->unknown, "last_timed_out", st->last_timed_out,
        "completed_seq", st->completed_seq, "started_ms", (json_int_t)st->started_ms,
        "ended_ms", (json_int_t)st->ended_ms,
        "error", st->error ? st->error : json_null()));
}

json_t *sg_saga_to_json(const sg_saga_t *saga) {
    char rng[17];
    snprintf(rng, sizeof rng, "%016" PRIx64, saga->rng);
    json_t *steps = sg_engine_xjson(json_array());
    for (int i = 0; i < saga->nsteps; i++)
        json_array_append_new(steps, step_to_json(&saga->steps[i]));
    return sg_engine_xjson(json_pack(
        "{s:i,s:s,s:s,s:i,s:s,s:s,s:i,s:b,s:b,s:b,s:I,s:b,s:s,s:s,s:i,s:i,s:o,"
        "s:I,s:I,s:O,s:o}",
        "format", FORMAT_VERSION, "id", saga->id, "type", saga->type,
        "definition_version", saga->def_version, "definition_sha256", saga->def_sha256,
        "status", sg_saga_status_str(saga->status), "stage", saga->stage,
        "failing", saga->failing, "pivot_passed", saga->pivot_passed,
        "stuck_in_compensation", saga->stuck_in_compensation,
        "deadline_ms", (json_int_t)saga->deadline_ms, "deadline_fired", saga->deadline_fired,
        "traceparent", saga->traceparent, "rng", rng, "events", saga->events,
        "completions", saga->completions, "reason", str_or_null(saga->reason),
        "created_ms", (json_int_t)saga->created_ms, "updated_ms", (json_int_t)saga->updated_ms,
        "context", saga->context, "steps", steps));
}

/* A reader that remembers the first problem. */
typedef struct reader {
    char *errstr;
    size_t errstr_size;
    bool bad;
} reader_t;

static const json_t *member(reader_t *r, const json_t *obj, const char *key,
                            json_type type) {
    const json_t *v = json_object_get(obj, key);
    bool ok = v && (json_typeof(v) == type ||
                    (type == JSON_TRUE && json_is_boolean(v)));
    if (!ok && !r->bad) {
        snprintf(r->errstr, r->errstr_size, "saga state: \"%s\" is missing or of the wrong type", key);
        r->bad = true;
    }
    return ok ? v : NULL;
}

static int64_t get_int(reader_t *r, const json_t *obj, const char *key) {
    return json_integer_value(member(r, obj, key, JSON_INTEGER));
}

static bool get_bool(reader_t *r, const json_t *obj, const char *key) {
    return json_is_true(member(r, obj, key, JSON_TRUE));
}

static const char *get_str(reader_t *r, const json_t *obj, const char *key) {
    return json_string_value(member(r, obj, key, JSON_STRING));
}

static char *get_str_or_null(reader_t *r, const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    if (json_is_null(v))
        return NULL;
    const char *s = get_str(r, obj, key);
    return s ? sg_engine_xstrdup(s) : NULL;
}

static void fail(reader_t *r, const char *what, const char *value) {
    if (!r->bad)
        snprintf(r->errstr, r->errstr_size, "saga state: bad %s \"%s\"", what, value ? value : "");
    r->bad = true;
}

static void step_from_json(reader_t *r, const json_t *j, step_state_t *st) {
    const char *name = get_str(r, j, "name");
    st->name = sg_engine_xstrdup(name);
    st->status = sg_step_status_parse(get_str(r, j, "status"));
    if (!st->status)
        fail(r, "step status", json_string_value(json_object_get(j, "status")));
    st->do_attempt = (int)get_int(r, j, "do_attempt");
    st->do_base = (int)get_int(r, j, "do_base");
    st->undo_attempt = (int)get_int(r, j, "undo_attempt");
    st->undo_base = (int)get_int(r, j, "undo_base");
    st->awaiting = get_str_or_null(r, j, "awaiting");
    st->retry_at_ms = get_int(r, j, "retry_at_ms");
    st->unknown = get_bool(r, j, "unknown");
    st->last_timed_out = get_bool(r, j, "last_timed_out");
    st->completed_seq = (int)get_int(r, j, "completed_seq");
    st->started_ms = get_int(r, j, "started_ms");
    st->ended_ms = get_int(r, j, "ended_ms");
    const json_t *err = json_object_get(j, "error");
    st->error = err && !json_is_null(err) ? sg_engine_xjson(json_deep_copy(err)) : NULL;
}

static void header_from_json(reader_t *r, const json_t *j, sg_saga_t *saga) {
    if (get_int(r, j, "format") != FORMAT_VERSION && !r->bad)
        fail(r, "format", "version");
    saga->id = sg_engine_xstrdup(get_str(r, j, "id"));
    saga->type = sg_engine_xstrdup(get_str(r, j, "type"));
    saga->def_version = (int)get_int(r, j, "definition_version");
    const char *sha = get_str(r, j, "definition_sha256");
    snprintf(saga->def_sha256, sizeof saga->def_sha256, "%s", sha ? sha : "");
    const char *status = get_str(r, j, "status");
    saga->status = sg_saga_status_parse(status);
    if (saga->status == SG_SAGA_NONE)
        fail(r, "status", status);
    saga->stage = (int)get_int(r, j, "stage");
    saga->failing = get_bool(r, j, "failing");
    saga->pivot_passed = get_bool(r, j, "pivot_passed");
    saga->stuck_in_compensation = get_bool(r, j, "stuck_in_compensation");
    saga->deadline_ms = get_int(r, j, "deadline_ms");
    saga->deadline_fired = get_bool(r, j, "deadline_fired");
    const char *tp = get_str(r, j, "traceparent");
    if (tp && strlen(tp) != SG_TRACEPARENT_LEN)
        fail(r, "traceparent", tp);
    snprintf(saga->traceparent, sizeof saga->traceparent, "%s", tp ? tp : "");
    const char *rng = get_str(r, j, "rng");
    char *end = NULL;
    saga->rng = rng ? strtoull(rng, &end, 16) : 0;
    if (rng && (strlen(rng) != 16 || *end))
        fail(r, "rng", rng);
    saga->events = (int)get_int(r, j, "events");
    saga->completions = (int)get_int(r, j, "completions");
    saga->reason = get_str_or_null(r, j, "reason");
    saga->created_ms = get_int(r, j, "created_ms");
    saga->updated_ms = get_int(r, j, "updated_ms");
    const json_t *ctx = member(r, j, "context", JSON_OBJECT);
    saga->context = ctx ? sg_engine_xjson(json_deep_copy(ctx)) : NULL;
}

sg_err_t sg_saga_from_json(const json_t *json, sg_saga_t **out, char *errstr,
                           size_t errstr_size) {
    reader_t r = {errstr, errstr_size, false};
    *out = NULL;
    if (!json_is_object(json)) {
        snprintf(errstr, errstr_size, "saga state is not a JSON object");
        return SG_ERR_INVALID;
    }
    const json_t *steps = member(&r, json, "steps", JSON_ARRAY);
    if (!steps)
        return SG_ERR_INVALID;
    sg_saga_t *saga = sg_saga_new_empty((int)json_array_size(steps));
    header_from_json(&r, json, saga);
    for (int i = 0; i < saga->nsteps && !r.bad; i++) {
        const json_t *s = json_array_get(steps, (size_t)i);
        if (!json_is_object(s))
            fail(&r, "step", "not an object");
        else
            step_from_json(&r, s, &saga->steps[i]);
    }
    if (r.bad) {
        sg_saga_destroy(saga);
        return SG_ERR_INVALID;
    }
    *out = saga;
    return SG_OK;
}
