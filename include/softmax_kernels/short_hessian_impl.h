/* softmax_kernels, stamped per data type: the Hessian and its diagonal for short rows
 * (K <= SK_SMALL_CLASSES) without dense targets, computed from the block held as columns
 * (stats_impl.h): row by row, or in tiles of rows where the CPU has AVX-512. The steps of
 * sk_write_hessian (row_outputs_impl.h) run here across the block's rows, with the same
 * formulas in the same order.
 */

#ifndef SK_REAL
#error "short_hessian_impl.h is stamped by kernels.h only"
#endif

/* The rows of a group of the short-row Hessian's tiles: one 64-byte vector of values. */
#define SK_HESSIAN_GROUP (64 / (sk_index)sizeof(SK_REAL))

SK_INLINE int SK_NAME(sk_is_short_sparse_call)(const sk_problem *pb)
{
    return pb->n_classes <= SK_SMALL_CLASSES &&
           (pb->target_kind == SK_TARGET_NONE ||
            (pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0));
}

#if SK_TILE_TRANSPOSE
/* Rows of at most this many Hessian values are computed in tiles where the CPU has AVX-512
 * (docs/performance-notes.md, "SK_HESSIAN_TILE_MAX_WIDTH"). */
#define SK_HESSIAN_TILE_MAX_WIDTH (SK_IS_DOUBLE ? 78 : 120)
SK_INLINE int SK_NAME(sk_hessian_in_tiles)(const sk_problem *pb)
{
    return pb->hessian && pb->hessian_width <= SK_HESSIAN_TILE_MAX_WIDTH && sk_have_avx512_tiles();
}
#else
SK_INLINE int SK_NAME(sk_hessian_in_tiles)(const sk_problem *pb)
{
    (void)pb;
    return 0;
}
#endif

/* c per row (w without targets, c_excl + a_p with labels) and, where argmax is not NULL,
 * the arg-max p of sk_target_outputs: the label where it is a maximum, else the first
 * (blk->first_argmax). With labels it uses blk->row_sums for y and z_y, so no caller may
 * keep anything there across it. */
SK_INLINE void SK_NAME(sk_short_coefficients)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                              const sk_block *blk, double *coef, double *argmax)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row_begin, n_classes);
    const double *row_max = blk->row_max;
    SK_NAME(sk_row_weights)(pb, row_begin, n_rows, coef);
    if (argmax)
        memcpy(argmax, blk->first_argmax, (size_t)n_rows * sizeof(double));
    if (pb->target_kind == SK_TARGET_LABELS) {
        /* y and z_y, gathered by a loop of their own (see sk_label_coefficients) */
        double *label = blk->row_sums, *label_logit = blk->row_sums + n_rows;
        for (sk_index i = 0; i < n_rows; ++i) {
            const sk_index y = SK_NAME(sk_usable_label)(pb, row_begin + i);
            label[i] = (double)y;
            label_logit[i] = (double)z[i * n_classes + y];
        }
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const int label_is_max = label_logit[i] == row_max[i];
            const double alpha = coef[i] * pb->one_minus_eps;
            coef[i] = SK_NAME(sk_label_c)(alpha, label_is_max);
            if (argmax)
                argmax[i] = label_is_max ? label[i] : argmax[i];
        }
    }
}

/* s_k, -c s_k and the diagonal (c s_k)(1 - s_k) of one row and class, from e_k, whether
 * z_k = m, T and c: the formulas of sk_write_hessian, 1 - s_k as sk_one_minus_s (one
 * division: the same quotient either way). */
SK_INLINE void SK_NAME(sk_short_factors)(double e_k, int at_max, double sum_excl, double c, double *s,
                                         double *minus_cs, double *diag)
{
    const double sum = 1.0 + sum_excl;
    const double one_minus_s = (at_max ? sum_excl : sum - e_k) / sum;
    *s = e_k / sum;
    *minus_cs = -(c * *s);
    *diag = (c * *s) * one_minus_s;
}

/* ---- the Hessian row by row ------------------------------------------------------------- */

