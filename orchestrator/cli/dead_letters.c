/* sagactl dead-letters [list | show ID | replay ID]: the messages the
 * daemon could not process, stored whole with the reason. A replay puts a
 * letter's bytes, key and headers in the outbox for the channel it came
 * from, in one transaction with marking it replayed, so the daemon's relay
 * sends it through the input path again; a letter is replayed once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/table.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl dead-letters [list] [--limit N] [--before ID] [--json]\n"
            "                            [--db CONNINFO]\n"
            "       sagactl dead-letters show ID [--json] [--db CONNINFO]\n"
            "       sagactl dead-letters replay ID [--json] [--db CONNINFO]\n"
            "\n"
            "Inspects the messages that could not be processed (not JSON, not CloudEvents,\n"
            "missing attributes, unknown saga type or id, too large).\n"
            "\n"
            "  list        the newest letters first (the default)\n"
            "  show ID     one letter with its headers and its message\n"
            "  replay ID   puts the message back on the channel it came from, through the\n"
            "              daemon's outbox relay; a letter is replayed once\n"
            "\n"
            "  --limit N    list at most N letters (default 100)\n"
            "  --before ID  list letters with an id below ID (the next page)\n"
            "  --json       one JSON document: list prints an array of {id, received_at,\n"
            "               channel, key, size, reason, replayed_at}; show adds headers,\n"
            "               raw (the message as text when it is UTF-8) and raw_base64\n"
            "  --db         PostgreSQL connection string (default: $SAGA_DATABASE_URL)\n"
            "  --help       show this help\n"
            "\n"
            "Exit status: 0 done, 1 failed (a letter replayed before), 2 usage error,\n"
            "3 no such letter.\n");
}

static json_t *letter_json(const sg_store_dead_letter_t *dl) {
    return json_pack("{s:I, s:o, s:s, s:o, s:I, s:s, s:o}", "id", (json_int_t)dl->id,
                     "received_at", sg_cli_json_time(dl->received_at_ms), "channel",
                     dl->channel, "key", dl->key ? json_string(dl->key) : json_null(), "size",
                     (json_int_t)dl->raw_len, "reason", dl->reason, "replayed_at",
                     sg_cli_json_time(dl->replayed_at_ms));
}

static char *base64(const unsigned char *raw, size_t len) {
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; out && i < len; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < len)
            v |= raw[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? abc[v & 63] : '=';
    }
    if (out)
        out[o] = '\0';
    return out;
}

/* The message as a JSON string when it is UTF-8 without NUL, else null. */
static json_t *raw_text(const sg_store_dead_letter_t *dl) {
    if (!dl->raw || memchr(dl->raw, '\0', dl->raw_len))
        return json_null();
    json_t *s = json_stringn((const char *)dl->raw, dl->raw_len);
    return s ? s : json_null();
}

/* ---- list ---- */

static int print_list(const sg_cli_args_t *args, const sg_store_dead_letter_t *dls, size_t n) {
    if (args->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(arr, letter_json(&dls[i]));
        return sg_cli_print_json(arr);
    }
    if (n == 0) {
        printf("no dead letters\n");
        return CLI_OK;
    }
    static const char *const headers[] = {"ID", "RECEIVED", "CHANNEL", "SIZE", "REPLAYED",
                                          "REASON"};
    sg_table_t *t = sg_table_new(6, headers);
    if (!t)
        return CLI_FAILED;
    int64_t now = sg_cli_now_ms();
    sg_table_align_right(t, 0);
    sg_table_align_right(t, 3);
    sg_table_shrinkable(t, 5, 24);
    for (size_t i = 0; i < n; i++) {
        char id[24], received[32], size[24], replayed[32];
        snprintf(id, sizeof id, "%" PRId64, dls[i].id);
        snprintf(size, sizeof size, "%zu", dls[i].raw_len);
        sg_cli_age(dls[i].received_at_ms, now, received, sizeof received);
        if (dls[i].replayed_at_ms)
            sg_cli_age(dls[i].replayed_at_ms, now, replayed, sizeof replayed);
        else
            snprintf(replayed, sizeof replayed, "no");
        const char *row[] = {id, received, dls[i].channel, size, replayed, dls[i].reason};
        sg_table_add(t, row);
    }
    sg_table_print(t, stdout, "");
    sg_table_destroy(t);
    return CLI_OK;
}

static int run_list(const sg_cli_args_t *args, sg_store_t *st, const char *limit_text,
                    const char *before_text) {
    int limit = 100;
    int64_t before = 0;
    int rc;
    if ((rc = sg_cli_parse_limit(args, limit_text, &limit)) ||
        (before_text && (rc = sg_cli_parse_id(args, "--before", before_text, &before))))
        return rc;
    sg_store_dead_letter_t *dls = NULL;
    size_t n = 0;
    sg_err_t err = sg_store_dead_letters_list(st, before, limit, &dls, &n);
    rc = err ? sg_cli_store_error(args->command, st, err) : print_list(args, dls, n);
    sg_store_free(dls);
    return rc;
}

/* ---- show ---- */

