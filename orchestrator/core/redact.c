/* Redaction of secrets in connection strings (URLs and libpq key=value
 * strings), so that configuration can be logged as it is. */
#include <stdbool.h>
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

/* "scheme://user:password@host...": the password is between the first ':'
 * after "//" and the last '@' before the first '/' of the path. Returns
 * false when 'text' is not a URL; otherwise *colon is that ':' (NULL when
 * there is no password), *at the '@', *end the end of the authority. */
static bool url_authority(const char *text, const char **colon, const char **at,
                          const char **end) {
    const char *auth = strstr(text, "://");
    if (!auth)
        return false;
    auth += 3;
    *end = auth + strcspn(auth, "/?#");
    *at = NULL;
    for (const char *p = auth; p < *end; p++)
        if (*p == '@')
            *at = p;
    *colon = *at ? memchr(auth, ':', (size_t)(*at - auth)) : NULL;
    return true;
}

static int redact_url(const char *text, char *buf, size_t size) {
    const char *colon, *at, *end;
    if (!url_authority(text, &colon, &at, &end))
        return 0;
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

/* ---- picking the secrets out ---- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies s[0..n) to buf; with 'pct', %XX becomes the byte; with 'bs', a
 * backslash escapes the next byte. */
static void copy_value(const char *s, size_t n, bool pct, bool bs, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (pct && c == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 &&
            hex_digit(s[i + 2]) >= 0) {
            c = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else if (bs && c == '\\' && i + 1 < n) {
            c = s[++i];
        }
        put(buf, size, &len, &c, 1);
    }
}

static bool url_password(const char *text, bool decode, char *buf, size_t size) {
    const char *colon, *at, *end;
    if (!url_authority(text, &colon, &at, &end))
        return false;
    if (colon) {
        copy_value(colon + 1, (size_t)(at - colon - 1), decode, false, buf, size);
        return true;
    }
    const char *q = strchr(end, '?');
    const char *p = q ? strcasestr(q, "password=") : NULL;
    if (!p)
        return false;
    p += strlen("password=");
    copy_value(p, strcspn(p, "&#"), decode, false, buf, size);
    return true;
}

static bool kv_password(const char *text, bool decode, char *buf, size_t size) {
    for (const char *hit = strcasestr(text, "password"); hit;
         hit = strcasestr(hit + 1, "password")) {
        const char *q = hit + strlen("password");
        while (*q == ' ')
            q++;
        if (*q != '=')
            continue;
        q++;
        while (*q == ' ')
            q++;
        if (*q != '\'') {
            copy_value(q, strcspn(q, " \t"), false, false, buf, size);
            return true;
        }
        const char *v = ++q;
        while (*q && *q != '\'') {
            if (*q == '\\' && q[1])
                q++;
            q++;
        }
        copy_value(v, (size_t)(q - v), false, decode, buf, size);
        return true;
    }
    return false;
}

bool sg_redact_password(const char *text, bool decode, char *buf, size_t buf_size) {
    if (buf_size == 0)
        return false;
    buf[0] = '\0';
    if (!text)
        return false;
    if (strstr(text, "://"))
        return url_password(text, decode, buf, buf_size);
    return kv_password(text, decode, buf, buf_size);
}

bool sg_redact_secret_key(const char *key) {
    static const char *const words[] = {"password", "secret", "sasl.oauthbearer", "sasl.jaas",
                                        "ssl.key.pem", "ssl_key", "ssl.keystore", "token"};
    for (size_t i = 0; key && i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(key, words[i]))
            return true;
    return false;
}
