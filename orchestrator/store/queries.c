/* The operator's queries (sagactl list, show, stuck, stats): read only,
 * each one statement served by an index of docs/schema.md. "Finished" means
 * completed or compensated; a failed saga waits for an operator. Also the
 * database's clock, which sagad and sagactl compute due times from. */
#include <stdlib.h>

#include "store/store_int.h"

sg_err_t sg_store_sagas_list(sg_store_t *st, const sg_store_filter_t *filter,
                             sg_store_saga_t **out, size_t *n) {
    params_t p = {0};
    params_text(&p, filter ? filter->status : NULL);
    params_text(&p, filter ? filter->type : NULL);
    params_time(&p, filter ? filter->since_ms : 0);
    params_int(&p, filter && filter->limit > 0 ? filter->limit : 100);
    sg_err_t err;
    *out = store_rows(st, ST_SAGAS_LIST, &p, sizeof **out, saga_fill, n, &err);
    return err;
}

sg_err_t sg_store_sagas_stuck(sg_store_t *st, int64_t age_ms, int limit,
                              sg_store_saga_t **out, size_t *n) {
    params_t p = {0};
    params_int(&p, age_ms);
    params_int(&p, limit > 0 ? limit : 100);
    sg_err_t err;
    *out = store_rows(st, ST_SAGAS_STUCK, &p, sizeof **out, saga_fill, n, &err);
    return err;
}

static void history_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_history_row_t *h = row;
    h->seq = cell_int(res, r, 0);
    h->at_ms = cell_int(res, r, 1);
    h->event = arena_str(a, res, r, 2);
    h->step = arena_str(a, res, r, 3);
    h->detail = arena_str(a, res, r, 4);
}

sg_err_t sg_store_history_list(sg_store_t *st, const char *saga_id,
                               sg_store_history_row_t **out, size_t *n) {
    params_t p = {0};
    params_text(&p, saga_id);
    sg_err_t err;
    *out = store_rows(st, ST_HISTORY_LIST, &p, sizeof **out, history_fill, n, &err);
    return err;
}

static void count_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_count_t *c = row;
    c->type = arena_str(a, res, r, 0);
    c->status = arena_str(a, res, r, 1);
    c->count = cell_int(res, r, 2);
    c->minute_ms = cell_int(res, r, 3);
}

sg_err_t sg_store_counts(sg_store_t *st, sg_store_count_t **out, size_t *n) {
    sg_err_t err;
    *out = store_rows(st, ST_COUNTS, NULL, sizeof **out, count_fill, n, &err);
    return err;
}

sg_err_t sg_store_finished_per_minute(sg_store_t *st, sg_store_count_t **out, size_t *n) {
    sg_err_t err;
    *out = store_rows(st, ST_FINISHED, NULL, sizeof **out, count_fill, n, &err);
    return err;
}

sg_err_t sg_store_clock(sg_store_t *st, int64_t *now_ms) {
    sg_err_t err = store_ready(st);
    PGresult *res = err ? NULL : store_exec(st, ST_CLOCK, NULL, &err);
    if (res) {
        *now_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    return err;
}
