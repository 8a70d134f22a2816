/* sagactl abort and sagactl retry: an operator's input to one saga, applied
 * through the same transition path as the daemon's (sg_transition_run_one:
 * load the row, the engine decides, one transaction writes the row with
 * its version checked, the history, the outbox and the timers; on a version
 * conflict it reloads and applies again). sagactl never edits a saga row
 * itself and talks only to PostgreSQL: the commands and lifecycle events
 * the transition causes wait in the outbox for the daemon's relay.
 *
 * The engine may refuse the input (abort of a finished or failed saga,
 * retry of a saga that has not failed): that is recorded in the saga's
 * history as ignored, as the daemon records a refused saga.abort, and the
 * command exits 1 with the reason.
 *
 * Each run has its own message id in the inbox, so when the connection is
 * lost during the commit, sagactl reconnects and tells whether it took
 * effect. The channels the transition writes to (the replyto of commands,
 * the events channel) are the daemon's: the defaults of CONTRACT.md section
 * 5, SAGA_REPLY_TO_KAFKA, SAGA_REPLY_TO_AMQP and SAGA_EVENTS, or the
 * daemon's own file given with --config. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "saga/config.h"
#include "saga/transition.h"

#define SOURCE "/sagactl"

typedef struct control {
    sg_input_kind_t kind;
    const char *verb;     /* "abort" */
    const char *done;     /* "aborted" */
    void (*usage)(FILE *out);
} control_t;

static void abort_usage(FILE *out) {
    fprintf(out,
            "usage: sagactl abort SAGA_ID [--reason TEXT] [--config FILE] [--json]\n"
            "                     [--db CONNINFO]\n"
            "\n"
            "Aborts a saga as a saga.abort message does: a running saga compensates from\n"
            "where it is, the step in flight included; a finished or failed saga is left\n"
            "as it is (exit status 1, the refusal is recorded in its history).\n"
            "The compensation commands go out through the daemon's outbox relay.\n"
            "\n"
            "  --reason TEXT  why, kept in the saga's history and reason\n"
            "  --config FILE  the daemon's configuration file, for its reply_to and events\n"
            "                 channels (default: CONTRACT.md defaults and SAGA_REPLY_TO_KAFKA,\n"
            "                 SAGA_REPLY_TO_AMQP, SAGA_EVENTS)\n"
            "  --json         print one JSON object {id, status, version, commands, ignored}\n"
            "  --db           PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help         show this help\n"
            "\n"
            "Exit status: 0 aborted, 1 failed or refused, 2 usage error, 3 no such saga.\n");
}

static void retry_usage(FILE *out) {
    fprintf(out,
            "usage: sagactl retry SAGA_ID [--reason TEXT] [--config FILE] [--json]\n"
            "                     [--db CONNINFO]\n"
            "\n"
            "Resumes a failed saga: sends the step or the compensation it is stuck on\n"
            "again, with fresh attempts. A saga that has not failed is left as it is\n"
            "(exit status 1, the refusal is recorded in its history). The commands go\n"
            "out through the daemon's outbox relay.\n"
            "\n"
            "  --reason TEXT  why, kept in the saga's history\n"
            "  --config FILE  the daemon's configuration file, for its reply_to and events\n"
            "                 channels (default: CONTRACT.md defaults and SAGA_REPLY_TO_KAFKA,\n"
            "                 SAGA_REPLY_TO_AMQP, SAGA_EVENTS)\n"
            "  --json         print one JSON object {id, status, version, commands, ignored}\n"
            "  --db           PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help         show this help\n"
            "\n"
            "Exit status: 0 resumed, 1 failed or refused, 2 usage error, 3 no such saga.\n");
}

/* The daemon's channels, as the daemon would resolve them. */
typedef struct channels {
    sg_config_t *cfg;      /* when --config was given */
    const char *reply_kafka, *reply_amqp, *events;
} channels_t;

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

static int channels_load(const sg_cli_args_t *args, const char *config, channels_t *ch) {
    char errstr[2048];
    if (config) {
        if (sg_config_load(config, NULL, &ch->cfg, errstr, sizeof errstr) != SG_OK) {
            fprintf(stderr, "sagactl: %s: cannot load the configuration:\n%s\n", args->command,
                    errstr);
            return CLI_FAILED;
        }
        ch->reply_kafka = ch->cfg->reply_to_kafka;
        ch->reply_amqp = ch->cfg->reply_to_amqp;
        ch->events = ch->cfg->events;
        return CLI_OK;
    }
    /* The daemon's defaults: events on Kafka unless only RabbitMQ is set. */
    bool amqp_only = !getenv("SAGA_KAFKA_BROKERS") && getenv("SAGA_AMQP_URL");
    ch->reply_kafka = env_or("SAGA_REPLY_TO_KAFKA", "kafka:saga.replies");
    ch->reply_amqp = env_or("SAGA_REPLY_TO_AMQP", "amqp:/saga.replies");
    ch->events = env_or("SAGA_EVENTS", amqp_only ? "amqp:/saga.events" : "kafka:saga.events");
    return CLI_OK;
}

static size_t count_commands(const sg_transition_t *tr) {
    const sg_effects_t *fx = sg_transition_effects(tr);
    size_t n = 0;
    for (size_t i = 0; i < sg_effects_count(fx); i++)
        if (sg_effects_at(fx, i)->kind == SG_EFFECT_COMMAND)
            n++;
    return n;
}

