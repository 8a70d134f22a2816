/* Placeholder until the command lands. */
#include <stdio.h>
#include "cli/cli.h"
int sg_cli_migrate(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "sagactl: migrate is not implemented yet\n");
    return CLI_FAILED;
}
