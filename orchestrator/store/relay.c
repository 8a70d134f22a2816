/* The claims of the outbox relay and of the timer wheel. Both take rows
 * with FOR UPDATE SKIP LOCKED, so workers never wait on each other, and
 * push them out of sight for a lease compared with the database's clock:
 * a worker that dies holding rows lets them come back when its lease ends.
 *
 * An outbox row's next_attempt_at is at once its lease and its backoff; a
 * timer keeps its due_at and is leased through claimed_until. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* ---- outbox ---- */

static void outbox_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_outbox_row_t *m = row;
    m->id = cell_int(res, r, 0);
    m->saga_id = arena_str(a, res, r, 1);
    m->channel = arena_str(a, res, r, 2);
    m->key = arena_str(a, res, r, 3);
    m->payload = arena_bytea(a, res, r, 4, &m->payload_len);
    m->headers = arena_str(a, res, r, 5);
    m->attempts = (int)cell_int(res, r, 6);
}

sg_err_t sg_store_outbox_claim(sg_store_t *st, int max, int64_t lease_ms,
                               sg_store_outbox_row_t **out, size_t *n) {
    sg_err_t err;
    params_t p = {0};
    params_int(&p, max);
    params_int(&p, lease_ms);
    *out = store_rows(st, ST_OUTBOX_CLAIM, &p, sizeof **out, outbox_fill, n, &err);
    return err;
}

char *store_ids_array(const int64_t *ids, size_t n) {
    size_t size = 2 + n * 21 + 1, len = 0;
    char *text = malloc(size);
    if (!text)
        return NULL;
    text[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, size - len, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(text + len, size - len, "}");
    return text;
}

char *store_text_array(const char *const *values, size_t n) {
    size_t size = 3;
    for (size_t i = 0; i < n; i++)
        size += values[i] ? 2 * strlen(values[i]) + 3 : 5;
    char *text = malloc(size), *w = text;
    if (!text)
        return NULL;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        if (!values[i]) {
            memcpy(w, "NULL", 4);
            w += 4;
            continue;
        }
        *w++ = '"';
        for (const char *r = values[i]; *r; r++) {
            if (*r == '"' || *r == '\\')
                *w++ = '\\';
            *w++ = *r;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return text;
}

sg_err_t sg_store_outbox_delete(sg_store_t *st, const int64_t *ids, size_t n) {
    sg_err_t err = store_ready(st);
    if (err || n == 0)
        return err;
    char *array = store_ids_array(ids, n);
    if (!array) {
        store_set_error(st, "out of memory for %zu outbox ids", n);
        return SG_ERR_NOMEM;
    }
    params_t p = {0};
    params_text(&p, array);
    PGresult *res = store_exec(st, ST_OUTBOX_DELETE, &p, &err);
    free(array);
    PQclear(res);
    return err;
}

sg_err_t sg_store_outbox_fail(sg_store_t *st, int64_t id, const char *error,
                              int64_t backoff_ms) {
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_int(&p, id);
    params_text(&p, error ? error : "");
    params_int(&p, backoff_ms);
    PQclear(store_exec(st, ST_OUTBOX_FAIL, &p, &err));
    return err;
}

/* ---- timers ---- */

static void timer_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_timer_row_t *t = row;
    t->id = cell_int(res, r, 0);
    t->saga_id = arena_str(a, res, r, 1);
    t->kind = arena_str(a, res, r, 2);
    t->step = arena_str(a, res, r, 3);
    t->attempt = (int)cell_int(res, r, 4);
    t->due_at_ms = cell_int(res, r, 5);
}

sg_err_t sg_store_timers_claim(sg_store_t *st, int max, int64_t lease_ms,
                               sg_store_timer_row_t **out, size_t *n) {
    sg_err_t err;
    params_t p = {0};
    params_int(&p, max);
    params_int(&p, lease_ms);
    *out = store_rows(st, ST_TIMERS_CLAIM, &p, sizeof **out, timer_fill, n, &err);
    return err;
}
