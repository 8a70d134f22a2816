/* The CloudEvents codec: every kind of bad input is refused with its exact
 * reason, every kind of good input decodes to the right envelope, and what
 * the encoder writes decodes back to the same fields. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/envelope.h"

#define CE "\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/test\""
#define REPLY CE ",\"type\":\"saga.reply\",\"sagaid\":\"s1\",\"sagastep\":\"charge\",\"causationid\":\"s1/charge/do/1\""
#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

typedef struct bad_case {
    const char *input;
    size_t len;        /* 0: strlen(input) */
    size_t max_bytes;  /* 0: default */
    const char *reason;
    bool prefix_only;  /* the reason is a prefix (jansson's own text follows) */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"", 0, 0, "not JSON: empty message", false},
    {"{\"a\":1}", 0, 5, "message of 7 bytes exceeds the limit of 5", false},
    {"{\"id\":\"\xff\"}", 0, 0, "not UTF-8: invalid byte sequence at offset 7", false},
    {"{\"id\":\"\xc0\xaf\"}", 0, 0, "not UTF-8: invalid byte sequence at offset 7", false},
    {"{\"id\":\"\xed\xa0\x80\"}", 0, 0, "not UTF-8: invalid byte sequence at offset 7", false},
    {"{\"id\":\"\xe2\x82\"}", 0, 0, "not UTF-8: invalid byte sequence at offset 7", false},
    {"{\"a\":\0}", 7, 0, "not JSON: NUL byte at offset 5", false},
    {"{\"id\":\"a\\u0000b\"}", 0, 0, "not JSON: \\u0000 is not allowed", true},
    {"{\"a\":", 0, 0, "not JSON: ", true},
    {"hello", 0, 0, "not JSON: ", true},
    {"{\"id\":\"x\",\"id\":\"y\"}", 0, 0, "not JSON: duplicate object key", true},
    {"[{}]", 0, 0,
     "not a CloudEvent: the JSON value is an array, not an object (batches are not supported)",
     false},
    {"{}", 0, 0, "missing attribute \"specversion\"", false},
    {"{\"specversion\":1.0}", 0, 0,
     "attribute \"specversion\" must be a string, not a number", false},
    {"{\"specversion\":\"0.3\"}", 0, 0, "unsupported specversion \"0.3\"", false},
    {"{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"saga.start\"}", 0, 0,
     "missing attribute \"id\"", false},
    {"{\"specversion\":\"1.0\",\"id\":\"e1\",\"type\":\"saga.start\"}", 0, 0,
     "missing attribute \"source\"", false},
    {"{" CE "}", 0, 0, "missing attribute \"type\"", false},
    {"{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"/s\",\"type\":\"saga.start\"}", 0, 0,
     "attribute \"id\" is empty", false},
    {"{\"specversion\":\"1.0\",\"id\":\"a\\u0001b\",\"source\":\"/s\",\"type\":\"saga.start\"}",
     0, 0, "attribute \"id\" contains a control character", false},
    {"{" CE ",\"type\":[\"saga.start\"]}", 0, 0,
     "attribute \"type\" must be a string, not an array", false},
    {"{" CE ",\"type\":\"com.example.thing\"}", 0, 0, "unsupported type \"com.example.thing\"",
     false},
    {"{" CE ",\"type\":\"saga.start\"}", 0, 0,
     "missing attribute \"sagatype\" for type \"saga.start\"", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"data\":[1]}", 0, 0,
     "attribute \"data\" must be an object, not an array", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"data\":\"x\"}", 0, 0,
     "attribute \"data\" must be an object, not a string", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"data_base64\":\"eyJ9\"}", 0, 0,
     "attribute \"data_base64\" is not supported: data must be a JSON object", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"datacontenttype\":\"text/plain\"}",
     0, 0, "attribute \"datacontenttype\" is \"text/plain\", not JSON", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"time\":\"yesterday\"}", 0, 0,
     "attribute \"time\" is not an RFC 3339 timestamp", false},
    {"{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"time\":\"2023-02-29T00:00:00Z\"}",
     0, 0, "attribute \"time\" is not an RFC 3339 timestamp", false},
    {"{" CE ",\"type\":\"saga.abort\"}", 0, 0,
     "missing attribute \"sagaid\" for type \"saga.abort\"", false},
    {"{" CE ",\"type\":\"saga.abort\",\"sagaid\":\"s1\",\"data\":{\"reason\":3}}", 0, 0,
     "attribute \"data.reason\" must be a string, not a number", false},
    {"{" CE ",\"type\":\"saga.reply\",\"sagaid\":\"s1\",\"causationid\":\"c\",\"outcome\":\"success\"}",
     0, 0, "missing attribute \"sagastep\" for type \"saga.reply\"", false},
    {"{" CE ",\"type\":\"saga.reply\",\"sagaid\":\"s1\",\"sagastep\":\"a\",\"outcome\":\"success\"}",
     0, 0, "missing attribute \"causationid\" for type \"saga.reply\"", false},
    {"{" REPLY "}", 0, 0, "missing attribute \"outcome\" for type \"saga.reply\"", false},
    {"{" REPLY ",\"outcome\":\"maybe\"}", 0, 0,
     "attribute \"outcome\" must be \"success\" or \"failure\", not \"maybe\"", false},
    {"{" REPLY ",\"outcome\":\"failure\",\"data\":{\"retryable\":\"yes\"}}", 0, 0,
     "attribute \"data.retryable\" must be a boolean, not a string", false},
    {"{" REPLY ",\"outcome\":\"failure\",\"data\":{\"code\":5}}", 0, 0,
     "attribute \"data.code\" must be a string, not a number", false},
};

