/* participant: a saga participant for tests, the demo and the benchmark.
 *
 *   participant [serve] [OPTIONS]     consume commands, answer by rules
 *   participant send [OPTIONS]        publish saga messages (see participant_send.c)
 *   participant cleanup [OPTIONS]     delete RabbitMQ queues and exchanges of a test
 *   participant dump [OPTIONS]        print (and take) the messages of a RabbitMQ queue
 *
 * It consumes step commands (CloudEvents, CONTRACT.md section 2) from Kafka
 * topics and RabbitMQ queues, records each in the effects table (command id
 * unique: a redelivered command is counted, not applied again, and gets the
 * same answer) and answers on the command's "replyto" channel with a
 * saga.reply chosen by the rules (participant_rules.c). Inputs are
 * acknowledged after the transaction that recorded them has committed and
 * their replies were handed to the brokers. One log line per command.
 * SIGTERM or SIGINT: finish the batch in hand, send what is due, exit 0. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "participant.h"
#include "saga/amqp.h"
#include "saga/def.h"
#include "saga/envelope.h"
#include "saga/kafka.h"

#define BATCH_MAX 256
#define RESEND_DELAY_MS 500

/* ---- common ---- */

volatile int pt_stopping;

static void on_signal(int sig) {
    (void)sig;
    pt_stopping = 1;
}

void pt_on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int64_t pt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pt_sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void pt_log(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char at[32];
    sg_envelope_format_time(pt_now_ms(), at, sizeof at);
    fprintf(stderr, "%s participant: %s\n", at, line);
}

void pt_random(void *buf, size_t n) {
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(buf, 1, n, f) : 0;
    if (f)
        fclose(f);
    unsigned char *p = buf;
    for (size_t i = got; i < n; i++)
        p[i] = (unsigned char)((uint64_t)pt_now_ms() * 2654435761u >> (i % 24));
}

static void transport_log(void *opaque, int level, const char *message) {
    if (level <= 4)
        pt_log("%s: %s", (const char *)opaque, message);
}

/* ---- options ---- */

typedef struct strv {
    const char **v;
    size_t n;
} strv_t;

static void strv_push(strv_t *s, const char *value) {
    const char **v = realloc(s->v, (s->n + 1) * sizeof *v);
    if (!v) {
        fprintf(stderr, "participant: out of memory\n");
        exit(1);
    }
    s->v = v;
    s->v[s->n++] = value;
}

typedef struct opts {
    const char *db;
    const char *brokers;
    const char *amqp_url;
    const char *group_id;
    const char *source;
    const char *ready_file;
    strv_t topics;
    strv_t queues;
    strv_t kafka_props; /* "KEY=VALUE" */
    pt_bind_t *binds;
    size_t nbinds;
    pt_rules_t rules;
    int prefetch;
    int batch_wait_ms;
} opts_t;

