/* Redaction of secrets in connection strings (URLs and libpq key=value
 * strings), so that configuration can be logged as it is. */
#include <string.h>
#include <strings.h>

#include "saga/redact.h"

/* Appends 'n' bytes of 's' to buf at *len, leaving room for the NUL. */
static void put(char *buf, size_t size, size_t *len, const char *s, size_t n) {
    if (size == 0)
        return;
    size_t room = size - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

/* "scheme://user:password@host..." : the password is between the first ':'
 * after "//" and the last '@' before the first '/' of the path. */
static int redact_url(const char *text, char *buf, size_t size) {
    const char *auth = strstr(text, "://");
    if (!auth)
        return 0;
    auth += 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (!colon) {
        put(buf, size, &len, text, strlen(text));
    } else {
        put(buf, size, &len, text, (size_t)(colon + 1 - text));
        put(buf, size, &len, "***", 3);
        put(buf, size, &len, at, strlen(at));
    }
    /* A URL may still carry ?password=... as a parameter. */
    char *q = strchr(buf, '?');
    while (q) {
        char *p = strcasestr(q, "password=");
        if (!p)
            break;
        char *v = p + strlen("password=");
        size_t vlen = strcspn(v, "&#");
        if (vlen >= 3) {
            memcpy(v, "***", 3);
            memmove(v + 3, v + vlen, strlen(v + vlen) + 1);
        }
        q = v;
    }
    return 1;
}

/* "host=db password='x y' user=saga": the value after password=, quoted
 * or not, becomes ***. */
static void redact_kv(const char *text, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    const char *p = text;
    for (;;) {
        const char *hit = strcasestr(p, "password");
        if (!hit) {
            put(buf, size, &len, p, strlen(p));
            return;
        }
        const char *q = hit + strlen("password");
        while (*q == ' ')
            q++;
        if (*q != '=') {
            put(buf, size, &len, p, (size_t)(q - p));
            p = q;
            continue;
        }
        q++;
        while (*q == ' ')
            q++;
        put(buf, size, &len, p, (size_t)(q - p));
        put(buf, size, &len, "***", 3);
        if (*q == '\'') {
            q++;
            while (*q && *q != '\'') {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            if (*q)
                q++;
        } else {
            q += strcspn(q, " \t");
        }
        p = q;
    }
}

void sg_redact(const char *text, char *buf, size_t buf_size) {
    if (buf_size == 0)
        return;
    if (!text) {
        buf[0] = '\0';
        return;
    }
    if (!redact_url(text, buf, buf_size))
        redact_kv(text, buf, buf_size);
}
