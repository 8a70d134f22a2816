/* sagactl list and sagactl stuck: tables of sagas from the store's indexed
 * queries, newest change first for list, oldest first for stuck. Neither
 * reads the sagas' state: the row's columns say enough. */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/table.h"

#define STUCK_DEFAULT_MS (5 * 60 * 1000)

static void list_usage(FILE *out) {
    fprintf(out,
            "usage: sagactl list [--status S] [--type T] [--since DURATION] [--limit N]\n"
            "                    [--json] [--db CONNINFO]\n"
            "\n"
            "Lists sagas, the most recently changed first.\n"
            "\n"
            "  --status S         only sagas in status S: running, compensating, completed,\n"
            "                     compensated or failed\n"
            "  --type T           only sagas of definition T\n"
            "  --since DURATION   only sagas changed within DURATION (like 90s, 15m, 2h)\n"
            "  --limit N          at most N sagas (default 100)\n"
            "  --json             print one JSON array of {id, type, definition_version,\n"
            "                     status, current_step, version, created_at, updated_at}\n"
            "  --db               PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help             show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage error.\n");
}

static void stuck_usage(FILE *out) {
    fprintf(out,
            "usage: sagactl stuck [--older-than DURATION] [--limit N] [--json] [--db CONNINFO]\n"
            "\n"
            "Lists the sagas still running or compensating whose last change is older\n"
            "than DURATION (default 5m), the longest idle first. Failed sagas wait for\n"
            "an operator and are listed by 'sagactl list --status failed'.\n"
            "\n"
            "  --older-than DURATION  like 90s, 5m, 2h (default 5m)\n"
            "  --limit N              at most N sagas (default 100)\n"
            "  --json                 print one JSON array, as 'sagactl list --json'\n"
            "  --db                   PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help                 show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage error.\n");
}

static json_t *saga_json(const sg_store_saga_t *s) {
    return json_pack("{s:s, s:s, s:i, s:s, s:o, s:I, s:o, s:o}", "id", s->id, "type", s->type,
                     "definition_version", s->definition_version, "status", s->status,
                     "current_step", s->current_step ? json_string(s->current_step) : json_null(),
                     "version", (json_int_t)s->version, "created_at",
                     sg_cli_json_time(s->created_at_ms), "updated_at",
                     sg_cli_json_time(s->updated_at_ms));
}

static int print_json(const sg_store_saga_t *sagas, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, saga_json(&sagas[i]));
    return sg_cli_print_json(arr);
}

static int print_text(const sg_store_saga_t *sagas, size_t n, const char *changed) {
    const char *const headers[] = {"ID", "TYPE", "STATUS", "STEP", changed, "CREATED"};
    sg_table_t *t = sg_table_new(6, headers);
    if (!t)
        return CLI_FAILED;
    int64_t now = sg_cli_now_ms();
    sg_table_shrinkable(t, 0, 12);
    sg_table_shrinkable(t, 3, 10);
    for (size_t i = 0; i < n; i++) {
        char type[96], updated[32], created[32];
        snprintf(type, sizeof type, "%s v%d", sagas[i].type, sagas[i].definition_version);
        sg_cli_age(sagas[i].updated_at_ms, now, updated, sizeof updated);
        sg_cli_age(sagas[i].created_at_ms, now, created, sizeof created);
        const char *row[] = {sagas[i].id, type, sagas[i].status, sagas[i].current_step,
                             updated, created};
        sg_table_add(t, row);
    }
    sg_table_print(t, stdout, "");
    sg_table_destroy(t);
    return CLI_OK;
}

int sg_cli_list(int argc, char **argv) {
    const char *status = NULL, *type = NULL, *since = NULL, *limit = NULL;
    const sg_cli_opt_t opts[] = {{"--status", &status, NULL}, {"--type", &type, NULL},
                                 {"--since", &since, NULL},   {"--limit", &limit, NULL},
                                 {NULL, NULL, NULL}};
    sg_cli_args_t args = {.command = "list", .usage = list_usage};
    sg_store_filter_t filter = {0};
    int rc = sg_cli_parse(argc, argv, &args, opts, 0);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if ((rc = sg_cli_parse_status(&args, status, &filter.status)) ||
        (rc = sg_cli_parse_duration(&args, "--since", since, &filter.since_ms)) ||
        (rc = sg_cli_parse_limit(&args, limit, &filter.limit)))
        return rc;
    if (type && !type[0])
        return sg_cli_usage_error(&args, "empty --type");
    filter.type = type;
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    sg_store_saga_t *sagas = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_sagas_list(st, &filter, &sagas, &n);
    if (err)
        rc = sg_cli_store_error(args.command, st, err);
    else if (args.json)
        rc = print_json(sagas, n);
    else if (n == 0)
        printf("no sagas match\n");
    else
        rc = print_text(sagas, n, "UPDATED");
    sg_store_free(sagas);
    sg_store_destroy(st);
    return rc;
}

int sg_cli_stuck(int argc, char **argv) {
    const char *older = NULL, *limit_text = NULL;
    const sg_cli_opt_t opts[] = {
        {"--older-than", &older, NULL}, {"--limit", &limit_text, NULL}, {NULL, NULL, NULL}};
    sg_cli_args_t args = {.command = "stuck", .usage = stuck_usage};
    int64_t age_ms = STUCK_DEFAULT_MS;
    int limit = 100;
    int rc = sg_cli_parse(argc, argv, &args, opts, 0);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if ((rc = sg_cli_parse_duration(&args, "--older-than", older, &age_ms)) ||
        (rc = sg_cli_parse_limit(&args, limit_text, &limit)))
        return rc;
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    sg_store_saga_t *sagas = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_sagas_stuck(st, age_ms, limit, &sagas, &n);
    if (err) {
        rc = sg_cli_store_error(args.command, st, err);
    } else if (args.json) {
        rc = print_json(sagas, n);
    } else if (n == 0) {
        char span[32];
        sg_cli_span(age_ms, span, sizeof span);
        printf("no stuck sagas: every running or compensating saga changed within %s\n", span);
    } else {
        rc = print_text(sagas, n, "LAST CHANGE");
    }
    sg_store_free(sagas);
    sg_store_destroy(st);
    return rc;
}
