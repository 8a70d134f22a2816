/* What the store's files share and nobody else sees: the handle's body, the
 * table of prepared statements, parameter lists, error classification and
 * the single-allocation result builder. */
#ifndef SAGA_STORE_INT_H
#define SAGA_STORE_INT_H

#include <libpq-fe.h>

#include "saga/store.h"

/* Milliseconds since the epoch of a timestamptz column, and back. */
#define SQL_MS(col) "(extract(epoch from " col ") * 1000)::int8"
#define SQL_TS(param) "to_timestamp(" param "::float8 / 1000)"
#define SQL_INTERVAL(param) "make_interval(secs => " param "::float8 / 1000)"

typedef enum stmt_id {
    /* the batch */
    ST_BEGIN,
    ST_COMMIT,
    ST_SAVEPOINT,
    ST_SAVEPOINT_RELEASE,
    ST_SAVEPOINT_ROLLBACK,
    ST_INBOX_INSERT,
    ST_TIMER_DELETE_FIRED,
    ST_SAGA_CREATE,
    ST_SAGA_UPDATE,
    ST_HISTORY_INSERT,
    ST_HISTORY_INSERT_MANY,
    ST_OUTBOX_INSERT,
    ST_TIMER_CANCEL,
    ST_TIMER_ARM,
    /* sagas and definitions */
    ST_INBOX_SEEN,
    ST_SAGA_LOAD,
    ST_SAGA_LOAD_MANY,
    ST_DEF_INSERT,
    ST_DEF_SHA,
    ST_DEF_GET,
    ST_DEF_LIST,
    /* outbox and timers */
    ST_OUTBOX_CLAIM,
    ST_OUTBOX_DELETE,
    ST_OUTBOX_FAIL,
    ST_TIMERS_CLAIM,
    /* dead letters */
    ST_DL_ADD,
    ST_DL_LIST,
    ST_DL_GET,
    ST_DL_REPLAY,
    /* retention */
    ST_PURGE_INBOX,
    ST_PURGE_HISTORY,
    /* queries */
    ST_SAGAS_LIST,
    ST_SAGAS_STUCK,
    ST_HISTORY_LIST,
    ST_COUNTS,
    ST_FINISHED,

    ST_CLOCK,
    ST_COUNT_
} stmt_id_t;

typedef struct stmt {
    const char *name; /* the prepared statement's name */
    const char *sql;
    int nparams;
} stmt_t;

extern const stmt_t sg_store_stmts[ST_COUNT_];

/* The answers to one segment of a batch's pipeline (batch.c): the
 * statements of one item, or BEGIN or COMMIT, up to a Sync. */
typedef struct segment {
    int nqueries;
    int saga_at;        /* index of the saga write, -1 when none */
    int outbox_at;      /* index of the first outbox insert, -1 when none */
    sg_store_outmsg_t *outbox; /* where the inserted rows' ids go */
    size_t noutbox;
    PGresult *error;    /* the first failed statement, owned */
    int64_t version;    /* what the saga write returned */
    int got;            /* statements whose answer was read */
    bool between;       /* the NULL after answer 'got' comes next */
} segment_t;

/* The batch being sent (batch.c): the items handed in so far, with the
 * answers read for the first 'nread'. */
typedef struct store_stream {
    bool open;
    bool sealed;                   /* COMMIT sent */
    bool savepoints;               /* one savepoint per item */
    bool begin_read;               /* the BEGIN segment's answers are in */
    char *done;                    /* int8[] literal of outbox rows to delete */
    int ncommit;                   /* statements of the COMMIT segment */
    sg_store_item_t **items;
    segment_t *segs;
    segment_t ctl;                 /* the BEGIN or COMMIT segment */
    size_t n, nsent, nread, cap;  /* items in the list, sent (again), answered */
    sg_err_t err;                  /* what stopped the stream, SG_OK while none */
} store_stream_t;

struct sg_store {
    PGconn *conn;
    char *conninfo;
    bool broken;                   /* reconnect before the next call */
    bool prepared[ST_COUNT_];      /* on this connection */
    int64_t outbox_lease_ms;       /* new outbox rows taken for this long */
    int savepoint_batches;         /* next batches to send with savepoints */
    store_stream_t stream;
    char errmsg[512];
};

/* Frees what the batch stream holds (sg_store_destroy). */
void store_stream_release(sg_store_t *st);

/* ---- parameters of one statement ---- */

#define PARAMS_MAX 12

typedef struct params {
    const char *values[PARAMS_MAX];
    int lengths[PARAMS_MAX];
    int formats[PARAMS_MAX];
    char nums[PARAMS_MAX][24];
    int n;
} params_t;

