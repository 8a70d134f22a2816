/* Test-only crash points for the fault suite. With SAGA_TEST_CRASH_POINT
 * set to a point's name, the Nth passage through that point (N from
 * SAGA_TEST_CRASH_AFTER, default 1) ends the process at once with
 * _exit(137), as a SIGKILL would: no flush, no commit of Kafka offsets, no
 * ack. Without the variable every point is a no-op. Points:
 *   after_commit   a batch transaction committed; nothing of it acked or
 *                  published yet
 *   after_publish  a broker confirmed outbox rows; they are not deleted yet */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/sagad.h"

static struct {
    int init;
    char point[32];
    long after;
    long seen;
} crash;

void sg_crash_point(const char *point) {
    if (!crash.init) {
        const char *p = getenv("SAGA_TEST_CRASH_POINT");
        const char *n = getenv("SAGA_TEST_CRASH_AFTER");
        snprintf(crash.point, sizeof crash.point, "%s", p ? p : "");
        crash.after = n ? strtol(n, NULL, 10) : 1;
        if (crash.after < 1)
            crash.after = 1;
        crash.init = 1;
        if (crash.point[0])
            sg_log_warn("test crash point armed: exit 137 at passage %ld of '%s'", crash.after,
                        crash.point);
    }
    if (!crash.point[0] || strcmp(crash.point, point) != 0)
        return;
    if (++crash.seen < crash.after)
        return;
    sg_log_warn("test crash point '%s' reached: exiting with 137", point);
    _exit(137);
}
