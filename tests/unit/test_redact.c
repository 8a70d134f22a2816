/* Secrets are redacted from URLs and libpq connection strings, picked out
 * of them, and recognised in property names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "saga/redact.h"

static const struct {
    const char *in;
    const char *out;
} cases[] = {
    {"amqps://user:secret@mq:5671/%2f", "amqps://user:***@mq:5671/%2f"},
    {"amqp://guest:guest@127.0.0.1:5672/%2f", "amqp://guest:***@127.0.0.1:5672/%2f"},
    {"postgresql://saga@db:5432/sagas", "postgresql://saga@db:5432/sagas"},
    {"postgresql://saga:p@ss@db/sagas", "postgresql://saga:***@db/sagas"},
    {"postgresql://db/sagas?user=saga&password=hunter2&sslmode=require",
     "postgresql://db/sagas?user=saga&password=***&sslmode=require"},
    {"host=db user=saga password=hunter2 dbname=sagas",
     "host=db user=saga password=*** dbname=sagas"},
    {"host=db password = 'a b\\' c' dbname=sagas", "host=db password = *** dbname=sagas"},
    {"k1:9092,k2:9092", "k1:9092,k2:9092"},
    {"", ""},
};

static void test_passwords_are_replaced_by_stars(void **state) {
    (void)state;
    char buf[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sg_redact(cases[i].in, buf, sizeof buf);
        assert_string_equal(buf, cases[i].out);
    }
}

static void test_a_short_buffer_is_cut_not_overrun(void **state) {
    (void)state;
    char buf[12];
    memset(buf, 'x', sizeof buf);
    sg_redact("amqps://user:secret@mq:5671/%2f", buf, sizeof buf);
    assert_int_equal(strlen(buf), sizeof buf - 1);
    assert_null(strstr(buf, "secret"));
}

static void test_the_password_is_picked_out_as_written_or_decoded(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *raw;
        const char *decoded;
    } pw[] = {
        {"amqps://user:s%40cret@mq:5671/%2f", "s%40cret", "s@cret"},
        {"postgresql://saga:p@ss@db/sagas", "p@ss", "p@ss"},
        {"postgresql://db/sagas?user=saga&password=hunter2&sslmode=require", "hunter2", "hunter2"},
        {"host=db user=saga password=hunter2 dbname=sagas", "hunter2", "hunter2"},
        {"host=db password = 'a b\\' c' dbname=sagas", "a b\\' c", "a b' c"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
        assert_true(sg_redact_password(pw[i].in, false, buf, sizeof buf));
        assert_string_equal(buf, pw[i].raw);
        assert_true(sg_redact_password(pw[i].in, true, buf, sizeof buf));
        assert_string_equal(buf, pw[i].decoded);
    }
    assert_false(sg_redact_password("postgresql://saga@db:5432/sagas", true, buf, sizeof buf));
    assert_false(sg_redact_password("host=db user=saga", true, buf, sizeof buf));
    assert_false(sg_redact_password(NULL, true, buf, sizeof buf));
}

static void test_secret_property_names_are_recognised(void **state) {
    (void)state;
    const char *secret[] = {"sasl.password", "ssl.key.password", "ssl.keystore.password",
                            "sasl.oauthbearer.client.secret", "ssl.key.pem",
                            "sasl.oauthbearer.config"};
    const char *plain[] = {"security.protocol", "sasl.mechanism", "sasl.username",
                           "session.timeout.ms", "ssl.ca.location"};
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
        assert_true(sg_redact_secret_key(secret[i]));
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        assert_false(sg_redact_secret_key(plain[i]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passwords_are_replaced_by_stars),
        cmocka_unit_test(test_a_short_buffer_is_cut_not_overrun),
        cmocka_unit_test(test_the_password_is_picked_out_as_written_or_decoded),
        cmocka_unit_test(test_secret_property_names_are_recognised),
    };
    return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
