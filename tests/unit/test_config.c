/* sagad's configuration: defaults, environment overrides, every problem
 * reported at once, secrets redacted in the description and listed for
 * the logger to mask. */
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

static char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sagad-config-test-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults_follow_the_contract(void **state) {
    (void)state;
    char *const env[] = {"SAGA_DATABASE_URL=postgresql://saga@db/sagas",
                         "SAGA_KAFKA_BROKERS=k1:9092", "SAGA_AMQP_URL=amqp://mq", NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(NULL, env, &cfg, err, sizeof err), SG_OK);
    assert_string_equal(cfg->sagas_dir, "sagas");
    assert_string_equal(cfg->kafka_group_id, "sagad");
    assert_int_equal(cfg->amqp_prefetch, 256);
    assert_string_equal(cfg->events, "kafka:saga.events");
    assert_string_equal(cfg->http_listen, "127.0.0.1:9464");
    assert_int_equal(cfg->max_message_bytes, 1048576);
    assert_int_equal(cfg->ninputs, 4);
    assert_string_equal(cfg->inputs[0], "kafka:saga.commands");
    assert_string_equal(cfg->inputs[1], "kafka:saga.replies");
    assert_string_equal(cfg->inputs[2], "amqp:/saga.commands");
    assert_string_equal(cfg->inputs[3], "amqp:/saga.replies");
    assert_string_equal(cfg->reply_to_kafka, "kafka:saga.replies");
    assert_string_equal(cfg->reply_to_amqp, "amqp:/saga.replies");
    assert_int_equal(cfg->log_format, SG_LOG_JSON);
    assert_int_equal(cfg->log_level, SG_LOG_INFO);
    sg_config_destroy(cfg);
}

static void test_environment_overrides_the_file(void **state) {
    (void)state;
    char *path = write_tmp("{\"database_url\": \"postgresql://file/db\","
                           " \"kafka\": {\"brokers\": \"a:1\", \"group_id\": \"g\","
                           "   \"properties\": {\"linger.ms\": \"5\"}},"
                           " \"log\": {\"level\": \"debug\"}}");
    char *const env[] = {"SAGA_DATABASE_URL=postgresql://env/db", "SAGA_KAFKA_GROUP_ID=g2",
                         "SAGA_AMQP_PREFETCH=16", "SAGA_AMQP_URL=amqp://x",
                         "SAGA_INPUTS=kafka:in.a,amqp:/in.b", NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(path, env, &cfg, err, sizeof err), SG_OK);
    assert_string_equal(cfg->database_url, "postgresql://env/db");
    assert_string_equal(cfg->kafka_brokers, "a:1");
    assert_string_equal(cfg->kafka_group_id, "g2");
    assert_int_equal(cfg->amqp_prefetch, 16);
    assert_int_equal(cfg->log_level, SG_LOG_DEBUG);
    assert_int_equal(cfg->nkafka_properties, 1);
    assert_string_equal(cfg->kafka_properties[0].key, "linger.ms");
    assert_int_equal(cfg->ninputs, 2);
    assert_string_equal(cfg->inputs[1], "amqp:/in.b");
    sg_config_destroy(cfg);
    unlink(path);
}

static void test_every_problem_is_reported_at_once(void **state) {
    (void)state;
    char *path = write_tmp("{\"databse_url\": \"x\", \"kafka\": {\"brokers\": 7},"
                           " \"log\": {\"format\": \"xml\"}, \"amqp\": {\"prefetch\": -1},"
                           " \"inputs\": [\"kafak:x\"]}");
    char *const env[] = {NULL};
    sg_config_t *cfg;
    char err[2048];
    assert_int_equal(sg_config_load(path, env, &cfg, err, sizeof err), SG_ERR_INVALID);
    assert_null(cfg);
    const char *base = strrchr(path, '/') + 1;
    char want[256];
    snprintf(want, sizeof want, "%s: databse_url: unknown key", base);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "%s: kafka.brokers: expected a string", base);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "%s: log.format: \"xml\" is not one of |json|text|", base);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "%s: amqp.prefetch: expected a positive integer", base);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "%s: inputs[0]: unknown transport \"kafak\"", base);
    assert_non_null(strstr(err, want));
    unlink(path);
}

static void test_missing_database_and_brokers_are_refused(void **state) {
    (void)state;
    char *const env[] = {NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(NULL, env, &cfg, err, sizeof err), SG_ERR_INVALID);
    assert_non_null(strstr(err, "database_url: missing"));
    assert_non_null(strstr(err, "no broker configured"));
}

static void test_a_channel_of_an_unconfigured_transport_is_refused(void **state) {
    (void)state;
    char *const env[] = {"SAGA_DATABASE_URL=x", "SAGA_AMQP_URL=amqp://mq",
                         "SAGA_INPUTS=kafka:saga.commands", NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(NULL, env, &cfg, err, sizeof err), SG_ERR_INVALID);
    assert_non_null(strstr(err, "inputs[0]: \"kafka:saga.commands\" needs kafka.brokers"));
}

static void test_description_hides_secrets(void **state) {
    (void)state;
    char *path = write_tmp("{\"database_url\": \"postgresql://saga:pw1@db/sagas\","
                           " \"amqp\": {\"url\": \"amqps://u:pw2@mq:5671/%2f\"},"
                           " \"kafka\": {\"brokers\": \"k:9092\", \"properties\":"
                           "   {\"sasl.password\": \"pw3\", \"security.protocol\": \"sasl_ssl\"}}}");
    char *const env[] = {NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(path, env, &cfg, err, sizeof err), SG_OK);
    char *text = sg_config_describe(cfg);
    assert_null(strstr(text, "pw1"));
    assert_null(strstr(text, "pw2"));
    assert_null(strstr(text, "pw3"));
    assert_non_null(strstr(text, "sasl_ssl"));
    free(text);
    sg_config_destroy(cfg);
    unlink(path);
}

/* What sg_config_secrets reports, joined by '|'. */
static char secrets_seen[512];
static void collect(const char *secret) {
    size_t len = strlen(secrets_seen);
    snprintf(secrets_seen + len, sizeof secrets_seen - len, "%s|", secret);
}

static void test_secrets_are_the_passwords_and_secret_properties(void **state) {
    (void)state;
    char *path = write_tmp("{\"database_url\": \"postgresql://saga:pa%3Ass@db/sagas\","
                           " \"amqp\": {\"url\": \"amqps://u:mqsecret@mq:5671/%2f\"},"
                           " \"kafka\": {\"brokers\": \"k:9092\", \"properties\":"
                           "   {\"sasl.password\": \"kafkasecret\", \"sasl.username\": \"bob\","
                           "    \"ssl.key.pem\": \"-----BEGIN\"}}}");
    char *const env[] = {NULL};
    sg_config_t *cfg;
    char err[1024];
    assert_int_equal(sg_config_load(path, env, &cfg, err, sizeof err), SG_OK);
    secrets_seen[0] = '\0';
    sg_config_secrets(cfg, collect);
    assert_string_equal(secrets_seen, "pa%3Ass|pa:ss|mqsecret|mqsecret|kafkasecret|-----BEGIN|");
    sg_config_destroy(cfg);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_follow_the_contract),
        cmocka_unit_test(test_environment_overrides_the_file),
        cmocka_unit_test(test_every_problem_is_reported_at_once),
        cmocka_unit_test(test_missing_database_and_brokers_are_refused),
        cmocka_unit_test(test_a_channel_of_an_unconfigured_transport_is_refused),
        cmocka_unit_test(test_description_hides_secrets),
        cmocka_unit_test(test_secrets_are_the_passwords_and_secret_properties),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
