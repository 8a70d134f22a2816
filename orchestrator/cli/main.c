/* sagactl: the operator's tool. Dispatches to one command group per file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"migrate", sg_cli_migrate, "apply the SQL migrations not yet applied"},
    {"validate", sg_cli_validate, "check saga definition files without a database"},
    {"definitions", sg_cli_definitions, "list stored definitions and their running sagas"},
    {"list", sg_cli_list, "list sagas, newest first, by status, type or age"},
    {"show", sg_cli_show, "show one saga: steps, timeline, context, history"},
    {"abort", sg_cli_abort, "abort a saga: it compensates from where it is"},
    {"retry", sg_cli_retry, "resume a failed saga with fresh attempts"},
    {"stuck", sg_cli_stuck, "list unfinished sagas with no change for a while"},
    {"stats", sg_cli_stats, "count sagas by type and status, ended per minute"},
    {"dead-letters", sg_cli_dead_letters, "list, show or replay rejected messages"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: sagactl [--db CONNINFO] COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'sagactl COMMAND --help' tells more about one command.\n");
}

int main(int argc, char **argv) {
    int i = 1;
    if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
        usage(stdout);
        return CLI_OK;
    }
    /* A --db before the command applies to it as SAGA_DATABASE_URL does. */
    if (i + 1 < argc && !strcmp(argv[i], "--db")) {
        setenv("SAGA_DATABASE_URL", argv[i + 1], 1);
        i += 2;
    } else if (i < argc && !strncmp(argv[i], "--db=", 5)) {
        setenv("SAGA_DATABASE_URL", argv[i] + 5, 1);
        i++;
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (!strcmp(argv[i], commands[c].name))
            return commands[c].run(argc - i, argv + i);
    fprintf(stderr, "sagactl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return CLI_USAGE;
}
