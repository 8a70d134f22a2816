/* libFuzzer target for the definition loader: any bytes go through
 * sg_def_load_string; a definition that loads has every command and
 * compensation template rendered against a small saga context, both ways
 * (missing values as errors and as null), and is reloaded from its
 * canonical text, which must give the same hash. The same bytes, as a
 * string, also go through the duration, channel and path parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "saga/def.h"

static json_t *context(void) {
    json_error_t jerr;
    return json_loads("{\"saga\": {\"id\": \"s-1\", \"type\": \"t\"},"
                      " \"input\": {\"a\": 1, \"b\": [1, {\"c\": \"x\"}], \"s\": \"v\"},"
                      " \"steps\": {\"a\": {\"id\": 7}, \"b\": [[1]], \"c\": null}}",
                      0, &jerr);
}

static void render(const json_t *tmpl, const json_t *ctx) {
    char err[256];
    for (int null_ok = 0; null_ok < 2; null_ok++) {
        json_t *out = NULL;
        sg_err_t rc = sg_template_render(tmpl, ctx, null_ok, &out, err, sizeof err);
        if ((rc == SG_OK) != (out != NULL))
            abort();
        json_decref(out);
    }
}

static void exercise(const sg_def_t *def, const json_t *ctx) {
    for (int i = 0; i < def->nsteps; i++) {
        render(def->steps[i].command.data, ctx);
        if (def->steps[i].has_compensation)
            render(def->steps[i].compensation.data, ctx);
    }
    sg_def_t *again = NULL;
    sg_def_errors_t errs = {0};
    if (sg_def_load_string("canonical.json", def->canonical, strlen(def->canonical), &again,
                           &errs) != SG_OK ||
        strcmp(again->sha256, def->sha256) != 0)
        abort();
    sg_def_destroy(again);
    sg_def_errors_release(&errs);
}

static void parse_as_string(const uint8_t *data, size_t size, const json_t *ctx) {
    char *s = malloc(size + 1), err[256];
    int64_t ms;
    sg_channel_t ch;
    if (!s)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    sg_duration_parse(s, &ms, err, sizeof err);
    if (sg_channel_parse(s, &ch, err, sizeof err) == SG_OK && !ch.text)
        abort();
    sg_channel_release(&ch);
    sg_template_lookup(ctx, s);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *ctx;
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    if (!ctx)
        ctx = context();
    sg_err_t rc = sg_def_load_string("fuzz.json", (const char *)data, size, &def, &errs);
    if ((rc == SG_OK) != (def != NULL) || (rc != SG_OK && errs.count == 0))
        abort();
    if (def)
        exercise(def, ctx);
    sg_def_destroy(def);
    sg_def_errors_release(&errs);
    parse_as_string(data, size, ctx);
    return 0;
}
