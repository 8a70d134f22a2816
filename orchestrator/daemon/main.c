/* sagad: the saga orchestrator daemon (CONTRACT.md section 5).
 *
 *   sagad --config FILE [--migrations DIR]
 *   sagad --version | --help
 *
 * Exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 when start-up
 * failed (database refused the migrations or a definition, a transport
 * could not be set up), 2 for a usage or configuration error. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sagad.h"
#include "saga/version.h"

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagad --config FILE [--migrations DIR]\n"
            "       sagad --version | --help\n\n"
            "Runs sagas: consumes starts, aborts and replies from Kafka and RabbitMQ,\n"
            "keeps each saga in PostgreSQL and publishes commands and lifecycle events.\n"
            "Every setting of FILE can be overridden by an environment variable\n"
            "SAGA_<KEY> (SAGA_DATABASE_URL, SAGA_KAFKA_BROKERS, SAGA_AMQP_URL, ...).\n\n"
            "Test only: SAGA_TEST_CRASH_POINT=after_commit|after_publish with\n"
            "SAGA_TEST_CRASH_AFTER=N makes the Nth passage exit with status 137.\n");
}

/* Reads the options; returns -1 to exit 0, 0 to go on, 2 on a usage error. */
static int parse_args(int argc, char **argv, const char **config, const char **migrations) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--version")) {
            printf("sagad %s\n", sg_version());
            return -1;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        }
        const char **slot = !strcmp(a, "--config") ? config
                             : !strcmp(a, "--migrations") ? migrations
                                                          : NULL;
        if (slot && i + 1 < argc) {
            *slot = argv[++i];
            continue;
        }
        fprintf(stderr, slot ? "sagad: option '%s' needs a value\n" : "sagad: unknown argument '%s'\n",
                a);
        usage(stderr);
        return 2;
    }
    if (!*config) {
        fprintf(stderr, "sagad: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv) {
    const char *config = NULL, *migrations = NULL;
    int rc = parse_args(argc, argv, &config, &migrations);
    if (rc)
        return rc < 0 ? 0 : rc;
    static char errstr[8192];
    sg_config_t *cfg = NULL;
    if (sg_config_load(config, NULL, &cfg, errstr, sizeof errstr) != SG_OK) {
        fprintf(stderr, "sagad: invalid configuration:\n%s\n", errstr);
        return 2;
    }
    sg_log_init(cfg->log_format, cfg->log_level, NULL);
    char *described = sg_config_describe(cfg);
    sg_log_info("sagad %s starting with configuration %s", sg_version(),
                described ? described : "{}");
    free(described);
    install_signals();

    sagad_t d = {.cfg = cfg, .migrations_dir = migrations, .stopping = &stopping};
    sg_err_t err = sg_daemon_start(&d, errstr, sizeof errstr);
    if (err && !stopping) {
        sg_log_error("cannot start: %s", errstr);
        fprintf(stderr, "sagad: cannot start: %s\n", errstr);
        rc = 1;
    } else if (!err) {
        rc = sg_daemon_run(&d);
    }
    sg_daemon_stop(&d);
    sg_config_destroy(cfg);
    return rc;
}
