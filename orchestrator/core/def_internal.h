/* Helpers shared by the definition modules (loader, validator, templates,
 * set): JSON paths for messages, quoting of user text, the error list, the
 * template path grammar and the retry inheritance. Not a public API. */
#ifndef SAGA_CORE_DEF_INTERNAL_H
#define SAGA_CORE_DEF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "saga/def.h"

/* ---- JSON paths as written in messages: $.steps[2].command.channel ---- */

#define SG_JPATH_MAX 512

typedef struct sg_jpath {
    char buf[SG_JPATH_MAX];
    size_t len;
} sg_jpath_t;

void sg_jpath_init(sg_jpath_t *p, const char *root);
/* Append ".key" (or ["key"] when the key is not a plain word) or "[i]".
 * Both return the previous length, to give back to sg_jpath_pop. A path too
 * long for the buffer is cut, never overflowed. */
size_t sg_jpath_push_key(sg_jpath_t *p, const char *key);
size_t sg_jpath_push_index(sg_jpath_t *p, size_t index);
void sg_jpath_pop(sg_jpath_t *p, size_t old_len);

/* Writes s as a JSON-style quoted string ("kafak"), escaping quotes,
 * backslashes and control characters, cut to about 80 bytes with "...".
 * Returns buf. */
const char *sg_quote(const char *s, char *buf, size_t buf_size);
#define SG_QUOTE_MAX 96

/* The last component of a path ("sagas/order.json" -> "order.json"). */
const char *sg_base_name(const char *path);

/* True for [a-z][a-z0-9_]{0,62}. */
bool sg_def_name_ok(const char *s);

/* ---- template paths: "$" then ".key" or "[index]" parts ---- */

typedef struct sg_tseg {
    bool is_index;
    const char *key; /* not NUL-terminated: key_len bytes */
    size_t key_len;
    size_t index;
} sg_tseg_t;

/* Reads the next part of a template path at *cursor (which starts just
 * after the "$"). Returns 1 with *seg filled, 0 at the end, -1 when the
 * path is malformed. A key is [A-Za-z0-9_-]+, an index [0-9]{1,9}. */
int sg_tpath_next(const char **cursor, sg_tseg_t *seg);
/* True when s is "$" followed by at least one well-formed part whose first
 * part is a key. */
bool sg_tpath_well_formed(const char *s);

/* ---- defaults and inheritance ---- */

#define SG_DEFAULT_TIMEOUT_MS 30000
#define SG_DEFAULT_MAX_ATTEMPTS 3
#define SG_DEFAULT_COMP_MAX_ATTEMPTS 10
#define SG_DEFAULT_INITIAL_BACKOFF_MS 200
#define SG_DEFAULT_MAX_BACKOFF_MS 10000
#define SG_DEFAULT_MULTIPLIER 2.0

/* The built-in retry policy of a command (max_attempts 3) or of a
 * compensation (max_attempts 10). */
sg_retry_t sg_retry_builtin(bool compensation);
/* Overlays the valid fields of a "retry" object on *r, field by field;
 * invalid or absent fields leave *r as it is. With backoff_only the
 * object's max_attempts is ignored (a compensation inherits only the
 * backoff of "defaults.retry"). */
void sg_retry_overlay(sg_retry_t *r, const json_t *obj, bool backoff_only);
/* The duration in a JSON value, or 'fallback' when it is absent or not a
 * valid duration. */
int64_t sg_duration_or(const json_t *val, int64_t fallback);

/* ---- validation ---- */

/* Checks a parsed definition against every rule, appending each problem
 * as "FILE: JSON-PATH: message" in document order. Returns the number of
 * problems. 'file' is the name shown in messages. */
size_t sg_def_validate(const char *file, const json_t *body, sg_def_errors_t *errs);

#endif
