/* The migrations runner and `sagactl migrate` against a real PostgreSQL:
 * from an empty database, again as a no-op, a changed file refused, new
 * files applied, and migrators racing on one database. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

#include "testdb.h"

#define MIGRATIONS SAGA_SOURCE_DIR "/migrations"

/* The number of NNNN_*.sql files shipped with the project. */
static int shipped_migrations(void) {
    DIR *d = opendir(MIGRATIONS);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && strstr(e->d_name, ".sql"))
            n++;
    closedir(d);
    return n;
}

static int64_t scalar_on(const char *conninfo, const char *sql) {
    PGconn *conn = testdb_connect(conninfo);
    assert_non_null(conn);
    PGresult *res = PQexec(conn, sql);
    int64_t v = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                    ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                    : -1;
    PQclear(res);
    PQfinish(conn);
    return v;
}

static void test_migrations_apply_to_an_empty_database_and_rerun_as_a_no_op(void **state) {
    (void)state;
    char conninfo[2048], errstr[512];
    assert_int_equal(testdb_create(conninfo, sizeof conninfo), 0);
    sg_store_t *st = sg_store_new(conninfo, errstr, sizeof errstr);
    assert_non_null(st);

    int applied = -1;
    assert_int_equal(sg_store_migrate(st, MIGRATIONS, NULL, NULL, &applied), SG_OK);
    assert_int_equal(applied, shipped_migrations());
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM schema_migrations"),
                     shipped_migrations());
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM pg_tables WHERE tablename IN"
                                         " ('sagas', 'saga_definitions', 'saga_history', 'inbox',"
                                         " 'outbox', 'timers', 'dead_letters')"),
                     7);

    assert_int_equal(sg_store_migrate(st, MIGRATIONS, NULL, NULL, &applied), SG_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM schema_migrations"),
                     shipped_migrations());
    sg_store_destroy(st);
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[8192];
    size_t n;
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void write_file(const char *path, const char *mode, const char *text) {
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A private copy of the shipped migrations to change. */
static void copy_migrations(char *dir) {
    DIR *d = opendir(MIGRATIONS);
    struct dirent *e;
    char from[4096], to[4096];
    assert_non_null(mkdtemp(dir));
    assert_non_null(d);
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".sql"))
            continue;
        snprintf(from, sizeof from, "%s/%s", MIGRATIONS, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        copy_file(from, to);
    }
    closedir(d);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void test_new_file_is_applied_and_a_changed_applied_file_is_refused(void **state) {
    (void)state;
    char conninfo[2048], errstr[512], dir[] = "/tmp/sagad-migrations-XXXXXX", path[4096];
    assert_int_equal(testdb_create(conninfo, sizeof conninfo), 0);
    copy_migrations(dir);
    sg_store_t *st = sg_store_new(conninfo, errstr, sizeof errstr);
    assert_non_null(st);
    int applied = 0;
    assert_int_equal(sg_store_migrate(st, dir, NULL, NULL, &applied), SG_OK);

    snprintf(path, sizeof path, "%s/9001_extra_table.sql", dir);
    write_file(path, "w", "CREATE TABLE extra_table (id int);\n");
    assert_int_equal(sg_store_migrate(st, dir, NULL, NULL, &applied), SG_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM extra_table"), 0);

    write_file(path, "a", "-- an edit after release\n");
    assert_int_equal(sg_store_migrate(st, dir, NULL, NULL, &applied), SG_ERR_INVALID);
    assert_int_equal(applied, 0);
    assert_non_null(strstr(sg_store_errmsg(st), "'9001_extra_table.sql'"));
    assert_non_null(strstr(sg_store_errmsg(st), "changed after it was applied"));

    /* A refused run applies nothing, not even files that are new. */
    snprintf(path, sizeof path, "%s/9002_more.sql", dir);
    write_file(path, "w", "CREATE TABLE more_table (id int);\n");
    assert_int_equal(sg_store_migrate(st, dir, NULL, NULL, &applied), SG_ERR_INVALID);
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM pg_tables"
                                         " WHERE tablename = 'more_table'"),
                     0);
    sg_store_destroy(st);
    remove_dir(dir);
}

static void test_a_failing_migration_is_rolled_back_and_reported(void **state) {
    (void)state;
    char conninfo[2048], errstr[512], dir[] = "/tmp/sagad-migrations-XXXXXX", path[4096];
    assert_int_equal(testdb_create(conninfo, sizeof conninfo), 0);
    copy_migrations(dir);
    snprintf(path, sizeof path, "%s/9001_broken.sql", dir);
    write_file(path, "w", "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n");
    sg_store_t *st = sg_store_new(conninfo, errstr, sizeof errstr);
    assert_non_null(st);
    int applied = 0;
    assert_int_equal(sg_store_migrate(st, dir, NULL, NULL, &applied), SG_ERR_INTERNAL);
    assert_int_equal(applied, shipped_migrations());
    assert_non_null(strstr(sg_store_errmsg(st), "'9001_broken.sql'"));
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM pg_tables"
                                         " WHERE tablename = 'half_done'"),
                     0);
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM schema_migrations"),
                     shipped_migrations());
    sg_store_destroy(st);
    remove_dir(dir);
}

