/* sagad's configuration: one table of known keys drives the unknown-key
 * check, the SAGA_* environment overrides and the typed extraction, so a new
 * setting is one row. Every problem is reported at once. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga/config.h"
#include "saga/def.h"
#include "saga/redact.h"

typedef enum { K_STRING, K_INT, K_DURATION, K_CHANNELS, K_PROPERTIES, K_ENUM } kind_t;

static const struct key {
    const char *path; /* dotted path in the file */
    kind_t kind;
    const char *choices; /* K_ENUM: "|a|b|" */
} keys[] = {
    {"database_url", K_STRING, NULL},
    {"sagas_dir", K_STRING, NULL},
    {"migrations_dir", K_STRING, NULL},
    {"kafka.brokers", K_STRING, NULL},
    {"kafka.group_id", K_STRING, NULL},
    {"kafka.properties", K_PROPERTIES, NULL},
    {"amqp.url", K_STRING, NULL},
    {"amqp.prefetch", K_INT, NULL},
    {"inputs", K_CHANNELS, NULL},
    {"reply_to.kafka", K_STRING, NULL},
    {"reply_to.amqp", K_STRING, NULL},
    {"events", K_STRING, NULL},
    {"http.listen", K_STRING, NULL},
    {"log.format", K_ENUM, "|json|text|"},
    {"log.level", K_ENUM, "|debug|info|warn|error|"},
    {"max_message_bytes", K_INT, NULL},
    {"batch.max", K_INT, NULL},
    {"batch.wait", K_DURATION, NULL},
    {"retention.inbox", K_DURATION, NULL},
    {"retention.history", K_DURATION, NULL},
};
#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct problems {
    char *buf;
    size_t size;
    size_t len;
    int count;
} problems_t;

