/* The migrations runner. The files NNNN_name.sql of a folder are applied in
 * version order, each in its own transaction together with its row in
 * schema_migrations (version, name, SHA-256 of the file). A session advisory
 * lock is held from reading what is applied to the last file, so processes
 * starting at once apply each file once: the others wait, then find nothing
 * left to do. A file changed after it was applied stops everything: a
 * released migration is never edited, a new one is added instead.
 *
 * Files must not contain transaction control (BEGIN, COMMIT): the runner
 * wraps each one. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "store/store_int.h"

/* "sagad.migrations" as a number: the key of the advisory lock. */
#define MIGRATION_LOCK_KEY "6081923104755121779"

typedef struct migration {
    int version;
    char file[256];     /* "0001_initial.sql" */
    char name[256];     /* "initial" */
    char checksum[65];  /* hex SHA-256 of the file */
    char *sql;
} migration_t;

typedef struct migration_set {
    migration_t *items;
    size_t count;
} migration_set_t;

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void sg_store_migrations_dir(const char *explicit_dir, char *buf, size_t buf_size) {
    const char *env = getenv("SAGA_MIGRATIONS_DIR");
    if (explicit_dir && explicit_dir[0])
        snprintf(buf, buf_size, "%s", explicit_dir);
    else if (env && env[0])
        snprintf(buf, buf_size, "%s", env);
    else if (is_dir(SAGA_SHARE_DIR "/migrations"))
        snprintf(buf, buf_size, "%s", SAGA_SHARE_DIR "/migrations");
    else
        snprintf(buf, buf_size, "migrations");
}

/* ---- the files ---- */

/* "0001_initial.sql" -> version 1, name "initial"; false for other names. */
static bool parse_file_name(const char *file, int *version, char *name, size_t name_size) {
    size_t len = strlen(file), digits = 0;
    while (isdigit((unsigned char)file[digits]))
        digits++;
    if (digits == 0 || digits > 9 || file[digits] != '_' || len < digits + 6 ||
        strcmp(file + len - 4, ".sql") != 0)
        return false;
    for (size_t i = digits + 1; i < len - 4; i++)
        if (!islower((unsigned char)file[i]) && !isdigit((unsigned char)file[i]) &&
            file[i] != '_')
            return false;
    *version = atoi(file);
    snprintf(name, name_size, "%.*s", (int)(len - 4 - digits - 1), file + digits + 1);
    return true;
}

static sg_err_t read_file(sg_store_t *st, const char *dir, migration_t *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, m->file);
    FILE *f = fopen(path, "rb");
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0 || !(m->sql = malloc((size_t)size + 1)) ||
        fread(m->sql, 1, (size_t)size, f) != (size_t)size) {
        store_set_error(st, "cannot read migration '%s': %s", path, strerror(errno));
        if (f)
            fclose(f);
        return SG_ERR_IO;
    }
    fclose(f);
    m->sql[size] = '\0';
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(m->sql, (size_t)size, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(m->checksum + 2 * i, 3, "%02x", md[i]);
    return SG_OK;
}

static int by_version(const void *a, const void *b) {
    const migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static void set_release(migration_set_t *set) {
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i].sql);
    free(set->items);
}

static sg_err_t set_load(sg_store_t *st, const char *dir, migration_set_t *set) {
    DIR *d = opendir(dir);
    if (!d) {
        store_set_error(st, "cannot open migrations folder '%s': %s", dir, strerror(errno));
        return SG_ERR_IO;
    }
    sg_err_t err = SG_OK;
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        migration_t m = {0};
        if (!parse_file_name(e->d_name, &m.version, m.name, sizeof m.name))
            continue;
        snprintf(m.file, sizeof m.file, "%s", e->d_name);
        migration_t *grown = realloc(set->items, (set->count + 1) * sizeof *grown);
        if (!grown) {
            store_set_error(st, "out of memory reading migrations");
            err = SG_ERR_NOMEM;
            break;
        }
        set->items = grown;
        set->items[set->count++] = m;
        err = read_file(st, dir, &set->items[set->count - 1]);
    }
    closedir(d);
    if (err)
        return err;
    qsort(set->items, set->count, sizeof *set->items, by_version);
    for (size_t i = 1; i < set->count; i++)
        if (set->items[i].version == set->items[i - 1].version) {
            store_set_error(st, "migrations '%s' and '%s' have the same version",
                            set->items[i - 1].file, set->items[i].file);
            return SG_ERR_INVALID;
        }
    return SG_OK;
}

/* ---- the database ---- */

