/* One AMQP connection of the RabbitMQ transport, shared by the consumer
 * (amqp_consumer.c) and the publisher (amqp_publisher.c): URL parsing,
 * connect with timeouts and TLS, error texts without secrets, teardown.
 * Internal to orchestrator/transport. */
#ifndef SAGA_TRANSPORT_AMQP_LINK_H
#define SAGA_TRANSPORT_AMQP_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include <amqp.h>

#include "saga/amqp.h"

typedef struct sg_amqp_link {
    char *url;                        /* parsed in place: 'info' points into it */
    struct amqp_connection_info info;
    char where[300];                  /* "host:port/vhost" for messages */
    int heartbeat_s;
    int timeout_ms;
    sg_log_cb *log;
    void *log_opaque;
    amqp_connection_state_t conn;     /* NULL while disconnected */
    uint64_t generation;              /* counts successful connects */
} sg_amqp_link_t;

sg_err_t sg_amqp_link_init(sg_amqp_link_t *l, const sg_amqp_conf_t *conf, char *errstr,
                           size_t errstr_size);
void sg_amqp_link_release(sg_amqp_link_t *l);

/* Connects and opens channels 1..nchannels. */
sg_err_t sg_amqp_link_open(sg_amqp_link_t *l, int nchannels, char *errstr, size_t errstr_size);
/* Closes politely when 'graceful' (the socket still works), else drops. */
void sg_amqp_link_close(sg_amqp_link_t *l, bool graceful);

/* Marks the link lost: logs 'why' and drops the connection. Returns
 * SG_ERR_CONN with errstr "rabbitmq at WHERE: WHY". */
sg_err_t sg_amqp_link_lost(sg_amqp_link_t *l, const char *why, char *errstr,
                           size_t errstr_size);

/* The text of a failed RPC reply ("404 NOT_FOUND - no queue 'x'" ...). Sets
 * *conn_closed unless only a channel was closed by the server (the caller
 * then answers close-ok on that channel, or drops the connection). */
void sg_amqp_link_reply_text(sg_amqp_link_t *l, amqp_rpc_reply_t r, char *buf, size_t size,
                             bool *conn_closed);

/* Answers a server's channel.close or connection.close method frame and
 * writes its text. */
void sg_amqp_link_answer_close(sg_amqp_link_t *l, const amqp_frame_t *frame, char *buf,
                               size_t size);

/* A NUL-terminated copy of AMQP bytes, or NULL when out of memory. */
char *sg_amqp_link_strdup(amqp_bytes_t b);

#endif
