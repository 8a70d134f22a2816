/* Validation of a parsed definition: every rule of CONTRACT.md section 3
 * and docs/definitions.md, every problem reported, in document order, as
 * "FILE: JSON-PATH: message".
 *
 * Two passes. The first (prescan) records, without judging anything, what
 * the rules that look across steps need: the step names and where each
 * runs, the pivot, the retry policy inherited from "defaults". The second
 * walks the document key by key in the order written, checking each value
 * with the table of its object kind; an object reports its missing keys
 * first, then its members in order. Nothing here allocates a definition:
 * the loader builds one only from a document that passed. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/def_internal.h"

#define TYPE_MAX 255

/* One name of the "steps" tree: a step, a group, or a group's member. */
typedef struct vstep {
    const char *name; /* NULL when "name" is not a string */
    int stage;        /* index in "steps" */
    int member;       /* index in the group's "parallel", -1 at top level */
    bool group;
} vstep_t;

typedef struct vctx {
    const char *file;
    sg_def_errors_t *errs;
    size_t nerrors;
    sg_jpath_t path;

    vstep_t *steps; /* prescan: in document order, a group before its members */
    size_t nsteps;
    size_t *stage_first; /* index in steps of each top-level entry */
    int pivot_stage;     /* the first top-level step with "pivot": true, or -1 */
    sg_retry_t cmd_base; /* built-in <- defaults.retry */
    sg_retry_t comp_base;

    /* where the walk is */
    int stage, member;
    size_t vstep;
    bool in_compensation;
    const sg_retry_t *retry_base;
} vctx_t;

typedef void (*check_fn)(vctx_t *v, const json_t *val);

typedef struct field {
    const char *key;
    bool required;
    check_fn check;
} field_t;

__attribute__((format(printf, 2, 3)))
static void problem(vctx_t *v, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sg_def_errors_addf(v->errs, "%s: %s: %s", v->file, v->path.buf, msg);
    v->nerrors++;
}

static void step_path(const vctx_t *v, size_t k, char *buf, size_t size) {
    if (v->steps[k].member < 0)
        snprintf(buf, size, "$.steps[%d]", v->steps[k].stage);
    else
        snprintf(buf, size, "$.steps[%d].parallel[%d]", v->steps[k].stage,
                 v->steps[k].member);
}

static const char *quoted(const char *s, char *buf, size_t size) {
    return s ? sg_quote(s, buf, size) : "an unnamed step";
}

/* ---- objects ---- */

static bool check_object(vctx_t *v, const json_t *val, const field_t *fields) {
    char q[SG_QUOTE_MAX];
    const char *key;
    json_t *member;
    if (!json_is_object(val)) {
        problem(v, "expected an object");
        return false;
    }
    for (const field_t *f = fields; f->key; f++)
        if (f->required && !json_object_get(val, f->key))
            problem(v, "missing key \"%s\"", f->key);
    json_object_foreach((json_t *)val, key, member) {
        const field_t *f = fields;
        while (f->key && strcmp(f->key, key))
            f++;
        size_t old = sg_jpath_push_key(&v->path, key);
        if (f->key)
            f->check(v, member);
        else
            problem(v, "unknown key %s", sg_quote(key, q, sizeof q));
        sg_jpath_pop(&v->path, old);
    }
    return true;
}

/* ---- scalars ---- */

static void check_string(vctx_t *v, const json_t *val) {
    if (!json_is_string(val))
        problem(v, "expected a string");
}

static void check_duration(vctx_t *v, const json_t *val) {
    char err[256];
    int64_t ms;
    if (!json_is_string(val))
        problem(v, "expected a string");
    else if (sg_duration_parse(json_string_value(val), &ms, err, sizeof err) != SG_OK)
        problem(v, "%s", err);
}

static void check_positive_int(vctx_t *v, const json_t *val) {
    if (!json_is_integer(val))
        problem(v, "expected an integer");
    else if (json_integer_value(val) < 1)
        problem(v, "must be at least 1");
    else if (json_integer_value(val) > INT_MAX)
        problem(v, "must be at most %d", INT_MAX);
}

static void check_multiplier(vctx_t *v, const json_t *val) {
    if (!json_is_number(val))
        problem(v, "expected a number");
    else if (json_number_value(val) < 1.0)
        problem(v, "must be at least 1");
}

