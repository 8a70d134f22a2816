/* bench-driver: see driver.h for what it measures.
 *
 *   bench-driver --transport kafka|amqp --saga-type NAME --sagas N
 *                [--window W | --rate R] [--no-answer] [--out FILE] ...
 *
 * Warm-up: first --warmup sagas (default 20) run to their end unmeasured, so
 * that the consumer groups of sagad and of the driver have their partitions
 * and every topic and queue exists before the clock starts.
 *
 * Load: with --window (default 1000) it keeps W sagas in flight, starting a
 * new one whenever one ends (closed loop: the system runs at saturation);
 * with --rate it starts R sagas per second whatever happens (open loop).
 * With --no-answer it only starts the sagas and takes their first commands
 * without answering, so that every saga stays in flight; it ends when each
 * saga's first command has arrived.
 *
 * It ends when every saga has ended (saga.completed, saga.compensated or
 * saga.failed on the events channel), or when nothing happened for
 * --stall-seconds; either way it writes the report (JSON) to --out and
 * exits 0 only when every saga completed. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"
#include "saga/envelope.h"

#define MAX_PROPS 32
#define POLL_BATCH 512
#define STARTS_PER_ROUND 256

typedef struct opts {
    bd_transport_t transport;
    const char *brokers, *amqp_url, *saga_type, *run_id, *out;
    const char *start_channel, *commands, *events;
    long sagas, window, warmup;
    double rate;
    bool no_answer;
    int stall_s;
    sg_kv_t props[MAX_PROPS];
    size_t nprops;
} opts_t;

typedef struct saga {
    int64_t start_ns;
    int64_t reply_ns;     /* 0: no reply sent yet */
    uint64_t last_cmd;    /* hash of the last command id answered */
    uint8_t ended;        /* 0 running, 1 completed, 2 compensated or failed */
} saga_t;

typedef struct driver {
    opts_t o;
    bd_io_t *io;
    saga_t *sagas;        /* the warm-up sagas, then the measured ones */
    int64_t *ended_at;    /* end times in the order measured sagas ended */
    long warm_ended;
    long started, ended, completed, first_commands, commands, duplicates, foreign;
    long send_failures;
    int64_t t0, last_progress, next_report;
    bd_samples_t step, first, duration;
} driver_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

