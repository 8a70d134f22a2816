/* The configuration files shipped under deploy/ load with sagad's own
 * configuration loader, with the environment each deployment form gives
 * them: the compose file's variables for deploy/config/sagad.json, the
 * Secret's variables for the Kubernetes ConfigMap's sagad.json. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga/config.h"

#define EXAMPLE_CONFIG SAGA_SOURCE_DIR "/deploy/config/sagad.json"
#define K8S_CONFIGMAP SAGA_SOURCE_DIR "/deploy/k8s/configmap-config.yaml"

/* The literal block scalar "KEY: |" of a YAML file, without its indentation,
 * written to a temporary file whose path is returned. */
static char *extract_block(const char *yaml_path, const char *key) {
    static char out_path[64];
    snprintf(out_path, sizeof out_path, "/tmp/sagad-deploy-config-%d.json", (int)getpid());
    FILE *in = fopen(yaml_path, "r");
    assert_non_null(in);
    FILE *out = fopen(out_path, "w");
    assert_non_null(out);
    char line[1024], header[128];
    snprintf(header, sizeof header, "%s: |", key);
    size_t key_indent = 0, block_indent = 0;
    int inside = 0, found = 0;
    while (fgets(line, sizeof line, in)) {
        size_t indent = strspn(line, " ");
        int blank = line[indent] == '\n' || line[indent] == '\0';
        if (!inside) {
            if (!strncmp(line + indent, header, strlen(header))) {
                inside = found = 1;
                key_indent = indent;
            }
            continue;
        }
        if (!blank && indent <= key_indent)
            break;
        if (!block_indent && !blank)
            block_indent = indent;
        fputs(blank ? "\n" : line + block_indent, out);
    }
    fclose(in);
    fclose(out);
    assert_true(found);
    return out_path;
}

static void test_example_config_loads_with_the_compose_environment(void **state) {
    (void)state;
    char *const env[] = {"SAGA_DATABASE_URL=postgresql://sagad:sagad@postgres:5432/sagas",
                         "SAGA_KAFKA_BROKERS=kafka:9092",
                         "SAGA_AMQP_URL=amqp://sagad:sagad@rabbitmq:5672/%2f",
                         "SAGA_HTTP_LISTEN=0.0.0.0:9464", NULL};
    sg_config_t *cfg = NULL;
    char err[2048];
    assert_int_equal(sg_config_load(EXAMPLE_CONFIG, env, &cfg, err, sizeof err), SG_OK);
    assert_string_equal(cfg->http_listen, "0.0.0.0:9464");
    assert_string_equal(cfg->sagas_dir, "/etc/sagad/sagas");
    assert_string_equal(cfg->kafka_brokers, "kafka:9092");
    assert_int_equal(cfg->ninputs, 4);
    sg_config_destroy(cfg);
}

static void test_example_config_alone_is_complete(void **state) {
    (void)state;
    char *const env[] = {NULL};
    sg_config_t *cfg = NULL;
    char err[2048] = "";
    sg_err_t rc = sg_config_load(EXAMPLE_CONFIG, env, &cfg, err, sizeof err);
    if (rc != SG_OK)
        fail_msg("%s", err);
    assert_non_null(cfg->database_url);
    assert_non_null(cfg->amqp_url);
    assert_string_equal(cfg->http_listen, "127.0.0.1:9464");
    sg_config_destroy(cfg);
}

static void test_kubernetes_config_loads_with_the_secret_environment(void **state) {
    (void)state;
    char *path = extract_block(K8S_CONFIGMAP, "sagad.json");
    char *const env[] = {"SAGA_DATABASE_URL=postgresql://sagad:x@db:5432/sagas",
                         "SAGA_AMQP_URL=amqps://sagad:x@mq:5671/%2f",
                         "SAGA_HTTP_LISTEN=0.0.0.0:9464", "SAGA_SAGAS_DIR=/etc/sagad/sagas", NULL};
    sg_config_t *cfg = NULL;
    char err[2048] = "";
    sg_err_t rc = sg_config_load(path, env, &cfg, err, sizeof err);
    unlink(path);
    if (rc != SG_OK)
        fail_msg("%s", err);
    assert_string_equal(cfg->amqp_url, "amqps://sagad:x@mq:5671/%2f");
    assert_int_equal(cfg->ninputs, 4);
    sg_config_destroy(cfg);
}

static void test_kubernetes_config_holds_no_credentials(void **state) {
    (void)state;
    char *path = extract_block(K8S_CONFIGMAP, "sagad.json");
    char *const env[] = {NULL};
    sg_config_t *cfg = NULL;
    char err[2048] = "";
    sg_err_t rc = sg_config_load(path, env, &cfg, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, SG_ERR_INVALID);
    assert_null(cfg);
    assert_non_null(strstr(err, "database_url"));
    assert_non_null(strstr(err, "needs amqp.url"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_config_loads_with_the_compose_environment),
        cmocka_unit_test(test_example_config_alone_is_complete),
        cmocka_unit_test(test_kubernetes_config_loads_with_the_secret_environment),
        cmocka_unit_test(test_kubernetes_config_holds_no_credentials),
    };
    return cmocka_run_group_tests_name("deploy_config", tests, NULL, NULL);
}