static void test_each_bad_input_is_refused_with_its_reason(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *c = &bad_cases[i];
        size_t len = c->len ? c->len : strlen(c->input);
        char reason[256] = "";
        sg_envelope_t *env = (sg_envelope_t *)1;
        sg_err_t err = sg_envelope_decode(c->input, len, c->max_bytes, &env, reason,
                                          sizeof reason);
        if (err != SG_ERR_INVALID || env != NULL)
            fail_msg("case %zu was not refused", i);
        if (c->prefix_only ? strncmp(reason, c->reason, strlen(c->reason)) != 0
                           : strcmp(reason, c->reason) != 0)
            fail_msg("case %zu: reason \"%s\", expected \"%s\"", i, reason, c->reason);
    }
}

/* A start whose input nests 'levels' deep in total (the event object is
 * level 1). */
static char *nested_start(int levels) {
    size_t cap = 256 + 8 * (size_t)levels;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\",\"data\":");
    for (int i = 1; i < levels; i++)
        n += (size_t)snprintf(s + n, cap - n, "{\"a\":");
    n += (size_t)snprintf(s + n, cap - n, "1");
    for (int i = 0; i < levels; i++)
        n += (size_t)snprintf(s + n, cap - n, "}");
    return s;
}

static void test_nesting_is_bounded_at_64_levels(void **state) {
    (void)state;
    char reason[128] = "";
    sg_envelope_t *env = NULL;
    char *deep = nested_start(SG_ENVELOPE_MAX_DEPTH + 1);
    assert_int_equal(sg_envelope_decode(deep, strlen(deep), 0, &env, reason, sizeof reason),
                     SG_ERR_INVALID);
    assert_string_equal(reason, "JSON nested deeper than 64 levels");
    free(deep);

    char *ok = nested_start(SG_ENVELOPE_MAX_DEPTH);
    assert_int_equal(sg_envelope_decode(ok, strlen(ok), 0, &env, reason, sizeof reason), SG_OK);
    sg_envelope_destroy(env);
    free(ok);

    /* Brackets inside strings are text, not nesting. */
    char text[512];
    char brackets[201];
    memset(brackets, '[', 200);
    brackets[200] = '\0';
    snprintf(text, sizeof text,
             "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\",\"data\":{\"t\":\"\\\"%s\"}}",
             brackets);
    assert_int_equal(sg_envelope_decode(text, strlen(text), 0, &env, reason, sizeof reason),
                     SG_OK);
    sg_envelope_destroy(env);
}

static void test_attribute_longer_than_limit_is_refused(void **state) {
    (void)state;
    char id[SG_ENVELOPE_ATTR_MAX + 2];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    char *msg = malloc(sizeof id + 200);
    snprintf(msg, sizeof id + 200,
             "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/s\",\"type\":\"saga.start\"}",
             id);
    char reason[128];
    sg_envelope_t *env = NULL;
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), 0, &env, reason, sizeof reason),
                     SG_ERR_INVALID);
    assert_string_equal(reason, "attribute \"id\" is longer than 1024 bytes");
    free(msg);
}