static void problem(problems_t *pr, const char *where, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(problems_t *pr, const char *where, const char *key, const char *fmt, ...) {
    pr->count++;
    if (pr->size == 0 || pr->len >= pr->size - 1)
        return;
    int n = snprintf(pr->buf + pr->len, pr->size - pr->len, "%s%s: %s: ",
                     pr->len ? "\n" : "", where, key);
    if (n < 0 || (size_t)n >= pr->size - pr->len) {
        pr->len = pr->size - 1;
        return;
    }
    pr->len += (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(pr->buf + pr->len, pr->size - pr->len, fmt, ap);
    va_end(ap);
    pr->len = (n < 0 || (size_t)n >= pr->size - pr->len) ? pr->size - 1 : pr->len + (size_t)n;
}

/* "kafka.group_id" -> "SAGA_KAFKA_GROUP_ID" */
static void env_name(const char *path, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "SAGA_");
    for (const char *p = path; *p && n + 1 < size; p++)
        buf[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

static const char *env_lookup(char *const *envp, const char *name) {
    if (!envp)
        return getenv(name);
    size_t n = strlen(name);
    for (char *const *e = envp; *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* The JSON value at a dotted path; with 'create', makes the objects on the way. */
static json_t *at_path(json_t *root, const char *path, bool create, json_t *set) {
    char part[64];
    json_t *obj = root;
    for (;;) {
        size_t n = strcspn(path, ".");
        snprintf(part, sizeof part, "%.*s", (int)n, path);
        if (!path[n]) {
            if (set)
                json_object_set_new(obj, part, set);
            return json_object_get(obj, part);
        }
        json_t *next = json_object_get(obj, part);
        if (!json_is_object(next)) {
            if (!create)
                return NULL;
            next = json_object();
            json_object_set_new(obj, part, next);
        }
        obj = next;
        path += n + 1;
    }
}

/* An environment value becomes the JSON value the file would hold. */
static json_t *env_value(const struct key *k, const char *v) {
    if (k->kind == K_INT) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return json_string(v); /* reported as "expected an integer" */
        return json_integer(n);
    }
    if (k->kind == K_CHANNELS) {
        json_t *arr = json_array();
        const char *p = v;
        while (*p) {
            size_t n = strcspn(p, ",");
            if (n)
                json_array_append_new(arr, json_stringn(p, n));
            p += n + (p[n] == ',');
        }
        return arr;
    }
    return json_string(v);
}

static void check_unknown(json_t *obj, const char *prefix, const char *file, problems_t *pr) {
    const char *name;
    json_t *val;
    json_object_foreach(obj, name, val) {
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
        bool known = false, parent = false;
        size_t plen = strlen(path);
        for (size_t i = 0; i < NKEYS; i++) {
            if (!strcmp(keys[i].path, path))
                known = true;
            else if (!strncmp(keys[i].path, path, plen) && keys[i].path[plen] == '.')
                parent = true;
        }
        if (known)
            continue;
        if (parent && json_is_object(val))
            check_unknown(val, path, file, pr);
        else if (parent)
            problem(pr, file, path, "expected an object");
        else
            problem(pr, file, path, "unknown key");
    }
}

static char *dup_or(const json_t *v, const char *dflt) {
    const char *s = json_is_string(v) ? json_string_value(v) : dflt;
    return s ? strdup(s) : NULL;
}

static void check_channel(const char *where, const char *key, const char *text,
                          problems_t *pr) {
    sg_channel_t ch;
    char err[256];
    if (sg_channel_parse(text, &ch, err, sizeof err) != SG_OK)
        problem(pr, where, key, "%s", err);
    else
        sg_channel_release(&ch);
}

/* Type checks of one key; 'where' is the file or the variable it came from. */
static void check_type(const struct key *k, json_t *v, const char *where, problems_t *pr) {
    char err[256];
    int64_t ms;
    switch (k->kind) {
    case K_STRING:
        if (!json_is_string(v))
            problem(pr, where, k->path, "expected a string");
        break;
    case K_ENUM:
        if (!json_is_string(v)) {
            problem(pr, where, k->path, "expected a string");
        } else {
            char probe[64];
            snprintf(probe, sizeof probe, "|%s|", json_string_value(v));
            if (!strstr(k->choices, probe))
                problem(pr, where, k->path, "\"%s\" is not one of %s", json_string_value(v),
                        k->choices);
        }
        break;
    case K_INT:
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            problem(pr, where, k->path, "expected a positive integer");
        break;
    case K_DURATION:
        if (!json_is_string(v))
            problem(pr, where, k->path, "expected a duration such as \"2ms\" or \"168h\"");
        else if (sg_duration_parse(json_string_value(v), &ms, err, sizeof err) != SG_OK)
            problem(pr, where, k->path, "%s", err);
        break;
    case K_CHANNELS: {
        size_t i;
        json_t *c;
        if (!json_is_array(v)) {
            problem(pr, where, k->path, "expected an array of channels");
            break;
        }
        json_array_foreach(v, i, c) {
            char key[64];
            snprintf(key, sizeof key, "inputs[%zu]", i);
            if (!json_is_string(c))
                problem(pr, where, key, "expected a channel string");
            else
                check_channel(where, key, json_string_value(c), pr);
        }
        break;
    }
    case K_PROPERTIES: {
        const char *name;
        json_t *p;
        if (!json_is_object(v)) {
            problem(pr, where, k->path, "expected an object of strings");
            break;
        }
        json_object_foreach(v, name, p) if (!json_is_string(p))
            problem(pr, where, k->path, "\"%s\": expected a string", name);
        break;
    }
    }
}

static int64_t duration_or(json_t *v, int64_t dflt) {
    int64_t ms;
    char err[64];
    if (json_is_string(v) && sg_duration_parse(json_string_value(v), &ms, err, sizeof err) == SG_OK)
        return ms;
    return dflt;
}

/* Fills 'cfg' from the checked tree: defaults where a key is absent. */
static void extract(json_t *root, sg_config_t *cfg) {
    cfg->database_url = dup_or(at_path(root, "database_url", false, NULL), NULL);
    cfg->sagas_dir = dup_or(at_path(root, "sagas_dir", false, NULL), "sagas");
    cfg->migrations_dir = dup_or(at_path(root, "migrations_dir", false, NULL), NULL);
    cfg->kafka_brokers = dup_or(at_path(root, "kafka.brokers", false, NULL), NULL);
    if (cfg->kafka_brokers && !*cfg->kafka_brokers) {
        free(cfg->kafka_brokers);
        cfg->kafka_brokers = NULL;
    }
    cfg->kafka_group_id = dup_or(at_path(root, "kafka.group_id", false, NULL), "sagad");
    cfg->amqp_url = dup_or(at_path(root, "amqp.url", false, NULL), NULL);
    if (cfg->amqp_url && !*cfg->amqp_url) {
        free(cfg->amqp_url);
        cfg->amqp_url = NULL;
    }
    json_t *v = at_path(root, "amqp.prefetch", false, NULL);
    cfg->amqp_prefetch = json_is_integer(v) ? (int)json_integer_value(v) : 256;
    cfg->reply_to_kafka = dup_or(at_path(root, "reply_to.kafka", false, NULL), "kafka:saga.replies");
    cfg->reply_to_amqp = dup_or(at_path(root, "reply_to.amqp", false, NULL), "amqp:/saga.replies");
    cfg->events = dup_or(at_path(root, "events", false, NULL),
                         cfg->kafka_brokers || !cfg->amqp_url ? "kafka:saga.events"
                                                              : "amqp:/saga.events");
    cfg->http_listen = dup_or(at_path(root, "http.listen", false, NULL), "127.0.0.1:9464");
    v = at_path(root, "log.format", false, NULL);
    cfg->log_format = json_is_string(v) && !strcmp(json_string_value(v), "text") ? SG_LOG_TEXT
                                                                                 : SG_LOG_JSON;
    v = at_path(root, "log.level", false, NULL);
    const char *lvl = json_is_string(v) ? json_string_value(v) : "info";
    cfg->log_level = !strcmp(lvl, "debug")  ? SG_LOG_DEBUG
                     : !strcmp(lvl, "warn") ? SG_LOG_WARN
                     : !strcmp(lvl, "error") ? SG_LOG_ERROR
                                             : SG_LOG_INFO;
    v = at_path(root, "max_message_bytes", false, NULL);
    cfg->max_message_bytes = json_is_integer(v) ? json_integer_value(v) : 1048576;
    v = at_path(root, "batch.max", false, NULL);
    cfg->batch_max = json_is_integer(v) ? (int)json_integer_value(v) : 256;
    cfg->batch_wait_ms = (int)duration_or(at_path(root, "batch.wait", false, NULL), 2);
    cfg->inbox_retention_ms =
        duration_or(at_path(root, "retention.inbox", false, NULL), 7LL * 24 * 3600 * 1000);
    cfg->history_retention_ms =
        duration_or(at_path(root, "retention.history", false, NULL), 30LL * 24 * 3600 * 1000);

    json_t *props = at_path(root, "kafka.properties", false, NULL);
    if (json_is_object(props) && json_object_size(props)) {
        cfg->kafka_properties = calloc(json_object_size(props), sizeof *cfg->kafka_properties);
        const char *name;
        json_object_foreach(props, name, v) {
            cfg->kafka_properties[cfg->nkafka_properties].key = strdup(name);
            cfg->kafka_properties[cfg->nkafka_properties].value = strdup(json_string_value(v));
            cfg->nkafka_properties++;
        }
    }

    json_t *inputs = at_path(root, "inputs", false, NULL);
    static const char *const kafka_inputs[] = {"kafka:saga.commands", "kafka:saga.replies"};
    static const char *const amqp_inputs[] = {"amqp:/saga.commands", "amqp:/saga.replies"};
    cfg->inputs = calloc(json_is_array(inputs) ? json_array_size(inputs) + 1 : 5, sizeof(char *));
    if (json_is_array(inputs)) {
        size_t i;
        json_array_foreach(inputs, i, v) cfg->inputs[cfg->ninputs++] = strdup(json_string_value(v));
    } else {
        for (int i = 0; cfg->kafka_brokers && i < 2; i++)
            cfg->inputs[cfg->ninputs++] = strdup(kafka_inputs[i]);
        for (int i = 0; cfg->amqp_url && i < 2; i++)
            cfg->inputs[cfg->ninputs++] = strdup(amqp_inputs[i]);
    }
}

/* Rules across keys: a channel of a transport that is not configured. */
static void check_transports(const sg_config_t *cfg, const char *where, problems_t *pr) {
    if (!cfg->database_url || !*cfg->database_url)
        problem(pr, where, "database_url", "missing (set it in the file or SAGA_DATABASE_URL)");
    if (!cfg->kafka_brokers && !cfg->amqp_url)
        problem(pr, where, "kafka.brokers",
                "no broker configured: set kafka.brokers, amqp.url or both");
    const struct {
        const char *key;
        const char *text;
    } chans[] = {{"events", cfg->events},
                 {"reply_to.kafka", cfg->reply_to_kafka},
                 {"reply_to.amqp", cfg->reply_to_amqp}};
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++)
        check_channel(where, chans[i].key, chans[i].text, pr);
    for (size_t i = 0; i < cfg->ninputs + 1; i++) {
        const char *text = i < cfg->ninputs ? cfg->inputs[i] : cfg->events;
        bool kafka = !strncmp(text, "kafka:", 6), amqp = !strncmp(text, "amqp:", 5);
        char key[64];
        snprintf(key, sizeof key, i < cfg->ninputs ? "inputs[%zu]" : "events", i);
        if (kafka && !cfg->kafka_brokers)
            problem(pr, where, key, "\"%s\" needs kafka.brokers", text);
        if (amqp && !cfg->amqp_url)
            problem(pr, where, key, "\"%s\" needs amqp.url", text);
    }
    if (!strncmp(cfg->reply_to_kafka, "amqp:", 5))
        problem(pr, where, "reply_to.kafka", "must be a kafka: channel");
    if (!strncmp(cfg->reply_to_amqp, "kafka:", 6))
        problem(pr, where, "reply_to.amqp", "must be an amqp: channel");
}

sg_err_t sg_config_load(const char *path, char *const *envp, sg_config_t **out,
                        char *errstr, size_t errstr_size) {
    problems_t pr = {errstr, errstr_size, 0, 0};
    if (errstr_size)
        errstr[0] = '\0';
    *out = NULL;
    const char *where = "configuration";
    json_t *root = NULL;
    if (path) {
        const char *slash = strrchr(path, '/');
        where = slash ? slash + 1 : path;
        json_error_t jerr;
        root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
            if (jerr.line < 0)
                problem(&pr, where, "file", "cannot read: %s", jerr.text);
            else
                problem(&pr, where, "line", "%d, column %d: %s", jerr.line, jerr.column, jerr.text);
            return SG_ERR_INVALID;
        }
        if (!json_is_object(root)) {
            problem(&pr, where, "$", "expected a JSON object");
            json_decref(root);
            return SG_ERR_INVALID;
        }
        check_unknown(root, "", where, &pr);
    } else {
        root = json_object();
    }
    for (size_t i = 0; i < NKEYS; i++) {
        char name[96];
        env_name(keys[i].path, name, sizeof name);
        const char *v = keys[i].kind == K_PROPERTIES ? NULL : env_lookup(envp, name);
        json_t *val = v ? at_path(root, keys[i].path, true, env_value(&keys[i], v))
                        : at_path(root, keys[i].path, false, NULL);
        if (val)
            check_type(&keys[i], val, v ? name : where, &pr);
    }
    if (pr.count) {
        json_decref(root);
        return SG_ERR_INVALID;
    }
    sg_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        json_decref(root);
        return SG_ERR_NOMEM;
    }
    extract(root, cfg);
    json_decref(root);
    check_transports(cfg, where, &pr);
    if (pr.count) {
        sg_config_destroy(cfg);
        return SG_ERR_INVALID;
    }
    *out = cfg;
    return SG_OK;
}

void sg_config_destroy(sg_config_t *cfg) {
    if (!cfg)
        return;
    free(cfg->database_url);
    free(cfg->sagas_dir);
    free(cfg->migrations_dir);
    free(cfg->kafka_brokers);
    free(cfg->kafka_group_id);
    for (size_t i = 0; i < cfg->nkafka_properties; i++) {
        free(cfg->kafka_properties[i].key);
        free(cfg->kafka_properties[i].value);
    }
    free(cfg->kafka_properties);
    free(cfg->amqp_url);
    for (size_t i = 0; i < cfg->ninputs; i++)
        free(cfg->inputs[i]);
    free(cfg->inputs);
    free(cfg->reply_to_kafka);
    free(cfg->reply_to_amqp);
    free(cfg->events);
    free(cfg->http_listen);
    free(cfg);
}

/* Property values may hold secrets (sasl.password, ssl.key.password): any
 * key that names one is shown as ***. */
static bool secret_key(const char *key) {
    return sg_redact_secret_key(key);
}

void sg_config_secrets(const sg_config_t *cfg, void (*fn)(const char *secret)) {
    char buf[1024];
    const char *urls[] = {cfg->database_url, cfg->amqp_url};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++)
        for (int decode = 0; decode < 2; decode++)
            if (urls[i] && sg_redact_password(urls[i], decode, buf, sizeof buf) && buf[0])
                fn(buf);
    for (size_t i = 0; i < cfg->nkafka_properties; i++)
        if (secret_key(cfg->kafka_properties[i].key) && cfg->kafka_properties[i].value[0])
            fn(cfg->kafka_properties[i].value);
}

