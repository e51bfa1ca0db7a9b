/* softmax_kernels: every compiler- or platform-specific feature the kernels use, each behind
 * one macro with a portable fallback: inlining, restrict, runtime ISA dispatch, prefetch,
 * streaming stores, OpenMP SIMD directives and the width of long double.
 */
#ifndef SOFTMAX_KERNELS_PORTABILITY_H
#define SOFTMAX_KERNELS_PORTABILITY_H

#include <float.h>
#include <stdint.h>

/* Helpers are forced inline into the dispatched kernels: a helper left out of line would be
 * compiled for the baseline ISA only, whatever clone calls it. */
#if defined(__GNUC__) || defined(__clang__)
#define SK_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define SK_INLINE static __forceinline
#else
#define SK_INLINE static inline
#endif

/* C99's restrict, spelled as each compiler accepts it. */
#if defined(_MSC_VER) && !defined(__clang__)
#define SK_RESTRICT __restrict
#else
#define SK_RESTRICT restrict
#endif

/* Runtime dispatch: GCC builds each block kernel for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 +
 * FMA) and the baseline, and picks one at load time from the CPU (an ifunc, which needs
 * glibc); a portable build thus runs the widest SIMD the machine has. Elsewhere: one build
 * for the compiler's target (SK_NO_DISPATCH forces that). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__) && !defined(SK_NO_DISPATCH)
#define SK_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SK_HAS_DISPATCH 1
#else
#define SK_DISPATCH
#define SK_HAS_DISPATCH 0
#endif

/* The instruction set the block kernels run with on this CPU, for show_config(). */
static inline const char *sk_simd_name(void)
{
#if SK_HAS_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "AVX512 (x86-64-v4)";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "AVX2 (x86-64-v3)";
#endif
#if defined(__AVX512F__)
    return "AVX512";
#elif defined(__AVX2__)
    return "AVX2";
#elif defined(__AVX__)
    return "AVX";
#elif defined(__SSE2__) || defined(_M_X64)
    return "SSE2";
#elif defined(__ARM_NEON) || defined(__aarch64__)
    return "NEON";
#else
    return "none";
#endif
}

/* A hint to fetch memory into the cache ahead of use; it never faults, whatever the address. */
#if defined(__GNUC__) || defined(__clang__)
#define SK_PREFETCH_READ(address) __builtin_prefetch((address), 0)
#define SK_PREFETCH_WRITE(address) __builtin_prefetch((address), 1)
#else
#define SK_PREFETCH_READ(address) ((void)(address))
#define SK_PREFETCH_WRITE(address) ((void)(address))
#endif

/* Asks for the 64-byte lines of [from, from + bytes), to read or to write. */
SK_INLINE void sk_prefetch_lines(uintptr_t from, uintptr_t bytes, int for_writing)
{
    for (uintptr_t line = from / 64 * 64; line < from + bytes; line += 64) {
        if (for_writing)
            SK_PREFETCH_WRITE((const char *)line);
        else
            SK_PREFETCH_READ((const char *)line);
    }
}

/* Non-temporal (streaming) stores: SSE2's 16-byte ones are in every x86-64 CPU, so every
 * dispatched clone may use them; elsewhere the kernels copy plainly. */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define SK_HAVE_STREAM 1
#else
#define SK_HAVE_STREAM 0
#endif

/* Makes a thread's streaming stores visible, in order, before it reports its work done. */
static inline void sk_stream_fence(void)
{
#if SK_HAVE_STREAM
    _mm_sfence();
#endif
}

/* OpenMP SIMD directives (active with -fopenmp or -fopenmp-simd, also in the serial build):
 * a loop's iterations are independent, so the compiler vectorises loops it could not prove
 * safe or would judge unprofitable. Reductions are written out as lane arrays instead of
 * reduction clauses, so that their order is fixed by the code. Ignored elsewhere. */
#if defined(_MSC_VER) && !defined(__clang__)
#define SK_PRAGMA(text) __pragma(text)
#else
#define SK_PRAGMA(text) _Pragma(#text)
#endif
#define SK_SIMD SK_PRAGMA(omp simd)

/* Whether long double has more digits than double (x86-64 Linux: 64 against 53): extreme rows
 * of double data are then computed in it; where it has not (MSVC, aarch64 macOS), in double. */
#if LDBL_MANT_DIG > DBL_MANT_DIG
#define SK_HAVE_WIDE_LONG_DOUBLE 1
#else
#define SK_HAVE_WIDE_LONG_DOUBLE 0
#endif

#endif /* SOFTMAX_KERNELS_PORTABILITY_H */
