/* A saga's timeline, rebuilt from its history for sagactl show: for each
 * step, when it started and ended, each attempt of its command and of its
 * compensation (sent, answered or timed out, with the outcome), and when
 * its compensation started and ended. Times are the database's, from the
 * history rows. */
#ifndef SAGA_CLI_TIMELINE_H
#define SAGA_CLI_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "saga/engine.h"
#include "saga/store.h"

typedef struct sg_tl_attempt {
    bool undo;              /* a compensation attempt */
    int attempt;            /* 1-based, per command or compensation */
    char *id;               /* the command id */
    int64_t sent_ms;
    int64_t ended_ms;       /* 0 while waiting for a reply */
    char *outcome;          /* "success", "failure: ...", "timed out", ...; NULL while waiting */
} sg_tl_attempt_t;

typedef struct sg_tl_step {
    char *name;
    int64_t started_ms, ended_ms;            /* the command side; 0 = not yet */
    int64_t undo_started_ms, undo_ended_ms;  /* the compensation; 0 = not yet */
    sg_tl_attempt_t *attempts;
    size_t nattempts;
} sg_tl_step_t;

typedef struct sg_timeline {
    int64_t start_ms;       /* the first history entry, else the saga's creation */
    int64_t end_ms;         /* the last history entry */
    sg_tl_step_t *steps;    /* the saga's steps, in definition order */
    int nsteps;
} sg_timeline_t;

/* Builds the timeline of 'saga' from its history rows (oldest first).
 * NULL when out of memory. */
sg_timeline_t *sg_timeline_build(const sg_saga_t *saga, const sg_store_history_row_t *rows,
                                 size_t n, int64_t created_ms);
void sg_timeline_destroy(sg_timeline_t *tl);

/* Prints the timeline as a table, one line per attempt, with a bar showing
 * where each attempt lies in the saga's life. */
void sg_timeline_print(const sg_timeline_t *tl, const sg_saga_t *saga, FILE *out);

/* A one-line summary of a history entry's detail for people. Writes into
 * buf. */
void sg_timeline_detail(const char *event, const char *detail, char *buf, size_t size);

#endif
