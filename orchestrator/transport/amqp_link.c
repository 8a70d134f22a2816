/* One AMQP connection: see amqp_link.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/x509.h>

#include "transport/amqp_link.h"

sg_err_t sg_amqp_link_init(sg_amqp_link_t *l, const sg_amqp_conf_t *conf, char *errstr,
                           size_t errstr_size) {
    memset(l, 0, sizeof *l);
    if (!conf->url || !*conf->url) {
        snprintf(errstr, errstr_size, "no rabbitmq url given");
        return SG_ERR_INVALID;
    }
    if (!(l->url = strdup(conf->url))) {
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    amqp_default_connection_info(&l->info);
    if (amqp_parse_url(l->url, &l->info) != AMQP_STATUS_OK) {
        /* The URL may hold a password: do not repeat it. */
        snprintf(errstr, errstr_size,
                 "invalid rabbitmq url: expected amqp[s]://user:password@host:port/vhost");
        sg_amqp_link_release(l);
        return SG_ERR_INVALID;
    }
    snprintf(l->where, sizeof l->where, "%s:%d/%s", l->info.host, l->info.port,
             l->info.vhost);
    l->heartbeat_s = conf->heartbeat_s > 0 ? conf->heartbeat_s : 30;
    l->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 5000;
    l->log = conf->log;
    l->log_opaque = conf->log_opaque;
    return SG_OK;
}

void sg_amqp_link_release(sg_amqp_link_t *l) {
    sg_amqp_link_close(l, true);
    free(l->url);
    l->url = NULL;
}

static void say(sg_amqp_link_t *l, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(sg_amqp_link_t *l, int level, const char *fmt, ...) {
    if (!l->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    l->log(l->log_opaque, level, line);
}

char *sg_amqp_link_strdup(amqp_bytes_t b) {
    char *s = malloc(b.len + 1);
    if (s) {
        if (b.len)
            memcpy(s, b.bytes, b.len);
        s[b.len] = '\0';
    }
    return s;
}

static void close_text(uint16_t code, amqp_bytes_t text, char *buf, size_t size) {
    snprintf(buf, size, "%u %.*s", code, (int)(text.len > 400 ? 400 : text.len),
             (const char *)text.bytes);
}

void sg_amqp_link_answer_close(sg_amqp_link_t *l, const amqp_frame_t *frame, char *buf,
                               size_t size) {
    amqp_method_number_t id = frame->payload.method.id;
    if (id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *m = frame->payload.method.decoded;
        close_text(m->reply_code, m->reply_text, buf, size);
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(l->conn, frame->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    } else if (id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *m = frame->payload.method.decoded;
        close_text(m->reply_code, m->reply_text, buf, size);
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    } else {
        snprintf(buf, size, "unexpected method 0x%08x", (unsigned)id);
    }
}

void sg_amqp_link_reply_text(sg_amqp_link_t *l, amqp_rpc_reply_t r, char *buf, size_t size,
                             bool *conn_closed) {
    *conn_closed = true;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, size, "no error");
        *conn_closed = false;
        return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, size, "%s", amqp_error_string2(r.library_error));
        return;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = r.reply.decoded;
            close_text(m->reply_code, m->reply_text, buf, size);
            *conn_closed = false;
            return;
        }
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = r.reply.decoded;
            close_text(m->reply_code, m->reply_text, buf, size);
            return;
        }
        snprintf(buf, size, "unexpected server method 0x%08x", (unsigned)r.reply.id);
        return;
    default:
        snprintf(buf, size, "no reply");
        return;
    }
}

static amqp_socket_t *make_socket(sg_amqp_link_t *l, char *errstr, size_t errstr_size) {
    if (!l->info.ssl) {
        amqp_socket_t *sock = amqp_tcp_socket_new(l->conn);
        if (!sock)
            snprintf(errstr, errstr_size, "out of memory");
        return sock;
    }
    amqp_socket_t *sock = amqp_ssl_socket_new(l->conn);
    if (!sock) {
        snprintf(errstr, errstr_size, "cannot make a TLS socket");
        return NULL;
    }
    /* rabbitmq-c has no default trust store: use OpenSSL's (or SSL_CERT_FILE). */
    const char *ca = getenv(X509_get_default_cert_file_env());
    if (!ca || !*ca)
        ca = X509_get_default_cert_file();
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    if (amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK) {
        snprintf(errstr, errstr_size, "cannot load CA certificates from \"%s\"", ca);
        return NULL;
    }
    return sock;
}

static sg_err_t open_channels(sg_amqp_link_t *l, int nchannels, char *errstr,
                              size_t errstr_size) {
    for (int ch = 1; ch <= nchannels; ch++) {
        amqp_channel_open(l->conn, (amqp_channel_t)ch);
        amqp_rpc_reply_t r = amqp_get_rpc_reply(l->conn);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            char why[256];
            bool closed;
            sg_amqp_link_reply_text(l, r, why, sizeof why, &closed);
            snprintf(errstr, errstr_size, "cannot open a channel at %s: %s", l->where, why);
            return SG_ERR_CONN;
        }
    }
    return SG_OK;
}

sg_err_t sg_amqp_link_open(sg_amqp_link_t *l, int nchannels, char *errstr, size_t errstr_size) {
    sg_amqp_link_close(l, true);
    struct timeval tv = {l->timeout_ms / 1000, (l->timeout_ms % 1000) * 1000};
    if (!(l->conn = amqp_new_connection())) {
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    amqp_socket_t *sock = make_socket(l, errstr, errstr_size);
    if (!sock)
        goto fail;
    int status = amqp_socket_open_noblock(sock, l->info.host, l->info.port, &tv);
    if (status != AMQP_STATUS_OK) {
        snprintf(errstr, errstr_size, "cannot connect to rabbitmq at %s: %s", l->where,
                 amqp_error_string2(status));
        goto fail;
    }
    amqp_set_handshake_timeout(l->conn, &tv);
    amqp_set_rpc_timeout(l->conn, &tv);
    amqp_rpc_reply_t r = amqp_login(l->conn, l->info.vhost, 0, 131072, l->heartbeat_s,
                                    AMQP_SASL_METHOD_PLAIN, l->info.user, l->info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char why[256];
        bool closed;
        sg_amqp_link_reply_text(l, r, why, sizeof why, &closed);
        snprintf(errstr, errstr_size, "cannot log in to rabbitmq at %s as \"%s\": %s",
                 l->where, l->info.user, why);
        goto fail;
    }
    if (open_channels(l, nchannels, errstr, errstr_size))
        goto fail;
    l->generation++;
    say(l, 6, "rabbitmq connected to %s", l->where);
    return SG_OK;
fail:
    sg_amqp_link_close(l, false);
    return SG_ERR_CONN;
}

void sg_amqp_link_close(sg_amqp_link_t *l, bool graceful) {
    if (!l->conn)
        return;
    if (graceful)
        amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(l->conn);
    l->conn = NULL;
}

sg_err_t sg_amqp_link_lost(sg_amqp_link_t *l, const char *why, char *errstr,
                           size_t errstr_size) {
    say(l, 4, "rabbitmq connection to %s lost: %s", l->where, why);
    snprintf(errstr, errstr_size, "rabbitmq at %s: %s", l->where, why);
    sg_amqp_link_close(l, false);
    return SG_ERR_CONN;
}
