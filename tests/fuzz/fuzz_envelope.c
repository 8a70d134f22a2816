/* Fuzz target for the CloudEvents decoder: any bytes must be decoded or
 * refused with a reason, never crash, leak or read out of bounds. What
 * decodes must encode again and decode back to the same kind and saga. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "saga/envelope.h"

static const char *outcome_name(sg_outcome_t o) {
    return o == SG_OUTCOME_SUCCESS ? "success" : o == SG_OUTCOME_FAILURE ? "failure" : NULL;
}

static void round_trip(const sg_envelope_t *env) {
    sg_event_fields_t ev = {
        .id = env->id, .source = env->source, .type = env->type, .time_ms = -1,
        .sagaid = env->sagaid, .sagatype = env->sagatype, .sagastep = env->sagastep,
        .causationid = env->causationid, .outcome = outcome_name(env->outcome),
        .replyto = env->replyto, .traceparent = env->traceparent, .data = env->data,
    };
    char *text = NULL;
    size_t len = 0;
    char reason[256];
    if (sg_envelope_encode(&ev, &text, &len, reason, sizeof reason) != SG_OK)
        abort();
    sg_envelope_t *back = NULL;
    if (sg_envelope_decode(text, len, len, &back, reason, sizeof reason) != SG_OK)
        abort();
    if (back->kind != env->kind || strcmp(back->saga_id, env->saga_id) != 0 ||
        !json_equal(back->data, env->data))
        abort();
    sg_envelope_destroy(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char reason[256];
    sg_envelope_t *env = NULL;
    sg_err_t err = sg_envelope_decode(data, size, 65536, &env, reason, sizeof reason);
    if (err == SG_OK)
        round_trip(env);
    else if (err != SG_ERR_INVALID || reason[0] == '\0' || env != NULL)
        abort();
    sg_envelope_destroy(env);
    return 0;
}
