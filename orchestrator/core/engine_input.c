/* Engine inputs as JSON, so that a saga's history records every input
 * exactly and a saga can be rebuilt by replaying them. The form is
 * {"kind":"start"|"reply"|"timer"|"abort"|"retry", ...the fields of that
 * kind...}; the start's seed is 16 hex digits (JSON numbers are not 64-bit
 * unsigned). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_internal.h"

static const char *const input_kinds[] = {
    [SG_INPUT_START] = "start", [SG_INPUT_REPLY] = "reply",
    [SG_INPUT_TIMER] = "timer", [SG_INPUT_ABORT] = "abort",
    [SG_INPUT_RETRY] = "retry",
};

static const char *const timer_kinds[] = {
    [SG_TIMER_STEP_TIMEOUT] = "step_timeout",
    [SG_TIMER_RETRY_DUE] = "retry_due",
    [SG_TIMER_UNDO_TIMEOUT] = "compensation_timeout",
    [SG_TIMER_UNDO_RETRY_DUE] = "compensation_retry_due",
    [SG_TIMER_DEADLINE] = "deadline",
};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int name_index(const char *const *names, int n, const char *name) {
    for (int i = 1; name && i < n; i++)
        if (names[i] && strcmp(names[i], name) == 0)
            return i;
    return 0;
}

const char *sg_timer_kind_str(sg_timer_kind_t kind) {
    return kind > 0 && (int)kind < NELEM(timer_kinds) ? timer_kinds[kind] : "?";
}

sg_timer_kind_t sg_timer_kind_parse(const char *name) {
    return (sg_timer_kind_t)name_index(timer_kinds, NELEM(timer_kinds), name);
}

static void set_str(json_t *obj, const char *key, const char *value) {
    if (value)
        json_object_set_new(obj, key, sg_engine_xjson(json_string(value)));
}

json_t *sg_input_to_json(const sg_input_t *in) {
    if (in->kind <= 0 || (int)in->kind >= NELEM(input_kinds))
        return NULL;
    json_t *j = sg_engine_xjson(json_object());
    set_str(j, "kind", input_kinds[in->kind]);
    char seed[17];
    switch (in->kind) {
    case SG_INPUT_START:
        set_str(j, "saga_id", in->saga_id);
        set_str(j, "traceparent", in->traceparent);
        snprintf(seed, sizeof seed, "%016" PRIx64, in->seed);
        set_str(j, "seed", seed);
        break;
    case SG_INPUT_REPLY:
        set_str(j, "step", in->step);
        set_str(j, "causation_id", in->causation_id);
        set_str(j, "outcome", in->outcome == SG_OUTCOME_SUCCESS ? "success" : "failure");
        break;
    case SG_INPUT_TIMER:
        set_str(j, "timer", sg_timer_kind_str(in->timer));
        set_str(j, "step", in->step);
        json_object_set_new(j, "attempt", sg_engine_xjson(json_integer(in->attempt)));
        break;
    case SG_INPUT_ABORT:
    case SG_INPUT_RETRY:
        set_str(j, "reason", in->reason);
        break;
    }
    if (in->data && (in->kind == SG_INPUT_START || in->kind == SG_INPUT_REPLY))
        json_object_set(j, "data", in->data);
    return j;
}

/* Reads an optional string member into a new heap copy. */
static sg_err_t get_str(const json_t *j, const char *key, bool required,
                        const char **out, char *errstr, size_t errstr_size) {
    const json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        if (!required)
            return SG_OK;
        snprintf(errstr, errstr_size, "input has no \"%s\"", key);
        return SG_ERR_INVALID;
    }
    if (!json_is_string(v)) {
        snprintf(errstr, errstr_size, "input \"%s\" is not a string", key);
        return SG_ERR_INVALID;
    }
    *out = sg_engine_xstrdup(json_string_value(v));
    return SG_OK;
}

