/* Placeholder until the command lands. */
#include <stdio.h>
#include "cli/cli.h"
int sg_cli_validate(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "sagactl: validate is not implemented yet\n");
    return CLI_FAILED;
}