/* The factors of one row for its first `count` classes, from its e, z, m, T and c. */
SK_INLINE void SK_NAME(sk_hessian_factors)(const SK_REAL *e, const SK_REAL *z, sk_index count, double m,
                                           double sum_excl, double c, double *s, double *minus_cs, double *diag)
{
    SK_SIMD
    for (sk_index k = 0; k < count; ++k)
        SK_NAME(sk_short_factors)((double)e[k], (double)z[k] == m, sum_excl, c, &s[k], &minus_cs[k], &diag[k]);
}

/* One segment of a row's Hessian: `lanes` values (a constant) computed and stored from out on.
 * H_ab = -(c s_max(a,b)) s_min(a,b): packed upper holds H[a][j] for a <= j, packed lower
 * H[a][j] for a >= j; the lanes past them are overwritten later. */
SK_INLINE void SK_NAME(sk_short_hessian_segment)(SK_REAL *out, sk_index j, int layout, sk_index lanes,
                                                 const double *s, const double *minus_cs)
{
    const double minus_cs_j = minus_cs[j], s_j = s[j];
    if (layout == SK_LAYOUT_PACKED_UPPER) {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(minus_cs_j * s[t]);
    } else if (layout == SK_LAYOUT_PACKED_LOWER) {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(minus_cs[j + t] * s_j);
    } else {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(t > j ? minus_cs[t] * s_j : minus_cs_j * s[t]);
    }
}

/* One row's Hessian h (`width` values in the layout) from its s, -c s (2 SK_SMALL_CLASSES
 * lanes each; those past K hold values of no meaning) and diagonal. The part of the layout
 * that holds matrix column j (a segment) is computed as a vector of SK_SMALL_CLASSES lanes,
 * or half as many where it fits (docs/performance-notes.md, "short-row Hessian segments"),
 * and stored whole: lanes past the segment land on later segments of the row, stored
 * afterwards; a segment that would pass the row's end goes through `lanes`. */
SK_INLINE void SK_NAME(sk_short_hessian_row)(SK_REAL *h, sk_index n_classes, sk_index width, int layout,
                                             const double *s, const double *minus_cs, const double *diag,
                                             SK_REAL *lanes)
{
    for (sk_index j = 0; j < n_classes; ++j) {
        /* The segment holds H[first + t][j], t < count, at offset + t. */
        sk_index first = 0, count = n_classes, offset = j * n_classes; /* full: row j */
        if (layout == SK_LAYOUT_PACKED_UPPER)
            count = j + 1, offset = sk_packed_upper_index(0, j);
        else if (layout == SK_LAYOUT_PACKED_LOWER)
            first = j, count = n_classes - j, offset = sk_packed_lower_index(j, j, n_classes);
        const sk_index vector = count <= SK_SMALL_CLASSES / 2 ? SK_SMALL_CLASSES / 2 : SK_SMALL_CLASSES;
        const int whole = offset + vector <= width;
        SK_REAL *out = whole ? h + offset : lanes;
        if (vector == SK_SMALL_CLASSES / 2)
            SK_NAME(sk_short_hessian_segment)(out, j, layout, SK_SMALL_CLASSES / 2, s, minus_cs);
        else
            SK_NAME(sk_short_hessian_segment)(out, j, layout, SK_SMALL_CLASSES, s, minus_cs);
        out[j - first] = (SK_REAL)diag[j];
        if (!whole)
            for (sk_index t = 0; t < count; ++t)
                h[offset + t] = lanes[t];
    }
}

/* Where the row-by-row Hessian works: one row's factors, and a segment's lanes. */
typedef struct {
    double *coef;     /* c per row */
    double *s;        /* 2 SK_SMALL_CLASSES lanes */
    double *minus_cs; /* 2 SK_SMALL_CLASSES lanes */
    double *diag;     /* SK_SMALL_CLASSES lanes */
    SK_REAL *lanes;   /* SK_SMALL_CLASSES values */
} SK_NAME(sk_hessian_rows_scratch);

SK_INLINE SK_NAME(sk_hessian_rows_scratch) SK_NAME(sk_hessian_rows_view)(const sk_block *blk, sk_index n_rows)
{
    SK_NAME(sk_hessian_rows_scratch) view;
    view.coef = sk_row_values(blk, 0, n_rows);
    view.s = blk->short_work;
    view.minus_cs = view.s + 2 * SK_SMALL_CLASSES;
    view.diag = view.minus_cs + 2 * SK_SMALL_CLASSES;
    view.lanes = (SK_REAL *)(view.diag + SK_SMALL_CLASSES);
    return view;
}

