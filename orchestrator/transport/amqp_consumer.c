/* RabbitMQ consumer (see include/saga/amqp.h): durable queues, basic.qos
 * prefetch, basic.consume with manual acks on channel 1.
 *
 * Invariant: only deliveries of the current connection are ever acked or
 * nacked; a delivery tag of an earlier connection would be unknown to the
 * new channel, and acking it would make the broker close the channel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "saga/amqp.h"
#include "transport/amqp_link.h"

#define CHANNEL 1

struct sg_amqp_consumer {
    sg_amqp_link_t link;
    uint16_t prefetch;
    char **queues;
    char **tags;     /* consumer tag of each queue, for the current connection */
    size_t nqueues;
};

/* What a message owns besides the rabbitmq-c envelope. */
typedef struct held {
    amqp_envelope_t env;
    char *strings[6]; /* queue, exchange, routing key, content type, message id,
                         correlation id */
    char **names;     /* header names */
} held_t;

sg_amqp_consumer_t *sg_amqp_consumer_new(const sg_amqp_conf_t *conf,
                                         const char *const *queues, size_t nqueues,
                                         char *errstr, size_t errstr_size) {
    sg_amqp_consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (sg_amqp_link_init(&c->link, conf, errstr, errstr_size)) {
        free(c);
        return NULL;
    }
    c->prefetch = conf->prefetch ? conf->prefetch : SG_AMQP_DEFAULT_PREFETCH;
    c->queues = calloc(nqueues ? nqueues : 1, sizeof *c->queues);
    c->tags = calloc(nqueues ? nqueues : 1, sizeof *c->tags);
    if (!c->queues || !c->tags)
        goto nomem;
    for (size_t i = 0; i < nqueues; i++, c->nqueues++)
        if (!(c->queues[i] = strdup(queues[i])))
            goto nomem;
    return c;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    sg_amqp_consumer_destroy(c);
    return NULL;
}

static void forget_tags(sg_amqp_consumer_t *c) {
    for (size_t i = 0; i < c->nqueues; i++) {
        free(c->tags[i]);
        c->tags[i] = NULL;
    }
}

void sg_amqp_consumer_destroy(sg_amqp_consumer_t *c) {
    if (!c)
        return;
    sg_amqp_link_release(&c->link);
    forget_tags(c);
    for (size_t i = 0; i < c->nqueues; i++)
        free(c->queues[i]);
    free(c->queues);
    free(c->tags);
    free(c);
}

bool sg_amqp_consumer_connected(const sg_amqp_consumer_t *c) {
    return c->link.conn != NULL;
}

/* Declares queue i, durable, and starts consuming it. */
static sg_err_t consume_queue(sg_amqp_consumer_t *c, size_t i, char *errstr,
                              size_t errstr_size) {
    amqp_connection_state_t conn = c->link.conn;
    amqp_bytes_t queue = amqp_cstring_bytes(c->queues[i]);
    const char *step = "declare";
    if (amqp_queue_declare(conn, CHANNEL, queue, 0, 1, 0, 0, amqp_empty_table)) {
        step = "consume";
        amqp_basic_consume_ok_t *ok =
            amqp_basic_consume(conn, CHANNEL, queue, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        if (ok) {
            c->tags[i] = sg_amqp_link_strdup(ok->consumer_tag);
            return c->tags[i] ? SG_OK : SG_ERR_NOMEM;
        }
    }
    char why[256];
    bool closed;
    sg_amqp_link_reply_text(&c->link, amqp_get_rpc_reply(conn), why, sizeof why, &closed);
    snprintf(errstr, errstr_size, "cannot %s queue \"%s\" at %s: %s", step, c->queues[i],
             c->link.where, why);
    return SG_ERR_CONN;
}

sg_err_t sg_amqp_consumer_connect(sg_amqp_consumer_t *c, char *errstr, size_t errstr_size) {
    forget_tags(c);
    sg_err_t err = sg_amqp_link_open(&c->link, 1, errstr, errstr_size);
    if (err)
        return err;
    if (!amqp_basic_qos(c->link.conn, CHANNEL, 0, c->prefetch, 0)) {
        char why[256];
        bool closed;
        sg_amqp_link_reply_text(&c->link, amqp_get_rpc_reply(c->link.conn), why, sizeof why,
                                &closed);
        snprintf(errstr, errstr_size, "cannot set prefetch at %s: %s", c->link.where, why);
        err = SG_ERR_CONN;
    }
    for (size_t i = 0; !err && i < c->nqueues; i++)
        err = consume_queue(c, i, errstr, errstr_size);
    if (err) {
        sg_amqp_link_close(&c->link, true);
        forget_tags(c);
    }
    return err;
}

static const char *queue_of(const sg_amqp_consumer_t *c, amqp_bytes_t tag) {
    for (size_t i = 0; i < c->nqueues; i++)
        if (c->tags[i] && strlen(c->tags[i]) == tag.len &&
            memcmp(c->tags[i], tag.bytes, tag.len) == 0)
            return c->queues[i];
    return "";
}

/* The string and byte-array entries of a header table. */
static bool take_headers(const amqp_table_t *t, sg_amqp_msg_t *msg, held_t *h) {
    if (t->num_entries <= 0)
        return true;
    msg->headers = calloc((size_t)t->num_entries, sizeof *msg->headers);
    h->names = calloc((size_t)t->num_entries, sizeof *h->names);
    if (!msg->headers || !h->names)
        return false;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        if (e->value.kind != AMQP_FIELD_KIND_UTF8 && e->value.kind != AMQP_FIELD_KIND_BYTES)
            continue;
        if (!(h->names[msg->nheaders] = sg_amqp_link_strdup(e->key)))
            return false;
        sg_header_t *hd = &msg->headers[msg->nheaders++];
        hd->name = h->names[msg->nheaders - 1];
        hd->value = e->value.value.bytes.bytes;
        hd->size = e->value.value.bytes.len;
    }
    return true;
}

