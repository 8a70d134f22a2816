/* The timeline of sagactl show, rebuilt from the saga's history: the
 * engine records every command sent ("command.sent", with its id, attempt
 * and whether it is a compensation), every input ("input.reply" with the
 * causation id and outcome, "input.timer" with the timer and attempt, both
 * marked "ignored" when they changed nothing) and every status change
 * ("step.<status>" with from, to and the reason). An attempt ends at its
 * reply or timeout; one still open when its step ends had no outcome (an
 * abort or the deadline came first). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/common.h"
#include "cli/table.h"
#include "cli/timeline.h"

#define BAR_WIDTH 30

static const char *jstr(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

/* "failure (retryable): code: message" from a reply's outcome and data. */
static char *reply_outcome(const json_t *input) {
    const char *outcome = jstr(input, "outcome");
    const json_t *data = json_object_get(input, "data");
    if (!outcome || !strcmp(outcome, "success"))
        return strdup("success");
    const char *code = jstr(data, "code"), *msg = jstr(data, "message");
    bool retryable = json_is_true(json_object_get(data, "retryable"));
    char buf[512];
    snprintf(buf, sizeof buf, "failure%s: %s%s%s", retryable ? " (retryable)" : "",
             code ? code : "error", msg && msg[0] ? ": " : "", msg && msg[0] ? msg : "");
    return strdup(buf);
}

static sg_tl_step_t *find_step(sg_timeline_t *tl, const char *name) {
    for (int i = 0; name && i < tl->nsteps; i++)
        if (!strcmp(tl->steps[i].name, name))
            return &tl->steps[i];
    return NULL;
}

static sg_tl_attempt_t *find_attempt(sg_tl_step_t *s, const char *id, bool undo, int attempt) {
    for (size_t k = s->nattempts; k-- > 0;) {
        sg_tl_attempt_t *a = &s->attempts[k];
        if (id ? (a->id && !strcmp(a->id, id)) : (a->undo == undo && a->attempt == attempt))
            return a;
    }
    return NULL;
}

static void end_attempt(sg_tl_attempt_t *a, int64_t at, char *outcome) {
    if (!a || a->ended_ms) {
        free(outcome);
        return;
    }
    a->ended_ms = at;
    a->outcome = outcome;
}

static void add_attempt(sg_tl_step_t *s, const json_t *d, int64_t at) {
    sg_tl_attempt_t *grown = realloc(s->attempts, (s->nattempts + 1) * sizeof *grown);
    if (!grown)
        return;
    s->attempts = grown;
    sg_tl_attempt_t *a = &s->attempts[s->nattempts++];
    memset(a, 0, sizeof *a);
    a->undo = json_is_true(json_object_get(d, "undo"));
    a->attempt = (int)json_integer_value(json_object_get(d, "attempt"));
    a->id = jstr(d, "id") ? strdup(jstr(d, "id")) : NULL;
    a->sent_ms = at;
}

/* Attempts of one side still open when the step left that side. */
static void close_open(sg_tl_step_t *s, bool undo, int64_t at, const char *reason) {
    char text[512];
    snprintf(text, sizeof text, "no outcome%s%s", reason ? ": " : "", reason ? reason : "");
    for (size_t k = 0; k < s->nattempts; k++)
        if (s->attempts[k].undo == undo && !s->attempts[k].ended_ms)
            end_attempt(&s->attempts[k], at, strdup(text));
}

static void step_moved(sg_tl_step_t *s, const json_t *d, int64_t at) {
    const char *to = jstr(d, "to");
    const char *reason = jstr(d, "reason");
    if (!to)
        return;
    if (!strcmp(to, "running")) {
        if (!s->started_ms)
            s->started_ms = at;
        s->ended_ms = 0; /* an operator's retry: it runs again */
    } else if (!strcmp(to, "succeeded") || !strcmp(to, "failed") ||
               !strcmp(to, "timed_out") || !strcmp(to, "skipped")) {
        s->ended_ms = at;
        close_open(s, false, at, reason);
    } else if (!strcmp(to, "compensating")) {
        if (!s->undo_started_ms)
            s->undo_started_ms = at;
    } else if (!strcmp(to, "compensated")) {
        s->undo_ended_ms = at;
        close_open(s, true, at, reason);
    }
}

static void on_input(sg_tl_step_t *s, const char *event, const json_t *d, int64_t at) {
    const json_t *input = json_object_get(d, "input");
    if (json_object_get(d, "ignored") && !json_is_null(json_object_get(d, "ignored")))
        return;
    if (!strcmp(event, "input.reply")) {
        end_attempt(find_attempt(s, jstr(input, "causation_id"), false, 0), at,
                    reply_outcome(input));
        return;
    }
    const char *timer = jstr(input, "timer");
    bool undo = timer && !strcmp(timer, "compensation_timeout");
    if (timer && (undo || !strcmp(timer, "step_timeout"))) {
        int attempt = (int)json_integer_value(json_object_get(input, "attempt"));
        end_attempt(find_attempt(s, NULL, undo, attempt), at,
                    strdup("no reply within the timeout"));
    }
}

