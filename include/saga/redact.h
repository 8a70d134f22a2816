/* Secrets never reach a log: connection strings and URLs are redacted
 * before they are printed, and the secrets themselves can be picked out
 * so that the logger masks them wherever they show up (saga/log.h). */
#ifndef SAGA_REDACT_H
#define SAGA_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* Copies 'text' to 'buf' with every password replaced by "***": the
 * password of a URL ("amqps://user:secret@host" -> "amqps://user:***@host")
 * and the value of password= in a libpq key/value string. Always
 * NUL-terminates; a result that does not fit is cut short. */
void sg_redact(const char *text, char *buf, size_t buf_size);

/* The password that sg_redact would hide in 'text' (the first one), into
 * 'buf'; with 'decode', %XX escapes of a URL are decoded and backslash
 * escapes of a quoted key/value are undone, as the server will see it.
 * False when 'text' holds none. */
bool sg_redact_password(const char *text, bool decode, char *buf, size_t buf_size);

/* Whether a property name (kafka.properties) names a secret: a password,
 * a secret, a private key or SASL/OAuth settings. */
bool sg_redact_secret_key(const char *key);

#endif