/* Optional short-string property as a C string (NULL when not set). */
static bool take_prop(const amqp_basic_properties_t *p, amqp_flags_t flag, amqp_bytes_t b,
                      char **dst) {
    if (!(p->_flags & flag))
        return true;
    return (*dst = sg_amqp_link_strdup(b)) != NULL;
}

static bool wrap(sg_amqp_consumer_t *c, held_t *h, sg_amqp_msg_t *msg) {
    const amqp_envelope_t *env = &h->env;
    const amqp_basic_properties_t *p = &env->message.properties;
    memset(msg, 0, sizeof *msg);
    msg->handle = h;
    if (!(h->strings[0] = strdup(queue_of(c, env->consumer_tag))) ||
        !(h->strings[1] = sg_amqp_link_strdup(env->exchange)) ||
        !(h->strings[2] = sg_amqp_link_strdup(env->routing_key)) ||
        !take_prop(p, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type, &h->strings[3]) ||
        !take_prop(p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id, &h->strings[4]) ||
        !take_prop(p, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id, &h->strings[5]))
        return false;
    if ((p->_flags & AMQP_BASIC_HEADERS_FLAG) && !take_headers(&p->headers, msg, h))
        return false;
    msg->body = env->message.body.len ? env->message.body.bytes : "";
    msg->len = env->message.body.len;
    msg->queue = h->strings[0];
    msg->exchange = h->strings[1];
    msg->routing_key = h->strings[2];
    msg->content_type = h->strings[3];
    msg->message_id = h->strings[4];
    msg->correlation_id = h->strings[5];
    msg->redelivered = env->redelivered;
    msg->persistent = (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
                      p->delivery_mode == AMQP_DELIVERY_PERSISTENT;
    msg->delivery_tag = env->delivery_tag;
    msg->connection = c->link.generation;
    return true;
}

void sg_amqp_msg_release(sg_amqp_msg_t *msg) {
    if (!msg || !msg->handle)
        return;
    held_t *h = msg->handle;
    for (size_t i = 0; i < sizeof h->strings / sizeof h->strings[0]; i++)
        free(h->strings[i]);
    for (size_t i = 0; h->names && i < msg->nheaders; i++)
        free(h->names[i]);
    free(h->names);
    free(msg->headers);
    amqp_destroy_envelope(&h->env);
    free(h);
    memset(msg, 0, sizeof *msg);
}

/* A frame other than a delivery arrived: the server closed something or
 * cancelled the consumer. Returns SG_OK for frames that change nothing. */
static sg_err_t other_frame(sg_amqp_consumer_t *c, char *errstr, size_t errstr_size) {
    amqp_frame_t frame;
    char why[300];
    int status = amqp_simple_wait_frame(c->link.conn, &frame);
    if (status != AMQP_STATUS_OK)
        return sg_amqp_link_lost(&c->link, amqp_error_string2(status), errstr, errstr_size);
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return SG_OK;
    switch (frame.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        sg_amqp_link_answer_close(&c->link, &frame, why, sizeof why);
        return sg_amqp_link_lost(&c->link, why, errstr, errstr_size);
    case AMQP_BASIC_CANCEL_METHOD:
        return sg_amqp_link_lost(&c->link, "consumer cancelled by the server (queue deleted?)",
                                 errstr, errstr_size);
    default:
        return SG_OK;
    }
}

/* Takes one delivery, waiting up to 'tv'. *got is false when none came. */
static sg_err_t take_one(sg_amqp_consumer_t *c, struct timeval *tv, sg_amqp_msg_t *msg,
                         bool *got, char *errstr, size_t errstr_size) {
    *got = false;
    held_t *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    amqp_rpc_reply_t r = amqp_consume_message(c->link.conn, &h->env, tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        *got = true;
        if (wrap(c, h, msg))
            return SG_OK;
        sg_amqp_msg_release(msg);
        /* Never acked, so it is delivered again after a reconnect. */
        return sg_amqp_link_lost(&c->link, "out of memory", errstr, errstr_size);
    }
    free(h);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        if (r.library_error == AMQP_STATUS_TIMEOUT)
            return SG_OK;
        if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE)
            return other_frame(c, errstr, errstr_size);
        return sg_amqp_link_lost(&c->link, amqp_error_string2(r.library_error), errstr,
                                 errstr_size);
    }
    return sg_amqp_link_lost(&c->link, "unexpected reply while consuming", errstr, errstr_size);
}

