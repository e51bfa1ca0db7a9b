/* softmax_kernels: tile transpositions of blocks of short rows through registers (x86-64 Linux).
 *
 * The short-row kernels (K <= 16 classes) transpose each block of rows to columns of
 * classes and back. Here a tile of rows goes through registers instead of a load and a store
 * per value: 16 float rows (8 double rows, in two halves of 8 classes for K > 8) are loaded
 * one vector per row, transposed in-register (64 shuffles for 16 x 16 floats, 24 for 8 x 8
 * doubles) and stored one vector per column; the way back loads columns and stores rows. A
 * row's vector is longer than the row and reaches into the next rows: that is harmless inside
 * the block (loads read the block's own values; stores go in row order, so each row's spill
 * is overwritten by the next row's store), and where it would pass the block's end a masked
 * load or store, which touches no byte outside its mask, is used.
 *
 * Float rows also have AVX2 tiles, for CPUs without AVX-512: 8 x 8 transposes with plain
 * loads and stores only, so a block's last tile, where a vector would pass the block's end,
 * is left to the element-wise loops. Measurements: docs/performance-notes.md, "Tile
 * transpositions".
 *
 * These functions are compiled for AVX-512F or AVX2 alone (a target attribute), outside the
 * dispatched versions, and called only where the CPU has that extension: at compile time in a
 * build for such a CPU, else after a run-time check (sk_rows_to_columns_tiles_f and the like
 * pick the widest). Other compilers and systems keep the element-wise transpositions of
 * short_transpose_impl.h, and so do builds with -DSK_NO_SIMD_TRANSPOSE;
 * -DSK_NO_AVX512_TRANSPOSE leaves out the AVX-512 tiles only (tools/isa_builds.sh uses both,
 * to test each path on an AVX-512 machine).
 */
#ifndef SOFTMAX_KERNELS_TRANSPOSE_X86_H
#define SOFTMAX_KERNELS_TRANSPOSE_X86_H

#include "block.h"
#include "portability.h"

/* Where functions may have instruction sets of their own and the CPU can be asked
 * (SK_HAVE_CPU_FEATURES, portability.h); other systems keep the element-wise transpositions. */
#if SK_HAVE_CPU_FEATURES && !defined(SK_NO_SIMD_TRANSPOSE)
#define SK_TILE_TRANSPOSE 1
#include <immintrin.h>

#define SK_AVX512 SK_TARGET("avx512f")
#define SK_AVX2 SK_TARGET("avx2")

/* The smallest K the tiles are used for: below it the element-wise transpositions, which
 * the compiler turns into whole-vector shuffles for K <= 4, are as fast or faster
 * (docs/performance-notes.md, "SK_TILE_MIN_CLASSES"). */
#define SK_TILE_MIN_CLASSES 5

/* Whether the AVX-512 or AVX2 tiles may run: known at compile time where the build targets
 * the extension, else asked of the CPU (a load of a flag libgcc set at start-up). */
SK_INLINE int sk_have_avx512_tiles(void)
{
#if defined(SK_NO_AVX512_TRANSPOSE)
    return 0;
#elif defined(__AVX512F__)
    return 1;
#else
    return SK_CPU_SUPPORTS("avx512f");
#endif
}

SK_INLINE int sk_have_avx2_tiles(void)
{
#ifdef __AVX2__
    return 1;
#else
    return SK_CPU_SUPPORTS("avx2");
#endif
}

#define SK_AVX512_INLINE SK_AVX512 SK_INLINE

/* One vector of a row that starts at p; only its `lanes` where the vector would pass `end`
 * (compared as a distance: a pointer past the array's end is not to be formed). */
SK_AVX512_INLINE __m512 sk_load_row_ps(const float *p, const float *end, __mmask16 lanes)
{
    return end - p >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes, p);
}

SK_AVX512_INLINE void sk_store_row_ps(float *p, const float *end, __mmask16 lanes, __m512 x)
{
    if (end - p >= 16)
        _mm512_storeu_ps(p, x);
    else
        _mm512_mask_storeu_ps(p, lanes, x);
}

SK_AVX512_INLINE __m512d sk_load_row_pd(const double *p, const double *end, __mmask8 lanes)
{
    return end - p >= 8 ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(lanes, p);
}

SK_AVX512_INLINE void sk_store_row_pd(double *p, const double *end, __mmask8 lanes, __m512d x)
{
    if (end - p >= 8)
        _mm512_storeu_pd(p, x);
    else
        _mm512_mask_storeu_pd(p, lanes, x);
}

