/* The definition loader: text -> JSON (duplicate keys refused, with their
 * line and column) -> validation (def_validate.c) -> an immutable sg_def_t
 * with every inherited value resolved, and the SHA-256 of the canonical
 * JSON (keys sorted, no whitespace), which whitespace and key order do not
 * change and any other edit does.
 *
 * Inheritance, field by field: a command's timeout is step.timeout, else
 * defaults.timeout, else 30s; its retry is the built-in policy (3 attempts,
 * 200ms, 10s, x2) <- defaults.retry <- step.retry. A compensation's retry
 * is the built-in policy with 10 attempts <- the backoff fields of
 * defaults.retry <- compensation.retry; its timeout is
 * compensation.timeout, else the step's. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/def_internal.h"

#define DEF_FILE_MAX (16u * 1024 * 1024)

sg_retry_t sg_retry_builtin(bool compensation) {
    return (sg_retry_t){
        .max_attempts = compensation ? SG_DEFAULT_COMP_MAX_ATTEMPTS : SG_DEFAULT_MAX_ATTEMPTS,
        .initial_backoff_ms = SG_DEFAULT_INITIAL_BACKOFF_MS,
        .max_backoff_ms = SG_DEFAULT_MAX_BACKOFF_MS,
        .multiplier = SG_DEFAULT_MULTIPLIER,
    };
}

void sg_retry_overlay(sg_retry_t *r, const json_t *obj, bool backoff_only) {
    const json_t *attempts = json_object_get(obj, "max_attempts");
    const json_t *mult = json_object_get(obj, "multiplier");
    if (!backoff_only && json_is_integer(attempts) && json_integer_value(attempts) >= 1 &&
        json_integer_value(attempts) <= INT_MAX)
        r->max_attempts = (int)json_integer_value(attempts);
    r->initial_backoff_ms =
        sg_duration_or(json_object_get(obj, "initial_backoff"), r->initial_backoff_ms);
    r->max_backoff_ms = sg_duration_or(json_object_get(obj, "max_backoff"), r->max_backoff_ms);
    if (json_is_number(mult) && json_number_value(mult) >= 1.0)
        r->multiplier = json_number_value(mult);
}

/* ---- building a definition from a valid document ---- */

static char *dup_or_empty(const char *s) {
    return strdup(s ? s : "");
}

static const char *str_of(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

static sg_err_t build_action(sg_action_t *a, const json_t *obj, int64_t timeout_ms,
                             sg_retry_t retry) {
    char err[256];
    const json_t *data = json_object_get(obj, "data");
    a->timeout_ms = timeout_ms;
    a->retry = retry;
    a->type = dup_or_empty(str_of(obj, "type"));
    a->data = data ? json_deep_copy(data) : json_object();
    if (!a->type || !a->data)
        return SG_ERR_NOMEM;
    return sg_channel_parse(str_of(obj, "channel"), &a->channel, err, sizeof err);
}

typedef struct inherit {
    int64_t timeout_ms;
    sg_retry_t cmd, comp;
} inherit_t;

static sg_err_t build_step(sg_def_t *def, const json_t *obj, int stage, const inherit_t *in) {
    sg_step_t *step = &def->steps[def->nsteps];
    const json_t *comp = json_object_get(obj, "compensation");
    int64_t timeout_ms = sg_duration_or(json_object_get(obj, "timeout"), in->timeout_ms);
    sg_retry_t retry = in->cmd, comp_retry = in->comp;
    sg_err_t err;

    step->index = def->nsteps++;
    step->stage = stage;
    step->pivot = json_is_true(json_object_get(obj, "pivot"));
    if (step->pivot)
        def->pivot_step = step->index;
    if (!(step->name = dup_or_empty(str_of(obj, "name"))))
        return SG_ERR_NOMEM;
    sg_retry_overlay(&retry, json_object_get(obj, "retry"), false);
    if ((err = build_action(&step->command, json_object_get(obj, "command"), timeout_ms, retry)))
        return err;
    if (!comp)
        return SG_OK;
    step->has_compensation = true;
    sg_retry_overlay(&comp_retry, json_object_get(comp, "retry"), false);
    return build_action(&step->compensation, comp,
                        sg_duration_or(json_object_get(comp, "timeout"), timeout_ms),
                        comp_retry);
}

static sg_err_t build_steps(sg_def_t *def, const json_t *steps, const inherit_t *in) {
    size_t i, j, n = 0;
    json_t *entry, *member;
    sg_err_t err;

    json_array_foreach(steps, i, entry) {
        const json_t *par = json_object_get(entry, "parallel");
        n += par ? json_array_size(par) : 1;
    }
    def->steps = calloc(n, sizeof *def->steps);
    def->stages = calloc(json_array_size(steps), sizeof *def->stages);
    if (!def->steps || !def->stages)
        return SG_ERR_NOMEM;
    json_array_foreach(steps, i, entry) {
        const json_t *par = json_object_get(entry, "parallel");
        sg_stage_t *stage = &def->stages[def->nstages++];
        stage->parallel = par != NULL;
        stage->first = def->nsteps;
        if (!(stage->name = dup_or_empty(str_of(entry, "name"))))
            return SG_ERR_NOMEM;
        if (!par && (err = build_step(def, entry, (int)i, in)))
            return err;
        json_array_foreach(par, j, member) {
            if ((err = build_step(def, member, (int)i, in)))
                return err;
        }
        stage->count = def->nsteps - stage->first;
    }
    return SG_OK;
}

static sg_err_t build_hash(sg_def_t *def) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";

    def->canonical = json_dumps(def->body, JSON_SORT_KEYS | JSON_COMPACT);
    if (!def->canonical)
        return SG_ERR_NOMEM;
    if (!EVP_Digest(def->canonical, strlen(def->canonical), md, &mdlen, EVP_sha256(), NULL) ||
        mdlen != 32)
        return SG_ERR_INTERNAL;
    for (unsigned int i = 0; i < mdlen; i++) {
        def->sha256[2 * i] = hex[md[i] >> 4];
        def->sha256[2 * i + 1] = hex[md[i] & 15];
    }
    def->sha256[64] = '\0';
    return SG_OK;
}

