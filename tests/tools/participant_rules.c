/* Rules of the participant: which answer a command gets.
 *
 * A rule names a command type ("*" for any) and an action (succeed, fail,
 * retry, silent), optionally narrowed to a range of the command's attempt
 * numbers and to a condition on a field of its data, and decorated with a
 * delay, repeats, duplicate answers or a stale answer. Rules are tried in
 * the order given; the first that matches decides; a command no rule
 * matches succeeds.
 *
 * On the command line: TYPE:ACTION[:KEY=VALUE,...], for example
 *   payment.charge:fail:when=$.amount>1000
 *   fraud.check:retry:attempts=1-2
 *   shipping.ship:silent
 *   inventory.reserve:succeed:delay=2s,dupes=1,stale
 * In a rules file: a JSON array of objects with the same keys ("type",
 * "action", "attempts", "when", "delay", "repeat", "dupes", "stale",
 * "code", "message") and "result" (the success result to send). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "participant.h"
#include "saga/def.h"

static const struct {
    const char *name;
    pt_action_t action;
} ACTIONS[] = {
    {"succeed", PT_SUCCEED}, {"ok", PT_SUCCEED},   {"fail", PT_FAIL},
    {"retry", PT_RETRY},     {"silent", PT_SILENT}, {"drop", PT_SILENT},
};

const char *pt_action_str(pt_action_t action) {
    switch (action) {
    case PT_SUCCEED: return "succeed";
    case PT_FAIL: return "fail";
    case PT_RETRY: return "retry";
    case PT_SILENT: return "silent";
    }
    return "?";
}

static void rule_release(pt_rule_t *r) {
    free(r->type);
    free(r->when_path);
    free(r->when_value);
    free(r->code);
    free(r->message);
    json_decref(r->result);
    memset(r, 0, sizeof *r);
}

void pt_rules_release(pt_rules_t *rules) {
    for (size_t i = 0; i < rules->n; i++)
        rule_release(&rules->v[i]);
    free(rules->v);
    rules->v = NULL;
    rules->n = 0;
}

static sg_err_t fail_with(char *errstr, size_t errstr_size, const char *what, const char *value) {
    snprintf(errstr, errstr_size, "%s \"%s\"", what, value);
    return SG_ERR_INVALID;
}

static bool parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000)
        return false;
    *out = (int)v;
    return true;
}

/* "N", "N-M" or "N-" */
static sg_err_t parse_attempts(pt_rule_t *r, const char *s, char *errstr, size_t errstr_size) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *dash = strchr(buf, '-');
    if (!dash) {
        if (!parse_int(buf, &r->attempt_min) || r->attempt_min < 1)
            return fail_with(errstr, errstr_size, "bad attempts", s);
        r->attempt_max = r->attempt_min;
        return SG_OK;
    }
    *dash = '\0';
    if (!parse_int(buf, &r->attempt_min) || r->attempt_min < 1)
        return fail_with(errstr, errstr_size, "bad attempts", s);
    if (dash[1] == '\0') {
        r->attempt_max = 0;
        return SG_OK;
    }
    if (!parse_int(dash + 1, &r->attempt_max) || r->attempt_max < r->attempt_min)
        return fail_with(errstr, errstr_size, "bad attempts", s);
    return SG_OK;
}

/* "$.path", or "$.path OP VALUE" with OP one of = != > < >= <= */
static sg_err_t parse_when(pt_rule_t *r, const char *s, char *errstr, size_t errstr_size) {
    static const struct {
        const char *text;
        pt_op_t op;
    } OPS[] = {{">=", PT_OP_GE}, {"<=", PT_OP_LE}, {"!=", PT_OP_NE},
               {"=", PT_OP_EQ},  {">", PT_OP_GT},  {"<", PT_OP_LT}};
    if (s[0] != '$')
        return fail_with(errstr, errstr_size, "condition must start with a path like $.field:", s);
    size_t at = strcspn(s, "=!<>");
    r->when_op = PT_OP_EXISTS;
    if (s[at]) {
        for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
            size_t len = strlen(OPS[i].text);
            if (!strncmp(s + at, OPS[i].text, len)) {
                r->when_op = OPS[i].op;
                r->when_value = strdup(s + at + len);
                break;
            }
        }
        if (r->when_op == PT_OP_EXISTS)
            return fail_with(errstr, errstr_size, "bad condition", s);
    }
    r->when_path = strndup(s, at);
    return SG_OK;
}

static sg_err_t parse_action(pt_rule_t *r, const char *s, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++) {
        if (!strcmp(s, ACTIONS[i].name)) {
            r->action = ACTIONS[i].action;
            return SG_OK;
        }
    }
    return fail_with(errstr, errstr_size, "unknown action (succeed, fail, retry, silent)", s);
}

