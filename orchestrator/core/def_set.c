/* A set of definitions: every version of every name, kept sorted by name
 * then version, so that the latest version of a name is the last of its
 * run. A name and version can hold one content only: adding the same
 * content again is a no-op, other content is refused ("bump version").
 *
 * Loading a directory reads every "*.json" file directly in it (not in
 * subfolders, not hidden files), in file-name order, so that problems are
 * reported in a stable order and the first of two conflicting files wins. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/def_internal.h"

struct sg_def_set {
    sg_def_t **defs;
    size_t count;
    size_t cap;
};

sg_def_set_t *sg_def_set_new(void) {
    return calloc(1, sizeof(sg_def_set_t));
}

void sg_def_set_destroy(sg_def_set_t *set) {
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        sg_def_destroy(set->defs[i]);
    free(set->defs);
    free(set);
}

static int compare(const char *name, int version, const sg_def_t *def) {
    int c = strcmp(name, def->name);
    if (c)
        return c;
    return version < def->version ? -1 : version > def->version;
}

/* The position of (name, version), or where it would go. */
static size_t position(const sg_def_set_t *set, const char *name, int version, bool *found) {
    size_t lo = 0, hi = set->count;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare(name, version, set->defs[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

sg_err_t sg_def_set_add(sg_def_set_t *set, sg_def_t *def, char *errstr, size_t errstr_size) {
    bool found;
    size_t at = position(set, def->name, def->version, &found);
    if (found) {
        const sg_def_t *old = set->defs[at];
        if (!strcmp(old->sha256, def->sha256)) {
            sg_def_destroy(def);
            return SG_OK;
        }
        snprintf(errstr, errstr_size,
                 "\"%s\" version %d in \"%s\" differs from the one in \"%s\": "
                 "bump \"version\" to change a definition",
                 def->name, def->version, sg_base_name(def->file),
                 sg_base_name(old->file));
        return SG_ERR_INVALID;
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        sg_def_t **defs = realloc(set->defs, cap * sizeof *defs);
        if (!defs) {
            snprintf(errstr, errstr_size, "out of memory");
            return SG_ERR_NOMEM;
        }
        set->defs = defs;
        set->cap = cap;
    }
    memmove(set->defs + at + 1, set->defs + at, (set->count - at) * sizeof *set->defs);
    set->defs[at] = def;
    set->count++;
    return SG_OK;
}

const sg_def_t *sg_def_set_latest(const sg_def_set_t *set, const char *name) {
    bool found;
    /* Every version sorts before (name, INT_MAX) except INT_MAX itself. */
    size_t at = position(set, name, INT_MAX, &found);
    if (found)
        return set->defs[at];
    if (at > 0 && !strcmp(set->defs[at - 1]->name, name))
        return set->defs[at - 1];
    return NULL;
}

const sg_def_t *sg_def_set_get(const sg_def_set_t *set, const char *name, int version) {
    bool found;
    size_t at = position(set, name, version, &found);
    return found ? set->defs[at] : NULL;
}

size_t sg_def_set_count(const sg_def_set_t *set) {
    return set->count;
}

const sg_def_t *sg_def_set_at(const sg_def_set_t *set, size_t i) {
    return i < set->count ? set->defs[i] : NULL;
}

/* ---- loading a directory ---- */

static bool wanted(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    size_t n = strlen(name);
    if (name[0] == '.' || n < 6 || strcmp(name + n - 5, ".json"))
        return false;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return false;
    /* stat, not lstat: mounted config folders link their files. */
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The wanted file names of 'dir', sorted; NULL with *count 0 when none. */
static sg_err_t list_dir(const char *dir, char ***names, size_t *count) {
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;
    *names = NULL;
    *count = 0;
    if (!d)
        return SG_ERR_IO;
    while ((e = readdir(d))) {
        if (!wanted(dir, e->d_name))
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(*names, cap * sizeof **names);
            if (!grown)
                goto fail;
            *names = grown;
        }
        if (!((*names)[*count] = strdup(e->d_name)))
            goto fail;
        (*count)++;
    }
    closedir(d);
    if (*count)
        qsort(*names, *count, sizeof **names, by_name);
    return SG_OK;
fail:
    closedir(d);
    while (*count)
        free((*names)[--*count]);
    free(*names);
    *names = NULL;
    return SG_ERR_NOMEM;
}

static sg_err_t load_one(sg_def_set_t *set, const char *path, sg_def_errors_t *errs) {
    char err[1024];
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load_file(path, &def, errs);
    if (rc != SG_OK)
        return rc;
    if ((rc = sg_def_set_add(set, def, err, sizeof err)) != SG_OK) {
        sg_def_errors_addf(errs, "%s: $.version: %s", sg_base_name(path), err);
        sg_def_destroy(def);
    }
    return rc;
}

sg_err_t sg_def_set_load_dir(sg_def_set_t *set, const char *dir, sg_def_errors_t *errs) {
    char **names;
    size_t count;
    sg_err_t rc = list_dir(dir, &names, &count), result = SG_OK;
    if (rc != SG_OK) {
        sg_def_errors_addf(errs, "%s: cannot read directory: %s", dir,
                           rc == SG_ERR_NOMEM ? "out of memory" : strerror(errno));
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = load_one(set, path, errs);
        if (rc != SG_OK && (result == SG_OK || rc == SG_ERR_NOMEM))
            result = rc == SG_ERR_IO ? SG_ERR_INVALID : rc;
        free(names[i]);
    }
    free(names);
    return result;
}