static void check_saga_name(vctx_t *v, const json_t *val) {
    char q[SG_QUOTE_MAX];
    if (!json_is_string(val))
        problem(v, "expected a string");
    else if (!sg_def_name_ok(json_string_value(val)))
        problem(v, "invalid name %s: must match [a-z][a-z0-9_]{0,62}",
                sg_quote(json_string_value(val), q, sizeof q));
}

static void check_step_name(vctx_t *v, const json_t *val) {
    char q[SG_QUOTE_MAX], first[64];
    check_saga_name(v, val);
    const char *name = v->steps[v->vstep].name;
    if (!name)
        return;
    for (size_t k = 0; k < v->vstep; k++) {
        if (v->steps[k].name && !strcmp(v->steps[k].name, name)) {
            step_path(v, k, first, sizeof first);
            problem(v, "duplicate step %s (first at %s)", sg_quote(name, q, sizeof q), first);
            return;
        }
    }
}

static void check_type(vctx_t *v, const json_t *val) {
    char q[SG_QUOTE_MAX];
    if (!json_is_string(val)) {
        problem(v, "expected a string");
        return;
    }
    const char *s = json_string_value(val);
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789._-:/");
    if (*s == '\0')
        problem(v, "empty type");
    else if (s[n] != '\0' || n > TYPE_MAX)
        problem(v, "invalid type %s: use at most %d letters, digits, \".\", \"_\", \"-\", "
                   "\":\" and \"/\"",
                sg_quote(s, q, sizeof q), TYPE_MAX);
}

static void check_channel(vctx_t *v, const json_t *val) {
    char err[512];
    sg_channel_t ch;
    if (!json_is_string(val)) {
        problem(v, "expected a string");
        return;
    }
    if (sg_channel_parse(json_string_value(val), &ch, err, sizeof err) != SG_OK)
        problem(v, "%s", err);
    sg_channel_release(&ch);
}

static void check_pivot(vctx_t *v, const json_t *val) {
    if (!json_is_boolean(val))
        problem(v, "expected a boolean");
    else if (json_is_true(val) && v->member >= 0)
        problem(v, "a step in a parallel group cannot be the pivot");
    else if (json_is_true(val) && v->pivot_stage != v->stage)
        problem(v, "a saga has at most one pivot (first at $.steps[%d])", v->pivot_stage);
}

static void check_nested_parallel(vctx_t *v, const json_t *val) {
    problem(v, "parallel groups cannot be nested");
}

/* ---- templates ---- */

static bool seg_is(const sg_tseg_t *seg, const char *key) {
    return !seg->is_index && seg->key_len == strlen(key) && !memcmp(seg->key, key, seg->key_len);
}

static void check_step_order(vctx_t *v, const char *ref, size_t k) {
    char q[SG_QUOTE_MAX], cur[SG_QUOTE_MAX];
    const vstep_t *to = &v->steps[k];
    const char *self = quoted(v->steps[v->vstep].name, cur, sizeof cur);
    sg_quote(to->name, q, sizeof q);
    if (to->group)
        problem(v, "%s is a parallel group, not a step: refer to one of its steps", q);
    else if (to->stage < v->stage)
        return;
    else if (to->stage > v->stage)
        problem(v, "step %s does not run before %s", q, self);
    else if (to->member != v->member)
        problem(v, "step %s runs in parallel with %s, not before it", q, self);
    else if (!v->in_compensation)
        problem(v, "a command cannot refer to its own step's result (%s)", ref);
}

static void check_step_reference(vctx_t *v, const char *ref, const sg_tseg_t *seg) {
    char q[SG_QUOTE_MAX];
    for (size_t k = 0; k < v->nsteps; k++) {
        const char *name = v->steps[k].name;
        if (name && strlen(name) == seg->key_len && !memcmp(name, seg->key, seg->key_len)) {
            check_step_order(v, ref, k);
            return;
        }
    }
    char name[SG_NAME_MAX * 4 + 1];
    size_t n = seg->key_len < sizeof name - 1 ? seg->key_len : sizeof name - 1;
    memcpy(name, seg->key, n);
    name[n] = '\0';
    problem(v, "reference to unknown step %s", sg_quote(name, q, sizeof q));
}

