/* One error type for libsaga. 0 is success; every error is negative.
 * Whether an error is retriable decides between trying again (a lost
 * connection, a version conflict) and giving up on the input (bad input). */
#ifndef SAGA_ERR_H
#define SAGA_ERR_H

#include <stdbool.h>

typedef enum sg_err {
    SG_OK = 0,
    SG_ERR_INVALID = -1,   /* bad input: a definition, a message, an argument */
    SG_ERR_NOMEM = -2,     /* out of memory */
    SG_ERR_IO = -3,        /* a file could not be read or written */
    SG_ERR_NOT_FOUND = -4, /* no such saga, definition, row */
    SG_ERR_CONFLICT = -5,  /* optimistic version conflict: reload, apply again */
    SG_ERR_DUPLICATE = -6, /* message id seen before: skip it */
    SG_ERR_CONN = -7,      /* connection to a service lost: retry after backoff */
    SG_ERR_TEMPLATE = -8,  /* a template has no value at run time */
    SG_ERR_STATE = -9,     /* the operation does not apply in this state */
    SG_ERR_INTERNAL = -10, /* a bug or an unexpected answer from a service */
} sg_err_t;

/* A short lowercase name for the error ("version conflict"). */
const char *sg_err_str(sg_err_t err);

/* True where trying the same thing again later may succeed. */
bool sg_err_retriable(sg_err_t err);

#endif
