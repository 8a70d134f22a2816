/* sagactl: one function per command group, each taking the arguments after
 * the command name (argv[0] is the command) and returning the exit status of
 * CONTRACT.md section 4: 0 done, 1 failed, 2 usage error, 3 not found. */
#ifndef SAGA_CLI_H
#define SAGA_CLI_H

enum {
    CLI_OK = 0,
    CLI_FAILED = 1,
    CLI_USAGE = 2,
    CLI_NOT_FOUND = 3,
};

int sg_cli_validate(int argc, char **argv);
int sg_cli_migrate(int argc, char **argv);
int sg_cli_definitions(int argc, char **argv);
int sg_cli_list(int argc, char **argv);
int sg_cli_show(int argc, char **argv);
int sg_cli_abort(int argc, char **argv);
int sg_cli_retry(int argc, char **argv);
int sg_cli_stuck(int argc, char **argv);
int sg_cli_stats(int argc, char **argv);
int sg_cli_dead_letters(int argc, char **argv);

#endif
