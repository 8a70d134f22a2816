/* RabbitMQ publisher (see include/saga/amqp.h): publisher confirms and
 * mandatory publishes on channel 1, passive exchange checks on channel 2.
 *
 * Every publish gets the next delivery tag of channel 1 (1, 2, ... after
 * confirm.select) and is kept in 'pending', ordered by tag, until the broker
 * settles it. A basic.return comes before the basic.ack of the same message
 * and carries no delivery tag, so each message also carries its tag in the
 * SG_AMQP_SEQ_HEADER header: the return marks that entry, and when its ack
 * comes it is reported failed, not delivered.
 *
 * Invariant: each message accepted by send is reported exactly once, by
 * an ack, a nack, or the loss or close of its connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "saga/amqp.h"
#include "saga/envelope.h"
#include "transport/amqp_link.h"

#define PUB 1
#define CHECK 2
#define SHORTSTR_MAX 255

typedef struct pending {
    uint64_t tag;
    int64_t ref;
    sg_err_t err;         /* SG_OK, or why it failed even if acked */
    char reason[200];
} pending_t;

struct sg_amqp_publisher {
    sg_amqp_link_t link;
    sg_delivery_cb *cb;
    void *cb_opaque;
    uint64_t next_tag;
    pending_t *pending;
    size_t npending, cap;
    char **exchanges;     /* known to exist, on this connection */
    size_t nexchanges, excap;
};

sg_amqp_publisher_t *sg_amqp_publisher_new(const sg_amqp_conf_t *conf, sg_delivery_cb *cb,
                                           void *cb_opaque, char *errstr, size_t errstr_size) {
    sg_amqp_publisher_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (sg_amqp_link_init(&p->link, conf, errstr, errstr_size)) {
        free(p);
        return NULL;
    }
    p->cb = cb;
    p->cb_opaque = cb_opaque;
    return p;
}

/* ---- settling ---- */

static void report(sg_amqp_publisher_t *p, const pending_t *e, sg_err_t err,
                   const char *reason) {
    if (e->err)
        p->cb(p->cb_opaque, e->ref, e->err, e->reason);
    else
        p->cb(p->cb_opaque, e->ref, err, err ? reason : "");
}

/* Reports and removes the entries [from, to) of 'pending'. They leave the
 * array before any callback runs, so a callback may send again. */
static void settle_range(sg_amqp_publisher_t *p, size_t from, size_t to, sg_err_t err,
                         const char *reason) {
    size_t count = to - from;
    if (count == 0)
        return;
    pending_t *done = malloc(count * sizeof *done);
    if (!done) {
        /* No memory for a copy: one at a time, slower but as exact. */
        for (size_t i = 0; i < count; i++) {
            pending_t e = p->pending[from];
            memmove(p->pending + from, p->pending + from + 1,
                    (p->npending - from - 1) * sizeof e);
            p->npending--;
            report(p, &e, err, reason);
        }
        return;
    }
    memcpy(done, p->pending + from, count * sizeof *done);
    memmove(p->pending + from, p->pending + to, (p->npending - to) * sizeof *done);
    p->npending -= count;
    for (size_t i = 0; i < count; i++)
        report(p, &done[i], err, reason);
    free(done);
}