static void test_saga_id_longer_than_128_bytes_is_refused(void **state) {
    (void)state;
    char id[SG_ENVELOPE_SAGA_ID_MAX + 2];
    memset(id, 's', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    char msg[512], reason[128];
    sg_envelope_t *env = NULL;
    snprintf(msg, sizeof msg, "{" CE ",\"type\":\"saga.abort\",\"sagaid\":\"%s\"}", id);
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), 0, &env, reason, sizeof reason),
                     SG_ERR_INVALID);
    assert_string_equal(reason, "attribute \"sagaid\" is longer than 128 bytes");
    snprintf(msg, sizeof msg, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/s\","
             "\"type\":\"saga.start\",\"sagatype\":\"o\"}", id);
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), 0, &env, reason, sizeof reason),
                     SG_ERR_INVALID);
    assert_string_equal(reason, "attribute \"id\" is longer than 128 bytes (it is the saga id)");
    id[SG_ENVELOPE_SAGA_ID_MAX] = '\0';
    snprintf(msg, sizeof msg, "{" CE ",\"type\":\"saga.abort\",\"sagaid\":\"%s\"}", id);
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), 0, &env, reason, sizeof reason), SG_OK);
    sg_envelope_destroy(env);
}

static void test_message_at_the_size_limit_is_accepted(void **state) {
    (void)state;
    const char *msg = "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\"}";
    char reason[128];
    sg_envelope_t *env = NULL;
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), strlen(msg), &env, reason,
                                        sizeof reason), SG_OK);
    sg_envelope_destroy(env);
    assert_int_equal(sg_envelope_decode(msg, strlen(msg), strlen(msg) - 1, &env, reason,
                                        sizeof reason), SG_ERR_INVALID);
}

static sg_envelope_t *decode_ok(const char *msg) {
    char reason[256] = "";
    sg_envelope_t *env = NULL;
    sg_err_t err = sg_envelope_decode(msg, strlen(msg), 0, &env, reason, sizeof reason);
    if (err != SG_OK)
        fail_msg("refused: %s", reason);
    return env;
}

static void test_start_without_sagaid_uses_the_event_id(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok(
        "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\",\"traceparent\":\"" TP "\","
        "\"time\":\"2024-05-01T12:00:00.5+02:00\",\"datacontenttype\":\"application/json; charset=utf-8\","
        "\"comexampleext\":42,\"data\":{\"order_id\":7}}");
    assert_int_equal(env->kind, SG_ENVELOPE_START);
    assert_string_equal(env->sagatype, "order");
    assert_null(env->sagaid);
    assert_string_equal(env->saga_id, "e1");
    assert_string_equal(env->traceparent, TP);
    assert_string_equal(env->time, "2024-05-01T12:00:00.5+02:00");
    assert_int_equal(json_integer_value(json_object_get(env->data, "order_id")), 7);
    assert_string_equal(env->note, "");
    sg_envelope_destroy(env);
}

static void test_start_with_sagaid_uses_it_and_null_data_is_empty(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" CE ",\"type\":\"saga.start\",\"sagatype\":\"order\","
                                   "\"sagaid\":\"order-42\",\"data\":null,"
                                   "\"datacontenttype\":\"application/vnd.order+json\"}");
    assert_string_equal(env->saga_id, "order-42");
    assert_true(json_is_object(env->data));
    assert_int_equal(json_object_size(env->data), 0);
    sg_envelope_destroy(env);
}

static void test_abort_carries_its_reason_or_empty(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" CE ",\"type\":\"saga.abort\",\"sagaid\":\"s1\","
                                   "\"data\":{\"reason\":\"customer cancelled\"}}");
    assert_int_equal(env->kind, SG_ENVELOPE_ABORT);
    assert_string_equal(env->saga_id, "s1");
    assert_string_equal(env->reason, "customer cancelled");
    sg_envelope_destroy(env);
    env = decode_ok("{" CE ",\"type\":\"saga.abort\",\"sagaid\":\"s1\"}");
    assert_string_equal(env->reason, "");
    sg_envelope_destroy(env);
}

