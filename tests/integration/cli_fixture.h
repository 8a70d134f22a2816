/* What the sagactl tests share: a definition stored through the transition
 * module's cache, sagas driven into every state by real engine inputs
 * committed through the transition path (a start made with
 * sg_transition_make and sg_store_batch, then replies with
 * sg_transition_run_one, as the daemon would), and a runner that executes
 * the sagactl binary with a chosen environment and captures its exit status,
 * stdout and stderr.
 *
 * The definition "shop": reserve (compensated by release; one compensation
 * attempt, so a failed release fails the saga), charge (compensated by
 * refund; one attempt), ship. Every saga's input is {"order": ID}.
 *
 * Header only: every function is static. Include it after testdb.h. */
#ifndef SAGA_CLI_FIXTURE_H
#define SAGA_CLI_FIXTURE_H

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "saga/transition.h"

#define SAGACTL SAGA_BINARY_DIR "/orchestrator/sagactl"

static const char *const SHOP_DEF =
    "{\"name\": \"shop\", \"version\": 1, \"steps\": ["
    " {\"name\": \"reserve\","
    "  \"command\": {\"type\": \"stock.reserve\", \"channel\": \"kafka:stock\","
    "               \"data\": {\"order\": \"$.input.order\"}},"
    "  \"compensation\": {\"type\": \"stock.release\", \"channel\": \"kafka:stock\","
    "                    \"data\": {\"order\": \"$.input.order\"},"
    "                    \"retry\": {\"max_attempts\": 1}}},"
    " {\"name\": \"charge\", \"retry\": {\"max_attempts\": 1},"
    "  \"command\": {\"type\": \"card.charge\", \"channel\": \"amqp:/cards\"},"
    "  \"compensation\": {\"type\": \"card.refund\", \"channel\": \"amqp:/cards\"}},"
    " {\"name\": \"ship\", \"command\": {\"type\": \"ship.send\", \"channel\": \"kafka:ship\"}}]}";

static const char *const OTHER_DEF =
    "{\"name\": \"other\", \"version\": 1, \"steps\": ["
    " {\"name\": \"only\", \"command\": {\"type\": \"x.do\", \"channel\": \"kafka:x\"}}]}";

static const sg_transition_env_t FX_ENV = {
    .engine = {.reply_to_kafka = "kafka:saga.replies", .reply_to_amqp = "amqp:/saga.replies"},
    .events = "kafka:saga.events",
    .source = "/test",
};

typedef struct fx {
    sg_store_t *st;
    sg_defcache_t *dc;
} fx_t;

static fx_t fx;

static inline int64_t fx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int fx_add_def(sg_def_set_t *set, const char *text) {
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    char errstr[256];
    sg_err_t err = sg_def_load_string("def.json", text, strlen(text), &def, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.items[i]);
    sg_def_errors_release(&errs);
    if (err || sg_def_set_add(set, def, errstr, sizeof errstr) != SG_OK) {
        sg_def_destroy(def);
        return -1;
    }
    return 0;
}

/* Group setup: a fresh database with both definitions stored. */
static inline int fx_setup(void **state) {
    char errstr[512];
    if (testdb_setup(state) != 0)
        return -1;
    fx.st = testdb_store();
    fx.dc = sg_defcache_new();
    sg_def_set_t *set = sg_def_set_new();
    if (!fx.st || !fx.dc || !set || fx_add_def(set, SHOP_DEF) || fx_add_def(set, OTHER_DEF))
        return -1;
    if (sg_defcache_publish(fx.dc, fx.st, set, errstr, sizeof errstr) != SG_OK) {
        fprintf(stderr, "%s\n", errstr);
        return -1;
    }
    return 0;
}

static inline int fx_teardown(void **state) {
    sg_defcache_destroy(fx.dc);
    sg_store_destroy(fx.st);
    return testdb_teardown(state);
}

