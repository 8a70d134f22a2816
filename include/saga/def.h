/* Saga definitions (CONTRACT.md section 3): load a JSON file into an
 * immutable in-memory definition, validate it reporting every problem as
 * "FILE: JSON-PATH: message", and keep all versions of each name.
 *
 * A loaded sg_def_t is never changed again: the engine and any number of
 * threads may read its fields directly. Free it with sg_def_destroy. */
#ifndef SAGA_DEF_H
#define SAGA_DEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/err.h"

#define SG_NAME_MAX 63 /* [a-z][a-z0-9_]{0,62} */

/* ---- channels: "kafka:<topic>" or "amqp:<exchange>/<routing-key>" ---- */

typedef enum sg_transport {
    SG_TRANSPORT_KAFKA = 1,
    SG_TRANSPORT_AMQP = 2,
} sg_transport_t;

typedef struct sg_channel {
    sg_transport_t transport;
    char *text;        /* the channel as written: "amqp:payments/charge" */
    char *topic;       /* kafka: the topic; NULL for amqp */
    char *exchange;    /* amqp: the exchange, "" for the default exchange */
    char *routing_key; /* amqp: the routing key (the queue when exchange is "") */
} sg_channel_t;

/* Parses 'text' into 'ch' (fields heap-allocated; release with
 * sg_channel_release). On error fills errstr with the reason, for example
 * 'unknown transport "kafak"', and leaves 'ch' zeroed. */
sg_err_t sg_channel_parse(const char *text, sg_channel_t *ch, char *errstr,
                          size_t errstr_size);
void sg_channel_release(sg_channel_t *ch);

/* ---- durations: "<number><ms|s|m|h>" ---- */

/* Parses a duration into milliseconds. "1.5s" is 1500; 0 is refused;
 * returns SG_ERR_INVALID with a reason in errstr. */
sg_err_t sg_duration_parse(const char *text, int64_t *ms, char *errstr,
                           size_t errstr_size);
/* Writes a duration in the shortest exact form ("1500ms", "2m"). */
void sg_duration_format(int64_t ms, char *buf, size_t buf_size);

/* ---- the definition ---- */

typedef struct sg_retry {
    int max_attempts;        /* >= 1; 1 means no retry */
    int64_t initial_backoff_ms;
    int64_t max_backoff_ms;
    double multiplier;       /* >= 1.0 */
} sg_retry_t;

/* A command or a compensation: what to send, where. */
typedef struct sg_action {
    char *type;           /* the CloudEvents type of the command */
    sg_channel_t channel;
    json_t *data;         /* the template (owned); rendered per attempt; an
                             empty object when the definition has no "data" */
    int64_t timeout_ms;   /* no reply within this is a timeout */
    sg_retry_t retry;
} sg_action_t;

typedef struct sg_step {
    char *name;
    int index;            /* position in def->steps */
    int stage;            /* index in def->stages of the stage it belongs to */
    bool pivot;
    sg_action_t command;
    bool has_compensation;
    sg_action_t compensation;
} sg_step_t;

/* A top-level entry of "steps": a single step, or a parallel group whose
 * members are sent at once. Stages run in order. */
typedef struct sg_stage {
    char *name;           /* the step's name, or the group's */
    bool parallel;
    int first;            /* its steps are def->steps[first .. first+count-1] */
    int count;
} sg_stage_t;

typedef struct sg_def {
    char *name;
    int version;          /* >= 1 */
    char *description;    /* "" when absent */
    char *file;           /* the file it was loaded from (for sg_def_load_string
                             the 'file' given, "" when NULL) */
    int64_t timeout_ms;   /* the saga deadline on the forward path; 0 = none */
    sg_step_t *steps;     /* every step, groups flattened, in definition order */
    int nsteps;
    sg_stage_t *stages;
    int nstages;
    json_t *body;         /* the definition as loaded (owned) */
    char *canonical;      /* canonical JSON: sorted keys, no whitespace */
    char sha256[65];      /* hex SHA-256 of 'canonical' */
    int pivot_step;       /* index in steps of the pivot, -1 when none */
} sg_def_t;

/* A list of problems, each "FILE: JSON-PATH: message", in document order. */
typedef struct sg_def_errors {
    char **items;
    size_t count;
    size_t cap;
} sg_def_errors_t;

void sg_def_errors_release(sg_def_errors_t *errs);
/* Appends one formatted problem (for checks made outside the loader, such
 * as a version conflict). A failed allocation drops the message. */
void sg_def_errors_addf(sg_def_errors_t *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Loads and validates a definition. 'file' names the source in messages (its
 * last path component is used, as in "order.json: $.steps[2]..."). On
 * success returns SG_OK and sets *out; on any problem returns SG_ERR_INVALID
 * (or SG_ERR_IO for an unreadable file) with every problem appended to
 * 'errs'. */
sg_err_t sg_def_load_file(const char *path, sg_def_t **out, sg_def_errors_t *errs);
sg_err_t sg_def_load_string(const char *file, const char *text, size_t len,
                            sg_def_t **out, sg_def_errors_t *errs);
void sg_def_destroy(sg_def_t *def);

/* The step named 'name', or NULL. */
const sg_step_t *sg_def_step(const sg_def_t *def, const char *name);

/* ---- a set of definitions: every version of every name ---- */

typedef struct sg_def_set sg_def_set_t;

sg_def_set_t *sg_def_set_new(void);
void sg_def_set_destroy(sg_def_set_t *set);
/* Loads every *.json file of 'dir'. Problems of all files go to 'errs'; a
 * file with problems is skipped; two files with the same name and version
 * but different content are refused. Returns SG_ERR_INVALID if any file was
 * refused (the good ones are still loaded). */
sg_err_t sg_def_set_load_dir(sg_def_set_t *set, const char *dir, sg_def_errors_t *errs);
/* Takes ownership of 'def' on success; the caller keeps it on failure
 * (a same name and version with another hash: SG_ERR_INVALID). */
sg_err_t sg_def_set_add(sg_def_set_t *set, sg_def_t *def, char *errstr, size_t errstr_size);
/* The highest version of 'name' (what new sagas start on), or NULL. */
const sg_def_t *sg_def_set_latest(const sg_def_set_t *set, const char *name);
/* One exact version, or NULL. */
const sg_def_t *sg_def_set_get(const sg_def_set_t *set, const char *name, int version);
/* Iteration in name then version order: i from 0 to count-1. */
size_t sg_def_set_count(const sg_def_set_t *set);
const sg_def_t *sg_def_set_at(const sg_def_set_t *set, size_t i);

/* ---- templates ---- */

/* Renders a template against a saga context ({"saga":{"id","type"},
 * "input":..., "steps":{...}}). A string that is exactly "$.path" is
 * replaced by the value at that path; "$$..." stands for a literal "$...";
 * all other values are copied. With 'missing_as_null' a path with no value
 * renders as null (compensations); otherwise it is SG_ERR_TEMPLATE with
 * errstr like 'no value at "$.steps.charge.charge_id" (for
 * $.data.charge_id)'. Returns a new reference in *out. */
sg_err_t sg_template_render(const json_t *tmpl, const json_t *context,
                            bool missing_as_null, json_t **out,
                            char *errstr, size_t errstr_size);

/* Looks up "$.a.b[2].c" in 'root'. Returns a borrowed reference, or NULL
 * when the path has no value or is malformed. */
json_t *sg_template_lookup(const json_t *root, const char *path);

#endif
