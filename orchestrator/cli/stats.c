/* sagactl stats: how many sagas there are of each type in each status, and
 * how many ended (completed, compensated, failed) in each minute of the last
 * hour, with the hour's total and mean rate. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/table.h"

#define NSTATUS 5
static const char *const statuses[NSTATUS] = {"running", "compensating", "completed",
                                              "compensated", "failed"};
#define NENDED 3 /* the last three of 'statuses' */

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl stats [--json] [--db CONNINFO]\n"
            "\n"
            "Counts sagas by type and status, and the sagas that ended (completed,\n"
            "compensated or failed) per minute over the last hour.\n"
            "\n"
            "  --json   print one JSON object: {counts: [{type, status, count}],\n"
            "           totals: {STATUS: count}, finished_per_minute: [{minute, completed,\n"
            "           compensated, failed}], finished_last_hour: {STATUS: count}}\n"
            "  --db     PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help   show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed, 2 usage error.\n");
}

static int status_index(const char *status) {
    for (int s = 0; s < NSTATUS; s++)
        if (status && !strcmp(status, statuses[s]))
            return s;
    return -1;
}

/* Sums 'counts' per status into totals[NSTATUS]. */
static void sum(const sg_store_count_t *counts, size_t n, int64_t *totals) {
    memset(totals, 0, NSTATUS * sizeof *totals);
    for (size_t i = 0; i < n; i++) {
        int s = status_index(counts[i].status);
        if (s >= 0)
            totals[s] += counts[i].count;
    }
}

static json_t *totals_json(const int64_t *totals, int first) {
    json_t *obj = json_object();
    for (int s = first; obj && s < NSTATUS; s++)
        json_object_set_new(obj, statuses[s], json_integer(totals[s]));
    return obj;
}

/* One object per minute with any ended saga: {minute, completed, ...}. */
static json_t *minutes_json(const sg_store_count_t *fin, size_t n) {
    json_t *arr = json_array();
    json_t *cur = NULL;
    for (size_t i = 0; arr && i < n; i++) {
        if (!cur || i == 0 || fin[i].minute_ms != fin[i - 1].minute_ms) {
            cur = json_pack("{s:o, s:i, s:i, s:i}", "minute", sg_cli_json_time(fin[i].minute_ms),
                            "completed", 0, "compensated", 0, "failed", 0);
            json_array_append_new(arr, cur);
        }
        if (cur && status_index(fin[i].status) >= NSTATUS - NENDED)
            json_object_set_new(cur, fin[i].status, json_integer(fin[i].count));
    }
    return arr;
}

static int print_json(const sg_store_count_t *counts, size_t n, const sg_store_count_t *fin,
                      size_t nfin) {
    int64_t totals[NSTATUS], ended[NSTATUS];
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "type", counts[i].type,
                                             "status", counts[i].status, "count",
                                             (json_int_t)counts[i].count));
    sum(counts, n, totals);
    sum(fin, nfin, ended);
    return sg_cli_print_json(json_pack("{s:o, s:o, s:o, s:o}", "counts", arr, "totals",
                                       totals_json(totals, 0), "finished_per_minute",
                                       minutes_json(fin, nfin), "finished_last_hour",
                                       totals_json(ended, NSTATUS - NENDED)));
}