/* Index of the first entry with tag >= 'tag'. */
static size_t lower_bound(const sg_amqp_publisher_t *p, uint64_t tag) {
    size_t lo = 0, hi = p->npending;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->pending[mid].tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void settle(sg_amqp_publisher_t *p, uint64_t tag, bool multiple, sg_err_t err,
                   const char *reason) {
    size_t at = lower_bound(p, tag);
    bool found = at < p->npending && p->pending[at].tag == tag;
    if (multiple)
        settle_range(p, 0, found ? at + 1 : at, err, reason);
    else if (found)
        settle_range(p, at, at + 1, err, reason);
}

static void forget_exchanges(sg_amqp_publisher_t *p) {
    for (size_t i = 0; i < p->nexchanges; i++)
        free(p->exchanges[i]);
    p->nexchanges = 0;
}

/* The connection is gone: everything pending is reported failed. */
static sg_err_t lost(sg_amqp_publisher_t *p, const char *why, char *errstr,
                     size_t errstr_size) {
    char reason[300];
    sg_err_t err = sg_amqp_link_lost(&p->link, why, errstr, errstr_size);
    snprintf(reason, sizeof reason, "not confirmed before the connection was lost: %s", why);
    settle_range(p, 0, p->npending, SG_ERR_CONN, reason);
    forget_exchanges(p);
    return err;
}

void sg_amqp_publisher_destroy(sg_amqp_publisher_t *p) {
    if (!p)
        return;
    settle_range(p, 0, p->npending, SG_ERR_CONN, "publisher closed before the broker confirmed");
    sg_amqp_link_release(&p->link);
    forget_exchanges(p);
    free(p->exchanges);
    free(p->pending);
    free(p);
}

bool sg_amqp_publisher_connected(const sg_amqp_publisher_t *p) {
    return p->link.conn != NULL;
}

size_t sg_amqp_publisher_outstanding(const sg_amqp_publisher_t *p) {
    return p->npending;
}

sg_err_t sg_amqp_publisher_connect(sg_amqp_publisher_t *p, char *errstr, size_t errstr_size) {
    settle_range(p, 0, p->npending, SG_ERR_CONN, "not confirmed before reconnecting");
    forget_exchanges(p);
    sg_err_t err = sg_amqp_link_open(&p->link, 2, errstr, errstr_size);
    if (err)
        return err;
    if (!amqp_confirm_select(p->link.conn, PUB)) {
        char why[256];
        bool closed;
        sg_amqp_link_reply_text(&p->link, amqp_get_rpc_reply(p->link.conn), why, sizeof why,
                                &closed);
        snprintf(errstr, errstr_size, "cannot enable publisher confirms at %s: %s",
                 p->link.where, why);
        sg_amqp_link_close(&p->link, true);
        return SG_ERR_CONN;
    }
    p->next_tag = 1;
    return SG_OK;
}

/* ---- sending ---- */

/* SG_OK when 'exchange' exists (checked once per connection, passively, on
 * the check channel so that a 404 closes only that channel). */
static sg_err_t check_exchange(sg_amqp_publisher_t *p, const char *exchange, char *errstr,
                               size_t errstr_size) {
    if (!*exchange)
        return SG_OK;
    for (size_t i = 0; i < p->nexchanges; i++)
        if (strcmp(p->exchanges[i], exchange) == 0)
            return SG_OK;
    if (p->nexchanges == p->excap) {
        size_t cap = p->excap ? 2 * p->excap : 8;
        char **grown = realloc(p->exchanges, cap * sizeof *grown);
        if (!grown)
            goto nomem;
        p->exchanges = grown;
        p->excap = cap;
    }
    if (amqp_exchange_declare(p->link.conn, CHECK, amqp_cstring_bytes(exchange),
                              amqp_empty_bytes, 1, 0, 0, 0, amqp_empty_table)) {
        if (!(p->exchanges[p->nexchanges] = strdup(exchange)))
            goto nomem;
        p->nexchanges++;
        return SG_OK;
    }
    char why[256];
    bool conn_closed;
    sg_amqp_link_reply_text(&p->link, amqp_get_rpc_reply(p->link.conn), why, sizeof why,
                            &conn_closed);
    if (conn_closed)
        return lost(p, why, errstr, errstr_size);
    /* Only the check channel closed: answer and open it again. */
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(p->link.conn, CHECK, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    amqp_channel_open(p->link.conn, CHECK);
    if (amqp_get_rpc_reply(p->link.conn).reply_type != AMQP_RESPONSE_NORMAL)
        return lost(p, "cannot reopen the exchange check channel", errstr, errstr_size);
    snprintf(errstr, errstr_size, "cannot publish to exchange \"%s\" at %s: %s", exchange,
             p->link.where, why);
    return SG_ERR_INVALID;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return SG_ERR_NOMEM;
}

static sg_err_t check_lengths(const char *const *values, const char *const *names, size_t n,
                              char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < n; i++) {
        if (values[i] && strlen(values[i]) > SHORTSTR_MAX) {
            snprintf(errstr, errstr_size, "cannot publish: %s is longer than %d bytes", names[i],
                     SHORTSTR_MAX);
            return SG_ERR_INVALID;
        }
    }
    return SG_OK;
}

sg_err_t sg_amqp_publisher_send(sg_amqp_publisher_t *p, const char *exchange,
                                const char *routing_key, const char *message_id,
                                const char *correlation_id, const void *body, size_t len,
                                int64_t ref, char *errstr, size_t errstr_size) {
    const char *values[] = {exchange, routing_key, message_id, correlation_id};
    const char *names[] = {"the exchange", "the routing key", "message_id", "correlation_id"};
    sg_err_t err = check_lengths(values, names, 4, errstr, errstr_size);
    if (err)
        return err;
    if (!p->link.conn) {
        snprintf(errstr, errstr_size, "rabbitmq at %s: not connected", p->link.where);
        return SG_ERR_CONN;
    }
    if ((err = check_exchange(p, exchange, errstr, errstr_size)))
        return err;
    if (p->npending == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        pending_t *grown = realloc(p->pending, cap * sizeof *grown);
        if (!grown) {
            snprintf(errstr, errstr_size, "out of memory");
            return SG_ERR_NOMEM;
        }
        p->pending = grown;
        p->cap = cap;
    }
    amqp_table_entry_t seq = {.key = amqp_cstring_bytes(SG_AMQP_SEQ_HEADER),
                              .value = {.kind = AMQP_FIELD_KIND_I64,
                                        .value.i64 = (int64_t)p->next_tag}};
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_HEADERS_FLAG,
        .content_type = amqp_cstring_bytes(SG_ENVELOPE_CONTENT_TYPE),
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
        .headers = {.num_entries = 1, .entries = &seq},
    };
    if (message_id) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = amqp_cstring_bytes(message_id);
    }
    if (correlation_id) {
        props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = amqp_cstring_bytes(correlation_id);
    }
    amqp_bytes_t bytes = {.len = len, .bytes = (void *)body};
    int status = amqp_basic_publish(p->link.conn, PUB, amqp_cstring_bytes(exchange),
                                    amqp_cstring_bytes(routing_key), 1, 0, &props, bytes);
    if (status != AMQP_STATUS_OK)
        return lost(p, amqp_error_string2(status), errstr, errstr_size);
    p->pending[p->npending++] = (pending_t){.tag = p->next_tag++, .ref = ref, .err = SG_OK};
    return SG_OK;
}

