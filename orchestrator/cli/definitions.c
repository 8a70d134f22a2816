/* sagactl definitions: the stored definitions (what running sagas run),
 * with their hash and the number of their sagas still running or
 * compensating. */
#include <inttypes.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/table.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl definitions [--json] [--db CONNINFO]\n"
            "\n"
            "Lists the stored saga definitions: name, version, SHA-256 of the canonical\n"
            "JSON, running instances (running or compensating) and when it was stored.\n"
            "\n"
            "  --json   print one JSON array of {name, version, sha256, running, created_at}\n"
            "  --db     PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help   show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage error.\n");
}

static int print_json(const sg_store_definition_t *defs, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:i, s:s, s:I, s:o}", "name", defs[i].name, "version",
                           defs[i].version, "sha256", defs[i].sha256, "running",
                           (json_int_t)defs[i].running, "created_at",
                           sg_cli_json_time(defs[i].created_at_ms)));
    return sg_cli_print_json(arr);
}

static int print_text(const sg_store_definition_t *defs, size_t n) {
    static const char *const headers[] = {"NAME", "VERSION", "SHA256", "RUNNING", "STORED"};
    if (n == 0) {
        printf("no definitions stored\n");
        return CLI_OK;
    }
    sg_table_t *t = sg_table_new(5, headers);
    if (!t)
        return CLI_FAILED;
    int64_t now = sg_cli_now_ms();
    sg_table_align_right(t, 1);
    sg_table_align_right(t, 3);
    sg_table_shrinkable(t, 2, 12);
    for (size_t i = 0; i < n; i++) {
        char version[16], running[24], age[32];
        snprintf(version, sizeof version, "%d", defs[i].version);
        snprintf(running, sizeof running, "%" PRId64, defs[i].running);
        sg_cli_age(defs[i].created_at_ms, now, age, sizeof age);
        const char *row[] = {defs[i].name, version, defs[i].sha256, running, age};
        sg_table_add(t, row);
    }
    sg_table_print(t, stdout, "");
    sg_table_destroy(t);
    return CLI_OK;
}

int sg_cli_definitions(int argc, char **argv) {
    sg_cli_args_t args = {.command = "definitions", .usage = usage};
    int rc = sg_cli_parse(argc, argv, &args, NULL, 0);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    sg_store_definition_t *defs = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_definitions_list(st, &defs, &n);
    if (err)
        rc = sg_cli_store_error(args.command, st, err);
    else
        rc = args.json ? print_json(defs, n) : print_text(defs, n);
    sg_store_free(defs);
    sg_store_destroy(st);
    return rc;
}
