/* softmax_kernels: every compiler- or platform-specific feature the kernels use, each behind
 * one macro with a portable fallback: inlining, restrict, per-function instruction sets and
 * the CPU's features, runtime ISA dispatch, prefetch, streaming stores, OpenMP SIMD directives
 * and the width of long double.
 */
#ifndef SOFTMAX_KERNELS_PORTABILITY_H
#define SOFTMAX_KERNELS_PORTABILITY_H

#include <float.h>
#include <stdint.h>

/* Helpers are forced inline into the dispatched kernels: a helper left out of line would be
 * compiled for the baseline ISA only, whatever version calls it. */
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

/* Instruction sets per function, and the CPU's answer (x86-64 Linux with GCC or clang, whose
 * runtime libraries answer __builtin_cpu_supports there, glibc or musl alike). Elsewhere no
 * function has an instruction set of its own and SK_CPU_SUPPORTS is 0. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && defined(__linux__)
#define SK_HAVE_CPU_FEATURES 1
#define SK_TARGET(features) __attribute__((target(features)))
#define SK_CPU_SUPPORTS(feature) __builtin_cpu_supports(feature)
#else
#define SK_HAVE_CPU_FEATURES 0
#define SK_TARGET(features)
#define SK_CPU_SUPPORTS(feature) 0
#endif

/* Runtime ISA dispatch: each block kernel is compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 +
 * FMA) and the baseline, and the lookups hand out the widest version this CPU runs. Versions
 * chosen through function pointers rather than target_clones: clang 14's target_clones takes
 * one feature per version and cannot resolve "arch=x86-64-v4", and ifuncs need glibc. Elsewhere
 * (or with SK_NO_DISPATCH): one build for the compiler's target. */
#if SK_HAVE_CPU_FEATURES && (defined(__clang__) || __GNUC__ >= 12) && !defined(SK_NO_DISPATCH)
#define SK_HAS_DISPATCH 1
#if defined(__clang__)
/* clang 14's __builtin_cpu_supports knows no ISA levels by name: each version is compiled for
 * the features of its level that clang can test, and those are what is tested (avx512f also
 * brings f16c, which every AVX-512 CPU has). */
#define SK_TARGET_X86_64_V4 SK_TARGET("avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,bmi,bmi2,fma")
#define SK_TARGET_X86_64_V3 SK_TARGET("avx2,bmi,bmi2,fma")
#define SK_CPU_IS_X86_64_V3()                                                                         \
    (SK_CPU_SUPPORTS("avx2") && SK_CPU_SUPPORTS("bmi") && SK_CPU_SUPPORTS("bmi2") && SK_CPU_SUPPORTS("fma"))
#define SK_CPU_IS_X86_64_V4()                                                                         \
    (SK_CPU_IS_X86_64_V3() && SK_CPU_SUPPORTS("avx512f") && SK_CPU_SUPPORTS("avx512bw") &&                \
     SK_CPU_SUPPORTS("avx512cd") && SK_CPU_SUPPORTS("avx512dq") && SK_CPU_SUPPORTS("avx512vl"))
#else
#define SK_TARGET_X86_64_V4 SK_TARGET("arch=x86-64-v4")
#define SK_TARGET_X86_64_V3 SK_TARGET("arch=x86-64-v3")
#define SK_CPU_IS_X86_64_V4() SK_CPU_SUPPORTS("x86-64-v4")
#define SK_CPU_IS_X86_64_V3() SK_CPU_SUPPORTS("x86-64-v3")
#endif
#else
#define SK_HAS_DISPATCH 0
#endif

typedef enum { SK_ISA_BASELINE = 0, SK_ISA_X86_64_V3 = 1, SK_ISA_X86_64_V4 = 2 } sk_isa;

/* The widest version of the block kernels this CPU runs (a few loads of flags the runtime
 * library set at start-up). */
static inline sk_isa sk_isa_level(void)
{
#if SK_HAS_DISPATCH
    __builtin_cpu_init();
    if (SK_CPU_IS_X86_64_V4())
        return SK_ISA_X86_64_V4;
    if (SK_CPU_IS_X86_64_V3())
        return SK_ISA_X86_64_V3;
#endif
    return SK_ISA_BASELINE;
}

#define SK_CAT_EXPANDED(a, b) a##b
#define SK_CAT(a, b) SK_CAT_EXPANDED(a, b)

/* A dispatched function `name` of type `type`, parameters `params` (in parentheses), whose
 * code is the always-inline function `body`, called with `args` (in parentheses): its versions
 * name_x86_64_v4, name_x86_64_v3 and name_baseline (the latter alone without dispatch),
 * name_for_cpu(), the widest version this CPU runs, and `name`, which calls that version.
 * `result` is `return` for a value, empty for void. */
#if SK_HAS_DISPATCH
#define SK_DISPATCHED_VERSIONS(type, result, name, body, params, args)                                  \
    SK_TARGET_X86_64_V4 static type SK_CAT(name, _x86_64_v4) params { result body args; }            \
    SK_TARGET_X86_64_V3 static type SK_CAT(name, _x86_64_v3) params { result body args; }            \
    static type SK_CAT(name, _baseline) params { result body args; }                                   \
    static inline type (*SK_CAT(name, _for_cpu)(void)) params                                          \
    {                                                                                                   \
        switch (sk_isa_level()) {                                                                       \
        case SK_ISA_X86_64_V4:                                                                          \
            return SK_CAT(name, _x86_64_v4);                                                            \
        case SK_ISA_X86_64_V3:                                                                          \
            return SK_CAT(name, _x86_64_v3);                                                            \
        default:                                                                                        \
            return SK_CAT(name, _baseline);                                                             \
        }                                                                                               \
    }                                                                                                   \
    static inline type name params { result SK_CAT(name, _for_cpu)() args; }
