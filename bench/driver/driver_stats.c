/* Samples and their summary: exact percentiles (nearest rank) over every
 * sample kept, no histogram buckets. */
#include <stdio.h>
#include <stdlib.h>

#include "driver.h"

void bd_samples_add(bd_samples_t *s, int64_t at_ns, int64_t us) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        int64_t *a = realloc(s->at_ns, cap * sizeof *a);
        if (a)
            s->at_ns = a;
        int64_t *u = realloc(s->us, cap * sizeof *u);
        if (u)
            s->us = u;
        if (!a || !u) {
            bd_log("out of memory for samples");
            exit(1);
        }
        s->cap = cap;
    }
    s->at_ns[s->n] = at_ns;
    s->us[s->n++] = us;
}

void bd_samples_release(bd_samples_t *s) {
    free(s->at_ns);
    free(s->us);
    *s = (bd_samples_t){0};
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the samples at or
 * below it. 'v' is sorted, n > 0. */
static double rank_ms(const int64_t *v, size_t n, double q) {
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1] / 1000.0;
}

json_t *bd_samples_summary(const bd_samples_t *s, int64_t from_ns, int64_t to_ns) {
    size_t n = 0;
    int64_t *v = malloc((s->n ? s->n : 1) * sizeof *v);
    double sum = 0;
    if (!v)
        return json_null();
    for (size_t i = 0; i < s->n; i++) {
        if (s->at_ns[i] < from_ns || (to_ns && s->at_ns[i] >= to_ns))
            continue;
        v[n++] = s->us[i];
        sum += (double)s->us[i];
    }
    json_t *o;
    if (!n) {
        o = json_pack("{s:i}", "n", 0);
    } else {
        qsort(v, n, sizeof *v, cmp_i64);
        o = json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "n", (json_int_t)n, "p50_ms",
                      rank_ms(v, n, 0.50), "p90_ms", rank_ms(v, n, 0.90), "p99_ms",
                      rank_ms(v, n, 0.99), "max_ms", (double)v[n - 1] / 1000.0, "mean_ms",
                      sum / (double)n / 1000.0);
    }
    free(v);
    return o;
}