int64_t bd_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bd_log(const char *fmt, ...) {
    struct timespec ts;
    struct tm tm;
    va_list ap;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld bench-driver: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* ---- options ---- */

static void usage(FILE *to) {
    fprintf(to,
            "usage: bench-driver --transport kafka|amqp --saga-type NAME --sagas N [options]\n"
            "  --window W            sagas in flight at most (closed loop; default 1000)\n"
            "  --rate R              start R sagas per second instead (open loop)\n"
            "  --no-answer           start the sagas, take their first commands, answer none\n"
            "  --warmup N            sagas run to their end before measuring (default 20)\n"
            "  --run-id ID           saga ids are ID-<n> (default b<pid>)\n"
            "  --start-channel CH    where saga.start goes (default kafka:saga.commands or\n"
            "                        amqp:/saga.commands)\n"
            "  --commands NAME       topic or queue of the step commands (bench.commands)\n"
            "  --events NAME         topic or queue of the lifecycle events (saga.events)\n"
            "  --kafka-brokers LIST  default $SAGA_KAFKA_BROKERS\n"
            "  --amqp-url URL        default $SAGA_AMQP_URL\n"
            "  --kafka-property K=V  librdkafka property for producer and consumer (repeatable)\n"
            "  --stall-seconds S     give up after S seconds without progress (default 60)\n"
            "  --out FILE            the report (JSON; default stdout)\n");
}

static int add_prop(opts_t *o, char *kv) {
    char *eq = strchr(kv, '=');
    if (!eq || o->nprops == MAX_PROPS)
        return -1;
    *eq = '\0';
    o->props[o->nprops++] = (sg_kv_t){kv, eq + 1};
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o) {
    enum { O_TRANSPORT = 256, O_TYPE, O_SAGAS, O_WINDOW, O_RATE, O_NOANSWER, O_RUNID, O_START,
           O_COMMANDS, O_EVENTS, O_BROKERS, O_AMQP, O_PROP, O_STALL, O_OUT, O_WARMUP, O_HELP };
    static const struct option LONG[] = {
        {"transport", 1, 0, O_TRANSPORT}, {"saga-type", 1, 0, O_TYPE},
        {"sagas", 1, 0, O_SAGAS},         {"window", 1, 0, O_WINDOW},
        {"rate", 1, 0, O_RATE},           {"no-answer", 0, 0, O_NOANSWER},
        {"run-id", 1, 0, O_RUNID},        {"start-channel", 1, 0, O_START},
        {"commands", 1, 0, O_COMMANDS},   {"events", 1, 0, O_EVENTS},
        {"kafka-brokers", 1, 0, O_BROKERS}, {"amqp-url", 1, 0, O_AMQP},
        {"kafka-property", 1, 0, O_PROP}, {"stall-seconds", 1, 0, O_STALL},
        {"out", 1, 0, O_OUT},             {"warmup", 1, 0, O_WARMUP},
        {"help", 0, 0, O_HELP},
        {0, 0, 0, 0}};
    static char run_id[32];
    int c;
    *o = (opts_t){.brokers = getenv("SAGA_KAFKA_BROKERS"), .amqp_url = getenv("SAGA_AMQP_URL"),
                  .commands = "bench.commands", .events = "saga.events", .window = 1000,
                  .warmup = 20, .stall_s = 60};
    snprintf(run_id, sizeof run_id, "b%ld", (long)getpid());
    o->run_id = run_id;
    while ((c = getopt_long(argc, argv, "", LONG, NULL)) != -1) {
        switch (c) {
        case O_TRANSPORT:
            o->transport = !strcmp(optarg, "kafka") ? BD_KAFKA : !strcmp(optarg, "amqp") ? BD_AMQP : 0;
            break;
        case O_TYPE: o->saga_type = optarg; break;
        case O_SAGAS: o->sagas = atol(optarg); break;
        case O_WINDOW: o->window = atol(optarg); break;
        case O_RATE: o->rate = atof(optarg); break;
        case O_NOANSWER: o->no_answer = true; break;
        case O_RUNID: o->run_id = optarg; break;
        case O_START: o->start_channel = optarg; break;
        case O_COMMANDS: o->commands = optarg; break;
        case O_EVENTS: o->events = optarg; break;
        case O_BROKERS: o->brokers = optarg; break;
        case O_AMQP: o->amqp_url = optarg; break;
        case O_PROP:
            if (add_prop(o, optarg)) {
                bd_log("bad or too many --kafka-property: %s", optarg);
                return 2;
            }
            break;
        case O_STALL: o->stall_s = atoi(optarg); break;
        case O_OUT: o->out = optarg; break;
        case O_WARMUP: o->warmup = atol(optarg); break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (!o->transport || !o->saga_type || o->sagas < 1 || o->window < 1 || o->rate < 0 || o->warmup < 0 ||
        optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!o->start_channel)
        o->start_channel = o->transport == BD_KAFKA ? "kafka:saga.commands" : "amqp:/saga.commands";
    if (o->transport == BD_KAFKA ? !o->brokers : !o->amqp_url) {
        bd_log("no broker address: give --kafka-brokers or --amqp-url (or the SAGA_ variables)");
        return 2;
    }
    return 0;
}

/* ---- sending ---- */

static void on_delivery(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    driver_t *d = opaque;
    if (err == SG_OK)
        return;
    if (d->send_failures++ < 10)
        bd_log("message %lld not delivered: %s", (long long)ref, reason ? reason : sg_err_str(err));
}

static void send_event(driver_t *d, const char *channel, const sg_event_fields_t *f, int64_t ref) {
    char *buf = NULL, why[256];
    size_t len;
    if (sg_envelope_encode(f, &buf, &len, why, sizeof why)) {
        bd_log("cannot encode %s: %s", f->type, why);
        exit(1);
    }
    while (bd_io_send(d->io, channel, f->sagaid, f->id, buf, len, ref, why, sizeof why)) {
        if (stopping) /* a full local queue: serve reports and try again */
            break;
        bd_io_serve(d->io);
    }
    free(buf);
}

static void start_saga(driver_t *d, long i) {
    char id[96], order[64];
    snprintf(id, sizeof id, "%s-%ld", d->o.run_id, i);
    snprintf(order, sizeof order, "order-%ld", i);
    json_t *data = json_pack("{s:s,s:f,s:[s,s,s]}", "order_id", order, "amount", 42.5, "items",
                             "sku-1", "sku-2", "sku-3");
    sg_event_fields_t f = {.id = id, .source = "urn:bench-driver", .type = "saga.start",
                           .sagaid = id, .sagatype = d->o.saga_type, .data = data};
    d->sagas[i].start_ns = bd_now_ns();
    send_event(d, d->o.start_channel, &f, i * 2);
    json_decref(data);
}

/* Starts what the window or the rate allows now. */
static void start_due(driver_t *d) {
    int64_t now = bd_now_ns();
    for (int k = 0; k < STARTS_PER_ROUND && d->started < d->o.sagas; k++) {
        if (d->o.rate > 0) {
            int64_t due = d->t0 + (int64_t)((double)d->started * 1e9 / d->o.rate);
            if (due > now)
                break;
        } else if (d->started - d->ended >= d->o.window) {
            break;
        }
        start_saga(d, d->o.warmup + d->started++);
    }
}

/* ---- receiving ---- */

static const char *str_attr(const json_t *ev, const char *name) {
    const json_t *v = json_object_get(ev, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The index of one of this run's saga ids, or -1. */
static long saga_index(const driver_t *d, const char *saga_id) {
    size_t plen = strlen(d->o.run_id);
    if (!saga_id || strncmp(saga_id, d->o.run_id, plen) || saga_id[plen] != '-')
        return -1;
    char *end;
    long i = strtol(saga_id + plen + 1, &end, 10);
    return *end || i < 0 || i >= d->o.warmup + d->o.sagas ? -1 : i;
}

/* The result a participant would send: what the benchmark saga's templates
 * read from each step. */
static json_t *result_for(const char *step, const char *saga_id, bool undo) {
    char v[160];
    if (undo)
        return json_pack("{s:b}", "undone", 1);
    if (step && !strcmp(step, "reserve")) {
        snprintf(v, sizeof v, "res-%s", saga_id);
        return json_pack("{s:s}", "reservation_id", v);
    }
    if (step && !strcmp(step, "charge")) {
        snprintf(v, sizeof v, "chg-%s", saga_id);
        return json_pack("{s:s}", "charge_id", v);
    }
    snprintf(v, sizeof v, "trk-%s", saga_id);
    return json_pack("{s:s}", "tracking", v);
}

static void answer(driver_t *d, const json_t *cmd, const char *saga_id, long i) {
    const char *id = str_attr(cmd, "id"), *step = str_attr(cmd, "sagastep");
    const char *replyto = str_attr(cmd, "replyto");
    char reply_id[300];
    if (!id || !replyto)
        return;
    snprintf(reply_id, sizeof reply_id, "%s/reply", id);
    json_t *data = result_for(step, saga_id, strstr(id, "/undo/") != NULL);
    sg_event_fields_t f = {.id = reply_id, .source = "urn:bench-driver", .type = "saga.reply",
                           .sagaid = saga_id, .sagatype = str_attr(cmd, "sagatype"),
                           .sagastep = step, .causationid = id, .outcome = "success",
                           .traceparent = str_attr(cmd, "traceparent"), .data = data};
    send_event(d, replyto, &f, i * 2 + 1);
    json_decref(data);
    d->sagas[i].reply_ns = bd_now_ns();
}

static void on_command(driver_t *d, const bd_msg_t *m, int64_t now) {
    json_t *cmd = json_loadb(m->body, m->len, 0, NULL);
    const char *saga_id = str_attr(cmd, "sagaid"), *id = str_attr(cmd, "id");
    long i = saga_index(d, saga_id);
    if (i < 0 || !id) {
        d->foreign++;
        json_decref(cmd);
        return;
    }
    saga_t *s = &d->sagas[i];
    uint64_t h = hash_str(id);
    if (i < d->o.warmup) {
        if (h != s->last_cmd)
            answer(d, cmd, saga_id, i);
        s->last_cmd = h;
        json_decref(cmd);
        return;
    }
    d->commands++;
    if (h == s->last_cmd) {
        d->duplicates++;
    } else if (s->reply_ns) {
        bd_samples_add(&d->step, now, (now - s->reply_ns) / 1000);
    } else {
        bd_samples_add(&d->first, now, (now - s->start_ns) / 1000);
        d->first_commands++;
    }
    s->last_cmd = h;
    if (!d->o.no_answer)
        answer(d, cmd, saga_id, i);
    d->last_progress = now;
    json_decref(cmd);
}

static void on_event(driver_t *d, const bd_msg_t *m, int64_t now) {
    static const char *const ends[] = {"\"saga.completed\"", "\"saga.compensated\"", "\"saga.failed\""};
    int kind = -1;
    for (int k = 0; k < 3 && kind < 0; k++)
        if (memmem(m->body, m->len, ends[k], strlen(ends[k])))
            kind = k;
    if (kind < 0)
        return;
    json_t *ev = json_loadb(m->body, m->len, 0, NULL);
    const char *type = str_attr(ev, "type");
    long i = saga_index(d, str_attr(ev, "sagaid"));
    if (i >= 0 && i < d->o.warmup && !d->sagas[i].ended) {
        d->sagas[i].ended = 1;
        d->warm_ended++;
    } else if (i >= 0 && type && !strncmp(type, ends[kind] + 1, strlen(ends[kind]) - 2) &&
               !d->sagas[i].ended) {
        d->sagas[i].ended = kind == 0 ? 1 : 2;
        d->completed += kind == 0;
        d->ended_at[d->ended++] = now;
        bd_samples_add(&d->duration, now, (now - d->sagas[i].start_ns) / 1000);
        d->last_progress = now;
    }
    json_decref(ev);
}

static void take_input(driver_t *d, int timeout_ms) {
    bd_msg_t msgs[POLL_BATCH];
    size_t n = 0;
    char why[256];
    if (bd_io_poll(d->io, msgs, POLL_BATCH, timeout_ms, &n, why, sizeof why)) {
        bd_log("poll: %s", why);
        return;
    }
    int64_t now = bd_now_ns();
    for (size_t k = 0; k < n; k++) {
        if (msgs[k].source && !strcmp(msgs[k].source, d->o.commands))
            on_command(d, &msgs[k], now);
        else
            on_event(d, &msgs[k], now);
    }
}

/* ---- the loop ---- */

static bool finished(const driver_t *d) {
    return d->o.no_answer ? d->first_commands >= d->o.sagas : d->ended >= d->o.sagas;
}

static void report_progress(driver_t *d, int64_t now) {
    if (now < d->next_report)
        return;
    d->next_report = now + 2000000000LL;
    bd_log("%.0fs: started %ld, first commands %ld, ended %ld (%ld completed)",
           (double)(now - d->t0) / 1e9, d->started, d->first_commands, d->ended, d->completed);
}

/* Runs the warm-up sagas to their end; false when they did not end. */
static bool warm_up(driver_t *d) {
    int64_t until = bd_now_ns() + (int64_t)d->o.stall_s * 1000000000LL;
    for (long i = 0; i < d->o.warmup; i++)
        start_saga(d, i);
    while (!stopping && d->warm_ended < d->o.warmup && bd_now_ns() < until) {
        take_input(d, 5);
        bd_io_serve(d->io);
    }
    if (d->warm_ended < d->o.warmup)
        bd_log("warm-up: %ld of %ld sagas ended: giving up", d->warm_ended, d->o.warmup);
    return d->warm_ended == d->o.warmup;
}

static int run(driver_t *d) {
    if (!warm_up(d))
        return 1;
    d->t0 = d->last_progress = d->next_report = bd_now_ns();
    while (!stopping && !finished(d)) {
        start_due(d);
        take_input(d, d->o.rate > 0 ? 1 : 2);
        bd_io_serve(d->io);
        int64_t now = bd_now_ns();
        report_progress(d, now);
        if (now - d->last_progress > (int64_t)d->o.stall_s * 1000000000LL) {
            bd_log("no progress for %d s: giving up", d->o.stall_s);
            break;
        }
    }
    bd_io_flush(d->io, 10000);
    return finished(d) && (d->o.no_answer || d->completed == d->o.sagas) && !d->send_failures ? 0 : 1;
}

/* ---- the report ---- */

static json_t *deciles(const driver_t *d) {
    json_t *a = json_array();
    long step = d->o.sagas / 10;
    if (d->ended < d->o.sagas || step < 1)
        return a;
    for (int k = 0; k < 10; k++) {
        int64_t from = k ? d->ended_at[k * step - 1] : d->t0;
        int64_t to = d->ended_at[(k + 1) * step - 1];
        double secs = (double)(to - from) / 1e9;
        json_array_append_new(
            a, json_pack("{s:i,s:f,s:f,s:o}", "decile", k + 1, "seconds", secs, "sagas_per_s",
                         secs > 0 ? (double)step / secs : 0.0, "step_latency",
                         bd_samples_summary(&d->step, from, to)));
    }
    return a;
}

static json_t *report(const driver_t *d) {
    int64_t end = d->ended ? d->ended_at[d->ended - 1] : bd_now_ns();
    double secs = (double)(end - d->t0) / 1e9;
    return json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:f,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:o,s:o,s:o,s:o}",
        "transport", d->o.transport == BD_KAFKA ? "kafka" : "amqp", "saga_type", d->o.saga_type,
        "sagas", (json_int_t)d->o.sagas, "warmup", (json_int_t)d->o.warmup, "window", (json_int_t)(d->o.rate > 0 ? 0 : d->o.window),
        "rate", d->o.rate, "no_answer", d->o.no_answer, "started", (json_int_t)d->started,
        "first_commands", (json_int_t)d->first_commands, "commands", (json_int_t)d->commands,
        "duplicate_commands", (json_int_t)d->duplicates, "foreign_messages",
        (json_int_t)d->foreign, "ended", (json_int_t)d->ended, "completed",
        (json_int_t)d->completed, "send_failures", (json_int_t)d->send_failures, "seconds", secs,
        "sagas_per_s", secs > 0 ? (double)d->ended / secs : 0.0, "step_latency",
        bd_samples_summary(&d->step, 0, 0), "first_command_latency",
        bd_samples_summary(&d->first, 0, 0), "saga_duration",
        bd_samples_summary(&d->duration, 0, 0), "deciles", deciles(d));
}

static int write_report(const driver_t *d) {
    json_t *r = report(d);
    int rc = d->o.out ? json_dump_file(r, d->o.out, JSON_INDENT(2))
                      : json_dumpf(r, stdout, JSON_INDENT(2));
    if (!d->o.out)
        fputc('\n', stdout);
    json_decref(r);
    return rc;
}

static bd_io_t *open_io(driver_t *d) {
    const char *consume[2] = {d->o.commands, d->o.events};
    char why[512];
    bd_io_conf_t c = {.transport = d->o.transport, .brokers = d->o.brokers,
                      .amqp_url = d->o.amqp_url, .consume = consume,
                      .nconsume = 2, .kafka_props = d->o.props,
                      .nkafka_props = d->o.nprops, .on_delivery = on_delivery, .opaque = d};
    bd_io_t *io = bd_io_new(&c, why, sizeof why);
    if (!io)
        bd_log("cannot connect: %s", why);
    return io;
}

int main(int argc, char **argv) {
    static driver_t d;
    int rc = parse_opts(argc, argv, &d.o);
    if (rc)
        return rc;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    d.sagas = calloc((size_t)(d.o.warmup + d.o.sagas), sizeof *d.sagas);
    d.ended_at = calloc((size_t)d.o.sagas, sizeof *d.ended_at);
    if (!d.sagas || !d.ended_at || !(d.io = open_io(&d)))
        return 1;
    rc = run(&d);
    bd_log("done: started %ld, ended %ld, completed %ld, commands %ld (%ld repeated), "
           "send failures %ld", d.started, d.ended, d.completed, d.commands, d.duplicates,
           d.send_failures);
    if (write_report(&d))
        rc = 1;
    bd_io_destroy(d.io);
    bd_samples_release(&d.step);
    bd_samples_release(&d.first);
    bd_samples_release(&d.duration);
    free(d.sagas);
    free(d.ended_at);
    return rc;
}
