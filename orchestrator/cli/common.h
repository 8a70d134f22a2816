/* What every sagactl command that talks to the database shares: where the
 * connection setting comes from (--db CONNINFO, else SAGA_DATABASE_URL) and
 * a small option reader. */
#ifndef SAGA_CLI_COMMON_H
#define SAGA_CLI_COMMON_H

#include <stdbool.h>

#include "saga/store.h"

/* If argv[*i] is the option 'name' ("--db VALUE" or "--db=VALUE"), sets
 * *value, advances *i past it and returns 1; returns 0 when it is another
 * argument, and -1 (with a message on stderr) when the value is missing. */
int sg_cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Opens the store from 'db' (the command's --db; NULL when not given), else
 * SAGA_DATABASE_URL. Returns CLI_OK with *st set, CLI_USAGE when neither is
 * given, CLI_FAILED when the database cannot be reached; the message is on
 * stderr, prefixed with 'command'. */
int sg_cli_open_store(const char *command, const char *db, sg_store_t **st);

#endif
