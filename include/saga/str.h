/* Bounded string copy: the one place that cuts a string to a buffer on
 * purpose (reasons, error messages), so that callers need no snprintf
 * whose truncation the compiler rightly questions. */
#ifndef SAGA_STR_H
#define SAGA_STR_H

#include <stddef.h>
#include <string.h>

/* Copies at most size-1 bytes of 'src' (NULL copies "") and NUL-terminates.
 * Returns 'dst'. */
static inline char *sg_str_copy(char *dst, size_t size, const char *src) {
    if (size == 0)
        return dst;
    size_t len = src ? strnlen(src, size - 1) : 0;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
    return dst;
}

#endif