/* In-register transpose of the 16 x 16 floats r[0..15] (lane j of r[i] <-> lane i of r[j]). */
SK_AVX512_INLINE void sk_transpose16x16_ps(__m512 r[16])
{
    __m512 t[16], u[16];
    /* 1: pairs of rows interleaved within 128-bit lanes */
    SK_UNROLL_FULL
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* 2: u[4 g + e], 128-bit lane L, holds element 4 L + e of rows 4 g .. 4 g + 3 */
    SK_UNROLL_FULL
    for (int g = 0; g < 16; g += 4) {
        const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* 3 and 4: lane L of the four groups side by side; 0x88 takes 128-bit lanes 0 and 2 of
     * each source, 0xdd lanes 1 and 3 */
    SK_UNROLL_FULL
    for (int e = 0; e < 4; ++e) {
        const __m512 even_lo = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);
        const __m512 odd_lo = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);
        const __m512 even_hi = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
        const __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
        r[e] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
        r[8 + e] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xdd);
        r[4 + e] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
        r[12 + e] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xdd);
    }
}

/* The same for 8 x 8 doubles, in 128-bit lanes of two (t[2 g + e], lane L, holds element
 * 2 L + e of rows 2 g and 2 g + 1). */
SK_AVX512_INLINE void sk_transpose8x8_pd(__m512d r[8])
{
    __m512d t[8];
    SK_UNROLL_FULL
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    SK_UNROLL_FULL
    for (int e = 0; e < 2; ++e) {
        const __m512d even_lo = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88);
        const __m512d odd_lo = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xdd);
        const __m512d even_hi = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88);
        const __m512d odd_hi = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xdd);
        r[e] = _mm512_shuffle_f64x2(even_lo, even_hi, 0x88);
        r[4 + e] = _mm512_shuffle_f64x2(even_lo, even_hi, 0xdd);
        r[2 + e] = _mm512_shuffle_f64x2(odd_lo, odd_hi, 0x88);
        r[6 + e] = _mm512_shuffle_f64x2(odd_lo, odd_hi, 0xdd);
    }
}

/* columns[k * n_rows + i] = rows[i * K + k] for the whole tiles of 16 rows (K <= 16 a
 * constant where inlined); returns the number of rows done. */
SK_AVX512_INLINE sk_index sk_tiles_to_columns_ps(const float *rows, float *columns, sk_index n_rows,
                                                 sk_index n_classes)
{
    const __mmask16 lanes = (__mmask16)((1u << n_classes) - 1);
    const float *end = rows + n_rows * n_classes;
    sk_index i0 = 0;
    for (; i0 + 16 <= n_rows; i0 += 16) {
        __m512 r[16];
        SK_UNROLL_FULL
        for (int j = 0; j < 16; ++j)
            r[j] = sk_load_row_ps(rows + (i0 + j) * n_classes, end, lanes);
        sk_transpose16x16_ps(r);
        for (sk_index k = 0; k < n_classes; ++k)
            _mm512_storeu_ps(columns + k * n_rows + i0, r[k]);
    }
    return i0;
}

/* rows[i * K + k] = columns[k * n_rows + i], likewise. */
SK_AVX512_INLINE sk_index sk_tiles_to_rows_ps(const float *columns, float *rows, sk_index n_rows,
                                              sk_index n_classes)
{
    const __mmask16 lanes = (__mmask16)((1u << n_classes) - 1);
    const float *end = rows + n_rows * n_classes;
    sk_index i0 = 0;
    for (; i0 + 16 <= n_rows; i0 += 16) {
        __m512 r[16];
        SK_UNROLL_FULL
        for (int k = 0; k < 16; ++k)
            r[k] = k < n_classes ? _mm512_loadu_ps(columns + k * n_rows + i0) : _mm512_setzero_ps();
        sk_transpose16x16_ps(r);
        SK_UNROLL_FULL
        for (int j = 0; j < 16; ++j) /* in row order: see the top of this file */
            sk_store_row_ps(rows + (i0 + j) * n_classes, end, lanes, r[j]);
    }
    return i0;
}

/* The same for doubles in tiles of 8 rows, in halves of 8 classes (first = 0, and 8 for
 * K > 8), each through an 8 x 8 transpose. The lanes of a half that are classes below K: */
SK_AVX512_INLINE __mmask8 sk_half_lanes_pd(sk_index n_classes, sk_index first)
{
    const sk_index count = n_classes - first;
    return (__mmask8)(count >= 8 ? 0xff : count <= 0 ? 0 : (1u << count) - 1);
}

