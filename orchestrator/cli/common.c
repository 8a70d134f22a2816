/* The connection setting, the argument reader, the filter checks, the store
 * error mapping and the time formats shared by the commands. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "saga/def.h"
#include "saga/engine.h"

int sg_cli_option(int argc, char **argv, int *i, const char *name, const char **value) {
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0)
        return 0;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        (*i)++;
        return 1;
    }
    if (argv[*i][len] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sagactl: option '%s' needs a value\n", name);
        return -1;
    }
    *value = argv[*i + 1];
    *i += 2;
    return 1;
}

int sg_cli_open_store(const char *command, const char *db, sg_store_t **st) {
    char errstr[512];
    *st = NULL;
    if (!db || !db[0])
        db = getenv("SAGA_DATABASE_URL");
    if (!db || !db[0]) {
        fprintf(stderr,
                "sagactl: %s: no database given: use --db CONNINFO or set "
                "SAGA_DATABASE_URL\n",
                command);
        return CLI_USAGE;
    }
    *st = sg_store_new(db, errstr, sizeof errstr);
    if (!*st) {
        fprintf(stderr, "sagactl: %s: %s\n", command, errstr);
        return CLI_FAILED;
    }
    return CLI_OK;
}

/* ---- argument parsing ---- */

int sg_cli_usage_error(const sg_cli_args_t *args, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sagactl: %s: ", args->command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (args->usage)
        args->usage(stderr);
    return CLI_USAGE;
}

/* 1 when argv[*i] is one of 'opts' (consumed), 0 when not, -1 on error. */
static int parse_known(int argc, char **argv, int *i, sg_cli_args_t *args,
                       const sg_cli_opt_t *opts) {
    int got = sg_cli_option(argc, argv, i, "--db", &args->db);
    for (const sg_cli_opt_t *o = opts; got == 0 && o && o->name; o++) {
        if (o->value) {
            got = sg_cli_option(argc, argv, i, o->name, o->value);
        } else if (!strcmp(argv[*i], o->name)) {
            *o->flag = true;
            (*i)++;
            got = 1;
        }
    }
    if (got < 0 && args->usage)
        args->usage(stderr);
    return got;
}

int sg_cli_parse(int argc, char **argv, sg_cli_args_t *args, const sg_cli_opt_t *opts,
                 int max_positional) {
    bool options = true;
    args->npositional = 0;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (options && !strcmp(a, "--")) {
            options = false;
            i++;
            continue;
        }
        if (options && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            args->usage(stdout);
            return -1;
        }
        if (options && !strcmp(a, "--json")) {
            args->json = true;
            i++;
            continue;
        }
        if (options && a[0] == '-' && a[1] != '\0') {
            int got = parse_known(argc, argv, &i, args, opts);
            if (got < 0)
                return CLI_USAGE;
            if (got == 0)
                return sg_cli_usage_error(args, "unknown option '%s'", a);
            continue;
        }
        if (args->npositional >= max_positional ||
            args->npositional >= (int)(sizeof args->positional / sizeof args->positional[0]))
            return sg_cli_usage_error(args, "unexpected argument '%s'", a);
        args->positional[args->npositional++] = a;
        i++;
    }
    return CLI_OK;
}

int sg_cli_parse_status(const sg_cli_args_t *args, const char *text, const char **status) {
    if (!text)
        return CLI_OK;
    sg_saga_status_t s = sg_saga_status_parse(text);
    if (s == SG_SAGA_NONE)
        return sg_cli_usage_error(args,
                                  "unknown status '%s': use running, compensating, "
                                  "completed, compensated or failed",
                                  text);
    *status = sg_saga_status_str(s);
    return CLI_OK;
}

int sg_cli_parse_duration(const sg_cli_args_t *args, const char *option, const char *text,
                          int64_t *ms) {
    char err[160];
    if (!text)
        return CLI_OK;
    if (sg_duration_parse(text, ms, err, sizeof err) != SG_OK)
        return sg_cli_usage_error(args, "invalid duration '%s' for %s: %s (like 90s, 5m, 2h)",
                                  text, option, err);
    return CLI_OK;
}

