/* The text of definition problems: JSON paths ("$.steps[2].command"),
 * quoted user strings, the error list, and the name rule. Every string is
 * bounded: a path or a quote too long for its buffer is cut, never
 * overflowed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/def_internal.h"

void sg_jpath_init(sg_jpath_t *p, const char *root) {
    int n = snprintf(p->buf, sizeof p->buf, "%s", root);
    p->len = n < 0 ? 0 : ((size_t)n < sizeof p->buf ? (size_t)n : sizeof p->buf - 1);
}

static void jpath_append(sg_jpath_t *p, const char *text) {
    size_t room = sizeof p->buf - p->len;
    int n = snprintf(p->buf + p->len, room, "%s", text);
    if (n < 0)
        return;
    p->len += (size_t)n < room ? (size_t)n : room - 1;
}

static bool plain_word(const char *s) {
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

size_t sg_jpath_push_key(sg_jpath_t *p, const char *key) {
    size_t old = p->len;
    if (plain_word(key)) {
        jpath_append(p, ".");
        jpath_append(p, key);
    } else {
        char q[SG_QUOTE_MAX];
        jpath_append(p, "[");
        jpath_append(p, sg_quote(key, q, sizeof q));
        jpath_append(p, "]");
    }
    return old;
}

size_t sg_jpath_push_index(sg_jpath_t *p, size_t index) {
    size_t old = p->len;
    char num[32];
    snprintf(num, sizeof num, "[%zu]", index);
    jpath_append(p, num);
    return old;
}

void sg_jpath_pop(sg_jpath_t *p, size_t old_len) {
    p->len = old_len;
    p->buf[old_len] = '\0';
}

const char *sg_quote(const char *s, char *buf, size_t buf_size) {
    static const char hex[] = "0123456789abcdef";
    size_t limit = buf_size > 8 ? buf_size - 6 : 0; /* room for ...", NUL */
    size_t o = 0;
    if (buf_size < 8) {
        if (buf_size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; *s && o < limit; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            if (o + 6 > limit)
                break;
            buf[o++] = '\\';
            buf[o++] = 'u';
            buf[o++] = '0';
            buf[o++] = '0';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    if (*s) {
        /* Do not cut a UTF-8 sequence in the middle. */
        while (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
            o--;
        if (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
            o--;
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void sg_def_errors_addf(sg_def_errors_t *errs, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        char **items = realloc(errs->items, cap * sizeof *items);
        if (!items)
            return;
        errs->items = items;
        errs->cap = cap;
    }
    char *msg = malloc((size_t)n + 1);
    if (!msg)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    errs->items[errs->count++] = msg;
}

void sg_def_errors_release(sg_def_errors_t *errs) {
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++)
        free(errs->items[i]);
    free(errs->items);
    errs->items = NULL;
    errs->count = errs->cap = 0;
}

const char *sg_base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

bool sg_def_name_ok(const char *s) {
    if (!(*s >= 'a' && *s <= 'z'))
        return false;
    size_t n = 1;
    for (s++; *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return n <= SG_NAME_MAX;
}