/* Classes first .. first + 7 of the 8 rows from i0 into their columns. */
SK_AVX512_INLINE void sk_half_to_columns_pd(const double *rows, double *columns, sk_index i0, sk_index n_rows,
                                            sk_index n_classes, sk_index first)
{
    const double *end = rows + n_rows * n_classes;
    const __mmask8 lanes = sk_half_lanes_pd(n_classes, first);
    __m512d r[8];
    SK_UNROLL_FULL
    for (int j = 0; j < 8; ++j)
        r[j] = sk_load_row_pd(rows + (i0 + j) * n_classes + first, end, lanes);
    sk_transpose8x8_pd(r);
    for (sk_index k = first; k < n_classes && k < first + 8; ++k)
        _mm512_storeu_pd(columns + k * n_rows + i0, r[k - first]);
}

/* Columns first .. first + 7 (zero past K) of the 8 rows from i0, transposed to rows. */
SK_AVX512_INLINE void sk_half_from_columns_pd(const double *columns, sk_index i0, sk_index n_rows,
                                              sk_index n_classes, sk_index first, __m512d r[8])
{
    SK_UNROLL_FULL
    for (int k = 0; k < 8; ++k)
        r[k] = first + k < n_classes ? _mm512_loadu_pd(columns + (first + k) * n_rows + i0) : _mm512_setzero_pd();
    sk_transpose8x8_pd(r);
}

SK_AVX512_INLINE sk_index sk_tiles_to_columns_pd(const double *rows, double *columns, sk_index n_rows,
                                                 sk_index n_classes)
{
    sk_index i0 = 0;
    for (; i0 + 8 <= n_rows; i0 += 8)
        for (sk_index first = 0; first < n_classes; first += 8)
            sk_half_to_columns_pd(rows, columns, i0, n_rows, n_classes, first);
    return i0;
}

SK_AVX512_INLINE sk_index sk_tiles_to_rows_pd(const double *columns, double *rows, sk_index n_rows,
                                              sk_index n_classes)
{
    const __mmask8 low = sk_half_lanes_pd(n_classes, 0), high = sk_half_lanes_pd(n_classes, 8);
    const double *end = rows + n_rows * n_classes;
    sk_index i0 = 0;
    for (; i0 + 8 <= n_rows; i0 += 8) {
        __m512d r[8], h[8];
        sk_half_from_columns_pd(columns, i0, n_rows, n_classes, 0, r);
        if (n_classes > 8)
            sk_half_from_columns_pd(columns, i0, n_rows, n_classes, 8, h);
        SK_UNROLL_FULL
        for (int j = 0; j < 8; ++j) { /* in row order: see the top of this file */
            double *row = rows + (i0 + j) * n_classes;
            sk_store_row_pd(row, end, low, r[j]);
            if (n_classes > 8)
                sk_store_row_pd(row + 8, end, high, h[j]);
        }
    }
    return i0;
}

/* The tiles of the short-row Hessian (sk_short_hessian_tiles): rows[i * width + q] =
 * tile[q * G + i] for the group's G rows (G = 16 floats or 8 doubles), where the tile
 * holds the group's outputs as columns, G to a vector, padded to a whole number of chunks
 * of G columns. Each chunk goes through one in-register transpose. The chunks go from the
 * last to the first, so that the vector a row's partial last chunk spills into the next
 * row's first chunk is overwritten when that chunk is stored; the last row's spill needs
 * G - 1 values of room past the rows. */
#define SK_HESSIAN_TILE(name, real, vector, G, transpose, load, store)                                 \
    SK_AVX512 static void name(const real *tile, real *rows, sk_index width)                            \
    {                                                                                                  \
        for (sk_index q0 = (width - 1) / G * G; q0 >= 0; q0 -= G) {                                    \
            vector r[G];                                                                               \
            SK_UNROLL_FULL                                                                             \
            for (int t = 0; t < G; ++t)                                                                \
                r[t] = load(tile + (q0 + t) * G);                                                      \
            transpose(r);                                                                              \
            SK_UNROLL_FULL                                                                             \
            for (sk_index i = 0; i < G; ++i) /* in row order */                                        \
                store(rows + i * width + q0, r[i]);                                                    \
        }                                                                                              \
    }
SK_HESSIAN_TILE(sk_hessian_tile_avx512_f, float, __m512, 16, sk_transpose16x16_ps, _mm512_loadu_ps, _mm512_storeu_ps)
SK_HESSIAN_TILE(sk_hessian_tile_avx512_d, double, __m512d, 8, sk_transpose8x8_pd, _mm512_loadu_pd, _mm512_storeu_pd)
#undef SK_HESSIAN_TILE