static void test_success_reply_carries_the_result(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" REPLY ",\"outcome\":\"success\",\"data\":{\"charge_id\":\"c9\"}}");
    assert_int_equal(env->kind, SG_ENVELOPE_REPLY);
    assert_int_equal(env->outcome, SG_OUTCOME_SUCCESS);
    assert_string_equal(env->saga_id, "s1");
    assert_string_equal(env->sagastep, "charge");
    assert_string_equal(env->causationid, "s1/charge/do/1");
    assert_string_equal(json_string_value(json_object_get(env->data, "charge_id")), "c9");
    assert_null(env->error_code);
    sg_envelope_destroy(env);
}

static void test_failure_reply_reads_code_message_and_retryable(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" REPLY ",\"outcome\":\"failure\",\"data\":{\"code\":"
                                   "\"card_declined\",\"message\":\"no funds\",\"retryable\":true}}");
    assert_int_equal(env->outcome, SG_OUTCOME_FAILURE);
    assert_string_equal(env->error_code, "card_declined");
    assert_string_equal(env->error_message, "no funds");
    assert_true(env->retryable);
    sg_envelope_destroy(env);
}

static void test_failure_reply_without_details_is_not_retryable(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" REPLY ",\"outcome\":\"failure\"}");
    assert_string_equal(env->error_code, "unspecified");
    assert_string_equal(env->error_message, "");
    assert_false(env->retryable);
    sg_envelope_destroy(env);
}

static void test_invalid_traceparent_is_dropped_with_a_note(void **state) {
    (void)state;
    sg_envelope_t *env = decode_ok("{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\","
                                   "\"traceparent\":\"00-xyz\"}");
    assert_null(env->traceparent);
    assert_string_equal(env->note, "ignored attribute \"traceparent\": too short");
    sg_envelope_destroy(env);
}

/* A later version may add fields after the flags; what it adds is still an
 * attribute sent on with every command, so it obeys the attribute rules. */
static void test_traceparent_of_a_later_version_is_kept_only_when_it_can_be_sent_on(
    void **state) {
    (void)state;
    const char *later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra";
    char msg[512];
    snprintf(msg, sizeof msg, "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\","
             "\"traceparent\":\"%s\"}", later);
    sg_envelope_t *env = decode_ok(msg);
    assert_string_equal(env->traceparent, later);
    sg_envelope_destroy(env);

    snprintf(msg, sizeof msg, "{" CE ",\"type\":\"saga.start\",\"sagatype\":\"o\","
             "\"traceparent\":\"%s-\\u0001\"}", later);
    env = decode_ok(msg);
    assert_null(env->traceparent);
    assert_string_equal(env->note, "ignored attribute \"traceparent\": contains a control character");
    /* What decodes encodes again. */
    sg_event_fields_t ev = {.id = env->id, .source = env->source, .type = env->type,
                            .time_ms = -1, .sagatype = env->sagatype,
                            .traceparent = env->traceparent, .data = env->data};
    char *text = NULL, reason[256];
    size_t len = 0;
    assert_int_equal(sg_envelope_encode(&ev, &text, &len, reason, sizeof reason), SG_OK);
    free(text);
    sg_envelope_destroy(env);
}

static void test_truncated_message_is_refused_at_every_length(void **state) {
    (void)state;
    const char *msg = "{" REPLY ",\"outcome\":\"failure\",\"data\":{\"code\":\"x\",\"é\":[1,{}]}}";
    size_t full = strlen(msg);
    for (size_t len = 0; len < full; len++) {
        char reason[256] = "";
        sg_envelope_t *env = NULL;
        if (sg_envelope_decode(msg, len, 0, &env, reason, sizeof reason) != SG_ERR_INVALID)
            fail_msg("prefix of %zu bytes was accepted", len);
        assert_true(reason[0] != '\0');
    }
}

static void test_encoded_start_decodes_to_the_same_fields(void **state) {
    (void)state;
    json_t *data = json_pack("{s:i, s:[s,s]}", "order_id", 7, "items", "a", "b");
    sg_event_fields_t ev = {.id = "e-1", .source = "/shop", .type = "saga.start",
                            .time_ms = 1714564800123, .sagaid = "s-1", .sagatype = "order",
                            .traceparent = TP, .data = data};
    char *text = NULL;
    size_t len = 0;
    char reason[128];
    assert_int_equal(sg_envelope_encode(&ev, &text, &len, reason, sizeof reason), SG_OK);
    assert_int_equal(len, strlen(text));
    sg_envelope_t *env = decode_ok(text);
    assert_int_equal(env->kind, SG_ENVELOPE_START);
    assert_string_equal(env->id, "e-1");
    assert_string_equal(env->source, "/shop");
    assert_string_equal(env->time, "2024-05-01T12:00:00.123Z");
    assert_string_equal(env->datacontenttype, "application/json");
    assert_string_equal(env->saga_id, "s-1");
    assert_string_equal(env->sagatype, "order");
    assert_string_equal(env->traceparent, TP);
    assert_true(json_equal(env->data, data));
    sg_envelope_destroy(env);
    free(text);
    json_decref(data);
}