/* One KEY=VALUE option of a rule; 'value' is NULL for a bare key. */
static sg_err_t set_option(pt_rule_t *r, const char *key, const char *value, char *errstr,
                           size_t errstr_size) {
    if (!strcmp(key, "stale")) {
        r->stale = !value || !strcmp(value, "true") || !strcmp(value, "1");
        return SG_OK;
    }
    if (!value)
        return fail_with(errstr, errstr_size, "option needs a value:", key);
    if (!strcmp(key, "attempts"))
        return parse_attempts(r, value, errstr, errstr_size);
    if (!strcmp(key, "when"))
        return parse_when(r, value, errstr, errstr_size);
    if (!strcmp(key, "delay")) {
        char why[128];
        if (sg_duration_parse(value, &r->delay_ms, why, sizeof why))
            return fail_with(errstr, errstr_size, "bad delay", value);
        return SG_OK;
    }
    if (!strcmp(key, "repeat")) {
        if (!parse_int(value, &r->repeat) || r->repeat < 1)
            return fail_with(errstr, errstr_size, "bad repeat", value);
        return SG_OK;
    }
    if (!strcmp(key, "dupes")) {
        if (!parse_int(value, &r->dupes))
            return fail_with(errstr, errstr_size, "bad dupes", value);
        return SG_OK;
    }
    if (!strcmp(key, "code")) {
        free(r->code);
        r->code = strdup(value);
        return SG_OK;
    }
    if (!strcmp(key, "message")) {
        free(r->message);
        r->message = strdup(value);
        return SG_OK;
    }
    return fail_with(errstr, errstr_size, "unknown rule option", key);
}

static sg_err_t push(pt_rules_t *rules, pt_rule_t *r) {
    pt_rule_t *v = realloc(rules->v, (rules->n + 1) * sizeof *v);
    if (!v)
        return SG_ERR_NOMEM;
    rules->v = v;
    rules->v[rules->n++] = *r;
    return SG_OK;
}

static sg_err_t parse_options(pt_rule_t *r, char *opts, char *errstr, size_t errstr_size) {
    for (char *opt = opts, *next; opt; opt = next) {
        next = strchr(opt, ',');
        if (next)
            *next++ = '\0';
        if (!*opt)
            continue;
        char *eq = strchr(opt, '=');
        if (eq)
            *eq = '\0';
        sg_err_t err = set_option(r, opt, eq ? eq + 1 : NULL, errstr, errstr_size);
        if (err)
            return err;
    }
    return SG_OK;
}

sg_err_t pt_rules_add_spec(pt_rules_t *rules, const char *spec, char *errstr, size_t errstr_size) {
    pt_rule_t r = {.repeat = 1};
    char *copy = strdup(spec);
    sg_err_t err = SG_ERR_INVALID;
    if (!copy)
        return SG_ERR_NOMEM;
    char *action = strchr(copy, ':');
    if (!action) {
        fail_with(errstr, errstr_size, "rule is not TYPE:ACTION[:OPTIONS]:", spec);
        goto fail;
    }
    *action++ = '\0';
    char *opts = strchr(action, ':');
    if (opts)
        *opts++ = '\0';
    if (!*copy) {
        fail_with(errstr, errstr_size, "rule without a type:", spec);
        goto fail;
    }
    r.type = strdup(copy);
    if ((err = parse_action(&r, action, errstr, errstr_size)))
        goto fail;
    if (opts && (err = parse_options(&r, opts, errstr, errstr_size)))
        goto fail;
    if ((err = push(rules, &r)))
        goto fail;
    free(copy);
    return SG_OK;
fail:
    rule_release(&r);
    free(copy);
    return err ? err : SG_ERR_INVALID;
}

/* A value of a rules file object as option text: strings as they are,
 * numbers and booleans written out. */
static bool value_text(const json_t *v, char *buf, size_t size) {
    if (json_is_string(v))
        snprintf(buf, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    else
        return false;
    return true;
}

static sg_err_t rule_from_json(pt_rules_t *rules, const json_t *obj, char *errstr,
                               size_t errstr_size) {
    pt_rule_t r = {.repeat = 1};
    sg_err_t err = SG_ERR_INVALID;
    const char *key;
    json_t *v;
    char text[1024];
    if (!json_is_object(obj)) {
        snprintf(errstr, errstr_size, "a rule must be a JSON object");
        return SG_ERR_INVALID;
    }
    json_object_foreach((json_t *)obj, key, v) {
        if (!strcmp(key, "result")) {
            json_decref(r.result);
            r.result = json_incref(v);
        } else if (!value_text(v, text, sizeof text)) {
            fail_with(errstr, errstr_size, "rule value must be a string, number or boolean:", key);
            goto fail;
        } else if (!strcmp(key, "type")) {
            free(r.type);
            r.type = strdup(text);
        } else if (!strcmp(key, "action")) {
            if ((err = parse_action(&r, text, errstr, errstr_size)))
                goto fail;
        } else if ((err = set_option(&r, key, text, errstr, errstr_size))) {
            goto fail;
        }
    }
    if (!r.type || !r.action) {
        snprintf(errstr, errstr_size, "a rule needs \"type\" and \"action\"");
        err = SG_ERR_INVALID;
        goto fail;
    }
    if ((err = push(rules, &r)))
        goto fail;
    return SG_OK;
fail:
    rule_release(&r);
    return err ? err : SG_ERR_INVALID;
}

sg_err_t pt_rules_add_file(pt_rules_t *rules, const char *path, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(errstr, errstr_size, "cannot read rules '%s': %s (line %d)", path, jerr.text,
                 jerr.line);
        return SG_ERR_INVALID;
    }
    json_t *list = json_is_object(root) ? json_object_get(root, "rules") : root;
    sg_err_t err = SG_OK;
    if (!json_is_array(list)) {
        snprintf(errstr, errstr_size, "rules '%s': expected an array of rules", path);
        err = SG_ERR_INVALID;
    }
    size_t i;
    json_t *obj;
    json_array_foreach(list, i, obj) {
        if (err)
            break;
        char why[512];
        if ((err = rule_from_json(rules, obj, why, sizeof why)))
            snprintf(errstr, errstr_size, "rules '%s': rule %zu: %s", path, i + 1, why);
    }
    json_decref(root);
    return err;
}

