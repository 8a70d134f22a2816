/* sagactl migrate [--migrations DIR] [--db CONNINFO]: applies the SQL files
 * not yet applied, in order, each in its own transaction; safe to run from
 * several places at once (CONTRACT.md section 4). Prints each file applied,
 * or "up to date". */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl migrate [--migrations DIR] [--db CONNINFO]\n\n"
            "Applies the migrations not yet applied. DIR defaults to\n"
            "$SAGA_MIGRATIONS_DIR, else the installed share folder, else ./migrations.\n");
}

static void print_applied(void *opaque, int version, const char *file) {
    (void)opaque;
    (void)version;
    printf("applied %s\n", file);
    fflush(stdout);
}

int sg_cli_migrate(int argc, char **argv) {
    const char *db = NULL, *dir_opt = NULL;
    for (int i = 1; i < argc;) {
        int got;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        }
        if ((got = sg_cli_option(argc, argv, &i, "--db", &db)) == 0)
            got = sg_cli_option(argc, argv, &i, "--migrations", &dir_opt);
        if (got < 0)
            return CLI_USAGE;
        if (got == 0) {
            fprintf(stderr, "sagactl: migrate: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    sg_store_t *st;
    int rc = sg_cli_open_store("migrate", db, &st);
    if (rc != CLI_OK)
        return rc;
    char dir[4096];
    int applied = 0;
    sg_store_migrations_dir(dir_opt, dir, sizeof dir);
    sg_err_t err = sg_store_migrate(st, dir, print_applied, NULL, &applied);
    if (err) {
        fprintf(stderr, "sagactl: migrate: %s\n", sg_store_errmsg(st));
        rc = CLI_FAILED;
    } else if (applied == 0) {
        printf("up to date\n");
    } else {
        printf("%d migration%s applied\n", applied, applied == 1 ? "" : "s");
    }
    sg_store_destroy(st);
    return rc;
}