static void check_reference(vctx_t *v, const char *s) {
    char q[SG_QUOTE_MAX];
    sg_tseg_t root, next, more;
    const char *c = s + 1;
    sg_quote(s, q, sizeof q);
    if (!sg_tpath_well_formed(s)) {
        problem(v, "malformed reference %s: expected a path like \"$.input.items[0].id\" "
                   "(write \"$$\" for a literal \"$\")", q);
        return;
    }
    sg_tpath_next(&c, &root);
    int has_next = sg_tpath_next(&c, &next);
    if (seg_is(&root, "input"))
        return;
    if (seg_is(&root, "saga")) {
        if (has_next != 1 || !(seg_is(&next, "id") || seg_is(&next, "type")) ||
            sg_tpath_next(&c, &more) != 0)
            problem(v, "unknown saga field in %s: use $.saga.id or $.saga.type", q);
    } else if (seg_is(&root, "steps")) {
        if (has_next != 1 || next.is_index)
            problem(v, "%s needs a step name: $.steps.<step>", q);
        else
            check_step_reference(v, q, &next);
    } else {
        problem(v, "unknown root in %s: use $.saga.id, $.saga.type, $.input or "
                   "$.steps.<step>", q);
    }
}

static void check_templates(vctx_t *v, const json_t *val) {
    const char *key;
    json_t *item;
    size_t i, old;
    if (json_is_object(val)) {
        json_object_foreach((json_t *)val, key, item) {
            old = sg_jpath_push_key(&v->path, key);
            check_templates(v, item);
            sg_jpath_pop(&v->path, old);
        }
    } else if (json_is_array(val)) {
        json_array_foreach(val, i, item) {
            old = sg_jpath_push_index(&v->path, i);
            check_templates(v, item);
            sg_jpath_pop(&v->path, old);
        }
    } else if (json_is_string(val)) {
        const char *s = json_string_value(val);
        if (s[0] == '$' && s[1] != '$')
            check_reference(v, s);
    }
}

static void check_data(vctx_t *v, const json_t *val) {
    if (!json_is_object(val))
        problem(v, "expected an object");
    else
        check_templates(v, val);
}

/* ---- retry policies ---- */

static const field_t retry_fields[] = {
    {"max_attempts", false, check_positive_int},
    {"initial_backoff", false, check_duration},
    {"max_backoff", false, check_duration},
    {"multiplier", false, check_multiplier},
    {NULL, false, NULL},
};

static void check_retry(vctx_t *v, const json_t *val, const sg_retry_t *base) {
    char lo[32], hi[32];
    if (!check_object(v, val, retry_fields))
        return;
    sg_retry_t eff = *base;
    sg_retry_overlay(&eff, val, false);
    if (eff.max_backoff_ms < eff.initial_backoff_ms) {
        sg_duration_format(eff.max_backoff_ms, hi, sizeof hi);
        sg_duration_format(eff.initial_backoff_ms, lo, sizeof lo);
        problem(v, "max_backoff %s is less than initial_backoff %s", hi, lo);
    }
}

static void check_defaults_retry(vctx_t *v, const json_t *val) {
    sg_retry_t builtin = sg_retry_builtin(false);
    check_retry(v, val, &builtin);
}

static void check_step_retry(vctx_t *v, const json_t *val) {
    check_retry(v, val, &v->cmd_base);
}

static void check_compensation_retry(vctx_t *v, const json_t *val) {
    check_retry(v, val, &v->comp_base);
}

/* ---- steps ---- */

static const field_t command_fields[] = {
    {"type", true, check_type},
    {"channel", true, check_channel},
    {"data", false, check_data},
    {NULL, false, NULL},
};

static const field_t compensation_fields[] = {
    {"type", true, check_type},
    {"channel", true, check_channel},
    {"data", false, check_data},
    {"timeout", false, check_duration},
    {"retry", false, check_compensation_retry},
    {NULL, false, NULL},
};

static void check_command(vctx_t *v, const json_t *val) {
    v->in_compensation = false;
    check_object(v, val, command_fields);
}

static void check_compensation(vctx_t *v, const json_t *val) {
    char q[SG_QUOTE_MAX];
    if (v->pivot_stage >= 0 && v->stage > v->pivot_stage) {
        size_t k = v->stage_first[v->pivot_stage];
        problem(v, "a step after the pivot %s cannot have a compensation: "
                   "it would never be sent",
                quoted(v->steps[k].name, q, sizeof q));
    }
    v->in_compensation = true;
    check_object(v, val, compensation_fields);
    v->in_compensation = false;
}

static const field_t step_fields[] = {
    {"name", true, check_step_name},
    {"description", false, check_string},
    {"command", true, check_command},
    {"compensation", false, check_compensation},
    {"timeout", false, check_duration},
    {"retry", false, check_step_retry},
    {"pivot", false, check_pivot},
    {"parallel", false, check_nested_parallel}, /* only reached in a member */
    {NULL, false, NULL},
};

