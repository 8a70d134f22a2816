/* participant send: publishes saga messages to a channel, the way a client
 * of sagad would, and waits until the broker has them all (Kafka: acked by
 * all replicas; RabbitMQ: confirmed and routed).
 *
 *   --count N --sagatype T [--prefix P] [--first K] [--data JSON]
 *       N saga.start events with saga ids P-K .. P-(K+N-1); every "{n}" in
 *       the data text is replaced by the index first.
 *   --lines FILE   each non-empty line of FILE ("-": stdin) is one message,
 *                  sent byte for byte as written (complete events, or
 *                  malformed ones for tests)
 *   --raw FILE     the whole file is one message, byte for byte
 *
 * Kafka messages are keyed by the saga id (else the event id) when the
 * bytes parse as an event; AMQP ones get message_id and correlation_id the
 * same way. Sending to "amqp:/QUEUE" declares QUEUE durable first, so a
 * message sent before sagad starts waits in its queue. Exit status 0 when
 * every message was delivered. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "participant.h"
#include "saga/amqp.h"
#include "saga/def.h"
#include "saga/envelope.h"
#include "saga/kafka.h"

typedef struct sender {
    sg_channel_t ch;
    sg_kafka_producer_t *kp;
    sg_amqp_publisher_t *ap;
    long sent, delivered, failed;
    char last_error[256];
} sender_t;

static void on_report(void *opaque, int64_t ref, sg_err_t err, const char *reason) {
    sender_t *s = opaque;
    (void)ref;
    if (err == SG_OK) {
        s->delivered++;
        return;
    }
    s->failed++;
    snprintf(s->last_error, sizeof s->last_error, "%s", reason ? reason : sg_err_str(err));
}

static void send_usage(FILE *to) {
    fprintf(to,
            "usage: participant send --to CHANNEL [--kafka-brokers LIST] [--amqp-url URL]\n"
            "         (--count N --sagatype T [--prefix P] [--first K] [--data JSON]\n"
            "          | --lines FILE | --raw FILE) [--quiet]\n"
            "  CHANNEL is kafka:TOPIC, amqp:/QUEUE or amqp:EXCHANGE/KEY\n");
}

static sg_err_t sender_open(sender_t *s, const char *to, const char *brokers, const char *url) {
    char why[512];
    if (sg_channel_parse(to, &s->ch, why, sizeof why)) {
        fprintf(stderr, "participant send: channel '%s': %s\n", to, why);
        return SG_ERR_INVALID;
    }
    if (s->ch.transport == SG_TRANSPORT_KAFKA) {
        if (!brokers) {
            fprintf(stderr, "participant send: no kafka brokers (--kafka-brokers, SAGA_KAFKA_BROKERS)\n");
            return SG_ERR_INVALID;
        }
        sg_kafka_conf_t kc = {.brokers = brokers, .client_id = "participant-send"};
        s->kp = sg_kafka_producer_new(&kc, on_report, s, why, sizeof why);
    } else {
        if (!url) {
            fprintf(stderr, "participant send: no rabbitmq url (--amqp-url, SAGA_AMQP_URL)\n");
            return SG_ERR_INVALID;
        }
        const char *queue = s->ch.routing_key;
        if (!*s->ch.exchange && pt_amqp_declare(url, &queue, 1, NULL, 0, why, sizeof why))
            goto fail;
        sg_amqp_conf_t ac = {.url = url};
        s->ap = sg_amqp_publisher_new(&ac, on_report, s, why, sizeof why);
        if (s->ap && sg_amqp_publisher_connect(s->ap, why, sizeof why))
            goto fail;
    }
    if (s->kp || s->ap)
        return SG_OK;
fail:
    fprintf(stderr, "participant send: %s\n", why);
    return SG_ERR_CONN;
}

static void sender_close(sender_t *s) {
    sg_kafka_producer_destroy(s->kp);
    sg_amqp_publisher_destroy(s->ap);
    sg_channel_release(&s->ch);
}

/* Sends one message; keeps the local queues short. */
static sg_err_t send_one(sender_t *s, const void *buf, size_t len, const char *key,
                         const char *message_id) {
    char why[512];
    sg_err_t err;
    for (int tries = 0;; tries++) {
        if (s->kp)
            err = sg_kafka_producer_send(s->kp, s->ch.topic, key, buf, len, s->sent, why, sizeof why);
        else
            err = sg_amqp_publisher_send(s->ap, s->ch.exchange, s->ch.routing_key, message_id, key,
                                         buf, len, s->sent, why, sizeof why);
        if (err != SG_ERR_CONN || !s->kp || tries > 100)
            break;
        sg_kafka_producer_poll(s->kp, 100); /* local queue full: wait */
    }
    if (err) {
        fprintf(stderr, "participant send: %s\n", why);
        return err;
    }
    s->sent++;
    if (s->kp)
        sg_kafka_producer_poll(s->kp, 0);
    else if (sg_amqp_publisher_outstanding(s->ap) > 500)
        sg_amqp_publisher_flush(s->ap, 10000, why, sizeof why);
    return SG_OK;
}

/* Key and message id from the bytes when they are an event. */
static sg_err_t send_bytes(sender_t *s, const void *buf, size_t len) {
    json_t *ev = json_loadb(buf, len, 0, NULL);
    const char *id = json_string_value(json_object_get(ev, "id"));
    const char *saga = json_string_value(json_object_get(ev, "sagaid"));
    sg_err_t err = send_one(s, buf, len, saga ? saga : id, id);
    json_decref(ev);
    return err;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static sg_err_t send_lines(sender_t *s, char *text, size_t len) {
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n) {
            sg_err_t err = send_bytes(s, p, n);
            if (err)
                return err;
        }
        p += (nl ? (size_t)(nl - p) + 1 : n);
    }
    return SG_OK;
}