/* A whole number in [min, max], or -1 when 'text' is not one. */
static int64_t whole_number(const char *text, int64_t min, int64_t max) {
    char *end = NULL;
    errno = 0;
    if (!text[0] || text[0] == '-' || text[0] == '+' || text[0] == ' ')
        return -1;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    return v;
}

int sg_cli_parse_limit(const sg_cli_args_t *args, const char *text, int *limit) {
    if (!text)
        return CLI_OK;
    int64_t v = whole_number(text, 1, 100000);
    if (v < 0)
        return sg_cli_usage_error(args, "invalid limit '%s': a whole number from 1 to 100000",
                                  text);
    *limit = (int)v;
    return CLI_OK;
}

int sg_cli_parse_id(const sg_cli_args_t *args, const char *what, const char *text,
                    int64_t *id) {
    int64_t v = whole_number(text, 1, INT64_MAX);
    if (v < 0)
        return sg_cli_usage_error(args, "invalid %s '%s': a positive whole number", what, text);
    *id = v;
    return CLI_OK;
}

/* ---- errors from the store ---- */

int sg_cli_store_error(const char *command, sg_store_t *st, sg_err_t err) {
    const char *msg = sg_store_errmsg(st);
    if (!msg || !msg[0])
        msg = sg_err_str(err);
    if (err == SG_ERR_CONN)
        fprintf(stderr, "sagactl: %s: cannot reach the database: %s\n", command, msg);
    else
        fprintf(stderr, "sagactl: %s: %s\n", command, msg);
    return err == SG_ERR_NOT_FOUND ? CLI_NOT_FOUND : CLI_FAILED;
}

/* ---- output ---- */

int64_t sg_cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void utc_parts(int64_t ms, struct tm *tm, int *millis) {
    time_t secs = (time_t)(ms / 1000);
    *millis = (int)(ms % 1000);
    if (*millis < 0) {
        *millis += 1000;
        secs--;
    }
    gmtime_r(&secs, tm);
}

void sg_cli_rfc3339(int64_t ms, char *buf, size_t size) {
    struct tm tm;
    int millis;
    if (ms == 0) {
        snprintf(buf, size, "%s", "");
        return;
    }
    utc_parts(ms, &tm, &millis);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

json_t *sg_cli_json_time(int64_t ms) {
    char buf[40];
    if (ms == 0)
        return json_null();
    sg_cli_rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

void sg_cli_utc(int64_t ms, char *buf, size_t size) {
    struct tm tm;
    int millis;
    utc_parts(ms, &tm, &millis);
    snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void sg_cli_age(int64_t ms, int64_t now_ms, char *buf, size_t size) {
    if (ms == 0) {
        snprintf(buf, size, "-");
        return;
    }
    int64_t s = (now_ms - ms) / 1000;
    if (s < 0)
        s = 0; /* the database's clock is a little ahead of ours */
    if (s < 60)
        snprintf(buf, size, "%" PRId64 "s ago", s);
    else if (s < 3600)
        snprintf(buf, size, "%" PRId64 "m ago", s / 60);
    else if (s < 48 * 3600)
        snprintf(buf, size, "%" PRId64 "h ago", s / 3600);
    else
        snprintf(buf, size, "%" PRId64 "d ago", s / 86400);
}

void sg_cli_span(int64_t ms, char *buf, size_t size) {
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        snprintf(buf, size, "%" PRId64 "ms", ms);
    else if (ms < 10000)
        snprintf(buf, size, "%" PRId64 ".%" PRId64 "s", ms / 1000, ms % 1000 / 100);
    else if (ms < 60000)
        snprintf(buf, size, "%" PRId64 "s", ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
    else
        snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
}

int sg_cli_print_json(json_t *doc) {
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text) {
        fprintf(stderr, "sagactl: out of memory\n");
        return CLI_FAILED;
    }
    int rc = printf("%s\n", text) < 0 || fflush(stdout) != 0 ? CLI_FAILED : CLI_OK;
    free(text);
    return rc;
}

json_t *sg_cli_json_text(const char *text) {
    if (!text)
        return json_null();
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    return j ? j : json_string(text);
}