static void test_encoded_failure_reply_decodes_to_the_same_fields(void **state) {
    (void)state;
    json_t *data = json_pack("{s:s, s:s, s:b}", "code", "declined", "message", "no", "retryable", 1);
    sg_event_fields_t ev = {.id = "r-1", .source = "/payments", .type = "saga.reply",
                            .time_ms = -1, .sagaid = "s-1", .sagastep = "charge",
                            .causationid = "s-1/charge/do/2", .outcome = "failure", .data = data};
    char *text = NULL;
    size_t len;
    char reason[128];
    assert_int_equal(sg_envelope_encode(&ev, &text, &len, reason, sizeof reason), SG_OK);
    assert_null(strstr(text, "\"time\""));
    sg_envelope_t *env = decode_ok(text);
    assert_int_equal(env->outcome, SG_OUTCOME_FAILURE);
    assert_string_equal(env->causationid, "s-1/charge/do/2");
    assert_string_equal(env->error_code, "declined");
    assert_true(env->retryable);
    sg_envelope_destroy(env);
    free(text);
    json_decref(data);
}

static void test_encoded_command_has_exactly_the_given_attributes(void **state) {
    (void)state;
    json_t *data = json_pack("{s:i}", "amount", 100);
    sg_event_fields_t ev = {.id = "s-1/charge/do/1", .source = "sagad", .type = "payment.charge",
                            .time_ms = 0, .sagaid = "s-1", .sagatype = "order",
                            .sagastep = "charge", .replyto = "kafka:saga.replies",
                            .traceparent = TP, .data = data};
    char *text = NULL;
    size_t len;
    char reason[128];
    assert_int_equal(sg_envelope_encode(&ev, &text, &len, reason, sizeof reason), SG_OK);
    json_t *got = json_loads(text, 0, NULL);
    json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O}",
                             "specversion", "1.0", "id", "s-1/charge/do/1", "source", "sagad",
                             "type", "payment.charge", "time", "1970-01-01T00:00:00.000Z",
                             "datacontenttype", "application/json", "sagaid", "s-1",
                             "sagatype", "order", "sagastep", "charge",
                             "replyto", "kafka:saga.replies", "traceparent", TP, "data", data);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    free(text);
    json_decref(data);
}

static void test_encoder_refuses_incomplete_or_invalid_fields(void **state) {
    (void)state;
    char *text = NULL;
    size_t len;
    char reason[128];
    sg_event_fields_t no_id = {.source = "s", .type = "t", .time_ms = -1};
    assert_int_equal(sg_envelope_encode(&no_id, &text, &len, reason, sizeof reason), SG_ERR_INVALID);
    assert_string_equal(reason, "missing attribute \"id\"");
    sg_event_fields_t bad_tp = {.id = "i", .source = "s", .type = "t", .time_ms = -1,
                                .traceparent = "00-00"};
    assert_int_equal(sg_envelope_encode(&bad_tp, &text, &len, reason, sizeof reason), SG_ERR_INVALID);
    assert_string_equal(reason, "attribute \"traceparent\": too short");
    json_t *arr = json_array();
    sg_event_fields_t bad_data = {.id = "i", .source = "s", .type = "t", .time_ms = -1, .data = arr};
    assert_int_equal(sg_envelope_encode(&bad_data, &text, &len, reason, sizeof reason), SG_ERR_INVALID);
    assert_string_equal(reason, "attribute \"data\" must be an object, not an array");
    json_decref(arr);
    sg_event_fields_t bad_utf8 = {.id = "i\xff", .source = "s", .type = "t", .time_ms = -1};
    assert_int_equal(sg_envelope_encode(&bad_utf8, &text, &len, reason, sizeof reason), SG_ERR_INVALID);
    assert_null(text);
}

