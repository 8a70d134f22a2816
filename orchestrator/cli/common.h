/* What every sagactl command that talks to the database shares: where the
 * connection setting comes from (--db CONNINFO, else SAGA_DATABASE_URL), the
 * option reader, the checks of filter values, the mapping of store errors to
 * exit statuses and messages, and the ways times are written (RFC 3339 UTC
 * in JSON, "3m ago" for people). */
#ifndef SAGA_CLI_COMMON_H
#define SAGA_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

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

/* ---- argument parsing ---- */

/* One option a command accepts: a flag (value == NULL) sets *flag, an
 * option with a value sets *value. */
typedef struct sg_cli_opt {
    const char *name;    /* "--status" */
    const char **value;  /* for "--status S" */
    bool *flag;          /* for "--json" */
} sg_cli_opt_t;

/* The arguments of one command after parsing. */
typedef struct sg_cli_args {
    const char *command;          /* "list", "dead-letters replay": for messages */
    void (*usage)(FILE *out);
    const char *positional[4];
    int npositional;
    const char *db;               /* --db, accepted by every command */
    bool json;                    /* --json, accepted by every command */
} sg_cli_args_t;

/* Parses argv[1..argc-1]: the options of 'opts' (a table ended by a zero
 * entry; may be NULL), --db, --json, --help, and at most 'max_positional'
 * other arguments ("--" ends the options). Returns CLI_OK; CLI_USAGE after
 * printing what is wrong and the usage on stderr; or -1 after printing the
 * usage on stdout for --help (the command then exits 0). */
int sg_cli_parse(int argc, char **argv, sg_cli_args_t *args, const sg_cli_opt_t *opts,
                 int max_positional);

/* Reports a bad argument: "sagactl: COMMAND: MESSAGE", then the usage, on
 * stderr. Returns CLI_USAGE. */
int sg_cli_usage_error(const sg_cli_args_t *args, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Filter values. Each returns CLI_OK, or CLI_USAGE after reporting the bad
 * value with sg_cli_usage_error. NULL text leaves the output unchanged. */
int sg_cli_parse_status(const sg_cli_args_t *args, const char *text, const char **status);
int sg_cli_parse_duration(const sg_cli_args_t *args, const char *option, const char *text,
                          int64_t *ms);
int sg_cli_parse_limit(const sg_cli_args_t *args, const char *text, int *limit);
int sg_cli_parse_id(const sg_cli_args_t *args, const char *what, const char *text,
                    int64_t *id);

/* ---- errors from the store ---- */

/* Reports a failed store call on stderr ("sagactl: COMMAND: cannot reach
 * the database: ..." for a lost connection, the store's message otherwise)
 * and returns the exit status: CLI_NOT_FOUND for SG_ERR_NOT_FOUND, else
 * CLI_FAILED. */
int sg_cli_store_error(const char *command, sg_store_t *st, sg_err_t err);

/* ---- output ---- */

/* The current time, epoch milliseconds. */
int64_t sg_cli_now_ms(void);
/* "2024-05-01T12:00:00.123Z"; "" for 0. */
void sg_cli_rfc3339(int64_t ms, char *buf, size_t size);
/* An RFC 3339 string, or JSON null for 0. A new reference. */
json_t *sg_cli_json_time(int64_t ms);
/* "2024-05-01 12:00:00 UTC". */
void sg_cli_utc(int64_t ms, char *buf, size_t size);
/* How long before 'now_ms' 'ms' was: "12s ago", "3m ago", "5h ago",
 * "2d ago"; "-" for 0. */
void sg_cli_age(int64_t ms, int64_t now_ms, char *buf, size_t size);
/* A span for people: "350ms", "1.2s", "3m04s", "1h02m". */
void sg_cli_span(int64_t ms, char *buf, size_t size);
/* Prints 'doc' (taken) indented, with a final newline. Returns CLI_OK, or
 * CLI_FAILED when it could not be written. */
int sg_cli_print_json(json_t *doc);
/* Parses JSON text from the store; a text that is not JSON becomes a
 * string, NULL becomes null. A new reference. */
json_t *sg_cli_json_text(const char *text);

#endif
