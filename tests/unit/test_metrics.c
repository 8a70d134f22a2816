/* Metric families render in the Prometheus text format: HELP and TYPE per
 * family, escaped labels, cumulative histogram buckets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "saga/metrics.h"

static void test_counters_add_up_per_label_set(void **state) {
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metrics_add(m, SG_M_SAGAS_FINISHED, 1, "order", "completed");
    sg_metrics_add(m, SG_M_SAGAS_FINISHED, 2, "order", "completed");
    sg_metrics_add(m, SG_M_SAGAS_FINISHED, 1, "order", "compensated");
    assert_true(sg_metrics_value(m, SG_M_SAGAS_FINISHED, "order", "completed") == 3);
    assert_true(sg_metrics_value(m, SG_M_SAGAS_FINISHED, "order", "failed") == 0);
    char *text = sg_metrics_render(m);
    assert_non_null(strstr(text, "# TYPE sagad_sagas_finished_total counter\n"));
    assert_non_null(strstr(text, "sagad_sagas_finished_total{type=\"order\",status=\"completed\"} 3\n"));
    assert_non_null(strstr(text, "sagad_sagas_finished_total{type=\"order\",status=\"compensated\"} 1\n"));
    assert_non_null(strstr(text, "sagad_version_conflicts_total 0\n"));
    free(text);
    sg_metrics_destroy(m);
}

static void test_label_values_are_escaped(void **state) {
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metrics_add(m, SG_M_DEAD_LETTERS, 1, "not JSON: \"x\\y\"\n");
    char *text = sg_metrics_render(m);
    assert_non_null(strstr(text, "{reason=\"not JSON: \\\"x\\\\y\\\"\\n\"} 1\n"));
    free(text);
    sg_metrics_destroy(m);
}

static void test_histogram_buckets_are_cumulative(void **state) {
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metrics_observe(m, SG_M_BATCH_SIZE, 1);
    sg_metrics_observe(m, SG_M_BATCH_SIZE, 3);
    sg_metrics_observe(m, SG_M_BATCH_SIZE, 5000);
    char *text = sg_metrics_render(m);
    assert_non_null(strstr(text, "sagad_batch_size_bucket{le=\"1\"} 1\n"));
    assert_non_null(strstr(text, "sagad_batch_size_bucket{le=\"4\"} 2\n"));
    assert_non_null(strstr(text, "sagad_batch_size_bucket{le=\"1024\"} 2\n"));
    assert_non_null(strstr(text, "sagad_batch_size_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "sagad_batch_size_sum 5004\n"));
    assert_non_null(strstr(text, "sagad_batch_size_count 3\n"));
    free(text);
    sg_metrics_destroy(m);
}

static void test_gauges_set_and_reset(void **state) {
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metrics_set(m, SG_M_SAGAS_IN_FLIGHT, 7, "order", "running");
    sg_metrics_set(m, SG_M_SAGAS_IN_FLIGHT, 4, "order", "running");
    assert_true(sg_metrics_value(m, SG_M_SAGAS_IN_FLIGHT, "order", "running") == 4);
    sg_metrics_reset(m, SG_M_SAGAS_IN_FLIGHT);
    assert_true(sg_metrics_value(m, SG_M_SAGAS_IN_FLIGHT, "order", "running") == 0);
    sg_metrics_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_add_up_per_label_set),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_gauges_set_and_reset),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
