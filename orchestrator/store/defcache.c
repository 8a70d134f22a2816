/* The definitions sagas run on. Two sets: the local one (the sagas
 * directory, stored in saga_definitions at start, where new sagas take the
 * highest version) and the stored one (versions loaded from
 * saga_definitions on first use, for sagas started elsewhere or on a file
 * that changed since). A definition is found by name and version and must
 * have the hash the saga recorded: a saga never runs another definition
 * than the one it started with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/transition.h"

struct sg_defcache {
    sg_def_set_t *local;
    sg_def_set_t *stored;
};

sg_defcache_t *sg_defcache_new(void) {
    sg_defcache_t *dc = calloc(1, sizeof *dc);
    if (!dc)
        return NULL;
    dc->local = sg_def_set_new();
    dc->stored = sg_def_set_new();
    if (!dc->local || !dc->stored) {
        sg_defcache_destroy(dc);
        return NULL;
    }
    return dc;
}

void sg_defcache_destroy(sg_defcache_t *dc) {
    if (!dc)
        return;
    sg_def_set_destroy(dc->local);
    sg_def_set_destroy(dc->stored);
    free(dc);
}

sg_err_t sg_defcache_publish(sg_defcache_t *dc, sg_store_t *st, sg_def_set_t *set,
                             char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < sg_def_set_count(set); i++) {
        const sg_def_t *def = sg_def_set_at(set, i);
        sg_err_t err =
            sg_store_definition_put(st, def->name, def->version, def->sha256, def->canonical);
        if (err) {
            snprintf(errstr, errstr_size, "cannot store definition '%s' version %d from '%s': %s",
                     def->name, def->version, def->file, sg_store_errmsg(st));
            sg_def_set_destroy(set);
            return err;
        }
    }
    sg_def_set_destroy(dc->local);
    dc->local = set;
    return SG_OK;
}

const sg_def_t *sg_defcache_latest(const sg_defcache_t *dc, const char *name) {
    return sg_def_set_latest(dc->local, name);
}

static bool matches(const sg_def_t *def, const char *sha256) {
    return def && (!sha256 || !strcmp(def->sha256, sha256));
}

/* Loads (name, version) from saga_definitions into the stored set. */
static sg_err_t load_stored(sg_defcache_t *dc, sg_store_t *st, const char *name, int version,
                            const sg_def_t **out, char *errstr, size_t errstr_size) {
    sg_store_definition_t *row = NULL;
    sg_err_t err = sg_store_definition_get(st, name, version, &row);
    if (err) {
        snprintf(errstr, errstr_size, "cannot load definition '%s' version %d: %s", name,
                 version, err == SG_ERR_NOT_FOUND ? "not stored" : sg_store_errmsg(st));
        return err;
    }
    char file[SG_NAME_MAX + 32];
    snprintf(file, sizeof file, "%s@%d (stored)", name, version);
    sg_def_errors_t errs = {0};
    sg_def_t *def = NULL;
    err = sg_def_load_string(file, row->body, strlen(row->body), &def, &errs);
    if (err) {
        snprintf(errstr, errstr_size, "stored definition '%s' version %d does not load: %s",
                 name, version, errs.count ? errs.items[0] : sg_err_str(err));
    } else if (strcmp(def->sha256, row->sha256) != 0) {
        snprintf(errstr, errstr_size,
                 "stored definition '%s' version %d has hash %.12s, its body hashes to %.12s",
                 name, version, row->sha256, def->sha256);
        sg_def_destroy(def);
        err = SG_ERR_INVALID;
    } else if ((err = sg_def_set_add(dc->stored, def, errstr, errstr_size)) != SG_OK) {
        sg_def_destroy(def);
    } else {
        *out = sg_def_set_get(dc->stored, name, version);
    }
    sg_def_errors_release(&errs);
    sg_store_free(row);
    return err;
}

sg_err_t sg_defcache_resolve(sg_defcache_t *dc, sg_store_t *st, const char *name, int version,
                             const char *sha256, const sg_def_t **out, char *errstr,
                             size_t errstr_size) {
    *out = NULL;
    const sg_def_t *def = sg_def_set_get(dc->local, name, version);
    if (!matches(def, sha256))
        def = sg_def_set_get(dc->stored, name, version);
    if (!def) {
        sg_err_t err = load_stored(dc, st, name, version, &def, errstr, errstr_size);
        if (err)
            return err;
    }
    if (!matches(def, sha256)) {
        snprintf(errstr, errstr_size,
                 "definition '%s' version %d has hash %.12s, the saga was started on %.12s",
                 name, version, def->sha256, sha256);
        return SG_ERR_INVALID;
    }
    *out = def;
    return SG_OK;
}
