/* The message codec (CONTRACT.md section 2): CloudEvents 1.0 in JSON
 * structured mode, in and out.
 *
 * sg_envelope_decode turns the bytes of one received message into an
 * envelope, or refuses it with one precise reason meant for the dead-letter
 * table ("not JSON: ...", "missing attribute \"id\"", ...). It never crashes
 * and never reads past 'len', whatever the bytes: the size limit is checked
 * before anything else, then UTF-8, NUL bytes and nesting depth, then the
 * JSON itself (duplicate keys refused), then the attributes.
 *
 * Decisions where CloudEvents and the contract are silent:
 * - "data": absent or null decodes as an empty object; any other non-object
 *   is refused. "data_base64" is refused (only JSON object data is carried).
 * - "datacontenttype", when present, must name JSON (application/json,
 *   text/json or any "+json" type, parameters allowed).
 * - "time", when present, must be an RFC 3339 timestamp.
 * - Known attributes are non-empty strings of at most SG_ENVELOPE_ATTR_MAX
 *   bytes without control characters; unknown extension attributes are
 *   ignored. A saga id ("sagaid", or the "id" of a start without one) has
 *   at most SG_ENVELOPE_SAGA_ID_MAX bytes, so that the ids derived from it
 *   (commands: "<sagaid>/<step>/<do|undo>/<attempt>") fit AMQP's 255-byte
 *   message_id and correlation_id.
 * - "traceparent" that is not a valid W3C trace context is dropped, as the
 *   W3C specification prescribes (a new trace starts), not refused; the
 *   envelope's 'note' says why, for the log.
 * - A failure reply's data: "code" defaults to "unspecified", "message" to
 *   "", "retryable" to false (an unknown failure is not retried); present
 *   fields of the wrong type are refused.
 * - A "saga.abort" without data.reason gets the reason "".
 *
 * The encoder builds outgoing commands, lifecycle events (and, for test
 * participants, replies) from fields. Randomness and clocks stay outside:
 * callers pass the time and the random bytes of trace and span ids. */
#ifndef SAGA_ENVELOPE_H
#define SAGA_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/err.h"
#include "saga/outcome.h"

#define SG_ENVELOPE_DEFAULT_MAX_BYTES 1048576 /* 1 MiB */
#define SG_ENVELOPE_MAX_DEPTH 64              /* JSON nesting levels */
#define SG_ENVELOPE_ATTR_MAX 1024             /* bytes in a known attribute */
#define SG_ENVELOPE_SAGA_ID_MAX 128           /* bytes in a saga id */
#define SG_ENVELOPE_CONTENT_TYPE "application/cloudevents+json"

typedef enum sg_envelope_kind {
    SG_ENVELOPE_START = 1, /* "saga.start" */
    SG_ENVELOPE_ABORT = 2, /* "saga.abort" */
    SG_ENVELOPE_REPLY = 3, /* "saga.reply" */
} sg_envelope_kind_t;


/* A decoded incoming message. Strings are owned by the envelope; optional
 * ones are NULL when absent. Free with sg_envelope_destroy. */
typedef struct sg_envelope {
    sg_envelope_kind_t kind;
    char *id;
    char *source;
    char *type;
    char *time;            /* as sent, validated RFC 3339 */
    char *datacontenttype;
    json_t *data;          /* always an object (owned reference) */

    char *sagatype;        /* start: required */
    char *sagaid;          /* abort and reply: required; start: optional */
    const char *saga_id;   /* the saga this message is about: sagaid, or the
                              event id for a start without one (borrowed) */
    char *sagastep;        /* reply: required */
    char *causationid;     /* reply: required */
    sg_outcome_t outcome;  /* reply: required */
    char *replyto;
    char *traceparent;     /* NULL when absent or invalid (see 'note') */

    /* A failure reply's data, defaults applied; NULL/false otherwise. */
    char *error_code;
    char *error_message;
    bool retryable;

    char *reason;          /* abort: data.reason, "" when absent */

    char note[128];        /* "" or why an attribute was ignored */
} sg_envelope_t;

/* Decodes one message of 'len' bytes. 'max_bytes' is the size limit
 * (0 means SG_ENVELOPE_DEFAULT_MAX_BYTES). On success returns SG_OK and
 * sets *out. On refusal returns SG_ERR_INVALID with the reason in errstr
 * (for the dead-letter table) and *out NULL; SG_ERR_NOMEM when memory ran
 * out. 'buf' need not be NUL-terminated. */
sg_err_t sg_envelope_decode(const void *buf, size_t len, size_t max_bytes,
                            sg_envelope_t **out, char *errstr, size_t errstr_size);
void sg_envelope_destroy(sg_envelope_t *env);

/* The fields of an outgoing event. id, source and type are required; any
 * other NULL string is left out. 'time_ms' is milliseconds since the Unix
 * epoch, written as RFC 3339 UTC with milliseconds; a negative value leaves
 * "time" out. 'data' is an object or NULL (then no "data"). */
typedef struct sg_event_fields {
    const char *id;
    const char *source;
    const char *type;
    int64_t time_ms;
    const char *sagaid;
    const char *sagatype;
    const char *sagastep;
    const char *causationid;
    const char *outcome;   /* "success" or "failure" (replies) */
    const char *replyto;
    const char *traceparent;
    const json_t *data;
} sg_event_fields_t;

/* Encodes an event as compact JSON. On success *out is a NUL-terminated
 * string of *out_len bytes that the caller frees with free(). Returns
 * SG_ERR_INVALID with a reason when a required field is missing or a field
 * would not decode back. */
sg_err_t sg_envelope_encode(const sg_event_fields_t *ev, char **out, size_t *out_len,
                            char *errstr, size_t errstr_size);

/* Writes "2024-05-01T12:00:00.123Z" (24 characters and a NUL) for the given
 * milliseconds since the epoch. Returns SG_ERR_INVALID if out of range or
 * 'buf' is too small. */
sg_err_t sg_envelope_format_time(int64_t time_ms, char *buf, size_t buf_size);

/* True when 'text' is an RFC 3339 date-time ("T" or "t" or space between
 * date and time, optional fraction, "Z" or "+hh:mm"/"-hh:mm"). */
bool sg_envelope_time_valid(const char *text);

/* ---- W3C trace context ---- */

#define SG_TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

/* NULL when 'tp' is a valid traceparent, else a short reason. Future
 * versions (not "00", not "ff") are accepted as W3C requires: their first
 * 55 characters are read, and anything after must start with "-". */
const char *sg_trace_check(const char *tp);

/* Makes a new sampled traceparent "00-<trace>-<span>-01" from 16 and 8
 * random bytes. An all-zero id (invalid in W3C) gets its last byte set
 * to 1. 'out' receives SG_TRACEPARENT_LEN characters and a NUL. */
void sg_trace_new(const uint8_t trace_id[16], const uint8_t span_id[8],
                  char out[SG_TRACEPARENT_LEN + 1]);

/* A child of 'parent': the same trace id and flags with a new span id (from
 * 8 random bytes), as version "00". Returns SG_ERR_INVALID when 'parent' is
 * not a valid traceparent. */
sg_err_t sg_trace_child(const char *parent, const uint8_t span_id[8],
                        char out[SG_TRACEPARENT_LEN + 1]);

#endif
