/* RabbitMQ declarations of the participant: its durable queues, and the
 * durable direct exchanges and bindings behind channels such as
 * "amqp:payments/charge" (--amqp-bind payments:charge:payments.charge).
 * Done once at start, on a connection of its own, before consuming. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "participant.h"
#include "transport/amqp_link.h"

sg_err_t pt_bind_parse(const char *spec, pt_bind_t *b, char *errstr, size_t errstr_size) {
    memset(b, 0, sizeof *b);
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2 || c1 == spec || c2 == c1 + 1 || !c2[1] || strchr(c2 + 1, ':')) {
        snprintf(errstr, errstr_size, "binding \"%s\" is not EXCHANGE:KEY:QUEUE", spec);
        return SG_ERR_INVALID;
    }
    b->exchange = strndup(spec, (size_t)(c1 - spec));
    b->key = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
    b->queue = strdup(c2 + 1);
    if (!b->exchange || !b->key || !b->queue) {
        pt_bind_release(b);
        return SG_ERR_NOMEM;
    }
    return SG_OK;
}

void pt_bind_release(pt_bind_t *b) {
    free(b->exchange);
    free(b->key);
    free(b->queue);
    memset(b, 0, sizeof *b);
}

/* The outcome of the last RPC on the link, as an error. */
static sg_err_t check(sg_amqp_link_t *l, const char *what, const char *name, char *errstr,
                      size_t errstr_size) {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(l->conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return SG_OK;
    char why[256];
    bool closed;
    sg_amqp_link_reply_text(l, r, why, sizeof why, &closed);
    snprintf(errstr, errstr_size, "cannot declare %s '%s' at %s: %s", what, name, l->where, why);
    return SG_ERR_CONN;
}

static sg_err_t declare_queue(sg_amqp_link_t *l, const char *queue, char *errstr,
                              size_t errstr_size) {
    amqp_queue_declare(l->conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
    return check(l, "queue", queue, errstr, errstr_size);
}

static sg_err_t declare_bind(sg_amqp_link_t *l, const pt_bind_t *b, char *errstr,
                             size_t errstr_size) {
    amqp_exchange_declare(l->conn, 1, amqp_cstring_bytes(b->exchange),
                          amqp_cstring_bytes("direct"), 0, 1, 0, 0, amqp_empty_table);
    sg_err_t err = check(l, "exchange", b->exchange, errstr, errstr_size);
    if (!err)
        err = declare_queue(l, b->queue, errstr, errstr_size);
    if (!err) {
        amqp_queue_bind(l->conn, 1, amqp_cstring_bytes(b->queue), amqp_cstring_bytes(b->exchange),
                        amqp_cstring_bytes(b->key), amqp_empty_table);
        err = check(l, "binding to queue", b->queue, errstr, errstr_size);
    }
    return err;
}

sg_err_t pt_amqp_declare(const char *url, const char *const *queues, size_t nqueues,
                         const pt_bind_t *binds, size_t nbinds, char *errstr,
                         size_t errstr_size) {
    sg_amqp_conf_t conf = {.url = url};
    sg_amqp_link_t link;
    sg_err_t err = sg_amqp_link_init(&link, &conf, errstr, errstr_size);
    if (err)
        return err;
    if ((err = sg_amqp_link_open(&link, 1, errstr, errstr_size)))
        goto done;
    for (size_t i = 0; i < nqueues && !err; i++)
        err = declare_queue(&link, queues[i], errstr, errstr_size);
    for (size_t i = 0; i < nbinds && !err; i++)
        err = declare_bind(&link, &binds[i], errstr, errstr_size);
done:
    sg_amqp_link_release(&link);
    return err;
}

/* Deletes one queue or exchange; a failure closes the channel, so the link
 * is opened again for the next one. */
static void delete_one(sg_amqp_link_t *l, bool queue, const char *name) {
    char why[512];
    if (!l->conn && sg_amqp_link_open(l, 1, why, sizeof why)) {
        pt_log("%s", why);
        return;
    }
    if (queue)
        amqp_queue_delete(l->conn, 1, amqp_cstring_bytes(name), 0, 0);
    else
        amqp_exchange_delete(l->conn, 1, amqp_cstring_bytes(name), 0);
    if (check(l, queue ? "deletion of queue" : "deletion of exchange", name, why, sizeof why)) {
        pt_log("%s", why);
        sg_amqp_link_close(l, false);
    }
}

sg_err_t pt_amqp_delete(const char *url, const char *const *queues, size_t nqueues,
                        const char *const *exchanges, size_t nexchanges, char *errstr,
                        size_t errstr_size) {
    sg_amqp_conf_t conf = {.url = url};
    sg_amqp_link_t link;
    sg_err_t err = sg_amqp_link_init(&link, &conf, errstr, errstr_size);
    if (err)
        return err;
    if ((err = sg_amqp_link_open(&link, 1, errstr, errstr_size)))
        goto done;
    for (size_t i = 0; i < nqueues; i++)
        delete_one(&link, true, queues[i]);
    for (size_t i = 0; i < nexchanges; i++)
        delete_one(&link, false, exchanges[i]);
done:
    sg_amqp_link_release(&link);
    return err;
}