static sg_err_t start_from_json(const json_t *j, sg_input_t *in, char *errstr,
                                size_t errstr_size) {
    const char *seed = NULL;
    sg_err_t err = get_str(j, "saga_id", true, &in->saga_id, errstr, errstr_size);
    if (!err)
        err = get_str(j, "traceparent", false, &in->traceparent, errstr, errstr_size);
    if (!err)
        err = get_str(j, "seed", false, &seed, errstr, errstr_size);
    if (!err && seed) {
        char *end = NULL;
        in->seed = strtoull(seed, &end, 16);
        if (strlen(seed) != 16 || *end != '\0') {
            snprintf(errstr, errstr_size, "input seed \"%s\" is not 16 hex digits", seed);
            err = SG_ERR_INVALID;
        }
    }
    free((char *)seed);
    return err;
}

static sg_err_t reply_from_json(const json_t *j, sg_input_t *in, char *errstr,
                                size_t errstr_size) {
    const char *outcome = NULL;
    sg_err_t err = get_str(j, "step", true, &in->step, errstr, errstr_size);
    if (!err)
        err = get_str(j, "causation_id", true, &in->causation_id, errstr, errstr_size);
    if (!err)
        err = get_str(j, "outcome", true, &outcome, errstr, errstr_size);
    if (!err) {
        if (strcmp(outcome, "success") == 0)
            in->outcome = SG_OUTCOME_SUCCESS;
        else if (strcmp(outcome, "failure") == 0)
            in->outcome = SG_OUTCOME_FAILURE;
        else {
            snprintf(errstr, errstr_size, "unknown outcome \"%s\"", outcome);
            err = SG_ERR_INVALID;
        }
    }
    free((char *)outcome);
    return err;
}

static sg_err_t timer_from_json(const json_t *j, sg_input_t *in, char *errstr,
                                size_t errstr_size) {
    const char *kind = NULL;
    sg_err_t err = get_str(j, "timer", true, &kind, errstr, errstr_size);
    if (!err)
        err = get_str(j, "step", false, &in->step, errstr, errstr_size);
    if (!err) {
        in->timer = sg_timer_kind_parse(kind);
        const json_t *a = json_object_get(j, "attempt");
        if (!in->timer) {
            snprintf(errstr, errstr_size, "unknown timer kind \"%s\"", kind);
            err = SG_ERR_INVALID;
        } else if (!json_is_integer(a)) {
            snprintf(errstr, errstr_size, "timer input has no integer \"attempt\"");
            err = SG_ERR_INVALID;
        } else
            in->attempt = (int)json_integer_value(a);
    }
    free((char *)kind);
    return err;
}

sg_err_t sg_input_from_json(const json_t *json, sg_input_t *in, char *errstr,
                            size_t errstr_size) {
    memset(in, 0, sizeof *in);
    const char *kind = json_string_value(json_object_get(json, "kind"));
    in->kind = (sg_input_kind_t)name_index(input_kinds, NELEM(input_kinds), kind);
    sg_err_t err = SG_OK;
    switch (in->kind) {
    case SG_INPUT_START: err = start_from_json(json, in, errstr, errstr_size); break;
    case SG_INPUT_REPLY: err = reply_from_json(json, in, errstr, errstr_size); break;
    case SG_INPUT_TIMER: err = timer_from_json(json, in, errstr, errstr_size); break;
    case SG_INPUT_ABORT:
    case SG_INPUT_RETRY:
        err = get_str(json, "reason", false, &in->reason, errstr, errstr_size);
        break;
    default:
        snprintf(errstr, errstr_size, "unknown input kind \"%s\"", kind ? kind : "");
        return SG_ERR_INVALID;
    }
    json_t *data = json_object_get(json, "data");
    if (!err && data && (in->kind == SG_INPUT_START || in->kind == SG_INPUT_REPLY))
        in->data = json_incref(data);
    if (err)
        sg_input_release(in);
    return err;
}

void sg_input_release(sg_input_t *in) {
    if (!in)
        return;
    free((char *)in->saga_id);
    free((char *)in->traceparent);
    free((char *)in->step);
    free((char *)in->causation_id);
    free((char *)in->reason);
    json_decref(in->data);
    memset(in, 0, sizeof *in);
}