static void test_time_is_formatted_as_rfc3339_utc_with_milliseconds(void **state) {
    (void)state;
    char buf[32];
    assert_int_equal(sg_envelope_format_time(0, buf, sizeof buf), SG_OK);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    assert_int_equal(sg_envelope_format_time(1714564800123, buf, sizeof buf), SG_OK);
    assert_string_equal(buf, "2024-05-01T12:00:00.123Z");
    assert_int_equal(sg_envelope_format_time(-1, buf, sizeof buf), SG_OK);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_int_equal(sg_envelope_format_time(0, buf, 10), SG_ERR_INVALID);
    assert_true(sg_envelope_time_valid("2024-02-29t23:59:60.1z"));
    assert_true(sg_envelope_time_valid("2024-05-01 12:00:00-05:30"));
    assert_false(sg_envelope_time_valid("2024-05-01T12:00:00"));
    assert_false(sg_envelope_time_valid("2024-13-01T12:00:00Z"));
    assert_false(sg_envelope_time_valid("2024-05-01T12:00:00.Z"));
    assert_false(sg_envelope_time_valid("2024-05-01T12:00:00+5:30"));
}

static void test_traceparent_validation_follows_w3c(void **state) {
    (void)state;
    static const struct {
        const char *tp;
        const char *why;
    } cases[] = {
        {TP, NULL},
        {"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", NULL},
        {"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", "bad length"},
        {TP "-x", "bad length"},
        {"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "bad version"},
        {"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "bad trace id"},
        {"00-00000000000000000000000000000000-b7ad6b7169203331-01", "bad trace id"},
        {"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "bad parent id"},
        {"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01", "bad separators"},
        {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g", "bad flags"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = sg_trace_check(cases[i].tp);
        if (cases[i].why ? !why || strcmp(why, cases[i].why) != 0 : why != NULL)
            fail_msg("case %zu: got %s", i, why ? why : "valid");
    }
}

static void test_trace_ids_are_made_from_the_given_bytes(void **state) {
    (void)state;
    const uint8_t trace[16] = {0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd,
                               0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c};
    const uint8_t span[8] = {0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
    const uint8_t span2[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t zeros[16] = {0};
    char tp[SG_TRACEPARENT_LEN + 1];
    sg_trace_new(trace, span, tp);
    assert_string_equal(tp, TP);
    sg_trace_new(zeros, zeros, tp);
    assert_string_equal(tp, "00-00000000000000000000000000000001-0000000000000001-01");
    assert_null(sg_trace_check(tp));
    assert_int_equal(sg_trace_child("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-x",
                                    span2, tp), SG_OK);
    assert_string_equal(tp, "00-0af7651916cd43dd8448eb211c80319c-0102030405060708-00");
    assert_int_equal(sg_trace_child("garbage", span2, tp), SG_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_bad_input_is_refused_with_its_reason),
        cmocka_unit_test(test_nesting_is_bounded_at_64_levels),
        cmocka_unit_test(test_attribute_longer_than_limit_is_refused),
        cmocka_unit_test(test_saga_id_longer_than_128_bytes_is_refused),
        cmocka_unit_test(test_message_at_the_size_limit_is_accepted),
        cmocka_unit_test(test_start_without_sagaid_uses_the_event_id),
        cmocka_unit_test(test_start_with_sagaid_uses_it_and_null_data_is_empty),
        cmocka_unit_test(test_abort_carries_its_reason_or_empty),
        cmocka_unit_test(test_success_reply_carries_the_result),
        cmocka_unit_test(test_failure_reply_reads_code_message_and_retryable),
        cmocka_unit_test(test_failure_reply_without_details_is_not_retryable),
        cmocka_unit_test(test_invalid_traceparent_is_dropped_with_a_note),
        cmocka_unit_test(test_traceparent_of_a_later_version_is_kept_only_when_it_can_be_sent_on),
        cmocka_unit_test(test_truncated_message_is_refused_at_every_length),
        cmocka_unit_test(test_encoded_start_decodes_to_the_same_fields),
        cmocka_unit_test(test_encoded_failure_reply_decodes_to_the_same_fields),
        cmocka_unit_test(test_encoded_command_has_exactly_the_given_attributes),
        cmocka_unit_test(test_encoder_refuses_incomplete_or_invalid_fields),
        cmocka_unit_test(test_time_is_formatted_as_rfc3339_utc_with_milliseconds),
        cmocka_unit_test(test_traceparent_validation_follows_w3c),
        cmocka_unit_test(test_trace_ids_are_made_from_the_given_bytes),
    };
    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