/* Starts saga 'id' of definition 'type' (the daemon's start path). */
static inline void fx_start(const char *id, const char *type) {
    char errstr[512];
    json_t *data = json_pack("{s:s}", "order", id);
    sg_input_t in = {.kind = SG_INPUT_START, .saga_id = id, .seed = 7, .data = data,
                     .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"};
    sg_transition_t *tr = NULL;
    sg_err_t err = sg_transition_make(sg_defcache_latest(fx.dc, type), NULL, 0, &in, NULL, 0,
                                      fx_now(), &FX_ENV, &tr, errstr, sizeof errstr);
    if (err)
        fprintf(stderr, "start %s: %s\n", id, errstr);
    assert_int_equal(err, SG_OK);
    assert_int_equal(sg_store_batch(fx.st, sg_transition_item(tr), 1), SG_OK);
    assert_int_equal(sg_transition_item(tr)->result, SG_OK);
    sg_transition_destroy(tr);
    json_decref(data);
}

/* Applies one input to saga 'id' through sg_transition_run_one; returns
 * whether the engine ignored it. */
static inline bool fx_apply(const char *id, const sg_input_t *in, const char *message_id) {
    char errstr[512];
    sg_transition_t *tr = NULL;
    sg_err_t err = sg_transition_run_one(fx.st, fx.dc, id, in, message_id, fx_now(), &FX_ENV,
                                         &tr, errstr, sizeof errstr);
    if (err)
        fprintf(stderr, "apply to %s: %s\n", id, errstr);
    assert_int_equal(err, SG_OK);
    bool ignored = sg_transition_ignored(tr) != NULL;
    sg_transition_destroy(tr);
    return ignored;
}

/* A reply to attempt 'attempt' of the command (or compensation) of 'step':
 * success, or a failure {"code": code, "message": ..., "retryable": false}. */
static inline void fx_reply(const char *id, const char *step, bool undo, int attempt,
                     const char *failure_code) {
    char causation[256];
    snprintf(causation, sizeof causation, "%s/%s/%s/%d", id, step, undo ? "undo" : "do",
             attempt);
    json_t *data = failure_code ? json_pack("{s:s, s:s, s:b}", "code", failure_code, "message",
                                            "refused by the participant", "retryable", 0)
                                : json_pack("{s:s}", "ref", step);
    sg_input_t in = {.kind = SG_INPUT_REPLY, .step = step, .causation_id = causation,
                     .outcome = failure_code ? SG_OUTCOME_FAILURE : SG_OUTCOME_SUCCESS,
                     .data = data};
    bool ignored = fx_apply(id, &in, NULL);
    json_decref(data);
    assert_false(ignored);
}

/* Sagas in each state; each returns the version (transitions applied). */
static inline int64_t fx_running(const char *id) { /* reserve done, charge in flight */
    fx_start(id, "shop");
    fx_reply(id, "reserve", false, 1, NULL);
    return 2;
}

static inline int64_t fx_completed(const char *id) {
    fx_running(id);
    fx_reply(id, "charge", false, 1, NULL);
    fx_reply(id, "ship", false, 1, NULL);
    return 4;
}

static inline int64_t fx_compensating(const char *id) { /* charge declined, release in flight */
    fx_running(id);
    fx_reply(id, "charge", false, 1, "declined");
    return 3;
}

static inline int64_t fx_compensated(const char *id) {
    fx_compensating(id);
    fx_reply(id, "reserve", true, 1, NULL);
    return 4;
}

static inline int64_t fx_failed(const char *id) { /* the release failed: stuck in compensation */
    fx_compensating(id);
    fx_reply(id, "reserve", true, 1, "gone");
    return 4;
}

/* ---- running sagactl ---- */

typedef struct cli_run {
    int rc;
    char *out;
    char *err;
} cli_run_t;

static inline char *fx_slurp(int fd) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t got;
    lseek(fd, 0, SEEK_SET);
    while (buf && (got = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 2048) {
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    close(fd);
    return buf;
}

static inline int fx_tmpfile(void) {
    char path[] = "/tmp/sagactl-test-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* Runs sagactl with 'args' (NULL-terminated, without the program name) and
 * SAGA_DATABASE_URL = 'db' (NULL: unset). 'columns' sets COLUMNS (NULL:
 * unset). Does not wait: *pid is the child, and fx_wait collects its exit
 * status and output (fds are the files holding its stdout and stderr). */
static inline void fx_spawn(const char *db, const char *columns, const char *const *args,
                            pid_t *pid, int fds[2]) {
    const char *argv[32] = {SAGACTL};
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    fds[0] = fx_tmpfile();
    fds[1] = fx_tmpfile();
    assert_true(fds[0] >= 0 && fds[1] >= 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (db)
            setenv("SAGA_DATABASE_URL", db, 1);
        else
            unsetenv("SAGA_DATABASE_URL");
        if (columns)
            setenv("COLUMNS", columns, 1);
        else
            unsetenv("COLUMNS");
        dup2(fds[0], 1);
        dup2(fds[1], 2);
        execv(SAGACTL, (char *const *)argv);
        _exit(127);
    }
    *pid = child;
}

static inline cli_run_t fx_wait(pid_t pid, int fds[2]) {
    cli_run_t r = {.rc = -1};
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = fx_slurp(fds[0]);
    r.err = fx_slurp(fds[1]);
    return r;
}

static inline cli_run_t fx_cli_env(const char *db, const char *columns, const char *const *args) {
    pid_t pid;
    int fds[2];
    fx_spawn(db, columns, args, &pid, fds);
    return fx_wait(pid, fds);
}

/* sagactl ARGS... against the test database. */
#define CLI(...) fx_cli_env(testdb.conninfo, NULL, (const char *const[]){__VA_ARGS__, NULL})

static inline void fx_free(cli_run_t *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* Checks the exit status, printing the output when it is not the one. */
static inline void fx_expect_rc(const cli_run_t *r, int rc) {
    if (r->rc != rc)
        fprintf(stderr, "sagactl exited %d, want %d\nstdout:\n%s\nstderr:\n%s\n", r->rc, rc,
                r->out, r->err);
    assert_int_equal(r->rc, rc);
    /* a sanitizer build reports memory errors and leaks on stderr */
    assert_null(strstr(r->err, "Sanitizer"));
}

/* The stdout of a run as JSON (the test fails when it is not JSON). */
static inline json_t *fx_json(const cli_run_t *r) {
    json_error_t jerr;
    json_t *doc = json_loads(r->out, 0, &jerr);
    if (!doc)
        fprintf(stderr, "not JSON (%s):\n%s\n", jerr.text, r->out);
    assert_non_null(doc);
    return doc;
}

static inline const char *fx_str(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fprintf(stderr, "no string \"%s\" in the JSON\n", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* True when 's' is an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS(.fff)Z". */
static inline bool fx_is_rfc3339_utc(const char *s) {
    int y, mo, d, h, mi, sec, ms, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &used) == 7 &&
        used == (int)strlen(s))
        return true;
    used = 0;
    return sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &sec, &used) == 6 &&
           used == (int)strlen(s);
}

/* The line of 'text' that contains 'needle', copied into buf ("" if none). */
static inline const char *fx_line_with(const char *text, const char *needle, char *buf,
                                       size_t size) {
    const char *hit = strstr(text, needle);
    buf[0] = '\0';
    if (!hit)
        return buf;
    const char *start = hit;
    while (start > text && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    snprintf(buf, size, "%.*s", (int)len, start);
    return buf;
}

#endif