/* One valid row's factors, over all SK_SMALL_CLASSES lanes where they stay inside the
 * block's logits and exp values (every row but the block's last one or few; never the next
 * block's logits, which another thread may be overwriting with its gradient): the lanes past
 * K read the next row's values and land in output lanes that are overwritten or dropped
 * (docs/performance-notes.md, "short-row Hessian factors"). */
SK_INLINE void SK_NAME(sk_short_row_factors)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                             const sk_block *blk, sk_index i,
                                             const SK_NAME(sk_hessian_rows_scratch) *work)
{
    const sk_index n_classes = pb->n_classes, row = row_begin + i;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    const SK_REAL *e_row = (const SK_REAL *)blk->strip + i * n_classes;
    const double sum_excl = blk->sum_excl[i], c = work->coef[i], m = blk->row_max[i];
    /* i K + 16 <= n_rows K, spelled with the row (docs/performance-notes.md). */
    if ((row + 1) * n_classes + (SK_SMALL_CLASSES - n_classes) <= (row_begin + n_rows) * n_classes)
        SK_NAME(sk_hessian_factors)(e_row, z, SK_SMALL_CLASSES, m, sum_excl, c, work->s, work->minus_cs, work->diag);
    else
        SK_NAME(sk_hessian_factors)(e_row, z, n_classes, m, sum_excl, c, work->s, work->minus_cs, work->diag);
}

/* The Hessian (any layout) and its diagonal, row by row with fixed-width vectors (where the
 * tiles do not run); each row's exp values come from the strip. */
SK_INLINE void SK_NAME(sk_short_hessian_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                              const sk_block *blk)
{
    const sk_index n_classes = pb->n_classes, width = pb->hessian_width;
    const SK_NAME(sk_hessian_rows_scratch) work = SK_NAME(sk_hessian_rows_view)(blk, n_rows);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, work.coef, NULL);
    for (sk_index k = 0; k < 2 * SK_SMALL_CLASSES; ++k) /* lanes past SK_SMALL_CLASSES stay zero */
        work.s[k] = work.minus_cs[k] = 0.0;
    for (sk_index i = 0; i < n_rows; ++i) {
        if (blk->status[i] != SK_ROW_VALID)
            continue;
        const sk_index row = row_begin + i;
        SK_NAME(sk_short_row_factors)(pb, row_begin, n_rows, blk, i, &work);
        if (pb->hessian_diagonal) {
            SK_REAL *hd = SK_ROW(pb->hessian_diagonal, row, n_classes);
            for (sk_index k = 0; k < n_classes; ++k)
                hd[k] = (SK_REAL)work.diag[k];
        }
        if (!pb->hessian)
            continue;
        SK_REAL *h = SK_ROW(pb->hessian, row, width);
        /* The layout a constant in each call, so that the segment loop has no branches on it. */
        if (pb->layout == SK_LAYOUT_PACKED_UPPER)
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_PACKED_UPPER, work.s, work.minus_cs,
                                          work.diag, work.lanes);
        else if (pb->layout == SK_LAYOUT_PACKED_LOWER)
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_PACKED_LOWER, work.s, work.minus_cs,
                                          work.diag, work.lanes);
        else
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_FULL, work.s, work.minus_cs, work.diag,
                                          work.lanes);
    }
}

/* ---- the Hessian in tiles (AVX-512) --------------------------------------------------------
 * A group of G = SK_HESSIAN_GROUP rows at a time, every step across the group's rows (one
 * SIMD lane per row): the factors s, -c s and the diagonal of each class as vectors of the
 * group, from the exp columns and the flags z_k = m that the statistics leave in the strip;
 * then each position of the layout as one column of a tile; the tile transposed into the
 * group's rows (sk_hessian_tile_avx512_f/_d, transpose_x86.h) and those copied out in one
 * piece. The whole block is written: rows other than valid ones are written again afterwards. */