#define SK_AVX2_INLINE SK_AVX2 SK_INLINE

/* In-register transpose of the 8 x 8 floats r[0..7], in the three stages of
 * sk_transpose16x16_ps within 128-bit lanes (0x44 takes elements 0-1 of each source's
 * lane, 0xee elements 2-3), then the lanes swapped across. */
SK_AVX2_INLINE void sk_transpose8x8_ps(__m256 r[8])
{
    __m256 t[8], u[8];
    SK_UNROLL_FULL
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4 g + e], 128-bit lane L, holds element 4 L + e of rows 4 g .. 4 g + 3 */
    SK_UNROLL_FULL
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
    }
    SK_UNROLL_FULL
    for (int e = 0; e < 4; ++e) {
        r[e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20);
        r[4 + e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31);
    }
}

/* Tiles of 8 float rows, classes 0-7 and, for K > 8, classes 8-15. Only plain loads and
 * stores (AVX2's masked stores are slow on some CPUs): the tiles stop before one whose
 * last row's vectors would pass the block's end. */
SK_AVX2_INLINE int sk_avx2_tile_fits(sk_index i0, sk_index n_rows, sk_index n_classes)
{
    return i0 + 8 <= n_rows && (n_rows - (i0 + 7)) * n_classes >= (n_classes > 8 ? 16 : 8);
}

/* Classes first .. first + 7 of the 8 float rows from i0 into their columns, and back (as
 * sk_half_to_columns_pd and sk_half_from_columns_pd, without masks). */
SK_AVX2_INLINE void sk_half_to_columns_ps8(const float *rows, float *columns, sk_index i0, sk_index n_rows,
                                           sk_index n_classes, sk_index first)
{
    __m256 r[8];
    SK_UNROLL_FULL
    for (int j = 0; j < 8; ++j)
        r[j] = _mm256_loadu_ps(rows + (i0 + j) * n_classes + first);
    sk_transpose8x8_ps(r);
    for (sk_index k = first; k < n_classes && k < first + 8; ++k)
        _mm256_storeu_ps(columns + k * n_rows + i0, r[k - first]);
}

SK_AVX2_INLINE void sk_half_from_columns_ps8(const float *columns, sk_index i0, sk_index n_rows,
                                             sk_index n_classes, sk_index first, __m256 r[8])
{
    SK_UNROLL_FULL
    for (int k = 0; k < 8; ++k)
        r[k] = first + k < n_classes ? _mm256_loadu_ps(columns + (first + k) * n_rows + i0) : _mm256_setzero_ps();
    sk_transpose8x8_ps(r);
}

SK_AVX2_INLINE sk_index sk_tiles_to_columns_ps8(const float *rows, float *columns, sk_index n_rows,
                                                sk_index n_classes)
{
    sk_index i0 = 0;
    for (; sk_avx2_tile_fits(i0, n_rows, n_classes); i0 += 8)
        for (sk_index first = 0; first < n_classes; first += 8)
            sk_half_to_columns_ps8(rows, columns, i0, n_rows, n_classes, first);
    return i0;
}

SK_AVX2_INLINE sk_index sk_tiles_to_rows_ps8(const float *columns, float *rows, sk_index n_rows,
                                             sk_index n_classes)
{
    sk_index i0 = 0;
    for (; sk_avx2_tile_fits(i0, n_rows, n_classes); i0 += 8) {
        __m256 r[8], h[8];
        sk_half_from_columns_ps8(columns, i0, n_rows, n_classes, 0, r);
        if (n_classes > 8)
            sk_half_from_columns_ps8(columns, i0, n_rows, n_classes, 8, h);
        SK_UNROLL_FULL
        for (int j = 0; j < 8; ++j) { /* in row order: see the top of this file */
            float *row = rows + (i0 + j) * n_classes;
            _mm256_storeu_ps(row, r[j]);
            if (n_classes > 8)
                _mm256_storeu_ps(row + 8, h[j]);
        }
    }
    return i0;
}

/* The entry points, for 1 <= K <= SK_SMALL_CLASSES: one tile loop compiled per K. Each
 * returns the number of rows it transposed, a multiple of the tile's rows; the caller
 * does the rest of the block element-wise. */
