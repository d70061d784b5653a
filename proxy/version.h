/*
 * version: moat's version and the versions of the libraries it was built
 * and linked with, for -V and the start-up log line.
 */
#ifndef MOAT_VERSION_H
#define MOAT_VERSION_H

#include <stdio.h>

void version_print(FILE *out);

#endif