#if SK_TILE_TRANSPOSE
/* How many groups ahead the tiles ask for the output's lines (docs/performance-notes.md,
 * "SK_HESSIAN_AHEAD"). */
#define SK_HESSIAN_AHEAD 3

/* Where the tiles work. */
typedef struct {
    double *coef;        /* c per row of the block */
    double *s;           /* s[k * G + t]: class k of the group's row t */
    double *minus_cs;    /* likewise */
    double *diag;        /* likewise */
    SK_REAL *tile;       /* tile[q * G + t]: layout position q of row t, whole chunks of G */
    SK_REAL *group_rows; /* the group's rows of the output, and G - 1 values of room */
} SK_NAME(sk_hessian_tiles_scratch);

SK_INLINE SK_NAME(sk_hessian_tiles_scratch) SK_NAME(sk_hessian_tiles_view)(const sk_block *blk, sk_index n_rows,
                                                                         sk_index n_classes, sk_index width)
{
    const sk_index G = SK_HESSIAN_GROUP;
    SK_NAME(sk_hessian_tiles_scratch) view;
    view.coef = sk_row_values(blk, 0, n_rows);
    view.s = blk->short_work;
    view.minus_cs = view.s + n_classes * G;
    view.diag = view.minus_cs + n_classes * G;
    view.tile = (SK_REAL *)(view.diag + n_classes * G);
    view.group_rows = view.tile + (width + G - 1) / G * G * G;
    return view;
}

/* out[u * G + t] = fixed[t] * vectors[u * G + t], u < count: columns of a Hessian tile. */
SK_INLINE void SK_NAME(sk_tile_products)(SK_REAL *out, const double *fixed, const double *vectors, sk_index count)
{
    for (const double *end = vectors + count * SK_HESSIAN_GROUP; vectors < end;
         vectors += SK_HESSIAN_GROUP, out += SK_HESSIAN_GROUP) {
        SK_SIMD_LANES
        for (sk_index t = 0; t < SK_HESSIAN_GROUP; ++t)
            out[t] = (SK_REAL)(fixed[t] * vectors[t]);
    }
}

/* The factors of the group of rows from g0 on, as vectors of the group per class. */
SK_INLINE void SK_NAME(sk_group_factors)(const sk_block *blk, sk_index n_rows, sk_index n_classes, sk_index g0,
                                         const SK_NAME(sk_hessian_tiles_scratch) *work)
{
    enum { G = SK_HESSIAN_GROUP };
    const SK_REAL *e = (const SK_REAL *)blk->columns;         /* e[k * n_rows + i] */
    const SK_REAL *max_flags = (const SK_REAL *)blk->strip;   /* z_k = m, as 1 or 0, likewise */
    for (sk_index k = 0; k < n_classes; ++k) {
        const sk_index col = k * n_rows + g0;
        SK_SIMD_LANES
        for (sk_index t = 0; t < G; ++t)
            SK_NAME(sk_short_factors)((double)e[col + t], max_flags[col + t] != (SK_REAL)0, blk->sum_excl[g0 + t],
                                      work->coef[g0 + t], &work->s[k * G + t], &work->minus_cs[k * G + t],
                                      &work->diag[k * G + t]);
    }
}

/* The tile of a group: the layout's part for matrix column j (a segment: see
 * sk_write_hessian) holds H[a][j] for a below j (upper and full), the diagonal, then for a
 * above j (lower and full); the segments follow one another. */
SK_INLINE void SK_NAME(sk_group_tile)(int layout, sk_index n_classes, const SK_NAME(sk_hessian_tiles_scratch) *work)
{
    enum { G = SK_HESSIAN_GROUP };
    SK_REAL *out = work->tile;
    for (sk_index j = 0; j < n_classes; ++j) {
        const sk_index below = layout == SK_LAYOUT_PACKED_LOWER ? 0 : j;
        const sk_index above = layout == SK_LAYOUT_PACKED_UPPER ? 0 : n_classes - 1 - j;
        SK_NAME(sk_tile_products)(out, work->minus_cs + j * G, work->s, below);
        out += below * G;
        SK_SIMD_LANES
        for (sk_index t = 0; t < G; ++t)
            out[t] = (SK_REAL)work->diag[j * G + t];
        out += G;
        SK_NAME(sk_tile_products)(out, work->s + j * G, work->minus_cs + (j + 1) * G, above);
        out += above * G;
    }
}

