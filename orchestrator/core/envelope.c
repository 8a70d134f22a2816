/* CloudEvents 1.0 JSON structured mode: decoding of incoming messages into
 * envelopes, with one precise reason for every refusal, and encoding of
 * outgoing events. Pure: no I/O, no clock, no randomness.
 *
 * Decoding runs in phases, cheapest and most basic first, so that the
 * reason names the first thing wrong with a message:
 *   size -> UTF-8 -> NUL bytes -> nesting depth -> JSON -> object ->
 *   common attributes -> type -> attributes of that type.
 * The depth is checked on the raw bytes before jansson sees them, so no
 * input can make the parser recurse deeper than SG_ENVELOPE_MAX_DEPTH. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "saga/envelope.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- reasons ---- */

/* Length of the longest valid UTF-8 prefix of s[0..len). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        unsigned cp = c & (0x3Fu >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

/* Fills errstr, cutting a multibyte character that truncation split, so
 * that the reason is always valid UTF-8 (it ends up in a text column). */
static sg_err_t refuse(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sg_err_t refuse(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (errstr && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
        size_t n = strlen(errstr);
        errstr[utf8_valid_prefix((const unsigned char *)errstr, n)] = '\0';
    }
    return SG_ERR_INVALID;
}

/* ---- raw-byte checks ---- */

/* True when the bytes nest arrays/objects deeper than 'limit'. Brackets
 * inside strings do not count. */
static bool nested_deeper_than(const char *s, size_t len, int limit) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit)
                return true;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return false;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* ---- attribute checks ---- */

/* NULL when 's' may be a known attribute's value, else the reason. */
static const char *attr_problem(const char *s) {
    size_t len = strlen(s);
    if (len == 0)
        return "is empty";
    if (len > SG_ENVELOPE_ATTR_MAX)
        return "is longer than " STR(SG_ENVELOPE_ATTR_MAX) " bytes";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return "contains a control character";
    return NULL;
}

/* Reads attribute 'name' of 'obj' into *dst (a copy). Absent is fine
 * unless 'required'. */
static sg_err_t take_attr(const json_t *obj, const char *name, bool required,
                          char **dst, char *errstr, size_t errstr_size) {
    const json_t *v = json_object_get(obj, name);
    if (!v) {
        if (required)
            return refuse(errstr, errstr_size, "missing attribute \"%s\"", name);
        return SG_OK;
    }
    if (!json_is_string(v))
        return refuse(errstr, errstr_size, "attribute \"%s\" must be a string, not %s",
                      name, json_kind(v));
    const char *problem = attr_problem(json_string_value(v));
    if (problem)
        return refuse(errstr, errstr_size, "attribute \"%s\" %s", name, problem);
    *dst = strdup(json_string_value(v));
    return *dst ? SG_OK : SG_ERR_NOMEM;
}

static bool is_json_media_type(const char *s) {
    size_t n = strcspn(s, ";");
    while (n > 0 && s[n - 1] == ' ')
        n--;
    if ((n == 16 && strncasecmp(s, "application/json", 16) == 0) ||
        (n == 9 && strncasecmp(s, "text/json", 9) == 0))
        return true;
    return n > 5 && strncasecmp(s + n - 5, "+json", 5) == 0 && memchr(s, '/', n);
}

/* ---- RFC 3339 ---- */

static bool digits(const char *s, int n, int *value) {
    *value = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        *value = *value * 10 + (s[i] - '0');
    }
    return true;
}

static int days_in_month(int year, int month) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

bool sg_envelope_time_valid(const char *t) {
    int y, mo, d, h, mi, s, oh, om;
    if (strlen(t) < 20 || !digits(t, 4, &y) || t[4] != '-' || !digits(t + 5, 2, &mo) ||
        t[7] != '-' || !digits(t + 8, 2, &d) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') ||
        !digits(t + 11, 2, &h) || t[13] != ':' || !digits(t + 14, 2, &mi) || t[16] != ':' ||
        !digits(t + 17, 2, &s))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60)
        return false;
    const char *p = t + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    if ((*p != '+' && *p != '-') || strlen(p) != 6 || !digits(p + 1, 2, &oh) || p[3] != ':' ||
        !digits(p + 4, 2, &om))
        return false;
    return oh <= 23 && om <= 59;
}