static void usage(FILE *to) {
    fprintf(to,
            "usage: participant [serve] [options]\n"
            "       participant send --help\n"
            "  --kafka-topic TOPIC        consume commands from this topic (repeatable)\n"
            "  --group-id ID              Kafka consumer group (default participant)\n"
            "  --kafka-property K=V       librdkafka property for the consumer (repeatable)\n"
            "  --amqp-queue QUEUE         consume this queue, declared durable (repeatable)\n"
            "  --amqp-bind EX:KEY:QUEUE   declare direct exchange EX and QUEUE bound with KEY,\n"
            "                             consume QUEUE (repeatable)\n"
            "  --rule TYPE:ACTION[:OPTS]  answer rule, tried in order (repeatable); ACTION is\n"
            "                             succeed, fail, retry (retryable failure) or silent;\n"
            "                             OPTS: attempts=N|N-M|N-, when=$.field[OP VALUE]\n"
            "                             (OP = != > < >= <=), delay=DURATION, repeat=N,\n"
            "                             dupes=N, stale, code=C, message=M\n"
            "  --rules FILE               JSON array of rules (same keys, plus \"result\")\n"
            "  --db URL                   effects database (default $SAGA_DATABASE_URL)\n"
            "  --kafka-brokers LIST       default $SAGA_KAFKA_BROKERS\n"
            "  --amqp-url URL             default $SAGA_AMQP_URL\n"
            "  --prefetch N               RabbitMQ prefetch (default 256)\n"
            "  --source URI               the replies' source (default urn:participant)\n"
            "  --ready-file PATH          written once consuming has started (for Kafka: once\n"
            "                             a probe sent to each topic came back)\n"
            "A command no rule matches succeeds. Effects go to table participant_effects.\n");
}

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static int parse_opts(int argc, char **argv, opts_t *o) {
    enum { O_TOPIC = 256, O_GROUP, O_PROP, O_QUEUE, O_BIND, O_RULE, O_RULES, O_DB,
           O_BROKERS, O_AMQP, O_PREFETCH, O_SOURCE, O_READY, O_WAIT, O_HELP };
    static const struct option LONG[] = {
        {"kafka-topic", required_argument, 0, O_TOPIC}, {"group-id", required_argument, 0, O_GROUP},
        {"kafka-property", required_argument, 0, O_PROP}, {"amqp-queue", required_argument, 0, O_QUEUE},
        {"amqp-bind", required_argument, 0, O_BIND},    {"rule", required_argument, 0, O_RULE},
        {"rules", required_argument, 0, O_RULES},       {"db", required_argument, 0, O_DB},
        {"kafka-brokers", required_argument, 0, O_BROKERS}, {"amqp-url", required_argument, 0, O_AMQP},
        {"prefetch", required_argument, 0, O_PREFETCH}, {"source", required_argument, 0, O_SOURCE},
        {"ready-file", required_argument, 0, O_READY},  {"batch-wait-ms", required_argument, 0, O_WAIT},
        {"help", no_argument, 0, O_HELP},               {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->db = env_or("SAGA_DATABASE_URL", NULL);
    o->brokers = env_or("SAGA_KAFKA_BROKERS", NULL);
    o->amqp_url = env_or("SAGA_AMQP_URL", NULL);
    o->group_id = "participant";
    o->source = "urn:participant";
    o->prefetch = 256;
    o->batch_wait_ms = 20;
    char why[512];
    int c;
    while ((c = getopt_long(argc, argv, "", LONG, NULL)) != -1) {
        switch (c) {
        case O_TOPIC: strv_push(&o->topics, optarg); break;
        case O_GROUP: o->group_id = optarg; break;
        case O_PROP: strv_push(&o->kafka_props, optarg); break;
        case O_QUEUE: strv_push(&o->queues, optarg); break;
        case O_BIND: {
            pt_bind_t *b = realloc(o->binds, (o->nbinds + 1) * sizeof *b);
            if (!b)
                return 1;
            o->binds = b;
            if (pt_bind_parse(optarg, &o->binds[o->nbinds], why, sizeof why)) {
                fprintf(stderr, "participant: %s\n", why);
                return 2;
            }
            o->nbinds++;
            break;
        }
        case O_RULE:
            if (pt_rules_add_spec(&o->rules, optarg, why, sizeof why)) {
                fprintf(stderr, "participant: rule '%s': %s\n", optarg, why);
                return 2;
            }
            break;
        case O_RULES:
            if (pt_rules_add_file(&o->rules, optarg, why, sizeof why)) {
                fprintf(stderr, "participant: %s\n", why);
                return 2;
            }
            break;
        case O_DB: o->db = optarg; break;
        case O_BROKERS: o->brokers = optarg; break;
        case O_AMQP: o->amqp_url = optarg; break;
        case O_PREFETCH: o->prefetch = atoi(optarg); break;
        case O_SOURCE: o->source = optarg; break;
        case O_READY: o->ready_file = optarg; break;
        case O_WAIT: o->batch_wait_ms = atoi(optarg); break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "participant: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->db) {
        fprintf(stderr, "participant: no database: give --db or set SAGA_DATABASE_URL\n");
        return 2;
    }
    if (!o->topics.n && !o->queues.n && !o->nbinds) {
        fprintf(stderr, "participant: nothing to consume: give --kafka-topic, --amqp-queue or --amqp-bind\n");
        return 2;
    }
    if (o->topics.n && !o->brokers) {
        fprintf(stderr, "participant: --kafka-topic needs --kafka-brokers or SAGA_KAFKA_BROKERS\n");
        return 2;
    }
    if ((o->queues.n || o->nbinds) && !o->amqp_url) {
        fprintf(stderr, "participant: --amqp-queue needs --amqp-url or SAGA_AMQP_URL\n");
        return 2;
    }
    return 0;
}

static void opts_release(opts_t *o) {
    free(o->topics.v);
    free(o->queues.v);
    free(o->kafka_props.v);
    for (size_t i = 0; i < o->nbinds; i++)
        pt_bind_release(&o->binds[i]);
    free(o->binds);
    pt_rules_release(&o->rules);
}

/* ---- replies waiting to be sent ---- */

typedef enum job_state { JOB_WAITING = 0, JOB_SENT } job_state_t;

typedef struct job {
    job_state_t state;
    int64_t due_ms;
    int64_t ref;
    int tries;
    sg_channel_t channel;
    char *id;        /* the reply's event id */
    char *saga_id;
    char *payload;
    size_t len;
} job_t;

typedef struct server {
    opts_t *o;
    pt_effects_t *fx;
    sg_kafka_consumer_t *kc;
    sg_kafka_producer_t *kp;
    sg_amqp_consumer_t *ac;
    sg_amqp_publisher_t *ap;
    job_t **jobs;
    size_t njobs;
    int64_t next_ref;
    int64_t amqp_retry_at;
    /* readiness: a probe sent to each Kafka topic has come back, so the
     * group has its partitions (or the wait ran out) */
    char probe[64];
    size_t probes_seen;
    int64_t ready_deadline;
    bool ready;
    /* figures for the final log line */
    long commands;
    long redeliveries;
    long replies;
    long bad;
} server_t;

static void job_destroy(job_t *j) {
    if (!j)
        return;
    sg_channel_release(&j->channel);
    free(j->id);
    free(j->saga_id);
    free(j->payload);
    free(j);
}

static job_t *job_find(server_t *s, int64_t ref, size_t *at) {
    for (size_t i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->state == JOB_SENT && s->jobs[i]->ref == ref) {
            *at = i;
            return s->jobs[i];
        }
    }
    return NULL;
}

static void job_remove(server_t *s, size_t at) {
    job_destroy(s->jobs[at]);
    s->jobs[at] = s->jobs[--s->njobs];
}

static void on_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    server_t *s = opaque;
    size_t at;
    job_t *j = job_find(s, ref, &at);
    if (!j)
        return;
    if (err == SG_OK) {
        s->replies++;
        job_remove(s, at);
        return;
    }
    if (++j->tries % 10 == 1)
        pt_log("reply %s to %s not delivered (%s): sending it again", j->id, j->channel.text,
               reason ? reason : sg_err_str(err));
    j->state = JOB_WAITING;
    j->due_ms = pt_now_ms() + RESEND_DELAY_MS;
}

/* Takes ownership of 'payload'. */
static void job_add(server_t *s, const char *replyto, const char *id, const char *saga_id,
                    char *payload, size_t len, int64_t due_ms) {
    job_t *j = calloc(1, sizeof *j);
    job_t **v = realloc(s->jobs, (s->njobs + 1) * sizeof *v);
    char why[256];
    if (!j || !v) {
        pt_log("out of memory");
        exit(1);
    }
    s->jobs = v;
    if (sg_channel_parse(replyto, &j->channel, why, sizeof why)) {
        pt_log("cannot answer on replyto \"%s\": %s", replyto, why);
        free(payload);
        free(j);
        return;
    }
    j->id = strdup(id);
    j->saga_id = strdup(saga_id);
    j->payload = payload;
    j->len = len;
    j->due_ms = due_ms;
    s->jobs[s->njobs++] = j;
}

static sg_err_t job_send(server_t *s, job_t *j) {
    char why[256] = "";
    sg_err_t err;
    j->ref = ++s->next_ref;
    if (j->channel.transport == SG_TRANSPORT_KAFKA) {
        if (!s->kp)
            return SG_ERR_STATE;
        err = sg_kafka_producer_send(s->kp, j->channel.topic, j->saga_id, j->payload, j->len,
                                     j->ref, why, sizeof why);
    } else {
        if (!s->ap || !sg_amqp_publisher_connected(s->ap))
            return SG_ERR_CONN;
        err = sg_amqp_publisher_send(s->ap, j->channel.exchange, j->channel.routing_key, j->id,
                                     j->saga_id, j->payload, j->len, j->ref, why, sizeof why);
    }
    if (err) {
        if (++j->tries % 10 == 1)
            pt_log("cannot send reply %s to %s: %s", j->id, j->channel.text, why);
        return err;
    }
    j->state = JOB_SENT;
    return SG_OK;
}

static void amqp_publisher_up(server_t *s) {
    if (!s->ap || sg_amqp_publisher_connected(s->ap) || pt_now_ms() < s->amqp_retry_at)
        return;
    char why[256];
    if (sg_amqp_publisher_connect(s->ap, why, sizeof why)) {
        pt_log("rabbitmq publisher: %s", why);
        s->amqp_retry_at = pt_now_ms() + 1000;
    }
}

/* Sends every reply that is due, in the order they were queued. */
static void send_due(server_t *s) {
    int64_t now = pt_now_ms();
    amqp_publisher_up(s);
    for (size_t i = 0; i < s->njobs; i++) {
        job_t *j = s->jobs[i];
        if (j->state != JOB_WAITING || j->due_ms > now)
            continue;
        sg_err_t err = job_send(s, j);
        if (err == SG_ERR_STATE) {
            pt_log("no kafka brokers to answer on %s: reply %s dropped", j->channel.text, j->id);
            job_remove(s, i--);
        } else if (err) {
            j->due_ms = now + RESEND_DELAY_MS;
        }
    }
}

static size_t jobs_sent(const server_t *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->njobs; i++)
        n += s->jobs[i]->state == JOB_SENT;
    return n;
}