/* ---- confirms and returns ---- */

static bool header_seq(const amqp_basic_properties_t *props, uint64_t *tag) {
    if (!(props->_flags & AMQP_BASIC_HEADERS_FLAG))
        return false;
    size_t name_len = strlen(SG_AMQP_SEQ_HEADER);
    for (int i = 0; i < props->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &props->headers.entries[i];
        if (e->key.len != name_len || memcmp(e->key.bytes, SG_AMQP_SEQ_HEADER, name_len) != 0)
            continue;
        if (e->value.kind == AMQP_FIELD_KIND_I64)
            *tag = (uint64_t)e->value.value.i64;
        else if (e->value.kind == AMQP_FIELD_KIND_U64)
            *tag = e->value.value.u64;
        else
            return false;
        return true;
    }
    return false;
}

/* basic.return: read the returned message and mark its entry. */
static sg_err_t on_return(sg_amqp_publisher_t *p, const amqp_frame_t *frame, char *errstr,
                          size_t errstr_size) {
    const amqp_basic_return_t *m = frame->payload.method.decoded;
    char reason[200];
    snprintf(reason, sizeof reason,
             "returned by the broker: %u %.*s (exchange \"%.*s\", routing key \"%.*s\")",
             m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes,
             (int)m->exchange.len, (const char *)m->exchange.bytes, (int)m->routing_key.len,
             (const char *)m->routing_key.bytes);
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(p->link.conn, frame->channel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return lost(p, "cannot read a returned message", errstr, errstr_size);
    uint64_t tag;
    if (header_seq(&msg.properties, &tag)) {
        size_t at = lower_bound(p, tag);
        if (at < p->npending && p->pending[at].tag == tag) {
            p->pending[at].err = SG_ERR_NOT_FOUND;
            snprintf(p->pending[at].reason, sizeof p->pending[at].reason, "%s", reason);
        }
    }
    amqp_destroy_message(&msg);
    return SG_OK;
}

static sg_err_t on_frame(sg_amqp_publisher_t *p, const amqp_frame_t *frame, char *errstr,
                         size_t errstr_size) {
    char why[300];
    if (frame->frame_type != AMQP_FRAME_METHOD)
        return SG_OK;
    switch (frame->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *m = frame->payload.method.decoded;
        settle(p, m->delivery_tag, m->multiple, SG_OK, "");
        return SG_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *m = frame->payload.method.decoded;
        settle(p, m->delivery_tag, m->multiple, SG_ERR_CONN, "nacked by the broker");
        return SG_OK;
    }
    case AMQP_BASIC_RETURN_METHOD:
        return on_return(p, frame, errstr, errstr_size);
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        sg_amqp_link_answer_close(&p->link, frame, why, sizeof why);
        return lost(p, why, errstr, errstr_size);
    default:
        return SG_OK;
    }
}

sg_err_t sg_amqp_publisher_poll(sg_amqp_publisher_t *p, int timeout_ms, char *errstr,
                                size_t errstr_size) {
    if (!p->link.conn) {
        snprintf(errstr, errstr_size, "rabbitmq at %s: not connected", p->link.where);
        return SG_ERR_CONN;
    }
    amqp_maybe_release_buffers(p->link.conn);
    struct timeval wait = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    struct timeval none = {0, 0};
    bool first = timeout_ms > 0;
    for (;;) {
        amqp_frame_t frame;
        int status = amqp_simple_wait_frame_noblock(p->link.conn, &frame, first ? &wait : &none);
        if (status == AMQP_STATUS_TIMEOUT)
            return SG_OK;
        if (status != AMQP_STATUS_OK)
            return lost(p, amqp_error_string2(status), errstr, errstr_size);
        sg_err_t err = on_frame(p, &frame, errstr, errstr_size);
        if (err)
            return err;
        first = false;
    }
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sg_err_t sg_amqp_publisher_flush(sg_amqp_publisher_t *p, int timeout_ms, char *errstr,
                                 size_t errstr_size) {
    int64_t deadline = now_ms() + timeout_ms;
    while (p->npending > 0) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            snprintf(errstr, errstr_size, "%zu rabbitmq message(s) still not confirmed",
                     p->npending);
            return SG_ERR_CONN;
        }
        sg_err_t err = sg_amqp_publisher_poll(p, left > 100 ? 100 : (int)left, errstr,
                                              errstr_size);
        if (err)
            return err;
    }
    return SG_OK;
}
