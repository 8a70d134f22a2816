/* sagactl show SAGA_ID: one saga whole: its status and why, its definition,
 * the step(s) it is at, each step's status and attempts, the context, the
 * timeline of its attempts and compensations, and the full history, oldest
 * first. The row's state column is the engine's document, read back with
 * sg_saga_from_json, so what is shown is what the engine sees. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/table.h"
#include "cli/timeline.h"
#include "saga/engine.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl show SAGA_ID [--json] [--db CONNINFO]\n"
            "\n"
            "Shows one saga: status, definition, current step, each step's status and\n"
            "attempts, the context, a timeline of every attempt and compensation, and\n"
            "the full history.\n"
            "\n"
            "  --json   print one JSON object: {id, type, definition_version,\n"
            "           definition_sha256, status, reason, current_step, version,\n"
            "           created_at, updated_at, deadline_at, traceparent, input, context,\n"
            "           steps: [{name, status, attempts, compensation_attempts, error,\n"
            "           started_at, ended_at, compensation_started_at,\n"
            "           compensation_ended_at}], history: [{seq, at, event, step, detail}]}\n"
            "  --db     PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help   show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage error, 3 no such saga.\n");
}

/* Everything shown about one saga. */
typedef struct view {
    sg_store_saga_t *row;
    sg_saga_t *saga;
    sg_store_history_row_t *history;
    size_t nhistory;
    sg_timeline_t *tl;
    char current[512];
} view_t;

static void view_release(view_t *v) {
    sg_store_free(v->row);
    sg_saga_destroy(v->saga);
    sg_store_free(v->history);
    sg_timeline_destroy(v->tl);
}

static int view_load(const char *command, sg_store_t *st, const char *id, view_t *v) {
    char errstr[256];
    json_error_t jerr;
    sg_err_t err = sg_store_saga_load(st, id, &v->row);
    if (!err)
        err = sg_store_history_list(st, id, &v->history, &v->nhistory);
    if (err)
        return sg_cli_store_error(command, st, err);
    json_t *state = json_loads(v->row->state, 0, &jerr);
    err = state ? sg_saga_from_json(state, &v->saga, errstr, sizeof errstr) : SG_ERR_INVALID;
    json_decref(state);
    if (err) {
        fprintf(stderr, "sagactl: %s: saga '%s' has a state this version cannot read: %s\n",
                command, id, state ? errstr : jerr.text);
        return CLI_FAILED;
    }
    sg_saga_current_steps(v->saga, v->current, sizeof v->current);
    v->tl = sg_timeline_build(v->saga, v->history, v->nhistory, v->row->created_at_ms);
    if (!v->tl) {
        fprintf(stderr, "sagactl: %s: out of memory\n", command);
        return CLI_FAILED;
    }
    return CLI_OK;
}

/* ---- JSON ---- */

static json_t *steps_json(const view_t *v) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < sg_saga_step_count(v->saga); i++) {
        const sg_tl_step_t *s = &v->tl->steps[i];
        const json_t *error = sg_saga_step_error(v->saga, i);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:i, s:i, s:O, s:o, s:o, s:o, s:o}", "name",
                           sg_saga_step_name(v->saga, i), "status",
                           sg_step_status_str(sg_saga_step_status(v->saga, i)), "attempts",
                           sg_saga_step_attempts(v->saga, i), "compensation_attempts",
                           sg_saga_step_undo_attempts(v->saga, i), "error",
                           error ? (json_t *)error : json_null(), "started_at",
                           sg_cli_json_time(s->started_ms), "ended_at",
                           sg_cli_json_time(s->ended_ms), "compensation_started_at",
                           sg_cli_json_time(s->undo_started_ms), "compensation_ended_at",
                           sg_cli_json_time(s->undo_ended_ms)));
    }
    return arr;
}

static json_t *history_json(const view_t *v) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < v->nhistory; i++) {
        const sg_store_history_row_t *h = &v->history[i];
        json_array_append_new(
            arr, json_pack("{s:I, s:o, s:s, s:o, s:o}", "seq", (json_int_t)h->seq, "at",
                           sg_cli_json_time(h->at_ms), "event", h->event, "step",
                           h->step ? json_string(h->step) : json_null(), "detail",
                           sg_cli_json_text(h->detail)));
    }
    return arr;
}

static int print_json(const view_t *v) {
    const sg_store_saga_t *r = v->row;
    const json_t *context = sg_saga_context(v->saga);
    const json_t *input = json_object_get(context, "input");
    const char *reason = sg_saga_reason(v->saga);
    json_t *doc = json_pack(
        "{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:O, s:O, s:o, s:o}",
        "id", r->id, "type", r->type, "definition_version", r->definition_version,
        "definition_sha256", r->definition_sha256, "status", r->status, "reason",
        reason ? json_string(reason) : json_null(), "current_step",
        v->current[0] ? json_string(v->current) : json_null(), "version",
        (json_int_t)r->version, "created_at", sg_cli_json_time(r->created_at_ms),
        "updated_at", sg_cli_json_time(r->updated_at_ms), "deadline_at",
        sg_cli_json_time(r->deadline_at_ms), "traceparent",
        r->traceparent ? json_string(r->traceparent) : json_null(), "input",
        input ? (json_t *)input : json_null(), "context", (json_t *)context, "steps",
        steps_json(v), "history", history_json(v));
    return sg_cli_print_json(doc);
}

