/* The HTTP endpoint: three read-only routes over libmicrohttpd's internal
 * polling thread. Nothing here changes daemon state. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "saga/http.h"

struct sg_http {
    struct MHD_Daemon *mhd;
    sg_metrics_t *metrics;
    sg_http_ready_fn ready;
    void *ready_arg;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             char *body, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result route(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls) {
    sg_http_t *http = cls;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                     "method not allowed\n", MHD_RESPMEM_PERSISTENT);
    if (!strcmp(url, "/metrics")) {
        char *text = sg_metrics_render(http->metrics);
        if (!text)
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n",
                         MHD_RESPMEM_PERSISTENT);
        return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
                     MHD_RESPMEM_MUST_FREE);
    }
    if (!strcmp(url, "/healthz"))
        return reply(conn, MHD_HTTP_OK, "text/plain", "ok\n", MHD_RESPMEM_PERSISTENT);
    if (!strcmp(url, "/readyz")) {
        char reason[512] = "";
        bool ok = !http->ready || http->ready(http->ready_arg, reason, sizeof reason - 1);
        if (ok)
            return reply(conn, MHD_HTTP_OK, "text/plain", "ready\n", MHD_RESPMEM_PERSISTENT);
        char body[600];
        snprintf(body, sizeof body, "not ready: %s\n", reason[0] ? reason : "unknown");
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body,
                     MHD_RESPMEM_MUST_COPY);
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", MHD_RESPMEM_PERSISTENT);
}

/* "host:port" or "[v6]:port" to a socket address. */
static int resolve(const char *listen, struct sockaddr_storage *ss, char *errstr, size_t n) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || !colon[1]) {
        snprintf(errstr, n, "bad http.listen '%s': expected HOST:PORT", listen);
        return -1;
    }
    size_t hlen = (size_t)(colon - listen);
    const char *h = listen;
    if (*h == '[' && hlen >= 2 && listen[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)hlen, h);
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(errstr, n, "bad http.listen '%s': %s", listen, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

sg_http_t *sg_http_new(const char *listen, sg_metrics_t *metrics, sg_http_ready_fn ready,
                       void *ready_arg, char *errstr, size_t errstr_size) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (resolve(listen, &ss, errstr, errstr_size) < 0)
        return NULL;
    sg_http_t *http = calloc(1, sizeof *http);
    if (!http) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    http->metrics = metrics;
    http->ready = ready;
    http->ready_arg = ready_arg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    http->mhd = MHD_start_daemon(flags, 0, NULL, NULL, route, http, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)10, MHD_OPTION_END);
    if (!http->mhd) {
        snprintf(errstr, errstr_size, "cannot listen on '%s'", listen);
        free(http);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->mhd, MHD_DAEMON_INFO_BIND_PORT);
    http->port = info ? info->port : 0;
    return http;
}

int sg_http_port(const sg_http_t *http) { return http ? http->port : 0; }

void sg_http_destroy(sg_http_t *http) {
    if (!http)
        return;
    MHD_stop_daemon(http->mhd);
    free(http);
}
