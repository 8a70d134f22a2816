/* The connection setting and option reading shared by the commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"

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
