/* The HTTP endpoint on a loopback port: metrics in the exposition format,
 * health, readiness with its reason, and 404 for anything else. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "saga/http.h"
#include "saga/metrics.h"

static bool ready_flag;

static bool ready(void *arg, char *reason, size_t n) {
    (void)arg;
    if (!ready_flag)
        snprintf(reason, n, "database: connection refused");
    return ready_flag;
}

/* One GET over a plain socket; returns the whole response. */
static char *get(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void test_routes_answer_as_documented(void **state) {
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metrics_add(m, SG_M_SAGAS_STARTED, 3, "order_fulfillment");
    sg_metrics_observe(m, SG_M_STEP_LATENCY, 0.004, "order_fulfillment");
    char err[256];
    sg_http_t *http = sg_http_new("127.0.0.1:0", m, ready, NULL, err, sizeof err);
    assert_non_null(http);
    int port = sg_http_port(http);
    assert_true(port > 0);

    char *r = get(port, "/metrics");
    assert_non_null(strstr(r, " 200 OK"));
    assert_non_null(strstr(r, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r, "sagad_sagas_started_total{type=\"order_fulfillment\"} 3\n"));
    assert_non_null(strstr(r, "sagad_step_latency_seconds_bucket{type=\"order_fulfillment\",le=\"0.005\"} 1\n"));
    free(r);

    r = get(port, "/healthz");
    assert_non_null(strstr(r, " 200 "));
    free(r);

    ready_flag = false;
    r = get(port, "/readyz");
    assert_non_null(strstr(r, " 503 "));
    assert_non_null(strstr(r, "not ready: database: connection refused"));
    free(r);
    ready_flag = true;
    r = get(port, "/readyz");
    assert_non_null(strstr(r, " 200 "));
    free(r);

    r = get(port, "/nothing");
    assert_non_null(strstr(r, " 404 "));
    free(r);
    sg_http_destroy(http);
    sg_metrics_destroy(m);
}

static void test_a_bad_listen_address_is_refused(void **state) {
    (void)state;
    char err[256];
    assert_null(sg_http_new("no-port", NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "bad http.listen 'no-port': expected HOST:PORT");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_answer_as_documented),
        cmocka_unit_test(test_a_bad_listen_address_is_refused),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
