/* The saga repository: definitions stored once by name, version and hash;
 * saga rows created, loaded (one, or many in one round trip) and updated
 * only from the version the writer read (optimistic concurrency: a writer
 * that lost the race gets SG_ERR_CONFLICT, reloads and applies again). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* ---- definitions ---- */

sg_err_t sg_store_definition_put(sg_store_t *st, const char *name, int version,
                                 const char *sha256, const char *body) {
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_text(&p, name);
    params_int(&p, version);
    params_text(&p, sha256);
    params_text(&p, body);
    PGresult *res = store_exec(st, ST_DEF_INSERT, &p, &err);
    if (!res)
        return err;
    bool inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (inserted)
        return SG_OK;
    /* Already there (perhaps from another process a moment ago): the same
     * content is fine, another one is refused. */
    p.n = 2;
    res = store_exec(st, ST_DEF_SHA, &p, &err);
    if (!res)
        return err;
    if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), sha256) != 0) {
        store_set_error(st,
                        "definition '%s' version %d is already stored with another "
                        "content (sha256 %s, this one %s): bump version",
                        name, version, PQgetvalue(res, 0, 0), sha256);
        err = SG_ERR_INVALID;
    } else if (PQntuples(res) != 1) {
        store_set_error(st, "definition '%s' version %d vanished while being stored", name,
                        version);
        err = SG_ERR_INTERNAL;
    }
    PQclear(res);
    return err;
}

static void definition_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_definition_t *def = row;
    def->name = arena_str(a, res, r, 0);
    def->version = (int)cell_int(res, r, 1);
    def->sha256 = arena_str(a, res, r, 2);
    def->body = arena_str(a, res, r, 3);
    def->created_at_ms = cell_int(res, r, 4);
    def->running = cell_int(res, r, 5);
}

sg_err_t sg_store_definition_get(sg_store_t *st, const char *name, int version,
                                 sg_store_definition_t **out) {
    sg_err_t err;
    params_t p = {0};
    params_text(&p, name);
    params_int(&p, version);
    *out = store_one(st, ST_DEF_GET, &p, sizeof **out, definition_fill, &err);
    if (err == SG_ERR_NOT_FOUND)
        store_set_error(st, "no definition '%s' version %d", name, version);
    return err;
}

sg_err_t sg_store_definitions_list(sg_store_t *st, sg_store_definition_t **out, size_t *n) {
    sg_err_t err;
    *out = store_rows(st, ST_DEF_LIST, NULL, sizeof **out, definition_fill, n, &err);
    return err;
}

/* ---- sagas ---- */

sg_err_t sg_store_saga_load(sg_store_t *st, const char *id, sg_store_saga_t **out) {
    sg_err_t err;
    params_t p = {0};
    params_text(&p, id);
    *out = store_one(st, ST_SAGA_LOAD, &p, sizeof **out, saga_fill, &err);
    if (err == SG_ERR_NOT_FOUND)
        store_set_error(st, "no saga '%s'", id);
    return err;
}

/* The ids travel as one JSON array parameter, so that any number of them
 * is one statement with one parameter. */
static char *ids_json(const char *const *ids, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_string(ids[i] ? ids[i] : "")) != 0) {
            json_decref(arr);
            return NULL;
        }
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return text;
}

sg_err_t sg_store_saga_load_many(sg_store_t *st, const char *const *ids, size_t n,
                                 sg_store_saga_t **out) {
    *out = NULL;
    sg_err_t err = store_ready(st);
    if (err || n == 0)
        return err;
    char *json = ids_json(ids, n);
    if (!json) {
        store_set_error(st, "out of memory for %zu saga ids", n);
        return SG_ERR_NOMEM;
    }
    params_t p = {0};
    params_text(&p, json);
    PGresult *res = store_exec(st, ST_SAGA_LOAD_MANY, &p, &err);
    free(json);
    if (!res)
        return err;
    /* One row per id, found or not. */
    arena_t a;
    void *rows;
    err = rows_alloc(st, res, sizeof **out, n, &rows, &a);
    if (!err) {
        sg_store_saga_t *sagas = rows;
        for (int r = 0; r < PQntuples(res); r++) {
            int64_t ord = cell_int(res, r, 0);
            if (ord >= 1 && (size_t)ord <= n)
                saga_from_row(&sagas[ord - 1], &a, res, r, 1);
        }
        *out = sagas;
    }
    PQclear(res);
    return err;
}

void saga_create_params(params_t *p, const sg_store_saga_t *saga) {
    params_text(p, saga->id);
    params_text(p, saga->type);
    params_int(p, saga->definition_version);
    params_text(p, saga->definition_sha256);
    params_text(p, saga->status);
    params_text(p, saga->current_step);
    params_time(p, saga->deadline_at_ms);
    params_text(p, saga->traceparent);
    params_text(p, saga->state);
}

void saga_update_params(params_t *p, const sg_store_saga_t *saga, int64_t expected_version) {
    params_text(p, saga->id);
    params_text(p, saga->status);
    params_text(p, saga->current_step);
    params_time(p, saga->deadline_at_ms);
    params_text(p, saga->state);
    params_int(p, expected_version);
}

sg_err_t sg_store_saga_save(sg_store_t *st, const sg_store_saga_t *saga,
                            int64_t expected_version, int64_t *new_version) {
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    stmt_id_t id = expected_version == 0 ? ST_SAGA_CREATE : ST_SAGA_UPDATE;
    if (id == ST_SAGA_CREATE)
        saga_create_params(&p, saga);
    else
        saga_update_params(&p, saga, expected_version);
    PGresult *res = store_exec(st, id, &p, &err);
    if (!res)
        return err;
    if (new_version)
        *new_version = cell_int(res, 0, 0);
    PQclear(res);
    return SG_OK;
}

sg_err_t sg_store_inbox_seen(sg_store_t *st, const char *message_id, bool *seen) {
    *seen = false;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_text(&p, message_id);
    PGresult *res = store_exec(st, ST_INBOX_SEEN, &p, &err);
    if (!res)
        return err;
    *seen = PQntuples(res) > 0;
    PQclear(res);
    return SG_OK;
}