typedef struct racer {
    const char *conninfo;
    pthread_barrier_t *start;
    sg_err_t err;
    int applied;
} racer_t;

static void *race_migrate(void *arg) {
    racer_t *r = arg;
    char errstr[512];
    sg_store_t *st = sg_store_new(r->conninfo, errstr, sizeof errstr);
    pthread_barrier_wait(r->start);
    r->err = st ? sg_store_migrate(st, MIGRATIONS, NULL, NULL, &r->applied) : SG_ERR_CONN;
    sg_store_destroy(st);
    return NULL;
}

static void test_racing_migrators_apply_each_file_once(void **state) {
    (void)state;
    enum { RACERS = 4 };
    char conninfo[2048];
    assert_int_equal(testdb_create(conninfo, sizeof conninfo), 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    racer_t racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){.conninfo = conninfo, .start = &start};
        pthread_create(&threads[i], NULL, race_migrate, &racers[i]);
    }
    int total = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(racers[i].err, SG_OK);
        total += racers[i].applied;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(total, shipped_migrations());
    assert_int_equal(scalar_on(conninfo, "SELECT count(*) FROM schema_migrations"),
                     shipped_migrations());
}

/* Runs sagactl with 'args', SAGA_DATABASE_URL set to 'db' (unset when NULL);
 * returns its exit status with its stdout and stderr in 'out'. */
static int run_sagactl(const char *db, const char *const *args, char *out, size_t size) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        if (db)
            setenv("SAGA_DATABASE_URL", db, 1);
        else
            unsetenv("SAGA_DATABASE_URL");
        unsetenv("SAGA_MIGRATIONS_DIR");
        char *argv[16] = {SAGA_BINARY_DIR "/orchestrator/sagactl"};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = (char *)args[i];
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < size && (n = read(fds[0], out + len, size - len - 1)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_sagactl_migrate_prints_what_it_applied_then_up_to_date(void **state) {
    (void)state;
    char conninfo[2048], out[4096];
    assert_int_equal(testdb_create(conninfo, sizeof conninfo), 0);
    const char *args[] = {"migrate", "--migrations", MIGRATIONS, NULL};
    assert_int_equal(run_sagactl(conninfo, args, out, sizeof out), 0);
    assert_non_null(strstr(out, "applied 0001_initial.sql"));
    assert_int_equal(run_sagactl(conninfo, args, out, sizeof out), 0);
    assert_non_null(strstr(out, "up to date"));

    /* --db after the command takes the place of the environment. */
    const char *with_db[] = {"migrate", "--db", conninfo, "--migrations", MIGRATIONS, NULL};
    assert_int_equal(run_sagactl(NULL, with_db, out, sizeof out), 0);
    assert_non_null(strstr(out, "up to date"));
}

static void test_sagactl_migrate_without_a_database_is_a_usage_error(void **state) {
    (void)state;
    char out[4096];
    const char *args[] = {"migrate", NULL};
    assert_int_equal(run_sagactl(NULL, args, out, sizeof out), 2);
    assert_non_null(strstr(out, "SAGA_DATABASE_URL"));
}

static void test_sagactl_migrate_fails_on_a_missing_folder(void **state) {
    (void)state;
    char out[4096];
    const char *args[] = {"migrate", "--migrations", "/nonexistent/migrations", NULL};
    assert_int_equal(run_sagactl(testdb.conninfo, args, out, sizeof out), 1);
    assert_non_null(strstr(out, "/nonexistent/migrations"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_apply_to_an_empty_database_and_rerun_as_a_no_op),
        cmocka_unit_test(test_new_file_is_applied_and_a_changed_applied_file_is_refused),
        cmocka_unit_test(test_a_failing_migration_is_rolled_back_and_reported),
        cmocka_unit_test(test_racing_migrators_apply_each_file_once),
        cmocka_unit_test(test_sagactl_migrate_prints_what_it_applied_then_up_to_date),
        cmocka_unit_test(test_sagactl_migrate_without_a_database_is_a_usage_error),
        cmocka_unit_test(test_sagactl_migrate_fails_on_a_missing_folder),
    };
    return cmocka_run_group_tests_name("store_migrate", tests, testdb_setup, testdb_teardown);
}
