/* Dead letters: messages that cannot be processed, kept whole with the
 * reason, for an operator to read and, once the cause is fixed, to replay.
 * A replay marks the letter and puts its bytes in the outbox for its
 * channel in one statement, so the relay sends it through the input path
 * again exactly as it came (key and headers included). */
#include <stdio.h>

#include "store/store_int.h"

sg_err_t sg_store_dead_letter_add(sg_store_t *st, const char *channel, const char *key,
                                  const void *raw, size_t raw_len, const char *headers,
                                  const char *reason, int64_t *id) {
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    params_t p = {0};
    params_text(&p, channel);
    params_text(&p, key);
    params_bytes(&p, raw, raw_len);
    params_text(&p, headers);
    params_text(&p, reason);
    PGresult *res = store_exec(st, ST_DL_ADD, &p, &err);
    if (!res)
        return err;
    if (id)
        *id = cell_int(res, 0, 0);
    PQclear(res);
    return SG_OK;
}

static void letter_fill(void *row, arena_t *a, const PGresult *res, int r) {
    sg_store_dead_letter_t *dl = row;
    dl->id = cell_int(res, r, 0);
    dl->received_at_ms = cell_int(res, r, 1);
    dl->channel = arena_str(a, res, r, 2);
    dl->key = arena_str(a, res, r, 3);
    dl->raw = arena_bytea(a, res, r, 4, &dl->raw_len);
    dl->raw_len = (size_t)cell_int(res, r, 5); /* also when the bytes are left out */
    dl->headers = arena_str(a, res, r, 6);
    dl->reason = arena_str(a, res, r, 7);
    dl->replayed_at_ms = cell_int(res, r, 8);
}

sg_err_t sg_store_dead_letters_list(sg_store_t *st, int64_t before_id, int limit,
                                    sg_store_dead_letter_t **out, size_t *n) {
    sg_err_t err;
    params_t p = {0};
    params_int(&p, before_id);
    params_int(&p, limit > 0 ? limit : 100);
    *out = store_rows(st, ST_DL_LIST, &p, sizeof **out, letter_fill, n, &err);
    return err;
}

static sg_store_dead_letter_t *letter_one(sg_store_t *st, stmt_id_t id, int64_t letter,
                                          sg_err_t *err) {
    params_t p = {0};
    params_int(&p, letter);
    return store_one(st, id, &p, sizeof(sg_store_dead_letter_t), letter_fill, err);
}

sg_err_t sg_store_dead_letter_get(sg_store_t *st, int64_t id, sg_store_dead_letter_t **out) {
    sg_err_t err;
    *out = letter_one(st, ST_DL_GET, id, &err);
    if (err == SG_ERR_NOT_FOUND)
        store_set_error(st, "no dead letter %lld", (long long)id);
    return err;
}

sg_err_t sg_store_dead_letter_replay(sg_store_t *st, int64_t id, sg_store_dead_letter_t **out) {
    sg_err_t err;
    *out = letter_one(st, ST_DL_REPLAY, id, &err);
    if (err != SG_ERR_NOT_FOUND)
        return err;
    /* Nothing was taken: either there is no such letter, or it was
     * replayed before. */
    sg_store_dead_letter_t *dl = NULL;
    err = sg_store_dead_letter_get(st, id, &dl);
    if (!err) {
        store_set_error(st, "dead letter %lld was already replayed", (long long)id);
        err = SG_ERR_STATE;
    }
    sg_store_free(dl);
    return err;
}