static void on_row(sg_timeline_t *tl, const sg_store_history_row_t *r) {
    sg_tl_step_t *s = find_step(tl, r->step);
    json_t *d = r->detail ? json_loads(r->detail, 0, NULL) : NULL;
    if (r->at_ms > tl->end_ms)
        tl->end_ms = r->at_ms;
    if (s && d) {
        if (!strcmp(r->event, "command.sent"))
            add_attempt(s, d, r->at_ms);
        else if (!strcmp(r->event, "input.reply") || !strcmp(r->event, "input.timer"))
            on_input(s, r->event, d, r->at_ms);
        else if (!strncmp(r->event, "step.", 5))
            step_moved(s, d, r->at_ms);
    }
    json_decref(d);
}

sg_timeline_t *sg_timeline_build(const sg_saga_t *saga, const sg_store_history_row_t *rows,
                                 size_t n, int64_t created_ms) {
    sg_timeline_t *tl = calloc(1, sizeof *tl);
    if (!tl)
        return NULL;
    tl->nsteps = sg_saga_step_count(saga);
    tl->steps = calloc(tl->nsteps > 0 ? (size_t)tl->nsteps : 1, sizeof *tl->steps);
    if (!tl->steps)
        goto fail;
    for (int i = 0; i < tl->nsteps; i++)
        if (!(tl->steps[i].name = strdup(sg_saga_step_name(saga, i))))
            goto fail;
    tl->start_ms = n ? rows[0].at_ms : created_ms;
    tl->end_ms = tl->start_ms;
    for (size_t r = 0; r < n; r++)
        on_row(tl, &rows[r]);
    return tl;
fail:
    sg_timeline_destroy(tl);
    return NULL;
}

void sg_timeline_destroy(sg_timeline_t *tl) {
    if (!tl)
        return;
    for (int i = 0; tl->steps && i < tl->nsteps; i++) {
        for (size_t k = 0; k < tl->steps[i].nattempts; k++) {
            free(tl->steps[i].attempts[k].id);
            free(tl->steps[i].attempts[k].outcome);
        }
        free(tl->steps[i].attempts);
        free(tl->steps[i].name);
    }
    free(tl->steps);
    free(tl);
}

/* ---- printing ---- */

static void offset(const sg_timeline_t *tl, int64_t ms, char *buf, size_t size) {
    char span[32];
    if (!ms) {
        snprintf(buf, size, "%s", "");
        return;
    }
    sg_cli_span(ms - tl->start_ms, span, sizeof span);
    snprintf(buf, size, "+%s", span);
}

static int bar_col(const sg_timeline_t *tl, int64_t ms) {
    int64_t total = tl->end_ms - tl->start_ms;
    if (total <= 0)
        return 0;
    return (int)((ms - tl->start_ms) * (BAR_WIDTH - 1) / total);
}

/* "|  ###   |": where the attempt lies in the saga's life. */
static void bar(const sg_timeline_t *tl, const sg_tl_attempt_t *a, char *buf) {
    int from = bar_col(tl, a->sent_ms);
    int to = bar_col(tl, a->ended_ms ? a->ended_ms : tl->end_ms);
    buf[0] = '|';
    for (int c = 0; c < BAR_WIDTH; c++)
        buf[1 + c] = c >= from && c <= to ? (a->ended_ms ? (a->undo ? '<' : '#') : '.') : ' ';
    buf[1 + BAR_WIDTH] = '|';
    buf[2 + BAR_WIDTH] = '\0';
}

static void add_step_row(sg_table_t *t, const sg_timeline_t *tl, const sg_tl_step_t *s,
                         const char *status) {
    char start[32], end[32];
    offset(tl, s->started_ms, start, sizeof start);
    offset(tl, s->undo_ended_ms ? s->undo_ended_ms : s->ended_ms, end, sizeof end);
    const char *row[] = {s->name, start, end, "", "", status};
    sg_table_add(t, row);
}

static void add_attempt_row(sg_table_t *t, const sg_timeline_t *tl, const sg_tl_attempt_t *a) {
    char what[48], sent[32], ended[32], took[32], line[BAR_WIDTH + 3];
    snprintf(what, sizeof what, "  %s #%d", a->undo ? "undo" : "do", a->attempt);
    offset(tl, a->sent_ms, sent, sizeof sent);
    offset(tl, a->ended_ms, ended, sizeof ended);
    if (a->ended_ms)
        sg_cli_span(a->ended_ms - a->sent_ms, took, sizeof took);
    else
        snprintf(took, sizeof took, "%s", "");
    bar(tl, a, line);
    const char *row[] = {what, sent, ended, took, line,
                         a->outcome ? a->outcome : "waiting for a reply"};
    sg_table_add(t, row);
}