/* One row per type, one column per status, and a total row. */
static void print_counts(const sg_store_count_t *counts, size_t n) {
    const char *const headers[] = {"TYPE",  statuses[0], statuses[1], statuses[2],
                                   statuses[3], statuses[4], "total"};
    int64_t row_counts[NSTATUS], totals[NSTATUS];
    char cells[NSTATUS + 1][24];
    const char *row[NSTATUS + 2];
    sg_table_t *t = sg_table_new(NSTATUS + 2, headers);
    if (!t)
        return;
    for (int c = 1; c <= NSTATUS + 1; c++)
        sg_table_align_right(t, c);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !strcmp(counts[j].type, counts[i].type))
            j++;
        sum(counts + i, j - i, row_counts);
        int64_t all = 0;
        for (int s = 0; s < NSTATUS; s++) {
            snprintf(cells[s], sizeof cells[s], "%" PRId64, row_counts[s]);
            all += row_counts[s];
        }
        snprintf(cells[NSTATUS], sizeof cells[NSTATUS], "%" PRId64, all);
        row[0] = counts[i].type;
        for (int s = 0; s <= NSTATUS; s++)
            row[s + 1] = cells[s];
        sg_table_add(t, row);
        i = j;
    }
    sum(counts, n, totals);
    int64_t all = 0;
    for (int s = 0; s < NSTATUS; s++) {
        snprintf(cells[s], sizeof cells[s], "%" PRId64, totals[s]);
        all += totals[s];
    }
    snprintf(cells[NSTATUS], sizeof cells[NSTATUS], "%" PRId64, all);
    row[0] = "(all types)";
    for (int s = 0; s <= NSTATUS; s++)
        row[s + 1] = cells[s];
    sg_table_add(t, row);
    sg_table_print(t, stdout, "  ");
    sg_table_destroy(t);
}

/* One row per minute with any ended saga, then the hour's totals. */
static void print_minutes(const sg_store_count_t *fin, size_t n) {
    const char *const headers[] = {"MINUTE (UTC)", "completed", "compensated", "failed", "bar"};
    sg_table_t *t = sg_table_new(5, headers);
    int64_t ended[NSTATUS];
    if (!t)
        return;
    for (int c = 1; c <= 3; c++)
        sg_table_align_right(t, c);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && fin[j].minute_ms == fin[i].minute_ms)
            j++;
        sum(fin + i, j - i, ended);
        char minute[40], cells[NENDED][24], bar[64];
        sg_cli_utc(fin[i].minute_ms, minute, sizeof minute);
        minute[16] = '\0'; /* "2024-05-01 12:00" */
        int64_t all = 0;
        for (int s = 0; s < NENDED; s++) {
            snprintf(cells[s], sizeof cells[s], "%" PRId64, ended[NSTATUS - NENDED + s]);
            all += ended[NSTATUS - NENDED + s];
        }
        /* A bar of '#' as long as the minute's count, up to 40. */
        size_t len = all > 40 ? 40 : (size_t)all;
        memset(bar, '#', len);
        bar[len] = '\0';
        const char *row[] = {minute, cells[0], cells[1], cells[2], bar};
        sg_table_add(t, row);
        i = j;
    }
    sg_table_print(t, stdout, "  ");
    sg_table_destroy(t);
}

static int print_text(const sg_store_count_t *counts, size_t n, const sg_store_count_t *fin,
                      size_t nfin) {
    int64_t ended[NSTATUS];
    printf("SAGAS BY TYPE AND STATUS\n");
    if (n == 0)
        printf("  no sagas\n");
    else
        print_counts(counts, n);
    sum(fin, nfin, ended);
    int64_t all = ended[2] + ended[3] + ended[4];
    printf("\nENDED PER MINUTE, LAST HOUR\n");
    if (nfin == 0) {
        printf("  none ended in the last hour\n");
        return CLI_OK;
    }
    print_minutes(fin, nfin);
    printf("\n  %" PRId64 " ended in the last hour (%" PRId64 " completed, %" PRId64
           " compensated, %" PRId64 " failed): %.2f per minute\n",
           all, ended[2], ended[3], ended[4], (double)all / 60.0);
    return CLI_OK;
}

int sg_cli_stats(int argc, char **argv) {
    sg_cli_args_t args = {.command = "stats", .usage = usage};
    int rc = sg_cli_parse(argc, argv, &args, NULL, 0);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    sg_store_count_t *counts = NULL, *fin = NULL;
    size_t n = 0, nfin = 0;
    sg_err_t err = sg_store_counts(st, &counts, &n);
    if (!err)
        err = sg_store_finished_per_minute(st, &fin, &nfin);
    if (err)
        rc = sg_cli_store_error(args.command, st, err);
    else
        rc = args.json ? print_json(counts, n, fin, nfin) : print_text(counts, n, fin, nfin);
    sg_store_free(counts);
    sg_store_free(fin);
    sg_store_destroy(st);
    return rc;
}
