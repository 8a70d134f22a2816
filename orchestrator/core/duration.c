/* Durations: "<number><ms|s|m|h>", a whole positive number of
 * milliseconds. "1.5s" is 1500 ms; "1.0005s" is refused (not whole ms);
 * zero, negative, exponent and unit-less forms are refused. The largest
 * accepted duration is SG_DURATION_MAX_MS, so that adding one to a clock
 * can never overflow. */
#include <stdio.h>
#include <string.h>

#include "core/def_internal.h"

#define SG_DURATION_MAX_MS 1000000000000LL /* about 31 years */

static const struct {
    const char *suffix;
    int64_t ms;
} units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
};

static int64_t unit_ms(const char *suffix) {
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(suffix, units[i].suffix))
            return units[i].ms;
    return 0;
}

static sg_err_t refuse(const char *text, const char *why, char *errstr,
                       size_t errstr_size) {
    char q[SG_QUOTE_MAX];
    snprintf(errstr, errstr_size, "invalid duration %s: %s", sg_quote(text, q, sizeof q),
             why);
    return SG_ERR_INVALID;
}

sg_err_t sg_duration_parse(const char *text, int64_t *ms, char *errstr,
                           size_t errstr_size) {
    const char *p = text;
    int64_t whole = 0, frac = 0, scale = 1;
    size_t ndigits = 0, nfrac = 0;

    *ms = 0;
    if (*p == '-')
        return refuse(text, "must be greater than zero", errstr, errstr_size);
    for (; *p >= '0' && *p <= '9'; p++, ndigits++) {
        if (whole > SG_DURATION_MAX_MS)
            return refuse(text, "too large", errstr, errstr_size);
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, nfrac++) {
            if (nfrac >= 9)
                return refuse(text, "not a whole number of milliseconds", errstr,
                              errstr_size);
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
        if (nfrac == 0)
            ndigits = 0; /* "1.s" */
    }
    int64_t unit = unit_ms(p);
    if (ndigits == 0 || unit == 0)
        return refuse(text, "expected <number><ms|s|m|h>, as in \"30s\"", errstr,
                      errstr_size);
    if (whole > SG_DURATION_MAX_MS / unit)
        return refuse(text, "too large", errstr, errstr_size);
    if ((frac * unit) % scale != 0)
        return refuse(text, "not a whole number of milliseconds", errstr, errstr_size);
    int64_t total = whole * unit + frac * unit / scale;
    if (total > SG_DURATION_MAX_MS)
        return refuse(text, "too large", errstr, errstr_size);
    if (total == 0)
        return refuse(text, "must be greater than zero", errstr, errstr_size);
    *ms = total;
    return SG_OK;
}

void sg_duration_format(int64_t ms, char *buf, size_t buf_size) {
    if (ms > 0 && ms % 3600000 == 0)
        snprintf(buf, buf_size, "%lldh", (long long)(ms / 3600000));
    else if (ms > 0 && ms % 60000 == 0)
        snprintf(buf, buf_size, "%lldm", (long long)(ms / 60000));
    else if (ms > 0 && ms % 1000 == 0)
        snprintf(buf, buf_size, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, buf_size, "%lldms", (long long)ms);
}

int64_t sg_duration_or(const json_t *val, int64_t fallback) {
    char err[160];
    int64_t ms;
    if (!json_is_string(val) || sg_duration_parse(json_string_value(val), &ms, err, sizeof err))
        return fallback;
    return ms;
}