char *sg_config_describe(const sg_config_t *cfg) {
    char buf[1024];
    json_t *o = json_object();
    sg_redact(cfg->database_url, buf, sizeof buf);
    json_object_set_new(o, "database_url", json_string(buf));
    json_object_set_new(o, "sagas_dir", json_string(cfg->sagas_dir));
    json_t *k = json_object();
    json_object_set_new(k, "brokers", cfg->kafka_brokers ? json_string(cfg->kafka_brokers) : json_null());
    json_object_set_new(k, "group_id", json_string(cfg->kafka_group_id));
    json_t *props = json_object();
    for (size_t i = 0; i < cfg->nkafka_properties; i++)
        json_object_set_new(props, cfg->kafka_properties[i].key,
                            json_string(secret_key(cfg->kafka_properties[i].key)
                                            ? "***"
                                            : cfg->kafka_properties[i].value));
    json_object_set_new(k, "properties", props);
    json_object_set_new(o, "kafka", k);
    json_t *a = json_object();
    if (cfg->amqp_url)
        sg_redact(cfg->amqp_url, buf, sizeof buf);
    json_object_set_new(a, "url", cfg->amqp_url ? json_string(buf) : json_null());
    json_object_set_new(a, "prefetch", json_integer(cfg->amqp_prefetch));
    json_object_set_new(o, "amqp", a);
    json_t *in = json_array();
    for (size_t i = 0; i < cfg->ninputs; i++)
        json_array_append_new(in, json_string(cfg->inputs[i]));
    json_object_set_new(o, "inputs", in);
    json_object_set_new(o, "reply_to", json_pack("{s:s,s:s}", "kafka", cfg->reply_to_kafka,
                                                 "amqp", cfg->reply_to_amqp));
    json_object_set_new(o, "events", json_string(cfg->events));
    json_object_set_new(o, "http", json_pack("{s:s}", "listen", cfg->http_listen));
    json_object_set_new(o, "max_message_bytes", json_integer(cfg->max_message_bytes));
    json_object_set_new(o, "batch", json_pack("{s:i,s:i}", "max", cfg->batch_max, "wait_ms",
                                              cfg->batch_wait_ms));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
