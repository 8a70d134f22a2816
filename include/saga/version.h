/* The version of sagad, sagactl and libsaga. */
#ifndef SAGA_VERSION_H
#define SAGA_VERSION_H
const char *sg_version(void);
#endif
