/* The outcome a participant reports in a reply ("outcome" attribute), shared
 * by the message codec and the engine. */
#ifndef SAGA_OUTCOME_H
#define SAGA_OUTCOME_H

typedef enum sg_outcome {
    SG_OUTCOME_NONE = 0, /* not a reply */
    SG_OUTCOME_SUCCESS = 1,
    SG_OUTCOME_FAILURE = 2,
} sg_outcome_t;

#endif