/* ---- matching ---- */

static bool number_text(const char *s, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return !errno && end != s && *end == '\0';
}

static bool compare(const json_t *v, pt_op_t op, const char *want) {
    if (op == PT_OP_EXISTS)
        return v && !json_is_null(v) && !json_is_false(v);
    if (!v)
        return op == PT_OP_NE;
    double a, b;
    int cmp;
    if (json_is_number(v) && number_text(want, &b)) {
        a = json_number_value(v);
        cmp = a < b ? -1 : a > b ? 1 : 0;
    } else if (json_is_string(v)) {
        cmp = strcmp(json_string_value(v), want);
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        cmp = text ? strcmp(text, want) : 1;
        free(text);
    }
    switch (op) {
    case PT_OP_EQ: return cmp == 0;
    case PT_OP_NE: return cmp != 0;
    case PT_OP_GT: return cmp > 0;
    case PT_OP_LT: return cmp < 0;
    case PT_OP_GE: return cmp >= 0;
    case PT_OP_LE: return cmp <= 0;
    case PT_OP_EXISTS: break;
    }
    return false;
}

static bool rule_matches(const pt_rule_t *r, const char *type, int attempt, const json_t *data) {
    if (strcmp(r->type, "*") && strcmp(r->type, type))
        return false;
    if (r->attempt_min && attempt < r->attempt_min)
        return false;
    if (r->attempt_max && attempt > r->attempt_max)
        return false;
    if (r->when_path && !compare(sg_template_lookup(data, r->when_path), r->when_op,
                                 r->when_value ? r->when_value : ""))
        return false;
    return true;
}

const pt_rule_t *pt_rules_match(const pt_rules_t *rules, const char *type, int attempt,
                                const json_t *data) {
    for (size_t i = 0; i < rules->n; i++)
        if (rule_matches(&rules->v[i], type, attempt, data))
            return &rules->v[i];
    return NULL;
}

/* ---- built-in results ---- */

/* A value derived from the saga and step: "<prefix>-<saga id>". */
static json_t *derived(const char *prefix, const char *saga_id) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s-%s", prefix, saga_id);
    return json_string(buf);
}

json_t *pt_default_result(const char *type, const char *step, const char *saga_id, bool undo,
                          const json_t *data) {
    static const struct {
        const char *type;
        const char *field;
        const char *prefix;
    } IDS[] = {
        {"inventory.reserve", "reservation_id", "res"},
        {"payment.charge", "charge_id", "ch"},
        {"travel.payment.charge", "charge_id", "ch"},
        {"shipping.ship", "tracking_id", "trk"},
        {"greeting.compose", "draft_id", "draft"},
        {"travel.flight.book", "booking_ref", "bk"},
        {"travel.hotel.book", "reservation", "htl"},
        {"travel.car.rent", "rental_id", "car"},
    };
    if (undo)
        return json_pack("{s:b}", "undone", 1);
    json_t *res = json_object();
    char field[128];
    snprintf(field, sizeof field, "%s_id", step ? step : "step");
    json_object_set_new(res, field, derived(step ? step : "step", saga_id));
    for (size_t i = 0; i < sizeof IDS / sizeof IDS[0]; i++)
        if (!strcmp(type, IDS[i].type))
            json_object_set_new(res, IDS[i].field, derived(IDS[i].prefix, saga_id));
    if (!strcmp(type, "greeting.compose")) {
        const json_t *to = json_object_get(data, "to");
        char text[512];
        snprintf(text, sizeof text, "Hello, %s!", json_is_string(to) ? json_string_value(to) : "you");
        json_object_set_new(res, "text", json_string(text));
    } else if (!strcmp(type, "travel.flight.book")) {
        json_object_set_new(res, "legs", json_pack("[{s:s},{s:s}]", "number", "SG101", "number", "SG102"));
    } else if (!strcmp(type, "travel.tickets.issue")) {
        json_object_set_new(res, "tickets", json_pack("[o]", derived("tkt", saga_id)));
    }
    return res;
}