#define SK_TILE_ENTRY(name, target, tiles, real)                                                  \
    target static sk_index name(const real *from, real *to, sk_index n_rows, sk_index n_classes)   \
    {                                                                                               \
        switch (n_classes) {                                                                        \
            SK_EACH_SHORT_K(SK_TILE_CASE_##tiles)                                                   \
        }                                                                                           \
        return 0;                                                                                   \
    }
#define SK_TILE_CASE_tiles_to_columns_ps(K) case K: return sk_tiles_to_columns_ps(from, to, n_rows, K);
#define SK_TILE_CASE_tiles_to_rows_ps(K) case K: return sk_tiles_to_rows_ps(from, to, n_rows, K);
#define SK_TILE_CASE_tiles_to_columns_pd(K) case K: return sk_tiles_to_columns_pd(from, to, n_rows, K);
#define SK_TILE_CASE_tiles_to_rows_pd(K) case K: return sk_tiles_to_rows_pd(from, to, n_rows, K);
#define SK_TILE_CASE_tiles_to_columns_ps8(K) case K: return sk_tiles_to_columns_ps8(from, to, n_rows, K);
#define SK_TILE_CASE_tiles_to_rows_ps8(K) case K: return sk_tiles_to_rows_ps8(from, to, n_rows, K);
SK_TILE_ENTRY(sk_rows_to_columns_avx512_f, SK_AVX512, tiles_to_columns_ps, float)
SK_TILE_ENTRY(sk_columns_to_rows_avx512_f, SK_AVX512, tiles_to_rows_ps, float)
SK_TILE_ENTRY(sk_rows_to_columns_avx512_d, SK_AVX512, tiles_to_columns_pd, double)
SK_TILE_ENTRY(sk_columns_to_rows_avx512_d, SK_AVX512, tiles_to_rows_pd, double)
SK_TILE_ENTRY(sk_rows_to_columns_avx2_f, SK_AVX2, tiles_to_columns_ps8, float)
SK_TILE_ENTRY(sk_columns_to_rows_avx2_f, SK_AVX2, tiles_to_rows_ps8, float)

/* The widest tiles the CPU runs, for K >= SK_TILE_MIN_CLASSES; the number of rows done. */
SK_INLINE sk_index sk_rows_to_columns_tiles_f(const float *rows, float *columns, sk_index n_rows, sk_index n_classes)
{
    if (n_classes < SK_TILE_MIN_CLASSES)
        return 0;
    if (sk_have_avx512_tiles())
        return sk_rows_to_columns_avx512_f(rows, columns, n_rows, n_classes);
    return sk_have_avx2_tiles() ? sk_rows_to_columns_avx2_f(rows, columns, n_rows, n_classes) : 0;
}

SK_INLINE sk_index sk_columns_to_rows_tiles_f(const float *columns, float *rows, sk_index n_rows, sk_index n_classes)
{
    if (n_classes < SK_TILE_MIN_CLASSES)
        return 0;
    if (sk_have_avx512_tiles())
        return sk_columns_to_rows_avx512_f(columns, rows, n_rows, n_classes);
    return sk_have_avx2_tiles() ? sk_columns_to_rows_avx2_f(columns, rows, n_rows, n_classes) : 0;
}

/* Doubles have AVX-512 tiles only. */
SK_INLINE sk_index sk_rows_to_columns_tiles_d(const double *rows, double *columns, sk_index n_rows,
                                              sk_index n_classes)
{
    return n_classes >= SK_TILE_MIN_CLASSES && sk_have_avx512_tiles()
               ? sk_rows_to_columns_avx512_d(rows, columns, n_rows, n_classes)
               : 0;
}

SK_INLINE sk_index sk_columns_to_rows_tiles_d(const double *columns, double *rows, sk_index n_rows,
                                              sk_index n_classes)
{
    return n_classes >= SK_TILE_MIN_CLASSES && sk_have_avx512_tiles()
               ? sk_columns_to_rows_avx512_d(columns, rows, n_rows, n_classes)
               : 0;
}

#undef SK_TILE_ENTRY
#undef SK_TILE_CASE_tiles_to_columns_ps
#undef SK_TILE_CASE_tiles_to_rows_ps
#undef SK_TILE_CASE_tiles_to_columns_pd
#undef SK_TILE_CASE_tiles_to_rows_pd
#undef SK_TILE_CASE_tiles_to_columns_ps8
#undef SK_TILE_CASE_tiles_to_rows_ps8
#undef SK_AVX2_INLINE
#undef SK_AVX512_INLINE
#undef SK_AVX2
#undef SK_AVX512
#endif

#endif /* SOFTMAX_KERNELS_TRANSPOSE_X86_H */
