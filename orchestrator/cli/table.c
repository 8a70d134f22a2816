/* Aligned text tables: see table.h. Cells are kept as copies until the
 * table is printed, since the widths are known only then. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/table.h"

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */

struct sg_table {
    int ncols;
    char **headers;
    bool *right;
    size_t *min_width;  /* 0 = not shrinkable */
    char **cells;       /* nrows * ncols */
    size_t nrows, cap;
};

sg_table_t *sg_table_new(int ncols, const char *const *headers) {
    sg_table_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->headers = calloc((size_t)ncols, sizeof *t->headers);
    t->right = calloc((size_t)ncols, sizeof *t->right);
    t->min_width = calloc((size_t)ncols, sizeof *t->min_width);
    if (!t->headers || !t->right || !t->min_width)
        goto fail;
    for (int c = 0; c < ncols; c++)
        if (!(t->headers[c] = strdup(headers[c])))
            goto fail;
    return t;
fail:
    sg_table_destroy(t);
    return NULL;
}

void sg_table_destroy(sg_table_t *t) {
    if (!t)
        return;
    for (int c = 0; t->headers && c < t->ncols; c++)
        free(t->headers[c]);
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->headers);
    free(t->right);
    free(t->min_width);
    free(t->cells);
    free(t);
}

void sg_table_align_right(sg_table_t *t, int col) {
    if (t && col >= 0 && col < t->ncols)
        t->right[col] = true;
}

void sg_table_shrinkable(sg_table_t *t, int col, size_t min_width) {
    if (t && col >= 0 && col < t->ncols)
        t->min_width[col] = min_width > 0 ? min_width : 1;
}

int sg_table_add(sg_table_t *t, const char *const *cells) {
    if (!t)
        return -1;
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **grown = realloc(t->cells, cap * (size_t)t->ncols * sizeof *grown);
        if (!grown)
            return -1;
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * (size_t)t->ncols;
    for (int c = 0; c < t->ncols; c++) {
        if (!(row[c] = strdup(cells[c] ? cells[c] : "-"))) {
            while (c-- > 0)
                free(row[c]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

size_t sg_table_rows(const sg_table_t *t) {
    return t ? t->nrows : 0;
}

size_t sg_table_width(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

void sg_table_cut(const char *s, size_t width, char *buf, size_t size) {
    if (sg_table_width(s) <= width || width == 0) {
        snprintf(buf, size, "%s", width == 0 ? "" : s);
        return;
    }
    /* Keep width-1 characters, then the ellipsis. */
    size_t bytes = 0, chars = 0;
    while (s[bytes] && chars < width - 1) {
        bytes++;
        while (((unsigned char)s[bytes] & 0xc0) == 0x80)
            bytes++;
        chars++;
    }
    snprintf(buf, size, "%.*s%s", (int)bytes, s, ELLIPSIS);
}

/* The width to fit in, or 0 for no limit. */
static size_t terminal_width(FILE *out) {
    const char *env = getenv("COLUMNS");
    if (env && atoi(env) > 0)
        return (size_t)atoi(env);
    struct winsize ws;
    if (isatty(fileno(out)) && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 0;
}

static void measure(const sg_table_t *t, size_t *width) {
    for (int c = 0; c < t->ncols; c++) {
        width[c] = sg_table_width(t->headers[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t w = sg_table_width(t->cells[r * (size_t)t->ncols + (size_t)c]);
            if (w > width[c])
                width[c] = w;
        }
    }
}

/* Cuts the shrinkable columns, last first, until the table fits. */
static void fit(const sg_table_t *t, size_t *width, size_t limit, size_t indent) {
    size_t total = indent;
    for (int c = 0; c < t->ncols; c++)
        total += width[c] + (c ? 2 : 0);
    for (int c = t->ncols - 1; c >= 0 && limit && total > limit; c--) {
        if (!t->min_width[c] || width[c] <= t->min_width[c])
            continue;
        size_t spare = width[c] - t->min_width[c];
        size_t cut = total - limit < spare ? total - limit : spare;
        width[c] -= cut;
        total -= cut;
    }
}

static void print_row(const sg_table_t *t, char *const *cells, const size_t *width, FILE *out,
                      const char *indent) {
    char cut[1024];
    fputs(indent, out);
    for (int c = 0; c < t->ncols; c++) {
        sg_table_cut(cells[c], width[c], cut, sizeof cut);
        size_t pad = width[c] - sg_table_width(cut);
        bool last = c == t->ncols - 1;
        if (c)
            fputs("  ", out);
        if (t->right[c])
            fprintf(out, "%*s%s", (int)pad, "", cut);
        else
            fprintf(out, "%s%*s", cut, last ? 0 : (int)pad, "");
    }
    fputc('\n', out);
}

void sg_table_print(const sg_table_t *t, FILE *out, const char *indent) {
    if (!t)
        return;
    size_t *width = calloc((size_t)t->ncols, sizeof *width);
    if (!width)
        return;
    measure(t, width);
    fit(t, width, terminal_width(out), strlen(indent));
    print_row(t, t->headers, width, out, indent);
    for (size_t r = 0; r < t->nrows; r++)
        print_row(t, t->cells + r * (size_t)t->ncols, width, out, indent);
    free(width);
}
