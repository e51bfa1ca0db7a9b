/* OpenMP entry points that also compile without OpenMP (the serial build). */
#ifndef SOFTMAX_KERNELS_OPENMP_SHIM_H
#define SOFTMAX_KERNELS_OPENMP_SHIM_H

#ifdef _OPENMP
#include <omp.h>
static inline int sk_openmp_enabled(void) { return 1; }
static inline int sk_max_threads(void) { return omp_get_max_threads(); }
/* Threads of the team running the caller now: 1 outside a parallel region, and 1 in a
 * region nested in another one that OpenMP ran on a single thread. */
static inline int sk_team_threads(void) { return omp_get_num_threads(); }
#else
static inline int sk_openmp_enabled(void) { return 0; }
static inline int sk_max_threads(void) { return 1; }
static inline int sk_team_threads(void) { return 1; }
#endif

#endif /* SOFTMAX_KERNELS_OPENMP_SHIM_H */