/* 'tmpl' with every "{n}" replaced by 'index'. */
static char *expand(const char *tmpl, long index) {
    char num[32];
    int nlen = snprintf(num, sizeof num, "%ld", index);
    size_t cap = strlen(tmpl) * ((size_t)nlen + 1) + 1, o = 0;
    char *out = malloc(cap);
    for (const char *p = tmpl; out && *p;) {
        if (!strncmp(p, "{n}", 3)) {
            memcpy(out + o, num, (size_t)nlen);
            o += (size_t)nlen;
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    if (out)
        out[o] = '\0';
    return out;
}

static sg_err_t send_starts(sender_t *s, long count, long first, const char *sagatype,
                            const char *prefix, const char *data_tmpl, const char *type) {
    for (long i = first; i < first + count; i++) {
        char id[256], why[256], *text = expand(data_tmpl, i);
        json_error_t jerr;
        json_t *data = text ? json_loads(text, 0, &jerr) : NULL;
        if (!json_is_object(data)) {
            fprintf(stderr, "participant send: --data for %ld is not a JSON object: %s\n", i,
                    text ? jerr.text : "out of memory");
            free(text);
            json_decref(data);
            return SG_ERR_INVALID;
        }
        snprintf(id, sizeof id, "%s-%ld", prefix, i);
        sg_event_fields_t f = {.id = id, .source = "urn:participant-send", .type = type,
                               .time_ms = pt_now_ms(), .sagaid = id, .sagatype = sagatype,
                               .data = data};
        char *out = NULL;
        size_t len;
        sg_err_t err = sg_envelope_encode(&f, &out, &len, why, sizeof why);
        if (err)
            fprintf(stderr, "participant send: %s\n", why);
        else
            err = send_one(s, out, len, id, id);
        free(out);
        free(text);
        json_decref(data);
        if (err)
            return err;
    }
    return SG_OK;
}

static sg_err_t await_all(sender_t *s) {
    char why[256];
    if (s->kp)
        sg_kafka_producer_flush(s->kp, 60000, why, sizeof why);
    else
        sg_amqp_publisher_flush(s->ap, 60000, why, sizeof why);
    return s->delivered == s->sent ? SG_OK : SG_ERR_CONN;
}

int pt_send_main(int argc, char **argv) {
    enum { O_TO = 256, O_COUNT, O_TYPE, O_SAGATYPE, O_PREFIX, O_FIRST, O_DATA, O_LINES, O_RAW,
           O_BROKERS, O_AMQP, O_QUIET, O_HELP };
    static const struct option LONG[] = {
        {"to", required_argument, 0, O_TO},         {"count", required_argument, 0, O_COUNT},
        {"type", required_argument, 0, O_TYPE},     {"sagatype", required_argument, 0, O_SAGATYPE},
        {"prefix", required_argument, 0, O_PREFIX}, {"first", required_argument, 0, O_FIRST},
        {"data", required_argument, 0, O_DATA},     {"lines", required_argument, 0, O_LINES},
        {"raw", required_argument, 0, O_RAW},       {"kafka-brokers", required_argument, 0, O_BROKERS},
        {"amqp-url", required_argument, 0, O_AMQP}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},           {0, 0, 0, 0}};
    const char *to = NULL, *sagatype = NULL, *prefix = NULL, *data = "{}", *lines = NULL;
    const char *raw = NULL, *type = "saga.start";
    const char *brokers = getenv("SAGA_KAFKA_BROKERS"), *url = getenv("SAGA_AMQP_URL");
    long count = -1, first = 1;
    bool quiet = false;
    char rnd[9];
    int c;
    while ((c = getopt_long(argc, argv, "", LONG, NULL)) != -1) {
        switch (c) {
        case O_TO: to = optarg; break;
        case O_COUNT: count = atol(optarg); break;
        case O_TYPE: type = optarg; break;
        case O_SAGATYPE: sagatype = optarg; break;
        case O_PREFIX: prefix = optarg; break;
        case O_FIRST: first = atol(optarg); break;
        case O_DATA: data = optarg; break;
        case O_LINES: lines = optarg; break;
        case O_RAW: raw = optarg; break;
        case O_BROKERS: brokers = optarg; break;
        case O_AMQP: url = optarg; break;
        case O_QUIET: quiet = true; break;
        case O_HELP: send_usage(stdout); return 0;
        default: send_usage(stderr); return 2;
        }
    }
    if (!to || ((count >= 0) + !!lines + !!raw) != 1 || (count >= 0 && !sagatype)) {
        send_usage(stderr);
        return 2;
    }
    if (!prefix) {
        unsigned char b[4];
        pt_random(b, sizeof b);
        snprintf(rnd, sizeof rnd, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
        prefix = rnd;
    }
    sender_t s = {0};
    sg_err_t err = sender_open(&s, to, brokers, url);
    if (!err && count >= 0) {
        err = send_starts(&s, count, first, sagatype, prefix, data, type);
    } else if (!err) {
        size_t len;
        char *text = read_all(lines ? lines : raw, &len);
        if (!text) {
            fprintf(stderr, "participant send: cannot read '%s'\n", lines ? lines : raw);
            err = SG_ERR_IO;
        } else {
            err = lines ? send_lines(&s, text, len) : send_bytes(&s, text, len);
        }
        free(text);
    }
    if (!err)
        err = await_all(&s);
    if (!quiet || err)
        fprintf(stderr, "participant send: %ld sent to %s, %ld delivered, %ld failed%s%s\n",
                s.sent, to, s.delivered, s.failed, s.failed ? ": " : "", s.last_error);
    sender_close(&s);
    return err ? 1 : 0;
}