sg_err_t sg_envelope_format_time(int64_t time_ms, char *buf, size_t buf_size) {
    /* Years 0000-9999 only: RFC 3339 has four digits. */
    if (time_ms < -62167219200000LL || time_ms > 253402300799999LL || buf_size < 25)
        return SG_ERR_INVALID;
    time_t secs = (time_t)(time_ms / 1000);
    int ms = (int)(time_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return SG_ERR_INVALID;
    snprintf(buf, buf_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return SG_OK;
}

/* ---- W3C trace context ---- */

static bool lower_hex(const char *s, size_t n, bool *all_zero) {
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        if (s[i] != '0')
            *all_zero = false;
    }
    return true;
}

const char *sg_trace_check(const char *tp) {
    size_t len = strlen(tp);
    bool zero;
    if (len < SG_TRACEPARENT_LEN)
        return "too short";
    if (!lower_hex(tp, 2, &zero) || strncmp(tp, "ff", 2) == 0)
        return "bad version";
    if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return "bad separators";
    if (!lower_hex(tp + 3, 32, &zero) || zero)
        return "bad trace id";
    if (!lower_hex(tp + 36, 16, &zero) || zero)
        return "bad parent id";
    if (!lower_hex(tp + 53, 2, &zero))
        return "bad flags";
    if (strncmp(tp, "00", 2) == 0 ? len != SG_TRACEPARENT_LEN
                                  : len > SG_TRACEPARENT_LEN && tp[SG_TRACEPARENT_LEN] != '-')
        return "bad length";
    return NULL;
}

static void hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digit[] = "0123456789abcdef";
    bool zero = true;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = bytes[i];
        if (i == n - 1 && zero && b == 0)
            b = 1;
        if (b)
            zero = false;
        out[2 * i] = digit[b >> 4];
        out[2 * i + 1] = digit[b & 15];
    }
}

void sg_trace_new(const uint8_t trace_id[16], const uint8_t span_id[8],
                  char out[SG_TRACEPARENT_LEN + 1]) {
    memcpy(out, "00-", 3);
    hex(trace_id, 16, out + 3);
    out[35] = '-';
    hex(span_id, 8, out + 36);
    memcpy(out + 52, "-01", 4);
}

sg_err_t sg_trace_child(const char *parent, const uint8_t span_id[8],
                        char out[SG_TRACEPARENT_LEN + 1]) {
    if (!parent || sg_trace_check(parent))
        return SG_ERR_INVALID;
    memcpy(out, "00-", 3);
    memcpy(out + 3, parent + 3, 33); /* trace id and '-' */
    hex(span_id, 8, out + 36);
    out[52] = '-';
    memcpy(out + 53, parent + 53, 2);
    out[SG_TRACEPARENT_LEN] = '\0';
    return SG_OK;
}

/* ---- decoding ---- */

void sg_envelope_destroy(sg_envelope_t *env) {
    if (!env)
        return;
    char **strings[] = {&env->id, &env->source, &env->type, &env->time,
                        &env->datacontenttype, &env->sagatype, &env->sagaid,
                        &env->sagastep, &env->causationid, &env->replyto,
                        &env->traceparent, &env->error_code, &env->error_message,
                        &env->reason};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(*strings[i]);
    json_decref(env->data);
    free(env);
}

/* Bytes to a JSON object, or the reason they are not one. */
static sg_err_t parse_bytes(const char *buf, size_t len, size_t max_bytes, json_t **root,
                            char *errstr, size_t errstr_size) {
    if (max_bytes == 0)
        max_bytes = SG_ENVELOPE_DEFAULT_MAX_BYTES;
    if (len > max_bytes)
        return refuse(errstr, errstr_size, "message of %zu bytes exceeds the limit of %zu",
                      len, max_bytes);
    if (len == 0)
        return refuse(errstr, errstr_size, "not JSON: empty message");
    size_t valid = utf8_valid_prefix((const unsigned char *)buf, len);
    if (valid < len)
        return refuse(errstr, errstr_size, "not UTF-8: invalid byte sequence at offset %zu",
                      valid);
    const char *nul = memchr(buf, '\0', len);
    if (nul)
        return refuse(errstr, errstr_size, "not JSON: NUL byte at offset %zu",
                      (size_t)(nul - buf));
    if (nested_deeper_than(buf, len, SG_ENVELOPE_MAX_DEPTH))
        return refuse(errstr, errstr_size, "JSON nested deeper than %d levels",
                      SG_ENVELOPE_MAX_DEPTH);
    json_error_t jerr;
    *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root)
        return refuse(errstr, errstr_size, "not JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
    if (!json_is_object(*root)) {
        const char *kind = json_kind(*root);
        json_decref(*root);
        *root = NULL;
        return refuse(errstr, errstr_size,
                      "not a CloudEvent: the JSON value is %s, not an object%s", kind,
                      strcmp(kind, "an array") == 0 ? " (batches are not supported)" : "");
    }
    return SG_OK;
}

