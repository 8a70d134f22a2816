/* The version string the programs print with --version. */
#include "saga/version.h"

const char *sg_version(void) { return "0.1.0"; }
