/* Secrets are redacted from URLs and libpq connection strings. */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passwords_are_replaced_by_stars),
        cmocka_unit_test(test_a_short_buffer_is_cut_not_overrun),
    };
    return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