/* Serves delivery reports until every sent reply is reported, at most
 * 'timeout_ms'. */
static void await_reports(server_t *s, int timeout_ms) {
    int64_t until = pt_now_ms() + timeout_ms;
    do {
        char why[256];
        if (s->kp)
            sg_kafka_producer_poll(s->kp, !timeout_ms ? 0 : s->ap ? 1 : 10);
        if (s->ap && sg_amqp_publisher_connected(s->ap) &&
            sg_amqp_publisher_poll(s->ap, timeout_ms ? 5 : 0, why, sizeof why) == SG_ERR_CONN)
            pt_log("rabbitmq publisher: %s", why);
    } while (jobs_sent(s) && pt_now_ms() < until);
}

/* ---- one command ---- */

typedef struct command {
    const char *channel;  /* where it came from */
    json_t *ev;           /* the whole event */
    const char *id, *type, *saga_id, *saga_type, *step, *replyto, *traceparent;
    const json_t *data;
    bool undo;
    int attempt;
} command_t;

static const char *str_attr(const json_t *ev, const char *name) {
    const json_t *v = json_object_get(ev, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Reads "<sagaid>/<step>/<do|undo>/<attempt>" from the right. */
static void parse_command_id(command_t *c) {
    const char *last = strrchr(c->id, '/');
    c->attempt = last ? atoi(last + 1) : 0;
    c->undo = false;
    if (!last || last == c->id)
        return;
    const char *p = last - 1;
    while (p > c->id && *p != '/')
        p--;
    size_t len = (size_t)(last - p - 1);
    c->undo = len == 4 && !strncmp(p + 1, "undo", 4);
}

static bool command_parse(command_t *c, const void *buf, size_t len, const char *channel) {
    memset(c, 0, sizeof *c);
    c->channel = channel;
    c->ev = json_loadb(buf, len, 0, NULL);
    if (!json_is_object(c->ev))
        return false;
    c->id = str_attr(c->ev, "id");
    c->type = str_attr(c->ev, "type");
    c->saga_id = str_attr(c->ev, "sagaid");
    c->saga_type = str_attr(c->ev, "sagatype");
    c->step = str_attr(c->ev, "sagastep");
    c->replyto = str_attr(c->ev, "replyto");
    c->traceparent = str_attr(c->ev, "traceparent");
    c->data = json_object_get(c->ev, "data");
    if (!c->id || !c->type || !c->saga_id || !c->replyto)
        return false;
    parse_command_id(c);
    return true;
}

/* The answer the rules give: outcome and reply data (a new reference). */
static const char *decide(const pt_rule_t *r, const command_t *c, json_t **reply) {
    pt_action_t action = r ? r->action : PT_SUCCEED;
    if (action == PT_SILENT) {
        *reply = NULL;
        return "none";
    }
    if (action == PT_SUCCEED) {
        *reply = r && r->result ? json_deep_copy(r->result)
                                : pt_default_result(c->type, c->step, c->saga_id, c->undo, c->data);
        return "success";
    }
    bool retryable = action == PT_RETRY;
    *reply = json_pack("{s:s,s:s,s:b}", "code",
                       r->code ? r->code : retryable ? "unavailable" : "rejected", "message",
                       r->message ? r->message : retryable ? "try again later" : "refused by rule",
                       "retryable", retryable);
    return "failure";
}

static char *encode_reply(server_t *s, const command_t *c, const char *id, const char *causation,
                          const char *outcome, const json_t *data, size_t *len) {
    sg_event_fields_t f = {.id = id, .source = s->o->source, .type = "saga.reply",
                           .time_ms = pt_now_ms(), .sagaid = c->saga_id, .sagatype = c->saga_type,
                           .sagastep = c->step, .causationid = causation, .outcome = outcome,
                           .traceparent = c->traceparent, .data = data};
    char *out = NULL, why[256];
    if (sg_envelope_encode(&f, &out, len, why, sizeof why)) {
        pt_log("cannot encode the reply to %s: %s", c->id, why);
        return NULL;
    }
    return out;
}

static void queue_reply(server_t *s, const command_t *c, const char *suffix, const char *causation,
                        const char *outcome, const json_t *data, int64_t due) {
    char id[600];
    size_t len;
    snprintf(id, sizeof id, "%s/%s", c->id, suffix);
    char *payload = encode_reply(s, c, id, causation, outcome, data, &len);
    if (payload)
        job_add(s, c->replyto, id, c->saga_id, payload, len, due);
}

/* Queues the replies of a command: a stale one first when the rule says
 * so, then the reply 'repeat' times (same event id), then 'dupes' more
 * answers with their own ids. A redelivered command gets its recorded
 * answer once. */
static void queue_replies(server_t *s, const command_t *c, const pt_rule_t *r, bool first,
                          const char *outcome, const json_t *reply) {
    if (!strcmp(outcome, "none"))
        return;
    int64_t due = pt_now_ms() + (first && r ? r->delay_ms : 0);
    if (first && r && r->stale) {
        char wrong[600];
        snprintf(wrong, sizeof wrong, "%s~stale", c->id);
        json_t *err = json_pack("{s:s,s:s,s:b}", "code", "stale", "message", "a stale answer",
                                "retryable", 0);
        queue_reply(s, c, "stale", wrong, "failure", err, due);
        json_decref(err);
    }
    int repeat = first && r ? r->repeat : 1;
    for (int i = 0; i < repeat; i++)
        queue_reply(s, c, "reply", c->id, outcome, reply, due);
    for (int i = 0; first && r && i < r->dupes; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "reply/dup%d", i + 1);
        queue_reply(s, c, suffix, c->id, outcome, reply, due);
    }
}

/* Records and answers one command. SG_ERR_CONN / SG_ERR_INTERNAL when the
 * effects table could not be written (the batch is then given back). */
static sg_err_t handle(server_t *s, const void *buf, size_t len, const char *channel) {
    command_t c;
    if (!command_parse(&c, buf, len, channel)) {
        const char *probe = str_attr(c.ev, "participant_probe");
        if (probe && !strcmp(probe, s->probe)) {
            s->probes_seen++;
            json_decref(c.ev);
            return SG_OK;
        }
        s->bad++;
        pt_log("%s: not a command (needs id, type, sagaid, replyto): ignored", channel);
        json_decref(c.ev);
        return SG_OK;
    }
    const pt_rule_t *r = pt_rules_match(&s->o->rules, c.type, c.attempt, c.data);
    json_t *reply = NULL, *stored_reply = NULL;
    const char *outcome = decide(r, &c, &reply);
    pt_effect_t e = {.command_id = c.id, .saga_id = c.saga_id, .step = c.step, .type = c.type,
                     .channel = channel, .undo = c.undo, .attempt = c.attempt, .data = c.data,
                     .outcome = outcome, .reply = reply};
    int receipts = 0;
    char *stored = NULL, why[512];
    sg_err_t err = pt_effects_record(s->fx, &e, &receipts, &stored, &stored_reply, why, sizeof why);
    if (err) {
        pt_log("%s", why);
        goto done;
    }
    bool first = receipts == 1;
    s->commands++;
    s->redeliveries += !first;
    pt_log("%s %s %s attempt=%d receipt=%d -> %s%s", channel, c.type, c.id, c.attempt, receipts,
           first ? outcome : stored,
           first && r && r->delay_ms ? " (late)" : "");
    queue_replies(s, &c, r, first, first ? outcome : stored, first ? reply : stored_reply);
done:
    free(stored);
    json_decref(stored_reply);
    json_decref(reply);
    json_decref(c.ev);
    return err;
}

/* ---- the loop ---- */

static sg_err_t open_consumers(server_t *s) {
    opts_t *o = s->o;
    char why[512];
    if (o->topics.n) {
        sg_kv_t props[32];
        size_t n = 0;
        props[n++] = (sg_kv_t){"allow.auto.create.topics", "true"};
        props[n++] = (sg_kv_t){"session.timeout.ms", "6000"};
        props[n++] = (sg_kv_t){"topic.metadata.refresh.interval.ms", "2000"};
        /* a fetch that waits for data costs latency on brokers that answer
         * only when the wait is over (the dev broker does) */
        props[n++] = (sg_kv_t){"fetch.wait.max.ms", "20"};
        char kv[16][256];
        for (size_t i = 0; i < o->kafka_props.n && i < 16; i++) {
            snprintf(kv[i], sizeof kv[i], "%s", o->kafka_props.v[i]);
            char *eq = strchr(kv[i], '=');
            if (!eq) {
                pt_log("--kafka-property '%s' is not KEY=VALUE", kv[i]);
                return SG_ERR_INVALID;
            }
            *eq = '\0';
            props[n++] = (sg_kv_t){kv[i], eq + 1};
        }
        sg_kafka_conf_t kc = {.brokers = o->brokers, .group_id = o->group_id,
                              .client_id = "participant", .properties = props, .nproperties = n,
                              .log = transport_log, .log_opaque = "kafka"};
        if (!(s->kc = sg_kafka_consumer_new(&kc, o->topics.v, o->topics.n, why, sizeof why))) {
            pt_log("kafka consumer: %s", why);
            return SG_ERR_CONN;
        }
    }
    if (o->queues.n || o->nbinds) {
        if (pt_amqp_declare(o->amqp_url, o->queues.v, o->queues.n, o->binds, o->nbinds, why,
                            sizeof why)) {
            pt_log("%s", why);
            return SG_ERR_CONN;
        }
        strv_t all = {0};
        for (size_t i = 0; i < o->queues.n; i++)
            strv_push(&all, o->queues.v[i]);
        for (size_t i = 0; i < o->nbinds; i++)
            strv_push(&all, o->binds[i].queue);
        sg_amqp_conf_t ac = {.url = o->amqp_url, .prefetch = (uint16_t)o->prefetch,
                             .log = transport_log, .log_opaque = "rabbitmq"};
        s->ac = sg_amqp_consumer_new(&ac, all.v, all.n, why, sizeof why);
        free(all.v);
        if (!s->ac || sg_amqp_consumer_connect(s->ac, why, sizeof why)) {
            pt_log("rabbitmq consumer: %s", why);
            return SG_ERR_CONN;
        }
    }
    return SG_OK;
}

static sg_err_t open_producers(server_t *s) {
    opts_t *o = s->o;
    char why[512];
    if (o->brokers) {
        sg_kafka_conf_t kc = {.brokers = o->brokers, .client_id = "participant",
                              .log = transport_log, .log_opaque = "kafka"};
        if (!(s->kp = sg_kafka_producer_new(&kc, on_delivery, s, why, sizeof why))) {
            pt_log("kafka producer: %s", why);
            return SG_ERR_CONN;
        }
    }
    if (o->amqp_url) {
        sg_amqp_conf_t ac = {.url = o->amqp_url, .log = transport_log, .log_opaque = "rabbitmq"};
        if (!(s->ap = sg_amqp_publisher_new(&ac, on_delivery, s, why, sizeof why))) {
            pt_log("rabbitmq publisher: %s", why);
            return SG_ERR_CONN;
        }
        amqp_publisher_up(s);
    }
    return SG_OK;
}

typedef struct batch {
    sg_kafka_msg_t kmsgs[BATCH_MAX];
    size_t nk;
    sg_amqp_msg_t amsgs[BATCH_MAX];
    size_t na;
} batch_t;

static void poll_inputs(server_t *s, batch_t *b, int wait_ms) {
    char why[512];
    b->nk = b->na = 0;
    int each = s->kc && s->ac ? wait_ms / 2 : wait_ms;
    if (s->kc && sg_kafka_consumer_poll(s->kc, b->kmsgs, BATCH_MAX, each, &b->nk, why, sizeof why))
        pt_log("kafka consumer: %s", why);
    if (!s->ac)
        return;
    if (!sg_amqp_consumer_connected(s->ac) && sg_amqp_consumer_connect(s->ac, why, sizeof why)) {
        pt_log("rabbitmq consumer: %s", why);
        pt_sleep_ms(each);
        return;
    }
    if (sg_amqp_consumer_poll(s->ac, b->amsgs, BATCH_MAX, b->nk ? 0 : each, &b->na, why,
                              sizeof why))
        pt_log("rabbitmq consumer: %s", why);
}

/* Records and answers the batch in one transaction; SG_OK once it is
 * committed. */
static sg_err_t apply_batch(server_t *s, batch_t *b) {
    char why[512], chan[300];
    sg_err_t err = pt_effects_begin(s->fx, why, sizeof why);
    if (err) {
        pt_log("%s", why);
        return err;
    }
    size_t jobs_before = s->njobs;
    for (size_t i = 0; i < b->nk && !err; i++) {
        snprintf(chan, sizeof chan, "kafka:%s", b->kmsgs[i].topic);
        err = handle(s, b->kmsgs[i].payload, b->kmsgs[i].len, chan);
    }
    for (size_t i = 0; i < b->na && !err; i++) {
        snprintf(chan, sizeof chan, "amqp:/%s", b->amsgs[i].queue);
        err = handle(s, b->amsgs[i].body, b->amsgs[i].len, chan);
    }
    if (!err && (err = pt_effects_commit(s->fx, why, sizeof why)))
        pt_log("%s", why);
    if (err) {
        pt_effects_rollback(s->fx);
        while (s->njobs > jobs_before) /* nothing of this batch was recorded */
            job_remove(s, s->njobs - 1);
    }
    return err;
}

/* Acknowledges a committed batch, or gives it back to the brokers. */
static void finish_batch(server_t *s, batch_t *b, bool done) {
    char why[512];
    for (size_t i = 0; i < b->nk; i++)
        if (done)
            sg_kafka_consumer_store(s->kc, &b->kmsgs[i], why, sizeof why);
    /* backwards, so that each partition ends at its earliest message */
    for (size_t i = b->nk; !done && i-- > 0;)
        sg_kafka_consumer_rewind(s->kc, &b->kmsgs[i], why, sizeof why);
    for (size_t i = 0; i < b->nk; i++)
        sg_kafka_msg_release(&b->kmsgs[i]);
    for (size_t i = 0; i < b->na; i++) {
        if (done)
            sg_amqp_consumer_ack(s->ac, &b->amsgs[i], false, why, sizeof why);
        else
            sg_amqp_consumer_nack(s->ac, &b->amsgs[i], false, true, why, sizeof why);
        sg_amqp_msg_release(&b->amsgs[i]);
    }
}

static void write_ready(const char *path) {
    if (!path)
        return;
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
}

/* Sends one probe message to each Kafka topic consumed. */
static void send_probes(server_t *s) {
    unsigned char r[8];
    pt_random(r, sizeof r);
    snprintf(s->probe, sizeof s->probe, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    s->ready_deadline = pt_now_ms() + 30000;
    for (size_t i = 0; i < s->o->topics.n; i++) {
        char payload[128], why[256];
        int len = snprintf(payload, sizeof payload, "{\"participant_probe\":\"%s\"}", s->probe);
        if (!s->kp || sg_kafka_producer_send(s->kp, s->o->topics.v[i], s->probe, payload,
                                             (size_t)len, 0, why, sizeof why))
            pt_log("cannot send a probe to '%s'", s->o->topics.v[i]);
    }
}

static void check_ready(server_t *s) {
    if (s->ready)
        return;
    bool all = s->probes_seen >= s->o->topics.n;
    if (!all && pt_now_ms() < s->ready_deadline)
        return;
    if (!all)
        pt_log("only %zu of %zu kafka probes came back: ready anyway", s->probes_seen,
               s->o->topics.n);
    s->ready = true;
    pt_log("ready");
    write_ready(s->o->ready_file);
}

static void serve(server_t *s) {
    static batch_t b;
    send_probes(s);
    while (!pt_stopping) {
        check_ready(s);
        poll_inputs(s, &b, s->o->batch_wait_ms * 2);
        if (b.nk + b.na) {
            sg_err_t err = apply_batch(s, &b);
            if (!err) {
                send_due(s);
                await_reports(s, 10000);
            }
            finish_batch(s, &b, err == SG_OK);
            if (err)
                pt_sleep_ms(1000);
        }
        send_due(s);
        await_reports(s, 0);
    }
}

int pt_serve_main(int argc, char **argv) {
    opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) {
        opts_release(&o);
        return rc;
    }
    server_t s = {.o = &o};
    char why[512];
    pt_on_signals();
    if (!(s.fx = pt_effects_new(o.db, why, sizeof why))) {
        pt_log("%s", why);
        rc = 1;
        goto done;
    }
    if (open_producers(&s) || open_consumers(&s)) {
        rc = 1;
        goto done;
    }
    pt_log("serving %zu kafka topic(s), %zu rabbitmq queue(s), %zu rule(s)", o.topics.n,
           o.queues.n + o.nbinds, o.rules.n);
    serve(&s);
    send_due(&s);
    await_reports(&s, 5000);
    pt_log("stopping: %ld commands (%ld redelivered), %ld replies sent, %ld ignored, %zu replies "
           "not sent", s.commands, s.redeliveries, s.replies, s.bad, s.njobs);
done:
    sg_kafka_consumer_destroy(s.kc);
    sg_amqp_consumer_destroy(s.ac);
    if (s.kp)
        sg_kafka_producer_flush(s.kp, 2000, why, sizeof why);
    sg_kafka_producer_destroy(s.kp);
    sg_amqp_publisher_destroy(s.ap);
    while (s.njobs)
        job_remove(&s, s.njobs - 1);
    free(s.jobs);
    pt_effects_destroy(s.fx);
    opts_release(&o);
    return rc;
}

int pt_cleanup_main(int argc, char **argv) {
    enum { O_QUEUE = 256, O_EXCHANGE, O_AMQP };
    static const struct option LONG[] = {{"amqp-queue", required_argument, 0, O_QUEUE},
                                         {"amqp-exchange", required_argument, 0, O_EXCHANGE},
                                         {"amqp-url", required_argument, 0, O_AMQP},
                                         {0, 0, 0, 0}};
    strv_t queues = {0}, exchanges = {0};
    const char *url = env_or("SAGA_AMQP_URL", NULL);
    int c, rc = 0;
    while ((c = getopt_long(argc, argv, "", LONG, NULL)) != -1) {
        switch (c) {
        case O_QUEUE: strv_push(&queues, optarg); break;
        case O_EXCHANGE: strv_push(&exchanges, optarg); break;
        case O_AMQP: url = optarg; break;
        default:
            fprintf(stderr, "usage: participant cleanup [--amqp-url URL] [--amqp-queue Q]... "
                            "[--amqp-exchange E]...\n");
            rc = 2;
        }
    }
    char why[512];
    if (!rc && !url) {
        fprintf(stderr, "participant cleanup: no rabbitmq url (--amqp-url, SAGA_AMQP_URL)\n");
        rc = 2;
    }
    if (!rc && pt_amqp_delete(url, queues.v, queues.n, exchanges.v, exchanges.n, why, sizeof why)) {
        pt_log("%s", why);
        rc = 1;
    }
    free(queues.v);
    free(exchanges.v);
    return rc;
}

/* Prints each message of a queue as one line, acks it, and stops after
 * --count messages or when none came for --idle-ms. Exit 0 when --count
 * (if given) was reached. */
int pt_dump_main(int argc, char **argv) {
    enum { O_QUEUE = 256, O_COUNT, O_IDLE, O_AMQP };
    static const struct option LONG[] = {{"amqp-queue", required_argument, 0, O_QUEUE},
                                         {"count", required_argument, 0, O_COUNT},
                                         {"idle-ms", required_argument, 0, O_IDLE},
                                         {"amqp-url", required_argument, 0, O_AMQP},
                                         {0, 0, 0, 0}};
    const char *url = env_or("SAGA_AMQP_URL", NULL), *queue = NULL;
    long count = -1, got = 0;
    int idle_ms = 3000, c;
    while ((c = getopt_long(argc, argv, "", LONG, NULL)) != -1) {
        switch (c) {
        case O_QUEUE: queue = optarg; break;
        case O_COUNT: count = atol(optarg); break;
        case O_IDLE: idle_ms = atoi(optarg); break;
        case O_AMQP: url = optarg; break;
        default: queue = NULL; url = NULL; optind = argc; break;
        }
    }
    if (!queue || !url) {
        fprintf(stderr, "usage: participant dump --amqp-queue Q [--count N] [--idle-ms MS] "
                        "[--amqp-url URL]\n");
        return 2;
    }
    char why[512];
    sg_amqp_conf_t ac = {.url = url, .prefetch = 100};
    sg_amqp_consumer_t *ac_h = sg_amqp_consumer_new(&ac, &queue, 1, why, sizeof why);
    if (!ac_h || sg_amqp_consumer_connect(ac_h, why, sizeof why)) {
        fprintf(stderr, "participant dump: %s\n", why);
        sg_amqp_consumer_destroy(ac_h);
        return 1;
    }
    static sg_amqp_msg_t msgs[100];
    int64_t last = pt_now_ms();
    while ((count < 0 || got < count) && pt_now_ms() - last < idle_ms) {
        size_t n = 0;
        if (sg_amqp_consumer_poll(ac_h, msgs, 100, 100, &n, why, sizeof why))
            break;
        for (size_t i = 0; i < n; i++) {
            fwrite(msgs[i].body, 1, msgs[i].len, stdout);
            fputc('\n', stdout);
            sg_amqp_consumer_ack(ac_h, &msgs[i], false, why, sizeof why);
            sg_amqp_msg_release(&msgs[i]);
            got++;
            last = pt_now_ms();
        }
    }
    fflush(stdout);
    sg_amqp_consumer_destroy(ac_h);
    return count < 0 || got >= count ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "dump"))
        return pt_dump_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "cleanup"))
        return pt_cleanup_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "send"))
        return pt_send_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "serve"))
        return pt_serve_main(argc - 1, argv + 1);
    return pt_serve_main(argc, argv);
}
