/* softmax_kernels, stamped per data type: the transpositions of a block of short rows
 * (K <= SK_SMALL_CLASSES) to columns of classes and back, columns[k * n_rows + i] = rows[i * K + k].
 */

#ifndef SK_REAL
#error "short_transpose_impl.h is stamped by kernels.h only"
#endif

/* Rows [first, n_rows) element by element. */
SK_INLINE void SK_NAME(sk_rows_to_columns_k)(const SK_REAL *rows, SK_REAL *columns, sk_index first,
                                             sk_index n_rows, sk_index n_classes)
{
    for (sk_index i = first; i < n_rows; ++i)
        for (sk_index k = 0; k < n_classes; ++k)
            columns[k * n_rows + i] = rows[i * n_classes + k];
}

SK_INLINE void SK_NAME(sk_columns_to_rows_k)(const SK_REAL *columns, SK_REAL *rows, sk_index first,
                                             sk_index n_rows, sk_index n_classes)
{
    for (sk_index i = first; i < n_rows; ++i)
        for (sk_index k = 0; k < n_classes; ++k)
            rows[i * n_classes + k] = columns[k * n_rows + i];
}

/* Where the CPU has AVX-512F (or AVX2, for float) and K >= SK_TILE_MIN_CLASSES, whole tiles
 * of rows go through registers (transpose_x86.h) and only the block's last rows are left.
 * Those, and every row elsewhere, go element by element, compiled once per K <= 16 so that
 * the compiler unrolls the classes (and for K <= 4 shuffles whole vectors). */
SK_INLINE void SK_NAME(sk_rows_to_columns)(const SK_REAL *rows, SK_REAL *columns, sk_index n_rows,
                                           sk_index n_classes)
{
    sk_index first = 0;
#if SK_TILE_TRANSPOSE
    first = SK_NAME(sk_rows_to_columns_tiles)(rows, columns, n_rows, n_classes);
#endif
    switch (n_classes) {
#define SK_CASE(K) case K: SK_NAME(sk_rows_to_columns_k)(rows, columns, first, n_rows, K); break;
        SK_EACH_SHORT_K(SK_CASE)
#undef SK_CASE
    default:
        SK_NAME(sk_rows_to_columns_k)(rows, columns, first, n_rows, n_classes);
    }
}

SK_INLINE void SK_NAME(sk_columns_to_rows)(const SK_REAL *columns, SK_REAL *rows, sk_index n_rows,
                                           sk_index n_classes)
{
    sk_index first = 0;
#if SK_TILE_TRANSPOSE
    first = SK_NAME(sk_columns_to_rows_tiles)(columns, rows, n_rows, n_classes);
#endif
    switch (n_classes) {
#define SK_CASE(K) case K: SK_NAME(sk_columns_to_rows_k)(columns, rows, first, n_rows, K); break;
        SK_EACH_SHORT_K(SK_CASE)
#undef SK_CASE
    default:
        SK_NAME(sk_columns_to_rows_k)(columns, rows, first, n_rows, n_classes);
    }
}
