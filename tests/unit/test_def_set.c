/* Definition sets: every version of a name is kept, the highest is the
 * latest, a name and version holds one content only, and a directory load
 * reads the *.json files directly in it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "saga/def.h"

static char *def_text(const char *name, int version, const char *type) {
    static char buf[512];
    snprintf(buf, sizeof buf,
             "{\"name\": \"%s\", \"version\": %d, \"steps\": [{\"name\": \"a\", \"command\": "
             "{\"type\": \"%s\", \"channel\": \"kafka:t\"}}]}",
             name, version, type);
    return buf;
}

static sg_def_t *make(const char *file, const char *name, int version, const char *type) {
    sg_def_t *def = NULL;
    sg_def_errors_t errs = {0};
    const char *text = def_text(name, version, type);
    assert_int_equal(sg_def_load_string(file, text, strlen(text), &def, &errs), SG_OK);
    sg_def_errors_release(&errs);
    return def;
}

static void add_ok(sg_def_set_t *set, sg_def_t *def) {
    char err[512] = "";
    assert_int_equal(sg_def_set_add(set, def, err, sizeof err), SG_OK);
}

static void test_all_versions_are_kept_and_the_highest_is_latest(void **state) {
    (void)state;
    sg_def_set_t *set = sg_def_set_new();
    add_ok(set, make("o2.json", "order", 2, "t"));
    add_ok(set, make("o10.json", "order", 10, "t"));
    add_ok(set, make("o1.json", "order", 1, "t"));
    add_ok(set, make("b.json", "billing", 7, "t"));
    add_ok(set, make("z.json", "zeta", 1, "t"));
    assert_int_equal(sg_def_set_count(set), 5);
    assert_int_equal(sg_def_set_latest(set, "order")->version, 10);
    assert_int_equal(sg_def_set_latest(set, "billing")->version, 7);
    assert_int_equal(sg_def_set_get(set, "order", 2)->version, 2);
    assert_string_equal(sg_def_set_get(set, "order", 1)->file, "o1.json");
    assert_null(sg_def_set_get(set, "order", 3));
    assert_null(sg_def_set_latest(set, "ord"));
    assert_null(sg_def_set_latest(set, "orders"));
    /* name then version order */
    static const char *const names[] = {"billing", "order", "order", "order", "zeta"};
    static const int versions[] = {7, 1, 2, 10, 1};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(sg_def_set_at(set, i)->name, names[i]);
        assert_int_equal(sg_def_set_at(set, i)->version, versions[i]);
    }
    assert_null(sg_def_set_at(set, 5));
    sg_def_set_destroy(set);
}

static void test_same_version_with_same_content_is_kept_once(void **state) {
    (void)state;
    sg_def_set_t *set = sg_def_set_new();
    add_ok(set, make("a.json", "order", 1, "t"));
    add_ok(set, make("copy.json", "order", 1, "t"));
    assert_int_equal(sg_def_set_count(set), 1);
    assert_string_equal(sg_def_set_latest(set, "order")->file, "a.json");
    sg_def_set_destroy(set);
}

static void test_same_version_with_other_content_is_refused(void **state) {
    (void)state;
    char err[512] = "";
    sg_def_set_t *set = sg_def_set_new();
    add_ok(set, make("sagas/a.json", "order", 1, "t"));
    sg_def_t *other = make("sagas/b.json", "order", 1, "changed");
    assert_int_equal(sg_def_set_add(set, other, err, sizeof err), SG_ERR_INVALID);
    assert_string_equal(err, "\"order\" version 1 in \"b.json\" differs from the one in "
                             "\"a.json\": bump \"version\" to change a definition");
    assert_int_equal(sg_def_set_count(set), 1);
    assert_string_equal(sg_def_set_latest(set, "order")->canonical,
                        sg_def_set_get(set, "order", 1)->canonical);
    sg_def_destroy(other); /* still ours after a refusal */
    sg_def_set_destroy(set);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_directory_load_reads_json_files_and_reports_bad_ones(void **state) {
    (void)state;
    char dir[] = "/tmp/sagas-test-XXXXXX", sub[600], cmd[700];
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/schema", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(dir, "a.json", def_text("order", 1, "t"));
    write_file(dir, "b.json", def_text("order", 2, "t"));
    write_file(dir, "c.json", def_text("order", 1, "changed"));
    write_file(dir, "d.json", "{\"name\": \"broken\", \"version\": 1, \"steps\": []}");
    write_file(dir, "e.json", def_text("greeting", 3, "t"));
    write_file(dir, "notes.txt", "not a definition");
    write_file(dir, ".hidden.json", "{");
    write_file(sub, "schema.json", "{");

    sg_def_set_t *set = sg_def_set_new();
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_set_load_dir(set, dir, &errs), SG_ERR_INVALID);
    for (size_t k = 0; k < errs.count; k++)
        print_message("%s\n", errs.items[k]);
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.items[0],
                        "c.json: $.version: \"order\" version 1 in \"c.json\" differs from the "
                        "one in \"a.json\": bump \"version\" to change a definition");
    assert_string_equal(errs.items[1], "d.json: $.steps: a saga needs at least one step");
    assert_int_equal(sg_def_set_count(set), 3);
    assert_int_equal(sg_def_set_latest(set, "order")->version, 2);
    assert_int_equal(sg_def_set_latest(set, "greeting")->version, 3);
    sg_def_errors_release(&errs);
    sg_def_set_destroy(set);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_directory_of_examples_loads_cleanly(void **state) {
    (void)state;
    char dir[4096];
    const char *src = getenv("SAGA_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/sagas", src && *src ? src : SAGA_SOURCE_DIR);
    sg_def_set_t *set = sg_def_set_new();
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_set_load_dir(set, dir, &errs), SG_OK);
    assert_int_equal(errs.count, 0);
    assert_true(sg_def_set_count(set) >= 3);
    assert_non_null(sg_def_set_latest(set, "order_fulfillment"));
    assert_non_null(sg_def_set_latest(set, "travel_booking"));
    sg_def_set_destroy(set);
}

static void test_missing_directory_is_an_io_error(void **state) {
    (void)state;
    sg_def_set_t *set = sg_def_set_new();
    sg_def_errors_t errs = {0};
    assert_int_equal(sg_def_set_load_dir(set, "/nonexistent/sagas", &errs), SG_ERR_IO);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0],
                        "/nonexistent/sagas: cannot read directory: No such file or directory");
    sg_def_errors_release(&errs);
    sg_def_set_destroy(set);
    sg_def_set_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_versions_are_kept_and_the_highest_is_latest),
        cmocka_unit_test(test_same_version_with_same_content_is_kept_once),
        cmocka_unit_test(test_same_version_with_other_content_is_refused),
        cmocka_unit_test(test_directory_load_reads_json_files_and_reports_bad_ones),
        cmocka_unit_test(test_directory_of_examples_loads_cleanly),
        cmocka_unit_test(test_missing_directory_is_an_io_error),
    };
    return cmocka_run_group_tests_name("def_set", tests, NULL, NULL);
}
