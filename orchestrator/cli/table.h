/* Aligned text tables for sagactl's human output. Columns are as wide as
 * their widest cell (counted in characters, not bytes), numbers can be
 * aligned right, and one column may be marked shrinkable: when the table is
 * wider than the terminal (stdout's width, or $COLUMNS when set), the cells
 * of that column are cut to fit and end with "…", never below a minimum.
 * Output that does not go to a terminal, without $COLUMNS, is never cut, so
 * scripts always see whole ids. */
#ifndef SAGA_CLI_TABLE_H
#define SAGA_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct sg_table sg_table_t;

/* A table with 'ncols' columns named by 'headers' (copied). NULL when out
 * of memory. */
sg_table_t *sg_table_new(int ncols, const char *const *headers);
void sg_table_destroy(sg_table_t *t);
void sg_table_align_right(sg_table_t *t, int col);
/* Lets column 'col' be cut down to 'min_width' characters to fit. */
void sg_table_shrinkable(sg_table_t *t, int col, size_t min_width);
/* Adds a row of ncols cells (copied; NULL prints as "-"). Returns 0, or -1
 * when out of memory (the row is dropped). */
int sg_table_add(sg_table_t *t, const char *const *cells);
size_t sg_table_rows(const sg_table_t *t);
/* Prints the header and the rows, each line starting with 'indent'. */
void sg_table_print(const sg_table_t *t, FILE *out, const char *indent);

/* The number of characters (UTF-8 code points) of 's'. */
size_t sg_table_width(const char *s);
/* Writes 's' cut to at most 'width' characters, ending with "…" when cut. */
void sg_table_cut(const char *s, size_t width, char *buf, size_t size);

#endif
