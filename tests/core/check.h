/*
 * A few assertion macros for the core's C unit tests: no framework, no
 * Lua. A failed check prints where and what, and the test exits 1.
 */
#ifndef PAR_TEST_CHECK_H
#define PAR_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

static int checks_run;

#define CHECK(cond) do { checks_run++; if (!(cond)) { \
  fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); checks_run++; \
  if (a_ != b_) { fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
    __FILE__, __LINE__, #a, a_, #b, b_); exit(1); } } while (0)
#define DONE(name) do { printf("%s: %d checks passed\n", name, checks_run); return 0; } while (0)

#endif
