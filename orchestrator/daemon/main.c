/* sagad: the saga orchestrator daemon. Placeholder until the worker lands. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("sagad 0.1.0\n");
        return 0;
    }
    fprintf(stderr, "sagad: not implemented yet\n");
    return 1;
}
