/* Statement parameters in and rows out. A result is copied into ONE
 * allocation: the array of rows first, then every string they point to, so
 * that the caller frees it with a single sg_store_free. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

void params_text(params_t *p, const char *s) {
    p->values[p->n] = s;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void params_int(params_t *p, int64_t v) {
    snprintf(p->nums[p->n], sizeof p->nums[p->n], "%" PRId64, v);
    params_text(p, p->nums[p->n]);
}

void params_time(params_t *p, int64_t ms) {
    if (ms == 0)
        params_text(p, NULL);
    else
        params_int(p, ms);
}

void params_bytes(params_t *p, const void *data, size_t len) {
    p->values[p->n] = data ? data : "";
    p->lengths[p->n] = (int)len;
    p->formats[p->n] = 1;
    p->n++;
}

sg_err_t rows_alloc(sg_store_t *st, const PGresult *res, size_t row_size, size_t nrows,
                    void **rows, arena_t *a) {
    int ntuples = PQntuples(res), ncols = PQnfields(res);
    size_t text = 0;
    *rows = NULL;
    a->next = NULL;
    if (nrows == 0)
        return SG_OK;
    for (int r = 0; r < ntuples; r++)
        for (int c = 0; c < ncols; c++)
            text += (size_t)PQgetlength(res, r, c) + 1;
    char *block = calloc(1, row_size * nrows + text);
    if (!block) {
        store_set_error(st, "out of memory for %zu rows", nrows);
        return SG_ERR_NOMEM;
    }
    *rows = block;
    a->next = block + row_size * nrows;
    return SG_OK;
}

const char *arena_str(arena_t *a, const PGresult *res, int row, int col) {
    if (PQgetisnull(res, row, col))
        return NULL;
    size_t len = (size_t)PQgetlength(res, row, col);
    char *s = a->next;
    memcpy(s, PQgetvalue(res, row, col), len);
    s[len] = '\0';
    a->next += len + 1;
    return s;
}

/* bytea arrives in text (hex) form, never shorter than the bytes it holds,
 * so it fits in the room rows_alloc counted for the cell. */
const unsigned char *arena_bytea(arena_t *a, const PGresult *res, int row, int col,
                                 size_t *len) {
    *len = 0;
    if (PQgetisnull(res, row, col))
        return NULL;
    unsigned char *bytes =
        PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), len);
    if (!bytes)
        return NULL;
    unsigned char *out = (unsigned char *)a->next;
    memcpy(out, bytes, *len);
    a->next += *len + 1;
    PQfreemem(bytes);
    return out;
}

int64_t cell_int(const PGresult *res, int row, int col) {
    if (PQgetisnull(res, row, col))
        return 0;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

void saga_from_row(sg_store_saga_t *saga, arena_t *a, const PGresult *res, int row, int col) {
    saga->id = arena_str(a, res, row, col + 0);
    saga->type = arena_str(a, res, row, col + 1);
    saga->definition_version = (int)cell_int(res, row, col + 2);
    saga->definition_sha256 = arena_str(a, res, row, col + 3);
    saga->status = arena_str(a, res, row, col + 4);
    saga->current_step = arena_str(a, res, row, col + 5);
    saga->deadline_at_ms = cell_int(res, row, col + 6);
    saga->traceparent = arena_str(a, res, row, col + 7);
    saga->state = arena_str(a, res, row, col + 8);
    saga->version = cell_int(res, row, col + 9);
    saga->created_at_ms = cell_int(res, row, col + 10);
    saga->updated_at_ms = cell_int(res, row, col + 11);
}

void saga_fill(void *row, arena_t *a, const PGresult *res, int r) {
    saga_from_row(row, a, res, r, 0);
}

void *store_rows(sg_store_t *st, stmt_id_t id, const params_t *p, size_t row_size,
                 row_fill_fn fill, size_t *n, sg_err_t *err) {
    void *rows = NULL;
    arena_t a;
    *n = 0;
    *err = store_ready(st);
    PGresult *res = *err ? NULL : store_exec(st, id, p, err);
    if (!res)
        return NULL;
    *err = rows_alloc(st, res, row_size, (size_t)PQntuples(res), &rows, &a);
    for (int r = 0; !*err && r < PQntuples(res); r++)
        fill((char *)rows + (size_t)r * row_size, &a, res, r);
    if (!*err)
        *n = (size_t)PQntuples(res);
    PQclear(res);
    return rows;
}

void *store_one(sg_store_t *st, stmt_id_t id, const params_t *p, size_t row_size,
                row_fill_fn fill, sg_err_t *err) {
    size_t n = 0;
    void *row = store_rows(st, id, p, row_size, fill, &n, err);
    if (!*err && n == 0)
        *err = SG_ERR_NOT_FOUND;
    return row;
}