/* The Hessian of a block of short rows in tiles. A last, partial group computes lanes past
 * the block's rows from scratch values of no meaning (inside the scratch: blocks of short
 * rows have a multiple of G rows, and only a call's last block has fewer); only its rows are
 * copied out. */
SK_INLINE void SK_NAME(sk_short_hessian_tiles)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                               const sk_block *blk)
{
    enum { G = SK_HESSIAN_GROUP };
    const sk_index n_classes = pb->n_classes, width = pb->hessian_width;
    const SK_NAME(sk_hessian_tiles_scratch) work = SK_NAME(sk_hessian_tiles_view)(blk, n_rows, n_classes, width);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, work.coef, NULL);
    for (sk_index g0 = 0; g0 < n_rows; g0 += G) {
        SK_NAME(sk_group_factors)(blk, n_rows, n_classes, g0, &work);
        SK_NAME(sk_group_tile)(pb->layout, n_classes, &work);
        const sk_index ahead = row_begin + g0 + SK_HESSIAN_AHEAD * G;
        if (ahead < pb->n_rows)
            sk_prefetch_lines((uintptr_t)SK_ROW(pb->hessian, ahead, width),
                              (uintptr_t)((pb->n_rows - ahead < G ? pb->n_rows - ahead : G) * width) *
                                  sizeof(SK_REAL),
                              1);
        const sk_index rows = n_rows - g0 < G ? n_rows - g0 : G;
        SK_NAME(sk_hessian_tile_avx512)(work.tile, work.group_rows, width);
        memcpy(SK_ROW(pb->hessian, row_begin + g0, width), work.group_rows, (size_t)(rows * width) * sizeof(SK_REAL));
    }
}
#undef SK_HESSIAN_AHEAD
#endif

/* ---- the diagonal, and the dispatch of the Hessian ----------------------------------------- */

/* The Hessian diagonal without the Hessian, H_kk = (c s_k)(1 - s_k), computed across the
 * block's rows one class at a time and transposed out: the strip holds the flags z_k = m
 * (sk_block_stats_columns), which it then receives the diagonal in place of. */
SK_INLINE void SK_NAME(sk_short_diagonal_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                                  const sk_block *blk)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *e = (const SK_REAL *)blk->columns; /* e[k * n_rows + i] */
    SK_REAL *flags_then_diag = (SK_REAL *)blk->strip;
    double *coef = sk_row_values(blk, 0, n_rows);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, coef, NULL);
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *e_col = e + k * n_rows;
        SK_REAL *col = flags_then_diag + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            double s_k, minus_cs_k, diag_k;
            SK_NAME(sk_short_factors)((double)e_col[i], col[i] != (SK_REAL)0, blk->sum_excl[i], coef[i], &s_k,
                                      &minus_cs_k, &diag_k);
            col[i] = (SK_REAL)diag_k;
        }
    }
    /* The output never shares memory with z, and rows other than valid ones are written
     * again afterwards, so the whole block is transposed out. */
    SK_NAME(sk_columns_to_rows)(flags_then_diag, SK_ROW(pb->hessian_diagonal, row_begin, n_classes), n_rows,
                                n_classes);
}

/* The Hessian of short rows, and its diagonal with it where that is asked for too: in tiles
 * where the CPU has AVX-512, else row by row. */
SK_INLINE void SK_NAME(sk_short_hessian_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                                 const sk_block *blk)
{
#if SK_TILE_TRANSPOSE
    if (SK_NAME(sk_hessian_in_tiles)(pb)) {
        SK_NAME(sk_short_hessian_tiles)(pb, row_begin, n_rows, blk);
        if (pb->hessian_diagonal) /* after the Hessian: it overwrites the flags z_k = m */
            SK_NAME(sk_short_diagonal_outputs)(pb, row_begin, n_rows, blk);
        return;
    }
#endif
    SK_NAME(sk_short_hessian_rows)(pb, row_begin, n_rows, blk);
}

#undef SK_HESSIAN_TILE_MAX_WIDTH
#undef SK_HESSIAN_GROUP
