/* Names and retry classes of the library's errors. */
#include <stddef.h>

#include "saga/err.h"

static const struct {
    sg_err_t err;
    const char *name;
    bool retriable;
} errors[] = {
    {SG_OK, "ok", false},
    {SG_ERR_INVALID, "invalid input", false},
    {SG_ERR_NOMEM, "out of memory", true},
    {SG_ERR_IO, "i/o error", true},
    {SG_ERR_NOT_FOUND, "not found", false},
    {SG_ERR_CONFLICT, "version conflict", true},
    {SG_ERR_DUPLICATE, "duplicate", false},
    {SG_ERR_CONN, "connection lost", true},
    {SG_ERR_TEMPLATE, "template has no value", false},
    {SG_ERR_STATE, "not allowed in this state", false},
    {SG_ERR_INTERNAL, "internal error", false},
};

const char *sg_err_str(sg_err_t err) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].err == err)
            return errors[i].name;
    return "unknown error";
}

bool sg_err_retriable(sg_err_t err) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].err == err)
            return errors[i].retriable;
    return false;
}
