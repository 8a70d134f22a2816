/* Retention: old inbox entries and the history of sagas that finished long
 * ago are deleted in small batches, each its own short transaction, so a
 * purge never holds many locks or a long snapshot on a busy database.
 *
 * An inbox entry is what makes a redelivered message a duplicate: keep
 * entries longer than any broker may redeliver (Kafka's retention, a
 * RabbitMQ message left unacknowledged). */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

sg_err_t sg_store_purge_inbox(sg_store_t *st, int64_t age_ms, int batch, int64_t *deleted) {
    int64_t total = 0, done;
    sg_err_t err = store_ready(st);
    do {
        params_t p = {0};
        params_int(&p, age_ms);
        params_int(&p, batch > 0 ? batch : 1000);
        PGresult *res = err ? NULL : store_exec(st, ST_PURGE_INBOX, &p, &err);
        done = res ? strtoll(PQcmdTuples(res), NULL, 10) : 0;
        total += done;
        PQclear(res);
    } while (!err && done > 0);
    if (deleted)
        *deleted = total;
    return err;
}

/* Each batch examines entries in (at, seq) order from where the previous
 * one stopped, so entries it keeps (of unfinished sagas) are never read
 * twice in one purge. */
sg_err_t sg_store_purge_history(sg_store_t *st, int64_t age_ms, int batch, int64_t *deleted) {
    int64_t total = 0, examined;
    char last_at[64] = "", last_seq[24] = "";
    sg_err_t err = store_ready(st);
    do {
        params_t p = {0};
        params_int(&p, age_ms);
        params_text(&p, last_at[0] ? last_at : NULL);
        params_text(&p, last_seq[0] ? last_seq : NULL);
        params_int(&p, batch > 0 ? batch : 1000);
        PGresult *res = err ? NULL : store_exec(st, ST_PURGE_HISTORY, &p, &err);
        examined = res ? cell_int(res, 0, 1) : 0;
        if (examined > 0) {
            total += cell_int(res, 0, 0);
            snprintf(last_at, sizeof last_at, "%s", PQgetvalue(res, 0, 2));
            snprintf(last_seq, sizeof last_seq, "%s", PQgetvalue(res, 0, 3));
        }
        PQclear(res);
    } while (!err && examined > 0);
    if (deleted)
        *deleted = total;
    return err;
}