sg_err_t sg_amqp_consumer_poll(sg_amqp_consumer_t *c, sg_amqp_msg_t *msgs, size_t max,
                               int timeout_ms, size_t *n, char *errstr, size_t errstr_size) {
    *n = 0;
    if (!c->link.conn) {
        snprintf(errstr, errstr_size, "rabbitmq at %s: not connected", c->link.where);
        return SG_ERR_CONN;
    }
    amqp_maybe_release_buffers(c->link.conn);
    struct timeval wait = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    struct timeval none = {0, 0};
    /* Wait for the first delivery only; a frame that is not a delivery
     * ends the wait early, with what has come so far. */
    bool waiting = timeout_ms > 0;
    while (*n < max) {
        bool got = false;
        sg_err_t err = take_one(c, waiting ? &wait : &none, &msgs[*n], &got, errstr, errstr_size);
        if (err) {
            for (size_t i = 0; i < *n; i++)
                sg_amqp_msg_release(&msgs[i]);
            *n = 0;
            return err;
        }
        if (!got)
            break;
        (*n)++;
        waiting = false;
    }
    return SG_OK;
}

static sg_err_t check_current(sg_amqp_consumer_t *c, const sg_amqp_msg_t *msg, char *errstr,
                              size_t errstr_size) {
    if (!c->link.conn) {
        snprintf(errstr, errstr_size, "rabbitmq at %s: not connected", c->link.where);
        return SG_ERR_CONN;
    }
    if (msg->connection != c->link.generation) {
        snprintf(errstr, errstr_size,
                 "delivery %llu came on an earlier connection: it will be delivered again",
                 (unsigned long long)msg->delivery_tag);
        return SG_ERR_STATE;
    }
    return SG_OK;
}

sg_err_t sg_amqp_consumer_ack(sg_amqp_consumer_t *c, const sg_amqp_msg_t *msg,
                              bool multiple, char *errstr, size_t errstr_size) {
    sg_err_t err = check_current(c, msg, errstr, errstr_size);
    if (err)
        return err;
    int status = amqp_basic_ack(c->link.conn, CHANNEL, msg->delivery_tag, multiple);
    if (status != AMQP_STATUS_OK)
        return sg_amqp_link_lost(&c->link, amqp_error_string2(status), errstr, errstr_size);
    return SG_OK;
}

sg_err_t sg_amqp_consumer_nack(sg_amqp_consumer_t *c, const sg_amqp_msg_t *msg,
                               bool multiple, bool requeue, char *errstr, size_t errstr_size) {
    sg_err_t err = check_current(c, msg, errstr, errstr_size);
    if (err)
        return err;
    int status = multiple ? amqp_basic_nack(c->link.conn, CHANNEL, msg->delivery_tag, 1, requeue)
                          : amqp_basic_reject(c->link.conn, CHANNEL, msg->delivery_tag, requeue);
    if (status != AMQP_STATUS_OK)
        return sg_amqp_link_lost(&c->link, amqp_error_string2(status), errstr, errstr_size);
    return SG_OK;
}