static sg_err_t exec_params(sg_store_t *st, const char *sql, const params_t *p,
                            const char *what, PGresult **out) {
    PGresult *res = PQexecParams(st->conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
                                 p ? p->lengths : NULL, p ? p->formats : NULL, 0);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        sg_err_t err = store_fail(st, res, what);
        PQclear(res);
        return err;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return SG_OK;
}

static const migration_t *find_version(const migration_set_t *set, int version) {
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i].version == version)
            return &set->items[i];
    return NULL;
}

/* Marks the files already applied (m->version = 0 means done) and refuses
 * when one of them changed since. */
static sg_err_t check_applied(sg_store_t *st, migration_set_t *set, bool *applied) {
    PGresult *res = NULL;
    sg_err_t err = exec_params(st, "SELECT version, name, checksum FROM schema_migrations",
                               NULL, "cannot read schema_migrations", &res);
    for (int r = 0; !err && r < PQntuples(res); r++) {
        const migration_t *m = find_version(set, atoi(PQgetvalue(res, r, 0)));
        if (!m)
            continue; /* applied by a newer release: not ours to judge */
        if (strcmp(m->checksum, PQgetvalue(res, r, 2)) != 0 ||
            strcmp(m->name, PQgetvalue(res, r, 1)) != 0) {
            store_set_error(st,
                            "migration '%s' changed after it was applied (applied as "
                            "'%s' with sha256 %s, the file has %s): never edit a "
                            "released migration, add a new one",
                            m->file, PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
                            m->checksum);
            err = SG_ERR_INVALID;
        }
        applied[m - set->items] = true;
    }
    PQclear(res);
    return err;
}

static sg_err_t apply_one(sg_store_t *st, const migration_t *m) {
    char what[320];
    snprintf(what, sizeof what, "migration '%s' failed", m->file);
    sg_err_t err = store_command(st, "BEGIN", what);
    if (!err)
        err = store_command(st, m->sql, what);
    if (!err) {
        params_t p = {0};
        params_int(&p, m->version);
        params_text(&p, m->name);
        params_text(&p, m->checksum);
        err = exec_params(st,
                          "INSERT INTO schema_migrations (version, name, checksum)"
                          " VALUES ($1, $2, $3)",
                          &p, what, NULL);
    }
    if (!err)
        err = store_command(st, "COMMIT", what);
    if (err && err != SG_ERR_CONN)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    return err;
}

static sg_err_t apply_missing(sg_store_t *st, migration_set_t *set,
                              sg_store_migrated_fn on_applied, void *opaque, int *applied) {
    bool *done = calloc(set->count + 1, sizeof *done);
    if (!done) {
        store_set_error(st, "out of memory reading migrations");
        return SG_ERR_NOMEM;
    }
    sg_err_t err = store_command(st,
                                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version integer PRIMARY KEY,"
                                 " name text NOT NULL,"
                                 " checksum text NOT NULL,"
                                 " applied_at timestamptz NOT NULL DEFAULT now())",
                                 "cannot create schema_migrations");
    if (!err)
        err = check_applied(st, set, done);
    for (size_t i = 0; !err && i < set->count; i++) {
        if (done[i])
            continue;
        err = apply_one(st, &set->items[i]);
        if (!err) {
            (*applied)++;
            if (on_applied)
                on_applied(opaque, set->items[i].version, set->items[i].file);
        }
    }
    free(done);
    return err;
}

sg_err_t sg_store_migrate(sg_store_t *st, const char *dir, sg_store_migrated_fn on_applied,
                          void *opaque, int *applied) {
    migration_set_t set = {0};
    int count = 0;
    sg_err_t err = store_ready(st);
    if (!err)
        err = set_load(st, dir, &set);
    if (!err && set.count == 0) {
        store_set_error(st, "no migrations (NNNN_name.sql) in '%s'", dir);
        err = SG_ERR_NOT_FOUND;
    }
    params_t p = {0};
    params_text(&p, MIGRATION_LOCK_KEY);
    if (!err)
        err = exec_params(st, "SELECT pg_advisory_lock($1::int8)", &p,
                          "cannot take the migrations lock", NULL);
    if (!err) {
        err = apply_missing(st, &set, on_applied, opaque, &count);
        /* Keep the first error's message; the unlock is best effort (a lost
         * connection releases the lock anyway). */
        char saved[sizeof st->errmsg];
        memcpy(saved, st->errmsg, sizeof saved);
        sg_err_t unlock = exec_params(st, "SELECT pg_advisory_unlock($1::int8)", &p,
                                      "cannot release the migrations lock", NULL);
        if (err)
            memcpy(st->errmsg, saved, sizeof saved);
        else
            err = unlock;
    }
    set_release(&set);
    if (applied)
        *applied = count;
    return err;
}