static int report(const control_t *c, const sg_cli_args_t *args, const char *id,
                  sg_transition_t *tr) {
    const sg_saga_t *saga = sg_transition_saga(tr);
    const char *status = sg_saga_status_str(sg_saga_status(saga));
    const char *ignored = sg_transition_ignored(tr);
    int64_t version = sg_transition_item(tr)->new_version;
    size_t commands = count_commands(tr);
    int rc = ignored ? CLI_FAILED : CLI_OK;
    if (args->json) {
        int prc = sg_cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:o}", "id", id, "status",
                                              status, "version", (json_int_t)version,
                                              "commands", (json_int_t)commands, "ignored",
                                              ignored ? json_string(ignored) : json_null()));
        return prc != CLI_OK ? prc : rc;
    }
    if (ignored) {
        fprintf(stderr, "sagactl: %s: saga '%s' not %s: %s (it stays %s)\n", args->command, id,
                c->done, ignored, status);
        return rc;
    }
    printf("saga '%s' %s: now %s, version %" PRId64 "; %zu command%s queued for the daemon's "
           "relay\n",
           id, c->done, status, version, commands, commands == 1 ? "" : "s");
    return rc;
}

/* After a lost connection: whether the commit happened. */
static int after_lost_connection(const sg_cli_args_t *args, sg_store_t *st, const char *id,
                                 const char *message_id) {
    bool seen = false;
    sg_err_t err = sg_store_inbox_seen(st, message_id, &seen);
    if (err)
        fprintf(stderr,
                "sagactl: %s: the connection was lost while committing, and whether the %s of "
                "saga '%s' took effect cannot be told now: look at 'sagactl show %s'\n",
                args->command, args->command, id, id);
    else if (seen)
        fprintf(stderr, "sagactl: %s: the connection was lost after the commit: the %s of saga "
                        "'%s' took effect\n", args->command, args->command, id);
    else
        fprintf(stderr, "sagactl: %s: the connection was lost before the commit: nothing "
                        "changed; run it again\n", args->command);
    return seen ? CLI_OK : CLI_FAILED;
}

static int apply(const control_t *c, const sg_cli_args_t *args, sg_store_t *st,
                 const channels_t *ch, const char *id, const char *reason) {
    char errstr[1024], message_id[256];
    int64_t now = sg_cli_now_ms();
    snprintf(message_id, sizeof message_id, "sagactl/%s/%s/%" PRId64 "/%ld", c->verb, id, now,
             (long)getpid());
    sg_input_t in = {.kind = c->kind, .reason = reason};
    sg_transition_env_t env = {.engine = {.reply_to_kafka = ch->reply_kafka,
                                          .reply_to_amqp = ch->reply_amqp},
                               .events = ch->events,
                               .source = SOURCE};
    sg_defcache_t *dc = sg_defcache_new();
    sg_transition_t *tr = NULL;
    sg_err_t err = dc ? sg_transition_run_one(st, dc, id, &in, message_id, now, &env, &tr,
                                              errstr, sizeof errstr)
                      : SG_ERR_NOMEM;
    int rc;
    if (!dc)
        snprintf(errstr, sizeof errstr, "out of memory");
    if (!err) {
        rc = report(c, args, id, tr);
    } else if (err == SG_ERR_CONN) {
        rc = after_lost_connection(args, st, id, message_id);
    } else if (err == SG_ERR_NOT_FOUND) {
        fprintf(stderr, "sagactl: %s: %s\n", args->command, errstr);
        rc = CLI_NOT_FOUND;
    } else if (err == SG_ERR_CONFLICT) {
        fprintf(stderr, "sagactl: %s: saga '%s' kept changing under %d attempts: try again\n",
                args->command, id, SG_TRANSITION_MAX_RETRIES + 1);
        rc = CLI_FAILED;
    } else {
        fprintf(stderr, "sagactl: %s: %s\n", args->command, errstr);
        rc = CLI_FAILED;
    }
    sg_transition_destroy(tr);
    sg_defcache_destroy(dc);
    return rc;
}

static int run(const control_t *c, int argc, char **argv) {
    const char *reason = NULL, *config = NULL;
    const sg_cli_opt_t opts[] = {
        {"--reason", &reason, NULL}, {"--config", &config, NULL}, {NULL, NULL, NULL}};
    sg_cli_args_t args = {.command = c->verb, .usage = c->usage};
    channels_t ch = {0};
    int rc = sg_cli_parse(argc, argv, &args, opts, 1);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if (args.npositional != 1 || !args.positional[0][0])
        return sg_cli_usage_error(&args, "which saga? give its SAGA_ID");
    if ((rc = channels_load(&args, config, &ch)) != CLI_OK)
        return rc;
    sg_store_t *st = NULL;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) == CLI_OK)
        rc = apply(c, &args, st, &ch, args.positional[0], reason);
    sg_store_destroy(st);
    sg_config_destroy(ch.cfg);
    return rc;
}

int sg_cli_abort(int argc, char **argv) {
    static const control_t c = {SG_INPUT_ABORT, "abort", "aborted", abort_usage};
    return run(&c, argc, argv);
}

int sg_cli_retry(int argc, char **argv) {
    static const control_t c = {SG_INPUT_RETRY, "retry", "resumed", retry_usage};
    return run(&c, argc, argv);
}
