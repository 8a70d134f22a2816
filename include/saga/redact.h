/* Secrets never reach a log: connection strings and URLs are redacted
 * before they are printed. */
#ifndef SAGA_REDACT_H
#define SAGA_REDACT_H

#include <stddef.h>

/* Copies 'text' to 'buf' with every password replaced by "***": the
 * password of a URL ("amqps://user:secret@host" -> "amqps://user:***@host")
 * and the value of password= in a libpq key/value string. Always
 * NUL-terminates; a result that does not fit is cut short. */
void sg_redact(const char *text, char *buf, size_t buf_size);

#endif