static void check_parallel(vctx_t *v, const json_t *val) {
    size_t j;
    json_t *item;
    if (!json_is_array(val)) {
        problem(v, "expected an array");
        return;
    }
    if (json_array_size(val) < 2)
        problem(v, "a parallel group needs at least 2 steps");
    json_array_foreach(val, j, item) {
        size_t old = sg_jpath_push_index(&v->path, j);
        v->member = (int)j;
        v->vstep = v->stage_first[v->stage] + 1 + j;
        check_object(v, item, step_fields);
        sg_jpath_pop(&v->path, old);
    }
    v->member = -1;
    v->vstep = v->stage_first[v->stage];
}

static const field_t group_fields[] = {
    {"name", true, check_step_name},
    {"description", false, check_string},
    {"parallel", true, check_parallel},
    {NULL, false, NULL},
};

static void check_steps(vctx_t *v, const json_t *val) {
    size_t i;
    json_t *entry;
    if (!json_is_array(val)) {
        problem(v, "expected an array");
        return;
    }
    if (json_array_size(val) == 0)
        problem(v, "a saga needs at least one step");
    json_array_foreach(val, i, entry) {
        size_t old = sg_jpath_push_index(&v->path, i);
        v->stage = (int)i;
        v->member = -1;
        v->vstep = v->stage_first[i];
        bool group = json_is_object(entry) && json_object_get(entry, "parallel");
        check_object(v, entry, group ? group_fields : step_fields);
        sg_jpath_pop(&v->path, old);
    }
}

/* ---- the saga ---- */

static const field_t defaults_fields[] = {
    {"timeout", false, check_duration},
    {"retry", false, check_defaults_retry},
    {NULL, false, NULL},
};

static void check_defaults(vctx_t *v, const json_t *val) {
    check_object(v, val, defaults_fields);
}

static const field_t saga_fields[] = {
    {"name", true, check_saga_name},
    {"version", true, check_positive_int},
    {"description", false, check_string},
    {"timeout", false, check_duration},
    {"defaults", false, check_defaults},
    {"steps", true, check_steps},
    {NULL, false, NULL},
};

/* ---- the first pass ---- */

static const char *name_of(const json_t *obj) {
    return json_string_value(json_object_get(obj, "name"));
}

static bool prescan(vctx_t *v, const json_t *body) {
    const json_t *steps = json_object_get(body, "steps");
    const json_t *defaults = json_object_get(body, "defaults");
    const json_t *retry = json_object_get(defaults, "retry");
    size_t i, j, n = 0, nentries = json_array_size(steps);
    json_t *entry, *member;

    v->pivot_stage = -1;
    v->cmd_base = sg_retry_builtin(false);
    v->comp_base = sg_retry_builtin(true);
    if (json_is_object(retry)) {
        sg_retry_overlay(&v->cmd_base, retry, false);
        sg_retry_overlay(&v->comp_base, retry, true);
    }
    json_array_foreach(steps, i, entry)
        n += 1 + json_array_size(json_object_get(entry, "parallel"));
    v->steps = calloc(n ? n : 1, sizeof *v->steps);
    v->stage_first = calloc(nentries ? nentries : 1, sizeof *v->stage_first);
    if (!v->steps || !v->stage_first)
        return false;
    json_array_foreach(steps, i, entry) {
        const json_t *par = json_object_get(entry, "parallel");
        v->stage_first[i] = v->nsteps;
        v->steps[v->nsteps++] = (vstep_t){name_of(entry), (int)i, -1, par != NULL};
        json_array_foreach(par, j, member)
            v->steps[v->nsteps++] = (vstep_t){name_of(member), (int)i, (int)j, false};
        if (!par && v->pivot_stage < 0 && json_is_true(json_object_get(entry, "pivot")))
            v->pivot_stage = (int)i;
    }
    return true;
}

size_t sg_def_validate(const char *file, const json_t *body, sg_def_errors_t *errs) {
    vctx_t v = {.file = file, .errs = errs, .member = -1};
    sg_jpath_init(&v.path, "$");
    if (!json_is_object(body))
        problem(&v, "expected an object");
    else if (!prescan(&v, body))
        problem(&v, "out of memory");
    else
        check_object(&v, body, saga_fields);
    free(v.steps);
    free(v.stage_first);
    return v.nerrors;
}
