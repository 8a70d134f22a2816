/* sagactl validate FILE...: checks saga definition files without a
 * database. Each file is loaded and validated on its own; then the files
 * are checked together as a sagas folder would be: two files with the same
 * name and version but other content are refused ("bump version").
 *
 * Output: "ok FILE: NAME vVERSION sha256 HASH" on stdout for each valid
 * file, every problem of the others on stderr, one per line; with --json a
 * single JSON array of {file, ok, name, version, sha256, errors} on stdout.
 * Exit status: 0 all valid, 1 any invalid, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "saga/def.h"

typedef struct result {
    const char *file;
    bool ok;
    char *name;
    int version;
    char sha256[65];
    sg_def_errors_t errs;
} result_t;

static void usage(FILE *out) {
    fprintf(out,
            "usage: sagactl validate [--json] FILE...\n"
            "\n"
            "Checks saga definition files without a database. For each valid file\n"
            "prints \"ok FILE: NAME vVERSION sha256 HASH\"; for the others prints every\n"
            "problem on stderr as \"FILE: JSON-PATH: message\". Files with the same\n"
            "name and version but different content are refused too.\n"
            "\n"
            "  --json   print one JSON array of {file, ok, name, version, sha256, errors}\n"
            "  --help   show this help\n"
            "\n"
            "Exit status: 0 all valid, 1 any invalid, 2 usage error.\n");
}

static void check_file(result_t *r, sg_def_set_t *set) {
    char err[1024];
    sg_def_t *def = NULL;
    if (sg_def_load_file(r->file, &def, &r->errs) != SG_OK)
        return;
    r->ok = true;
    r->name = strdup(def->name);
    r->version = def->version;
    memcpy(r->sha256, def->sha256, sizeof r->sha256);
    /* The set takes 'def' on success; on a conflict it stays ours. */
    if (sg_def_set_add(set, def, err, sizeof err) != SG_OK) {
        const char *slash = strrchr(r->file, '/');
        r->ok = false;
        sg_def_destroy(def);
        sg_def_errors_addf(&r->errs, "%s: $.version: %s",
                           slash && slash[1] ? slash + 1 : r->file, err);
    }
}

static void print_text(const result_t *res, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (res[i].ok)
            printf("ok %s: %s v%d sha256 %s\n", res[i].file, res[i].name, res[i].version,
                   res[i].sha256);
        for (size_t k = 0; k < res[i].errs.count; k++)
            fprintf(stderr, "%s\n", res[i].errs.items[k]);
    }
}

static int print_json(const result_t *res, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *errors = json_array();
        for (size_t k = 0; errors && k < res[i].errs.count; k++)
            json_array_append_new(errors, json_string(res[i].errs.items[k]));
        json_array_append_new(
            arr, json_pack("{s:s, s:b, s:o, s:o, s:o, s:o}", "file", res[i].file, "ok",
                           res[i].ok, "name",
                           res[i].ok ? json_string(res[i].name) : json_null(), "version",
                           res[i].ok ? json_integer(res[i].version) : json_null(), "sha256",
                           res[i].ok ? json_string(res[i].sha256) : json_null(), "errors",
                           errors ? errors : json_array()));
    }
    char *text = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
    json_decref(arr);
    if (!text) {
        fprintf(stderr, "sagactl validate: out of memory\n");
        return -1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

int sg_cli_validate(int argc, char **argv) {
    bool json = false, options = true;
    int nfiles = 0, status = CLI_OK;
    result_t *res = calloc((size_t)argc, sizeof *res);
    sg_def_set_t *set = sg_def_set_new();
    if (!res || !set) {
        fprintf(stderr, "sagactl validate: out of memory\n");
        status = CLI_FAILED;
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && !strcmp(a, "--")) {
            options = false;
        } else if (options && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            usage(stdout);
            goto done;
        } else if (options && !strcmp(a, "--json")) {
            json = true;
        } else if (options && a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "sagactl validate: unknown option '%s'\n", a);
            usage(stderr);
            status = CLI_USAGE;
            goto done;
        } else {
            res[nfiles++].file = a;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "sagactl validate: no file given\n");
        usage(stderr);
        status = CLI_USAGE;
        goto done;
    }
    for (int i = 0; i < nfiles; i++) {
        check_file(&res[i], set);
        if (!res[i].ok)
            status = CLI_FAILED;
    }
    if (json ? print_json(res, (size_t)nfiles) != 0 : (print_text(res, (size_t)nfiles), 0))
        status = CLI_FAILED;
done:
    for (int i = 0; res && i < nfiles; i++) {
        free(res[i].name);
        sg_def_errors_release(&res[i].errs);
    }
    free(res);
    sg_def_set_destroy(set);
    return status;
}