/* ---- text ---- */

static void print_header(const view_t *v) {
    const sg_store_saga_t *r = v->row;
    int64_t now = sg_cli_now_ms();
    char when[40], age[32];
    const char *reason = sg_saga_reason(v->saga);
    printf("saga        %s\n", r->id);
    printf("definition  %s v%d (sha256 %s)\n", r->type, r->definition_version,
           r->definition_sha256);
    printf("status      %s%s%s\n", r->status, reason ? ": " : "", reason ? reason : "");
    printf("current     %s\n", v->current[0] ? v->current : "-");
    printf("version     %" PRId64 " (transitions applied)\n", r->version);
    sg_cli_utc(r->created_at_ms, when, sizeof when);
    sg_cli_age(r->created_at_ms, now, age, sizeof age);
    printf("created     %s (%s)\n", when, age);
    sg_cli_utc(r->updated_at_ms, when, sizeof when);
    sg_cli_age(r->updated_at_ms, now, age, sizeof age);
    printf("updated     %s (%s)\n", when, age);
    if (r->deadline_at_ms) {
        sg_cli_utc(r->deadline_at_ms, when, sizeof when);
        printf("deadline    %s\n", when);
    }
    if (r->traceparent)
        printf("trace       %s\n", r->traceparent);
}

static void print_steps(const view_t *v) {
    static const char *const headers[] = {"STEP", "STATUS", "ATTEMPTS", "COMPENSATIONS",
                                          "LAST ERROR"};
    sg_table_t *t = sg_table_new(5, headers);
    if (!t)
        return;
    sg_table_align_right(t, 2);
    sg_table_align_right(t, 3);
    sg_table_shrinkable(t, 4, 20);
    for (int i = 0; i < sg_saga_step_count(v->saga); i++) {
        char attempts[16], undo[16], error[512] = "";
        const json_t *e = sg_saga_step_error(v->saga, i);
        snprintf(attempts, sizeof attempts, "%d", sg_saga_step_attempts(v->saga, i));
        snprintf(undo, sizeof undo, "%d", sg_saga_step_undo_attempts(v->saga, i));
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (e)
            snprintf(error, sizeof error, "%s%s%s", code ? code : "error", msg ? ": " : "",
                     msg ? msg : "");
        const char *row[] = {sg_saga_step_name(v->saga, i),
                             sg_step_status_str(sg_saga_step_status(v->saga, i)), attempts,
                             undo, e ? error : NULL};
        sg_table_add(t, row);
    }
    sg_table_print(t, stdout, "  ");
    sg_table_destroy(t);
}

static void print_history(const view_t *v) {
    static const char *const headers[] = {"SEQ", "AT", "EVENT", "STEP", "DETAIL"};
    sg_table_t *t = sg_table_new(5, headers);
    if (!t)
        return;
    sg_table_align_right(t, 0);
    sg_table_align_right(t, 1);
    sg_table_shrinkable(t, 4, 30);
    for (size_t i = 0; i < v->nhistory; i++) {
        const sg_store_history_row_t *h = &v->history[i];
        char seq[24], at[40], span[32], detail[1024];
        snprintf(seq, sizeof seq, "%" PRId64, h->seq);
        sg_cli_span(h->at_ms - v->tl->start_ms, span, sizeof span);
        snprintf(at, sizeof at, "+%s", span);
        sg_timeline_detail(h->event, h->detail, detail, sizeof detail);
        const char *row[] = {seq, at, h->event, h->step, detail};
        sg_table_add(t, row);
    }
    sg_table_print(t, stdout, "  ");
    sg_table_destroy(t);
}

static void print_context(const view_t *v) {
    char *text = json_dumps(sg_saga_context(v->saga), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    /* Indent every line by two spaces. */
    printf("  ");
    for (const char *c = text ? text : "null"; *c; c++) {
        putchar(*c);
        if (*c == '\n')
            printf("  ");
    }
    printf("\n");
    free(text);
}

static int print_text(const view_t *v) {
    char start[40];
    print_header(v);
    printf("\nSTEPS\n");
    print_steps(v);
    sg_cli_rfc3339(v->tl->start_ms, start, sizeof start);
    printf("\nTIMELINE (offsets from %s)\n", start);
    sg_timeline_print(v->tl, v->saga, stdout);
    printf("\nCONTEXT\n");
    print_context(v);
    printf("\nHISTORY (%zu entries, oldest first)\n", v->nhistory);
    print_history(v);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
}

int sg_cli_show(int argc, char **argv) {
    sg_cli_args_t args = {.command = "show", .usage = usage};
    int rc = sg_cli_parse(argc, argv, &args, NULL, 1);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if (args.npositional != 1 || !args.positional[0][0])
        return sg_cli_usage_error(&args, "which saga? give its SAGA_ID");
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    view_t v = {0};
    rc = view_load(args.command, st, args.positional[0], &v);
    if (rc == CLI_OK)
        rc = args.json ? print_json(&v) : print_text(&v);
    view_release(&v);
    sg_store_destroy(st);
    return rc;
}