#else
#define SK_DISPATCHED_VERSIONS(type, result, name, body, params, args)                                  \
    static type SK_CAT(name, _baseline) params { result body args; }                                   \
    static inline type (*SK_CAT(name, _for_cpu)(void)) params { return SK_CAT(name, _baseline); }    \
    static inline type name params { result SK_CAT(name, _baseline) args; }
#endif
#define SK_DISPATCHED(name, body, params, args) SK_DISPATCHED_VERSIONS(void, , name, body, params, args)
#define SK_DISPATCHED_RETURNING(type, name, body, params, args)                                          \
    SK_DISPATCHED_VERSIONS(type, return, name, body, params, args)

/* The instruction set the block kernels run with on this CPU, for show_config(). */
static inline const char *sk_simd_name(void)
{
    switch (sk_isa_level()) {
    case SK_ISA_X86_64_V4:
        return "AVX512 (x86-64-v4)";
    case SK_ISA_X86_64_V3:
        return "AVX2 (x86-64-v3)";
    default:
        break;
    }
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
 * dispatched version may use them; elsewhere the kernels copy plainly. */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define SK_HAVE_STREAM 1
#else
#define SK_HAVE_STREAM 0
#endif

/* 16 bytes from src (any alignment) stored to dst (16-byte aligned) bypassing the caches
 * where SK_HAVE_STREAM, else plainly. */
SK_INLINE void sk_stream16_d(double *dst, const double *src)
{
#if SK_HAVE_STREAM
    _mm_stream_pd(dst, _mm_loadu_pd(src));
#else
    dst[0] = src[0];
    dst[1] = src[1];
#endif
}

SK_INLINE void sk_stream16_f(float *dst, const float *src)
{
#if SK_HAVE_STREAM
    _mm_stream_ps(dst, _mm_loadu_ps(src));
#else
    for (int i = 0; i < 4; ++i)
        dst[i] = src[i];
#endif
}

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
/* Emitted where it is understood: OpenMP 4.0 or later (MSVC's /openmp is 2.0), or a build that
 * passes -fopenmp-simd and says so with SK_OPENMP_SIMD (no macro tells that flag apart). */
#if (defined(_OPENMP) && _OPENMP >= 201307) || defined(SK_OPENMP_SIMD)
#define SK_SIMD SK_PRAGMA(omp simd)
#else
#define SK_SIMD
#endif
/* SK_SIMD for a loop over one vector's worth of lanes (a constant count) that clang, which
 * unrolls such loops fully before its loop vectoriser runs, would leave partly scalar: kept
 * rolled there (compensated lanes, Hessian tiles; docs/performance-notes.md, "lane arrays"),
 * unless the build limits that unrolling (setup.py's SK_LANE_LOOPS_VECTORISED). */
#if defined(__clang__) && !defined(SK_LANE_LOOPS_VECTORISED)
#define SK_SIMD_LANES SK_SIMD SK_PRAGMA(clang loop unroll(disable))
#else
#define SK_SIMD_LANES SK_SIMD
#endif
/* The number of elements clang puts in a loop's vectors where it would otherwise size them by the
 * loop's widest type (a loop of floats adding to doubles then runs half-width vectors of floats;
 * docs/performance-notes.md, "lane arrays"). Ignored by other compilers. */
#if defined(__clang__)
#define SK_CLANG_VECTOR_WIDTH(n) SK_PRAGMA(clang loop vectorize_width(n))
#else
#define SK_CLANG_VECTOR_WIDTH(n)
#endif
/* A lane array aligned to one 64-byte vector: where the compiler keeps it in memory between
 * loops, its vector stores and reloads then stay within one cache line, so the reloads are
 * forwarded from the stores instead of waiting for them (docs/performance-notes.md, "lane arrays"). */
#if defined(_MSC_VER)
#define SK_LANE_ALIGNED __declspec(align(64))
#elif defined(__GNUC__)
#define SK_LANE_ALIGNED __attribute__((aligned(64)))
#else
#define SK_LANE_ALIGNED
#endif
/* A loop of a small constant count over an array of vector registers (the tile transposes),
 * which stays in registers only unrolled: clang builds that limit unrolling need telling. */
#if defined(__clang__)
#define SK_UNROLL_FULL SK_PRAGMA(clang loop unroll(full))
#else
#define SK_UNROLL_FULL
#endif
/* A vectorised loop of short, varying counts (the columns of a packed Hessian, a short row),
 * whose remainder would take most of its values: clang runs the remainder as one masked vector
 * where the instruction set has masked stores, not one value at a time. Clang only: GCC builds
 * were not slower there (docs/performance-notes.md, "masked remainders"). */
#if defined(__clang__)
#define SK_MASKED_TAIL SK_PRAGMA(clang loop vectorize_predicate(enable))
#else
#define SK_MASKED_TAIL
#endif
/* clang masks every iteration of such a loop, so a loop that may run long (the packed upper
 * Hessian's columns) does whole chunks of SK_MASKED_TAIL_CHUNK values unmasked first; 0 (no
 * chunks) where the remainder is not masked. */
#if defined(__clang__)
#define SK_MASKED_TAIL_CHUNK 16
#else
#define SK_MASKED_TAIL_CHUNK 0
#endif

/* Whether long double has more digits than double (x86-64 Linux: 64 against 53): extreme rows
 * of double data are then computed in it; where it has not (MSVC, aarch64 macOS), in double. */
#if LDBL_MANT_DIG > DBL_MANT_DIG
#define SK_HAVE_WIDE_LONG_DOUBLE 1
#else
#define SK_HAVE_WIDE_LONG_DOUBLE 0
#endif

#endif /* SOFTMAX_KERNELS_PORTABILITY_H */
