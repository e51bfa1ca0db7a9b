/* softmax_kernels: the kernel files of one data type, in dependency order. Included by
 * kernels.h once with SK_REAL = float and once with SK_REAL = double (no include guard). */

#ifndef SK_REAL
#error "stamp_data_type.h is included by kernels.h only"
#endif

#include "block_io_impl.h"
#include "short_transpose_impl.h"
#include "stats_impl.h"
#include "labels_impl.h"
#include "short_hessian_impl.h"
#include "short_hvp_impl.h"

/* The row-by-row outputs, in double arithmetic, and in long double for the extreme rows of
 * double data where long double is wider. */
#define SK_MATH double
#define SK_MNAME(name) SK_NAME(name##_md)
#include "row_outputs_impl.h"
#undef SK_MATH
#undef SK_MNAME
#if SK_IS_DOUBLE && SK_HAVE_WIDE_LONG_DOUBLE
#define SK_MATH long double
#define SK_MNAME(name) SK_NAME(name##_ml)
#include "row_outputs_impl.h"
#undef SK_MATH
#undef SK_MNAME
#endif

/* The wider type of extreme rows: long double for double data where it is wider, else double. */
#if SK_IS_DOUBLE && SK_HAVE_WIDE_LONG_DOUBLE
#define SK_WIDE long double
#define SK_WIDE_NAME(name) SK_NAME(name##_ml)
#define SK_WIDE_EXP expl
#define SK_WIDE_LOG1P log1pl
#else
#define SK_WIDE double
#define SK_WIDE_NAME(name) SK_NAME(name##_md)
#define SK_WIDE_EXP sk_exp_d
#define SK_WIDE_LOG1P sk_log1p_d
#endif

#include "entry_points_impl.h"
#include "hessian_sum_impl.h"
#include "feature_pairs_impl.h"

#undef SK_WIDE
#undef SK_WIDE_NAME
#undef SK_WIDE_EXP
#undef SK_WIDE_LOG1P
