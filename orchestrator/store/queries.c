/* The operator's queries (sagactl list, show, stuck, stats): read only,
 * each one statement served by an index of docs/schema.md. "Finished" means
 * completed or compensated; a failed saga waits for an operator. */
#include "store/store_int.h"

sg_err_t sg_store_sagas_list(sg_store_t *st, const sg_store_filter_t *filter,
                             sg_store_saga_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_text(&p, filter ? filter->status : NULL);
    params_text(&p, filter ? filter->type : NULL);
    params_time(&p, filter ? filter->since_ms : 0);
    params_int(&p, filter && filter->limit > 0 ? filter->limit : 100);
    return sagas_query(st, ST_SAGAS_LIST, &p, out, n);
}

sg_err_t sg_store_sagas_stuck(sg_store_t *st, int64_t age_ms, int limit,
                              sg_store_saga_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_int(&p, age_ms);
    params_int(&p, limit > 0 ? limit : 100);
    return sagas_query(st, ST_SAGAS_STUCK, &p, out, n);
}

sg_err_t sg_store_history_list(sg_store_t *st, const char *saga_id,
                               sg_store_history_row_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_text(&p, saga_id);
    PGresult *res = store_exec(st, ST_HISTORY_LIST, &p, &err);
    if (!res)
        return err;
    arena_t a;
    void *rows;
    err = rows_alloc(st, res, sizeof **out, (size_t)PQntuples(res), &rows, &a);
    if (!err) {
        sg_store_history_row_t *h = rows;
        for (int r = 0; r < PQntuples(res); r++) {
            h[r].seq = cell_int(res, r, 0);
            h[r].at_ms = cell_int(res, r, 1);
            h[r].event = arena_str(&a, res, r, 2);
            h[r].step = arena_str(&a, res, r, 3);
            h[r].detail = arena_str(&a, res, r, 4);
        }
        *out = h;
        *n = (size_t)PQntuples(res);
    }
    PQclear(res);
    return err;
}

static sg_err_t counts_query(sg_store_t *st, stmt_id_t id, sg_store_count_t **out,
                             size_t *n) {
    *out = NULL;
    *n = 0;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    PGresult *res = store_exec(st, id, NULL, &err);
    if (!res)
        return err;
    arena_t a;
    void *rows;
    err = rows_alloc(st, res, sizeof **out, (size_t)PQntuples(res), &rows, &a);
    if (!err) {
        sg_store_count_t *c = rows;
        for (int r = 0; r < PQntuples(res); r++) {
            c[r].type = arena_str(&a, res, r, 0);
            c[r].status = arena_str(&a, res, r, 1);
            c[r].count = cell_int(res, r, 2);
            c[r].minute_ms = cell_int(res, r, 3);
        }
        *out = c;
        *n = (size_t)PQntuples(res);
    }
    PQclear(res);
    return err;
}

sg_err_t sg_store_counts(sg_store_t *st, sg_store_count_t **out, size_t *n) {
    return counts_query(st, ST_COUNTS, out, n);
}

sg_err_t sg_store_finished_per_minute(sg_store_t *st, sg_store_count_t **out, size_t *n) {
    return counts_query(st, ST_FINISHED, out, n);
}