void sg_timeline_print(const sg_timeline_t *tl, const sg_saga_t *saga, FILE *out) {
    char head[64], total[32];
    sg_cli_span(tl->end_ms - tl->start_ms, total, sizeof total);
    snprintf(head, sizeof head, "0 .. %s  (# do, < undo, . open)", total);
    const char *const headers[] = {"STEP / ATTEMPT", "SENT", "ENDED", "TOOK", head, "OUTCOME"};
    sg_table_t *t = sg_table_new(6, headers);
    if (!t)
        return;
    sg_table_align_right(t, 1);
    sg_table_align_right(t, 2);
    sg_table_align_right(t, 3);
    sg_table_shrinkable(t, 5, 20);
    for (int i = 0; i < tl->nsteps; i++) {
        const sg_tl_step_t *s = &tl->steps[i];
        add_step_row(t, tl, s, sg_step_status_str(sg_saga_step_status(saga, i)));
        for (size_t k = 0; k < s->nattempts; k++)
            add_attempt_row(t, tl, &s->attempts[k]);
    }
    sg_table_print(t, out, "  ");
    sg_table_destroy(t);
}

/* ---- history details ---- */

/* Appends " (do #2)" from a command id "<saga>/<step>/do/2". */
static void append_attempt(const char *causation, char *buf, size_t size) {
    const char *last = causation ? strrchr(causation, '/') : NULL;
    const char *prev = last;
    while (prev && prev > causation && prev[-1] != '/')
        prev--;
    if (!last || !prev || prev == causation)
        return;
    size_t len = strlen(buf);
    snprintf(buf + len, size > len ? size - len : 0, " (%.*s #%s)", (int)(last - prev), prev,
             last + 1);
}

/* A string member, or 'fallback' when there is none. */
static const char *jstr_or(const json_t *obj, const char *key, const char *fallback) {
    const char *v = jstr(obj, key);
    return v ? v : fallback;
}

static int jint(const json_t *obj, const char *key) {
    return (int)json_integer_value(json_object_get(obj, key));
}

static const char *side(const json_t *d) {
    return json_is_true(json_object_get(d, "undo")) ? "undo" : "do";
}

static void detail_summary(const char *event, const json_t *d, char *buf, size_t size) {
    const json_t *input = json_object_get(d, "input");
    const char *ignored = jstr(d, "ignored");
    char *text = NULL;
    if (!strcmp(event, "command.sent")) {
        snprintf(buf, size, "%s #%d %s to %s", side(d), jint(d, "attempt"),
                 jstr_or(d, "type", "?"), jstr_or(d, "channel", "?"));
    } else if (!strcmp(event, "retry.scheduled")) {
        char span[32];
        sg_cli_span(json_integer_value(json_object_get(d, "delay_ms")), span, sizeof span);
        snprintf(buf, size, "%s #%d in %s", side(d), jint(d, "attempt"), span);
    } else if (!strncmp(event, "step.", 5) || !strncmp(event, "saga.", 5)) {
        const char *reason = jstr(d, "reason");
        snprintf(buf, size, "%s -> %s%s%s", jstr_or(d, "from", "?"), jstr_or(d, "to", "?"),
                 reason ? ": " : "", reason ? reason : "");
    } else if (!strcmp(event, "input.reply")) {
        text = reply_outcome(input);
        snprintf(buf, size, "%s", text ? text : "?");
        append_attempt(jstr(input, "causation_id"), buf, size);
    } else if (!strcmp(event, "input.timer")) {
        snprintf(buf, size, "%s, attempt %d", jstr_or(input, "timer", "?"),
                 jint(input, "attempt"));
    } else if (!strcmp(event, "input.start")) {
        snprintf(buf, size, "started");
    } else if (input) {
        snprintf(buf, size, "%s", jstr_or(input, "reason", ""));
    } else if (jstr(d, "reason")) {
        snprintf(buf, size, "%s", jstr(d, "reason"));
    } else {
        char *dump = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
        snprintf(buf, size, "%s", dump ? dump : "");
        free(dump);
    }
    free(text);
    if (ignored) {
        size_t len = strlen(buf);
        snprintf(buf + len, size > len ? size - len : 0, "%s(ignored: %s)", len ? " " : "",
                 ignored);
    }
}

void sg_timeline_detail(const char *event, const char *detail, char *buf, size_t size) {
    json_t *d = detail ? json_loads(detail, JSON_DECODE_ANY, NULL) : NULL;
    if (!d)
        snprintf(buf, size, "%s", detail ? detail : "");
    else if (!json_is_object(d))
        snprintf(buf, size, "%s", detail);
    else
        detail_summary(event, d, buf, size);
    json_decref(d);
}
