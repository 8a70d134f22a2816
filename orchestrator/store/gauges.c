/* The numbers behind sagad's gauges, refreshed every few seconds: one
 * statement, served by the primary keys and the status index, never by
 * reading sagas' state. */
#include <stdlib.h>

#include "store/store_int.h"

static const char GAUGES_SQL[] =
    "SELECT 0 AS k, NULL::text AS type, NULL::text AS status, (SELECT count(*) FROM outbox) AS n"
    " UNION ALL SELECT 1, NULL, NULL, (SELECT count(*) FROM timers)"
    " UNION ALL SELECT 2, type, status, count(*) FROM sagas"
    "  WHERE status IN ('running', 'compensating', 'failed') GROUP BY type, status"
    " ORDER BY k, type, status";

sg_err_t sg_store_gauges(sg_store_t *st, int64_t *outbox_pending, int64_t *timers_pending,
                         sg_store_count_t **counts, size_t *n) {
    *counts = NULL;
    *n = 0;
    sg_err_t err = store_ready(st);
    if (err)
        return err;
    PGresult *res = PQexecParams(st->conn, GAUGES_SQL, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 2) {
        err = store_fail(st, res, "cannot read the gauges");
        PQclear(res);
        return err;
    }
    *outbox_pending = cell_int(res, 0, 3);
    *timers_pending = cell_int(res, 1, 3);
    size_t rows = (size_t)PQntuples(res) - 2;
    arena_t a;
    void *mem;
    err = rows_alloc(st, res, sizeof **counts, rows, &mem, &a);
    if (!err) {
        sg_store_count_t *c = mem;
        for (size_t r = 0; r < rows; r++) {
            c[r].type = arena_str(&a, res, (int)r + 2, 1);
            c[r].status = arena_str(&a, res, (int)r + 2, 2);
            c[r].count = cell_int(res, (int)r + 2, 3);
        }
        *counts = c;
        *n = rows;
    }
    PQclear(res);
    return err;
}