/* Takes a reference to 'body'. The document must have passed validation. */
static sg_err_t build(sg_def_t *def, json_t *body, const char *file) {
    const json_t *defaults = json_object_get(body, "defaults");
    const json_t *retry = json_object_get(defaults, "retry");
    inherit_t in = {
        .timeout_ms = sg_duration_or(json_object_get(defaults, "timeout"),
                                     SG_DEFAULT_TIMEOUT_MS),
        .cmd = sg_retry_builtin(false),
        .comp = sg_retry_builtin(true),
    };
    sg_err_t err;

    def->body = json_incref(body);
    def->pivot_step = -1;
    sg_retry_overlay(&in.cmd, retry, false);
    sg_retry_overlay(&in.comp, retry, true);
    def->version = (int)json_integer_value(json_object_get(body, "version"));
    def->timeout_ms = sg_duration_or(json_object_get(body, "timeout"), 0);
    if (!(def->name = dup_or_empty(str_of(body, "name"))) ||
        !(def->description = dup_or_empty(str_of(body, "description"))) ||
        !(def->file = dup_or_empty(file)))
        return SG_ERR_NOMEM;
    if ((err = build_steps(def, json_object_get(body, "steps"), &in)))
        return err;
    return build_hash(def);
}

/* ---- loading ---- */

static sg_err_t load(const char *shown, const char *file, const char *text, size_t len,
                     sg_def_t **out, sg_def_errors_t *errs) {
    json_error_t jerr;
    sg_err_t err;

    *out = NULL;
    /* Some editors start UTF-8 files with a byte order mark: not JSON. */
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
        text += 3;
        len -= 3;
    }
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!body) {
        sg_def_errors_addf(errs, "%s: line %d, column %d: %s", shown, jerr.line, jerr.column,
                           jerr.text);
        return SG_ERR_INVALID;
    }
    if (sg_def_validate(shown, body, errs) > 0) {
        json_decref(body);
        return SG_ERR_INVALID;
    }
    sg_def_t *def = calloc(1, sizeof *def);
    if (!def) {
        err = SG_ERR_NOMEM;
        goto fail;
    }
    if ((err = build(def, body, file)))
        goto fail;
    json_decref(body);
    *out = def;
    return SG_OK;
fail:
    sg_def_errors_addf(errs, "%s: cannot load definition: %s", shown, sg_err_str(err));
    sg_def_destroy(def);
    json_decref(body);
    return err;
}

sg_err_t sg_def_load_string(const char *file, const char *text, size_t len,
                            sg_def_t **out, sg_def_errors_t *errs) {
    const char *shown = file && *file ? sg_base_name(file) : "<string>";
    return load(shown, file, text, len, out, errs);
}

static sg_err_t read_file(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    size_t cap = 8192, n = 0;
    char *buf = NULL;
    if (!f)
        return SG_ERR_IO;
    for (;;) {
        char *grown = realloc(buf, cap);
        if (!grown)
            goto fail;
        buf = grown;
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f))
            goto fail;
        if (n < cap)
            break;
        if (cap >= DEF_FILE_MAX) {
            errno = EFBIG;
            goto fail;
        }
        cap *= 2;
    }
    fclose(f);
    *text = buf;
    *len = n;
    return SG_OK;
fail:
    if (!errno)
        errno = ENOMEM;
    free(buf);
    fclose(f);
    return SG_ERR_IO;
}

sg_err_t sg_def_load_file(const char *path, sg_def_t **out, sg_def_errors_t *errs) {
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    errno = 0;
    if (read_file(path, &text, &len) != SG_OK) {
        sg_def_errors_addf(errs, "%s: cannot read file: %s", sg_base_name(path),
                           errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
        return SG_ERR_IO;
    }
    sg_err_t err = load(sg_base_name(path), path, text, len, out, errs);
    free(text);
    return err;
}

/* ---- the definition ---- */

static void action_release(sg_action_t *a) {
    free(a->type);
    sg_channel_release(&a->channel);
    json_decref(a->data);
}

void sg_def_destroy(sg_def_t *def) {
    if (!def)
        return;
    for (int i = 0; i < def->nsteps; i++) {
        free(def->steps[i].name);
        action_release(&def->steps[i].command);
        if (def->steps[i].has_compensation)
            action_release(&def->steps[i].compensation);
    }
    for (int i = 0; i < def->nstages; i++)
        free(def->stages[i].name);
    free(def->steps);
    free(def->stages);
    free(def->name);
    free(def->description);
    free(def->file);
    json_decref(def->body);
    free(def->canonical);
    free(def);
}

const sg_step_t *sg_def_step(const sg_def_t *def, const char *name) {
    for (int i = 0; def && name && i < def->nsteps; i++)
        if (!strcmp(def->steps[i].name, name))
            return &def->steps[i];
    return NULL;
}