static sg_err_t take_data(const json_t *root, sg_envelope_t *env, char *errstr,
                          size_t errstr_size) {
    if (json_object_get(root, "data_base64"))
        return refuse(errstr, errstr_size,
                      "attribute \"data_base64\" is not supported: data must be a JSON object");
    json_t *data = json_object_get(root, "data");
    if (data && !json_is_null(data) && !json_is_object(data))
        return refuse(errstr, errstr_size, "attribute \"data\" must be an object, not %s",
                      json_kind(data));
    env->data = data && json_is_object(data) ? json_incref(data) : json_object();
    return env->data ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t take_common(const json_t *root, sg_envelope_t *env, char *errstr,
                            size_t errstr_size) {
    char *specversion = NULL;
    sg_err_t err = take_attr(root, "specversion", true, &specversion, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(specversion, "1.0") != 0) {
        err = refuse(errstr, errstr_size, "unsupported specversion \"%s\"", specversion);
        free(specversion);
        return err;
    }
    free(specversion);
    const struct {
        const char *name;
        bool required;
        char **dst;
    } attrs[] = {
        {"id", true, &env->id},
        {"source", true, &env->source},
        {"type", true, &env->type},
        {"time", false, &env->time},
        {"datacontenttype", false, &env->datacontenttype},
        {"sagatype", false, &env->sagatype},
        {"sagaid", false, &env->sagaid},
        {"sagastep", false, &env->sagastep},
        {"causationid", false, &env->causationid},
        {"replyto", false, &env->replyto},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if ((err = take_attr(root, attrs[i].name, attrs[i].required, attrs[i].dst, errstr,
                             errstr_size)))
            return err;
    if (env->time && !sg_envelope_time_valid(env->time))
        return refuse(errstr, errstr_size, "attribute \"time\" is not an RFC 3339 timestamp");
    if (env->datacontenttype && !is_json_media_type(env->datacontenttype))
        return refuse(errstr, errstr_size, "attribute \"datacontenttype\" is \"%s\", not JSON",
                      env->datacontenttype);
    return take_data(root, env, errstr, errstr_size);
}

/* traceparent: kept when valid (and, as any attribute sent on, of at most
 * SG_ENVELOPE_ATTR_MAX bytes without control characters: a later version
 * may carry more fields), dropped with a note otherwise. */
static sg_err_t take_traceparent(const json_t *root, sg_envelope_t *env) {
    const json_t *v = json_object_get(root, "traceparent");
    if (!v)
        return SG_OK;
    const char *why = !json_is_string(v) ? "not a string" : attr_problem(json_string_value(v));
    if (!why)
        why = sg_trace_check(json_string_value(v));
    if (why) {
        snprintf(env->note, sizeof env->note,
                 "ignored attribute \"traceparent\": %s", why);
        return SG_OK;
    }
    env->traceparent = strdup(json_string_value(v));
    return env->traceparent ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t need(const char *value, const char *name, const char *type, char *errstr,
                     size_t errstr_size) {
    if (value)
        return SG_OK;
    return refuse(errstr, errstr_size, "missing attribute \"%s\" for type \"%s\"", name, type);
}

/* Reads an optional string member of data into *dst, or 'dflt'. */
static sg_err_t data_string(const sg_envelope_t *env, const char *name, const char *dflt,
                            char **dst, char *errstr, size_t errstr_size) {
    const json_t *v = json_object_get(env->data, name);
    if (v && !json_is_string(v))
        return refuse(errstr, errstr_size, "attribute \"data.%s\" must be a string, not %s",
                      name, json_kind(v));
    *dst = strdup(v ? json_string_value(v) : dflt);
    return *dst ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t check_saga_id(const sg_envelope_t *env, char *errstr, size_t errstr_size) {
    if (strlen(env->saga_id) <= SG_ENVELOPE_SAGA_ID_MAX)
        return SG_OK;
    return refuse(errstr, errstr_size, "attribute \"%s\" is longer than %d bytes%s",
                  env->sagaid ? "sagaid" : "id", SG_ENVELOPE_SAGA_ID_MAX,
                  env->sagaid ? "" : " (it is the saga id)");
}

static sg_err_t classify_start(const json_t *root, sg_envelope_t *env, char *errstr,
                               size_t errstr_size) {
    env->kind = SG_ENVELOPE_START;
    env->saga_id = env->sagaid ? env->sagaid : env->id;
    sg_err_t err = need(env->sagatype, "sagatype", env->type, errstr, errstr_size);
    return err ? err : check_saga_id(env, errstr, errstr_size);
}

static sg_err_t classify_abort(const json_t *root, sg_envelope_t *env, char *errstr,
                               size_t errstr_size) {
    env->kind = SG_ENVELOPE_ABORT;
    env->saga_id = env->sagaid;
    sg_err_t err = need(env->sagaid, "sagaid", env->type, errstr, errstr_size);
    if (!err)
        err = check_saga_id(env, errstr, errstr_size);
    return err ? err : data_string(env, "reason", "", &env->reason, errstr, errstr_size);
}

static sg_err_t take_failure(sg_envelope_t *env, char *errstr, size_t errstr_size) {
    sg_err_t err = data_string(env, "code", "unspecified", &env->error_code, errstr, errstr_size);
    if (!err)
        err = data_string(env, "message", "", &env->error_message, errstr, errstr_size);
    if (err)
        return err;
    const json_t *v = json_object_get(env->data, "retryable");
    if (v && !json_is_boolean(v))
        return refuse(errstr, errstr_size,
                      "attribute \"data.retryable\" must be a boolean, not %s", json_kind(v));
    env->retryable = v && json_is_true(v);
    return SG_OK;
}

static sg_err_t classify_reply(const json_t *root, sg_envelope_t *env, char *errstr,
                               size_t errstr_size) {
    env->kind = SG_ENVELOPE_REPLY;
    env->saga_id = env->sagaid;
    char *outcome = NULL;
    sg_err_t err = need(env->sagaid, "sagaid", env->type, errstr, errstr_size);
    if (!err)
        err = check_saga_id(env, errstr, errstr_size);
    if (!err)
        err = need(env->sagastep, "sagastep", env->type, errstr, errstr_size);
    if (!err)
        err = need(env->causationid, "causationid", env->type, errstr, errstr_size);
    if (!err)
        err = take_attr(root, "outcome", false, &outcome, errstr, errstr_size);
    if (!err)
        err = need(outcome, "outcome", env->type, errstr, errstr_size);
    if (err)
        goto done;
    if (strcmp(outcome, "success") == 0) {
        env->outcome = SG_OUTCOME_SUCCESS;
    } else if (strcmp(outcome, "failure") == 0) {
        env->outcome = SG_OUTCOME_FAILURE;
        err = take_failure(env, errstr, errstr_size);
    } else {
        err = refuse(errstr, errstr_size,
                     "attribute \"outcome\" must be \"success\" or \"failure\", not \"%s\"",
                     outcome);
    }
done:
    free(outcome);
    return err;
}

static const struct {
    const char *type;
    sg_err_t (*classify)(const json_t *, sg_envelope_t *, char *, size_t);
} kinds[] = {
    {"saga.start", classify_start},
    {"saga.abort", classify_abort},
    {"saga.reply", classify_reply},
};

sg_err_t sg_envelope_decode(const void *buf, size_t len, size_t max_bytes,
                            sg_envelope_t **out, char *errstr, size_t errstr_size) {
    json_t *root = NULL;
    sg_envelope_t *env = NULL;
    *out = NULL;
    sg_err_t err = parse_bytes(buf, len, max_bytes, &root, errstr, errstr_size);
    if (err)
        return err;
    if (!(env = calloc(1, sizeof *env))) {
        err = SG_ERR_NOMEM;
        goto fail;
    }
    if ((err = take_common(root, env, errstr, errstr_size)))
        goto fail;
    if ((err = take_traceparent(root, env)))
        goto fail;
    size_t k = 0;
    while (k < sizeof kinds / sizeof kinds[0] && strcmp(env->type, kinds[k].type) != 0)
        k++;
    if (k == sizeof kinds / sizeof kinds[0])
        err = refuse(errstr, errstr_size, "unsupported type \"%s\"", env->type);
    else
        err = kinds[k].classify(root, env, errstr, errstr_size);
    if (err)
        goto fail;
    json_decref(root);
    *out = env;
    return SG_OK;
fail:
    if (err == SG_ERR_NOMEM)
        refuse(errstr, errstr_size, "out of memory");
    json_decref(root);
    sg_envelope_destroy(env);
    return err;
}

/* ---- encoding ---- */

/* True when 'v' nests no deeper than 'limit' levels. */
static bool depth_within(const json_t *v, int limit) {
    if (!json_is_object(v) && !json_is_array(v))
        return true;
    if (limit <= 0)
        return false;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!depth_within(json_array_get(v, i), limit - 1))
                return false;
        return true;
    }
    const char *key;
    const json_t *member;
    json_object_foreach((json_t *)v, key, member)
        if (!depth_within(member, limit - 1))
            return false;
    return true;
}

static sg_err_t check_fields(const sg_event_fields_t *ev, char *errstr, size_t errstr_size) {
    const struct {
        const char *name;
        const char *value;
        bool required;
    } attrs[] = {
        {"id", ev->id, true},          {"source", ev->source, true},
        {"type", ev->type, true},      {"sagaid", ev->sagaid, false},
        {"sagatype", ev->sagatype, false}, {"sagastep", ev->sagastep, false},
        {"causationid", ev->causationid, false}, {"outcome", ev->outcome, false},
        {"replyto", ev->replyto, false}, {"traceparent", ev->traceparent, false},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        if (!attrs[i].value) {
            if (attrs[i].required)
                return refuse(errstr, errstr_size, "missing attribute \"%s\"", attrs[i].name);
            continue;
        }
        const char *problem = attr_problem(attrs[i].value);
        if (problem)
            return refuse(errstr, errstr_size, "attribute \"%s\" %s", attrs[i].name, problem);
    }
    if (ev->outcome && strcmp(ev->outcome, "success") != 0 && strcmp(ev->outcome, "failure") != 0)
        return refuse(errstr, errstr_size, "attribute \"outcome\" must be \"success\" or \"failure\"");
    if (ev->traceparent && sg_trace_check(ev->traceparent))
        return refuse(errstr, errstr_size, "attribute \"traceparent\": %s",
                      sg_trace_check(ev->traceparent));
    if (ev->data && !json_is_object(ev->data))
        return refuse(errstr, errstr_size, "attribute \"data\" must be an object, not %s",
                      json_kind(ev->data));
    if (ev->data && !depth_within(ev->data, SG_ENVELOPE_MAX_DEPTH - 1))
        return refuse(errstr, errstr_size, "attribute \"data\" nested deeper than %d levels",
                      SG_ENVELOPE_MAX_DEPTH - 1);
    return SG_OK;
}

/* Sets obj[name] = value when value is not NULL; false on failure (invalid
 * UTF-8 or memory). */
static bool put(json_t *obj, const char *name, const char *value) {
    return !value || json_object_set_new(obj, name, json_string(value)) == 0;
}

sg_err_t sg_envelope_encode(const sg_event_fields_t *ev, char **out, size_t *out_len,
                            char *errstr, size_t errstr_size) {
    char time_text[32];
    *out = NULL;
    sg_err_t err = check_fields(ev, errstr, errstr_size);
    if (err)
        return err;
    if (ev->time_ms >= 0 && sg_envelope_format_time(ev->time_ms, time_text, sizeof time_text))
        return refuse(errstr, errstr_size, "attribute \"time\" out of range");
    json_t *obj = json_object();
    bool ok = obj && put(obj, "specversion", "1.0") && put(obj, "id", ev->id) &&
              put(obj, "source", ev->source) && put(obj, "type", ev->type) &&
              put(obj, "time", ev->time_ms >= 0 ? time_text : NULL) &&
              put(obj, "datacontenttype", ev->data ? "application/json" : NULL) &&
              put(obj, "sagaid", ev->sagaid) && put(obj, "sagatype", ev->sagatype) &&
              put(obj, "sagastep", ev->sagastep) && put(obj, "causationid", ev->causationid) &&
              put(obj, "outcome", ev->outcome) && put(obj, "replyto", ev->replyto) &&
              put(obj, "traceparent", ev->traceparent);
    if (ok && ev->data)
        ok = json_object_set(obj, "data", (json_t *)ev->data) == 0;
    if (ok)
        *out = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!*out)
        return refuse(errstr, errstr_size, "cannot encode event \"%s\": invalid UTF-8 or out of memory",
                      ev->id);
    *out_len = strlen(*out);
    return SG_OK;
}