void params_text(params_t *p, const char *s);            /* NULL is SQL NULL */
void params_int(params_t *p, int64_t v);
void params_time(params_t *p, int64_t ms);               /* 0 is SQL NULL */
void params_bytes(params_t *p, const void *data, size_t len);

/* The ids as an int8[] literal, "{1,2,3}" (malloc'd; NULL without memory). */
char *store_ids_array(const int64_t *ids, size_t n);
/* The strings as a text[] literal, each quoted, NULL as NULL (malloc'd). */
char *store_text_array(const char *const *values, size_t n);

/* ---- calls ---- */

/* Starts a public call: clears the message, reconnects when the connection
 * was lost or left in a transaction. */
sg_err_t store_ready(sg_store_t *st);
/* Prepares 'id' on this connection unless it already is. */
sg_err_t store_prepare(sg_store_t *st, stmt_id_t id);
/* Runs a prepared statement. Returns the result (the caller clears it) on
 * success; NULL on failure with *err set and the message recorded. */
PGresult *store_exec(sg_store_t *st, stmt_id_t id, const params_t *p, sg_err_t *err);
/* Classifies a failed result (NULL: the connection's own error), records
 * "what: message" and marks the connection lost where it is. */
sg_err_t store_fail(sg_store_t *st, const PGresult *res, const char *what);
/* Runs a plain command outside the prepared set (migrations, transaction
 * control). */
sg_err_t store_command(sg_store_t *st, const char *sql, const char *what);
void store_set_error(sg_store_t *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The error class of a failed statement, for one item of a batch or one
 * saga write: SG_ERR_CONN, _DUPLICATE, _CONFLICT, _INVALID or _INTERNAL. */
sg_err_t store_classify(const PGconn *conn, const PGresult *res);
/* The server's message of a failed result, or the connection's. */
void store_result_message(const PGconn *conn, const PGresult *res, char *buf, size_t size);

/* ---- results in one allocation ---- */

typedef struct arena {
    char *next;
} arena_t;

/* Allocates 'nrows' zeroed rows of row_size, followed by room for the text
 * of every cell of 'res'; *rows is NULL when nrows is 0. */
sg_err_t rows_alloc(sg_store_t *st, const PGresult *res, size_t row_size, size_t nrows,
                    void **rows, arena_t *a);
const char *arena_str(arena_t *a, const PGresult *res, int row, int col);
const unsigned char *arena_bytea(arena_t *a, const PGresult *res, int row, int col,
                                 size_t *len);
int64_t cell_int(const PGresult *res, int row, int col); /* 0 for NULL */

/* Fills one saga from a row of SAGA_COLUMNS starting at column 'col'. */
#define SAGA_COLUMNS                                                             \
    "s.id, s.type, s.definition_version, s.definition_sha256, s.status, "        \
    "s.current_step, " SQL_MS("s.deadline_at") ", s.traceparent, "               \
    "s.state, s.version, " SQL_MS("s.created_at") ", " SQL_MS("s.updated_at")
#define SAGA_COLUMNS_NO_STATE                                                    \
    "s.id, s.type, s.definition_version, s.definition_sha256, s.status, "        \
    "s.current_step, " SQL_MS("s.deadline_at") ", s.traceparent, "               \
    "NULL::text, s.version, " SQL_MS("s.created_at") ", " SQL_MS("s.updated_at")
/* The parameters of ST_SAGA_CREATE and ST_SAGA_UPDATE. */
void saga_create_params(params_t *p, const sg_store_saga_t *saga);
void saga_update_params(params_t *p, const sg_store_saga_t *saga, int64_t expected_version);
void saga_from_row(sg_store_saga_t *saga, arena_t *a, const PGresult *res, int row, int col);
/* Fills one saga from a row of SAGA_COLUMNS (for store_rows). */
void saga_fill(void *row, arena_t *a, const PGresult *res, int r);

/* Fills row 'r' of 'res' into 'row', its text into 'a'. */
typedef void (*row_fill_fn)(void *row, arena_t *a, const PGresult *res, int r);
/* A whole read call: starts it (store_ready), runs 'id' and returns its
 * rows in one allocation (NULL when none or on error, with *err set). */
void *store_rows(sg_store_t *st, stmt_id_t id, const params_t *p, size_t row_size,
                 row_fill_fn fill, size_t *n, sg_err_t *err);
/* The same for a statement that finds one row: SG_ERR_NOT_FOUND without. */
void *store_one(sg_store_t *st, stmt_id_t id, const params_t *p, size_t row_size,
                row_fill_fn fill, sg_err_t *err);

#endif