static void print_raw(const sg_store_dead_letter_t *dl) {
    json_t *text = raw_text(dl);
    if (json_is_string(text)) {
        /* Pretty-print a JSON message, else show the text as it is. */
        json_t *doc = json_loadb((const char *)dl->raw, dl->raw_len, JSON_DECODE_ANY, NULL);
        char *pretty = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        printf("%s\n", pretty ? pretty : json_string_value(text));
        free(pretty);
        json_decref(doc);
    } else {
        for (size_t i = 0; i < dl->raw_len; i += 16) {
            printf("  %08zx ", i);
            for (size_t k = i; k < i + 16 && k < dl->raw_len; k++)
                printf(" %02x", dl->raw[k]);
            printf("\n");
        }
    }
    json_decref(text);
}

static int print_one(const sg_cli_args_t *args, const sg_store_dead_letter_t *dl) {
    if (args->json) {
        json_t *doc = letter_json(dl);
        char *b64 = base64(dl->raw ? dl->raw : (const unsigned char *)"", dl->raw_len);
        json_object_set_new(doc, "headers", sg_cli_json_text(dl->headers));
        json_object_set_new(doc, "raw", raw_text(dl));
        json_object_set_new(doc, "raw_base64", b64 ? json_string(b64) : json_null());
        free(b64);
        return sg_cli_print_json(doc);
    }
    char when[40], age[32], replayed[80];
    int64_t now = sg_cli_now_ms();
    sg_cli_utc(dl->received_at_ms, when, sizeof when);
    sg_cli_age(dl->received_at_ms, now, age, sizeof age);
    printf("dead letter  %" PRId64 "\n", dl->id);
    printf("received     %s (%s)\n", when, age);
    printf("channel      %s\n", dl->channel);
    printf("key          %s\n", dl->key ? dl->key : "-");
    printf("reason       %s\n", dl->reason);
    if (dl->replayed_at_ms) {
        sg_cli_utc(dl->replayed_at_ms, replayed, sizeof replayed);
        printf("replayed     %s\n", replayed);
    } else {
        printf("replayed     no\n");
    }
    printf("headers      %s\n", dl->headers ? dl->headers : "-");
    printf("message      %zu bytes\n", dl->raw_len);
    print_raw(dl);
    return CLI_OK;
}

static int run_show(const sg_cli_args_t *args, sg_store_t *st, int64_t id) {
    sg_store_dead_letter_t *dl = NULL;
    sg_err_t err = sg_store_dead_letter_get(st, id, &dl);
    int rc = err ? sg_cli_store_error(args->command, st, err) : print_one(args, dl);
    sg_store_free(dl);
    return rc;
}

/* ---- replay ---- */

static int run_replay(const sg_cli_args_t *args, sg_store_t *st, int64_t id) {
    sg_store_dead_letter_t *dl = NULL;
    sg_err_t err = sg_store_dead_letter_replay(st, id, &dl);
    int rc;
    if (err) {
        rc = sg_cli_store_error(args->command, st, err);
    } else if (args->json) {
        rc = sg_cli_print_json(json_pack("{s:I, s:s, s:o, s:b}", "id", (json_int_t)dl->id,
                                         "channel", dl->channel, "replayed_at",
                                         sg_cli_json_time(dl->replayed_at_ms), "queued", 1));
    } else {
        printf("dead letter %" PRId64 " queued for %s: the daemon's relay sends it again\n",
               dl->id, dl->channel);
        rc = CLI_OK;
    }
    sg_store_free(dl);
    return rc;
}

int sg_cli_dead_letters(int argc, char **argv) {
    const char *limit = NULL, *before = NULL;
    const sg_cli_opt_t opts[] = {
        {"--limit", &limit, NULL}, {"--before", &before, NULL}, {NULL, NULL, NULL}};
    sg_cli_args_t args = {.command = "dead-letters", .usage = usage};
    int rc = sg_cli_parse(argc, argv, &args, opts, 2);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    const char *sub = args.npositional ? args.positional[0] : "list";
    bool list = !strcmp(sub, "list");
    int64_t id = 0;
    if (!list && strcmp(sub, "show") != 0 && strcmp(sub, "replay") != 0)
        return sg_cli_usage_error(&args, "unknown subcommand '%s'", sub);
    if (list && args.npositional > 1)
        return sg_cli_usage_error(&args, "unexpected argument '%s'", args.positional[1]);
    if (!list && args.npositional < 2)
        return sg_cli_usage_error(&args, "%s needs a dead letter ID", sub);
    if (!list && (rc = sg_cli_parse_id(&args, "dead letter id", args.positional[1], &id)))
        return rc;
    if (!list && (limit || before))
        return sg_cli_usage_error(&args, "--limit and --before apply to list only");
    sg_store_t *st;
    if ((rc = sg_cli_open_store(args.command, args.db, &st)) != CLI_OK)
        return rc;
    if (list)
        rc = run_list(&args, st, limit, before);
    else if (!strcmp(sub, "show"))
        rc = run_show(&args, st, id);
    else
        rc = run_replay(&args, st, id);
    sg_store_destroy(st);
    return rc;
}
