/* Integration tests against a real PostgreSQL: each test program creates its
 * own fresh database on the server named by SAGA_DATABASE_URL (the role must
 * be allowed to create databases) and drops it at the end, so programs can
 * run in parallel and leave nothing behind. Without SAGA_DATABASE_URL the
 * group setup fails with a message saying so: these tests never pass
 * silently without a database.
 *
 * Header only: every function is static inline. Include it after cmocka.h. */
#ifndef SAGA_TESTDB_H
#define SAGA_TESTDB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga/store.h"

#define TESTDB_MAX 8

static struct {
    char names[TESTDB_MAX][64];
    int count;
    char conninfo[2048];       /* of the first database made */
} testdb;

static inline const char *testdb_server_url(void) {
    const char *url = getenv("SAGA_DATABASE_URL");
    if (!url || !url[0]) {
        fprintf(stderr,
                "SAGA_DATABASE_URL is not set: the integration tests need a PostgreSQL "
                "server where the role may create databases (the local stack scripts "
                "export it)\n");
        return NULL;
    }
    return url;
}

/* The server's connection string with another database name. */
static inline int testdb_conninfo_for(const char *dbname, char *out, size_t size) {
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(testdb_server_url(), &err);
    if (!opts) {
        fprintf(stderr, "SAGA_DATABASE_URL is not a connection string: %s\n", err ? err : "");
        PQfreemem(err);
        return -1;
    }
    size_t len = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *val = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
        if (!val)
            continue;
        len += (size_t)snprintf(out + len, size > len ? size - len : 0, "%s%s='", len ? " " : "",
                                o->keyword);
        for (const char *c = val; *c && len + 3 < size; c++) {
            if (*c == '\'' || *c == '\\')
                out[len++] = '\\';
            out[len++] = *c;
        }
        len += (size_t)snprintf(out + len, size > len ? size - len : 0, "'");
    }
    PQconninfoFree(opts);
    return len < size ? 0 : -1;
}

static inline PGconn *testdb_connect(const char *conninfo) {
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to the test database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs a statement on the server's own database with a quoted name. */
static inline int testdb_admin(const char *verb, const char *name, const char *suffix) {
    PGconn *conn = testdb_connect(testdb_server_url());
    if (!conn)
        return -1;
    char *ident = PQescapeIdentifier(conn, name, strlen(name));
    char sql[256];
    snprintf(sql, sizeof sql, "%s %s%s", verb, ident, suffix);
    PQfreemem(ident);
    PGresult *res = PQexec(conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* Creates one more fresh database and writes its connection string. */
static inline int testdb_create(char *conninfo, size_t size) {
    if (!testdb_server_url() || testdb.count >= TESTDB_MAX)
        return -1;
    char *name = testdb.names[testdb.count];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, 64, "sagad_test_%d_%ld_%d", (int)getpid(), (long)(ts.tv_nsec / 1000),
             testdb.count);
    if (testdb_admin("CREATE DATABASE", name, "") != 0)
        return -1;
    testdb.count++;
    return testdb_conninfo_for(name, conninfo, size);
}

static inline void testdb_drop_all(void) {
    for (int i = 0; i < testdb.count; i++)
        testdb_admin("DROP DATABASE IF EXISTS", testdb.names[i], " WITH (FORCE)");
    testdb.count = 0;
}

/* Applies the project's migrations to 'conninfo'. */
static inline int testdb_migrate(const char *conninfo) {
    char errstr[512];
    sg_store_t *st = sg_store_new(conninfo, errstr, sizeof errstr);
    if (!st) {
        fprintf(stderr, "%s\n", errstr);
        return -1;
    }
    sg_err_t err = sg_store_migrate(st, SAGA_SOURCE_DIR "/migrations", NULL, NULL, NULL);
    if (err)
        fprintf(stderr, "migrate: %s\n", sg_store_errmsg(st));
    sg_store_destroy(st);
    return err ? -1 : 0;
}

/* Group setup and teardown: a fresh, migrated database in testdb.conninfo. */
static inline int testdb_setup(void **state) {
    (void)state;
    if (testdb_create(testdb.conninfo, sizeof testdb.conninfo) != 0)
        return -1;
    return testdb_migrate(testdb.conninfo);
}

static inline int testdb_teardown(void **state) {
    (void)state;
    testdb_drop_all();
    return 0;
}

static inline sg_store_t *testdb_store(void) {
    char errstr[512];
    sg_store_t *st = sg_store_new(testdb.conninfo, errstr, sizeof errstr);
    if (!st)
        fprintf(stderr, "%s\n", errstr);
    return st;
}

/* One number from a query on a connection of its own (-1 on error). */
static inline int64_t testdb_scalar(const char *sql) {
    PGconn *conn = testdb_connect(testdb.conninfo);
    if (!conn)
        return -1;
    PGresult *res = PQexec(conn, sql);
    int64_t v = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
    return v;
}

/* Runs a statement without result on a connection of its own. */
static inline int testdb_exec(const char *sql) {
    PGconn *conn = testdb_connect(testdb.conninfo);
    if (!conn)
        return -1;
    PGresult *res = PQexec(conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* A stored definition "order" version 1 for sagas to refer to. */
#define TESTDB_DEF_SHA "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
static inline sg_err_t testdb_put_definition(sg_store_t *st) {
    return sg_store_definition_put(st, "order", 1, TESTDB_DEF_SHA,
                                   "{\"name\": \"order\", \"version\": 1, \"steps\": []}");
}

/* A saga row of that definition. */
static inline sg_store_saga_t testdb_saga(const char *id, const char *status, const char *state) {
    sg_store_saga_t saga = {0};
    saga.id = id;
    saga.type = "order";
    saga.definition_version = 1;
    saga.definition_sha256 = TESTDB_DEF_SHA;
    saga.status = status;
    saga.current_step = "reserve";
    saga.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    saga.state = state;
    return saga;
}

#endif
