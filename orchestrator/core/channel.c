/* Channels (CONTRACT.md section 1): "kafka:<topic>",
 * "amqp:<exchange>/<routing-key>" and "amqp:/<queue>" (the default
 * exchange). A parsed channel holds its parts as separate strings; a
 * refused one leaves the struct zeroed and the reason in errstr.
 *
 * Rules: a Kafka topic is [A-Za-z0-9._-]{1,249} and not "." or ".." (as
 * Kafka itself requires); an AMQP exchange is [A-Za-z0-9._:-]{0,255} (the
 * AMQP 0-9-1 rule); a routing key or queue is at most 255 bytes without
 * control characters, and a queue of the default exchange is not empty.
 * The routing key is everything after the first "/", so it may hold "/". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/def_internal.h"

#define KAFKA_TOPIC_MAX 249
#define AMQP_SHORTSTR_MAX 255

static bool all_in(const char *s, size_t n, const char *extra) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return false;
    }
    return true;
}

static bool has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static sg_err_t parse_kafka(const char *topic, sg_channel_t *ch, char *errstr,
                            size_t errstr_size) {
    char q[SG_QUOTE_MAX];
    size_t n = strlen(topic);
    if (n == 0) {
        snprintf(errstr, errstr_size, "empty kafka topic");
        return SG_ERR_INVALID;
    }
    if (n > KAFKA_TOPIC_MAX) {
        snprintf(errstr, errstr_size, "kafka topic longer than %d characters",
                 KAFKA_TOPIC_MAX);
        return SG_ERR_INVALID;
    }
    if (!all_in(topic, n, "._-") || !strcmp(topic, ".") || !strcmp(topic, "..")) {
        snprintf(errstr, errstr_size,
                 "invalid kafka topic %s: use letters, digits, \".\", \"_\" and \"-\"",
                 sg_quote(topic, q, sizeof q));
        return SG_ERR_INVALID;
    }
    ch->transport = SG_TRANSPORT_KAFKA;
    ch->topic = dup_n(topic, n);
    return ch->topic ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t parse_amqp(const char *rest, sg_channel_t *ch, char *errstr,
                           size_t errstr_size) {
    char q[SG_QUOTE_MAX];
    const char *slash = strchr(rest, '/');
    if (!slash) {
        snprintf(errstr, errstr_size,
                 "amqp channel without \"/\": use amqp:<exchange>/<routing-key> "
                 "or amqp:/<queue>");
        return SG_ERR_INVALID;
    }
    size_t xlen = (size_t)(slash - rest);
    const char *key = slash + 1;
    if (xlen > AMQP_SHORTSTR_MAX || !all_in(rest, xlen, "._:-")) {
        char *x = dup_n(rest, xlen);
        if (!x)
            return SG_ERR_NOMEM;
        snprintf(errstr, errstr_size,
                 "invalid amqp exchange %s: use at most %d letters, digits, \"-\", "
                 "\"_\", \".\" and \":\"",
                 sg_quote(x, q, sizeof q), AMQP_SHORTSTR_MAX);
        free(x);
        return SG_ERR_INVALID;
    }
    if (xlen == 0 && *key == '\0') {
        snprintf(errstr, errstr_size, "empty queue name: use amqp:/<queue>");
        return SG_ERR_INVALID;
    }
    if (strlen(key) > AMQP_SHORTSTR_MAX || has_control(key)) {
        snprintf(errstr, errstr_size,
                 "invalid amqp %s %s: at most %d bytes, no control characters",
                 xlen ? "routing key" : "queue", sg_quote(key, q, sizeof q),
                 AMQP_SHORTSTR_MAX);
        return SG_ERR_INVALID;
    }
    ch->transport = SG_TRANSPORT_AMQP;
    ch->exchange = dup_n(rest, xlen);
    ch->routing_key = dup_n(key, strlen(key));
    return ch->exchange && ch->routing_key ? SG_OK : SG_ERR_NOMEM;
}

sg_err_t sg_channel_parse(const char *text, sg_channel_t *ch, char *errstr,
                          size_t errstr_size) {
    char q[SG_QUOTE_MAX];
    sg_err_t err;
    memset(ch, 0, sizeof *ch);
    const char *colon = strchr(text, ':');
    if (!colon) {
        snprintf(errstr, errstr_size,
                 "invalid channel %s: use kafka:<topic>, amqp:<exchange>/<routing-key> "
                 "or amqp:/<queue>",
                 sg_quote(text, q, sizeof q));
        return SG_ERR_INVALID;
    }
    size_t tlen = (size_t)(colon - text);
    if (tlen == 5 && !strncmp(text, "kafka", 5)) {
        err = parse_kafka(colon + 1, ch, errstr, errstr_size);
    } else if (tlen == 4 && !strncmp(text, "amqp", 4)) {
        err = parse_amqp(colon + 1, ch, errstr, errstr_size);
    } else {
        char *t = dup_n(text, tlen);
        if (!t)
            return SG_ERR_NOMEM;
        snprintf(errstr, errstr_size, "unknown transport %s", sg_quote(t, q, sizeof q));
        free(t);
        return SG_ERR_INVALID;
    }
    if (err == SG_OK && !(ch->text = dup_n(text, strlen(text))))
        err = SG_ERR_NOMEM;
    if (err != SG_OK) {
        if (err == SG_ERR_NOMEM)
            snprintf(errstr, errstr_size, "out of memory");
        sg_channel_release(ch);
    }
    return err;
}

void sg_channel_release(sg_channel_t *ch) {
    if (!ch)
        return;
    free(ch->text);
    free(ch->topic);
    free(ch->exchange);
    free(ch->routing_key);
    memset(ch, 0, sizeof *ch);
}
