/* softmax_kernels, stamped per data type: moving a block's data — fills, the prefetch of the
 * next block, streaming copies of large outputs, and the rows' losses.
 */

#ifndef SK_REAL
#error "block_io_impl.h is stamped by kernels.h only"
#endif

SK_INLINE void SK_NAME(sk_fill)(SK_REAL *out, sk_index n, double value)
{
    for (sk_index k = 0; k < n; ++k)
        out[k] = (SK_REAL)value;
}

/* Software prefetch of the next block, spread over the work on this one: the hardware
 * prefetchers run only a short way ahead of the demand misses, and without this each
 * block's first touch of memory waited on it (docs/performance-notes.md, "prefetch").
 * A loop over the `parts` of a block (the classes of short rows, the rows of long ones) asks,
 * at part `part`, for that share of the lines of the next block of rows of an array of rows
 * of `width` items of `item_bytes` each; it never asks past the array's end. */
SK_INLINE void SK_NAME(sk_prefetch_next_part)(const sk_problem *pb, const void *array, sk_index width,
                                              sk_index item_bytes, sk_index row_begin, sk_index n_rows,
                                              sk_index part, sk_index parts, int for_writing)
{
    const sk_index next_begin = row_begin + n_rows;
    const sk_index next_rows = next_begin + n_rows <= pb->n_rows ? n_rows : pb->n_rows - next_begin;
    if (next_rows <= 0)
        return;
    const uintptr_t from = (uintptr_t)array + (uintptr_t)(next_begin * width * item_bytes);
    const uintptr_t first_line = from / 64 * 64;
    const sk_index lines = (sk_index)((from + (uintptr_t)(next_rows * width * item_bytes) - first_line + 63) / 64);
    const sk_index share_begin = lines * part / parts, share_end = lines * (part + 1) / parts;
    sk_prefetch_lines(first_line + 64 * (uintptr_t)share_begin, 64 * (uintptr_t)(share_end - share_begin),
                      for_writing);
}

/* The same for the call's (N, K) logits, inputs and outputs of the data type. */
SK_INLINE void SK_NAME(sk_prefetch_next_rows)(const sk_problem *pb, const void *array, sk_index row_begin,
                                              sk_index n_rows, sk_index part, sk_index parts, int for_writing)
{
    SK_NAME(sk_prefetch_next_part)(pb, array, pb->n_classes, (sk_index)sizeof(SK_REAL), row_begin, n_rows, part,
                                   parts, for_writing);
}

SK_INLINE int SK_NAME(sk_all_valid)(const unsigned char *status, sk_index n_rows)
{
    unsigned char any_other = 0;
    for (sk_index i = 0; i < n_rows; ++i)
        any_other |= status[i] != SK_ROW_VALID;
    return !any_other;
}

/* Whether the (N, width) output is written with streaming stores: on more than one thread,
 * from SK_STREAM_MIN_BYTES on (a build that sets it to 0 streams every output, on any
 * number of threads, for the tests). */
SK_INLINE int SK_NAME(sk_streams)(const sk_problem *pb, sk_index width)
{
    return SK_HAVE_STREAM && (sk_team_threads() > 1 || SK_STREAM_MIN_BYTES == 0) &&
           pb->n_rows * width >= SK_STREAM_MIN_BYTES / (sk_index)sizeof(SK_REAL);
}

/* dst[0:n] = src[0:n], streaming the whole 64-byte lines of dst and storing the partial first
 * and last lines plainly: those lines are shared with the neighbouring blocks, which other
 * threads may write at the same time, and a partly streamed line would be flushed to memory
 * in pieces. Streaming stores are weakly ordered: the driver ends each thread's share of a
 * call with sk_stream_fence(), not each block. */
SK_INLINE void SK_NAME(sk_stream_copy)(SK_REAL *dst, const SK_REAL *src, sk_index n)
{
#if SK_HAVE_STREAM
    const sk_index per_store = 16 / (sk_index)sizeof(SK_REAL), per_line = 64 / (sk_index)sizeof(SK_REAL);
    sk_index i = 0;
    if ((uintptr_t)dst % sizeof(SK_REAL) == 0) {
        for (; i < n && (uintptr_t)(dst + i) % 64 != 0; ++i)
            dst[i] = src[i];
        for (; i + per_line <= n; i += per_line)
            for (sk_index j = i; j < i + per_line; j += per_store)
                SK_NAME(sk_stream16)(dst + j, src + j);
    }
    for (; i < n; ++i)
        dst[i] = src[i];
#else
    memcpy(dst, src, (size_t)n * sizeof(SK_REAL));
#endif
}

/* A row's loss, computed in double: kept in double for a reduction, else rounded once to the
 * data type (IEEE conversion: beyond float's range it is inf, as NumPy's cast). */
SK_INLINE void SK_NAME(sk_store_row_loss)(const sk_problem *pb, sk_index row, double value)
{
    if (pb->row_loss_is_double)
        ((double *)pb->row_loss)[row] = value;
    else
        ((SK_REAL *)pb->row_loss)[row] = (SK_REAL)value;
}

/* sk_store_row_loss for each valid row of a block (loss[i] for row row_begin + i), in loops
 * that vectorise when all are valid, as they usually are. */
SK_INLINE void SK_NAME(sk_store_block_loss)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                            const unsigned char *status, const double *loss)
{
    if (!SK_NAME(sk_all_valid)(status, n_rows)) {
        for (sk_index i = 0; i < n_rows; ++i)
            if (status[i] == SK_ROW_VALID)
                SK_NAME(sk_store_row_loss)(pb, row_begin + i, loss[i]);
    } else if (pb->row_loss_is_double) {
        memcpy((double *)pb->row_loss + row_begin, loss, (size_t)n_rows * sizeof(double));
    } else {
        SK_REAL *row_loss = (SK_REAL *)pb->row_loss + row_begin;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            row_loss[i] = (SK_REAL)loss[i];
    }
}
