/* softmax_kernels: LAPACK packed storage of a symmetric K x K matrix (0-based indices),
 * mirrored by src/softmax_kernels/_layout.py.
 *   UPLO='U' (packed_upper) keeps H[i][j], i <= j, at j(j+1)/2 + i: the upper triangle by columns;
 *   UPLO='L' (packed_lower) keeps H[i][j], i >= j, at i + j(2K-j-1)/2: the lower triangle by columns.
 */
#ifndef SOFTMAX_KERNELS_PACKED_H
#define SOFTMAX_KERNELS_PACKED_H

#include "portability.h"
#include "problem.h"

SK_INLINE sk_index sk_packed_upper_index(sk_index i, sk_index j)
{
    return j * (j + 1) / 2 + i;
}

SK_INLINE sk_index sk_packed_lower_index(sk_index i, sk_index j, sk_index n_classes)
{
    return i + j * (2 * n_classes - j - 1) / 2;
}

#endif /* SOFTMAX_KERNELS_PACKED_H */
