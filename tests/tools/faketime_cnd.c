/* libfaketime-cnd: a preload companion of libfaketime for the clock-skew
 * fault test (tests/e2e/test_fault_clock_skew.sh).
 *
 * libfaketime shifts what the wall clock reads, and moves the absolute
 * deadlines given to pthread_cond_timedwait back onto the real clock, but
 * not those given to C11 cnd_timedwait, which librdkafka uses for every
 * timed wait: under a clock set back its waits would end at once, under a
 * clock set ahead they would last that much longer. This library moves
 * those deadlines too: deadline - (faked now - real now). Put it after
 * libfaketime in LD_PRELOAD; alone it changes nothing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <sys/syscall.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

typedef int (*cnd_timedwait_fn)(cnd_t *restrict, mtx_t *restrict, const struct timespec *restrict);

static long long ns_of(const struct timespec *ts) {
    return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx, const struct timespec *restrict ts) {
    static cnd_timedwait_fn next;
    if (!next)
        next = (cnd_timedwait_fn)dlsym(RTLD_NEXT, "cnd_timedwait");
    if (!next)
        return thrd_error;
    struct timespec faked, real;
    clock_gettime(CLOCK_REALTIME, &faked);              /* through libfaketime */
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &real);  /* the kernel's */
    long long deadline = ns_of(ts) - (ns_of(&faked) - ns_of(&real));
    struct timespec fixed = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
    return next(cond, mtx, &fixed);
}
