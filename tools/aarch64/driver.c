/* softmax_kernels: a fixed batch through the block kernels, printed for comparison between
 * builds (tools/aarch64_check.sh runs it under qemu-aarch64 and natively).
 *
 * For float and double data and K = 3, 10 (short rows) and 40 (long rows): softmax,
 * log-softmax, and a target call with labels, label smoothing, sample weights and an ignored
 * row writing every per-row output (loss, gradient, packed Hessian, its diagonal, Hv), and the
 * summed Hessian. The batch holds an extreme row, a masked class (-inf) and a NaN row. Each
 * output element is printed as "name index value" with enough digits to round-trip.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "softmax_kernels/kernels.h"

#define N_ROWS 37
#define MAX_CLASSES 40

/* A value in [-scale, scale] from an integer hash of (i, k): a multiple of scale/1024, exact in
 * float and double, so both builds start from the same inputs whatever their libm and whether
 * they fuse multiply-adds. */
static double exact_value(sk_index i, sk_index k, uint32_t salt, double scale)
{
    const uint32_t h = ((uint32_t)i * 2654435761u) ^ ((uint32_t)k * 40503u + salt) * 2246822519u;
    return scale * (double)((int32_t)(h % 2049u) - 1024) / 1024.0;
}

/* The logits of row i, class k: deterministic, with the special rows described above. */
static double logit(sk_index i, sk_index k, sk_index n_classes, int is_double)
{
    double z = exact_value(i, k, 1u, 4.0);
    if (i == 5 && k == 0)
        z = is_double ? 800.0 : 120.0; /* an extreme row: its span passes SK_EXTREME_GAP */
    if (i == 7 && k == n_classes - 1 && n_classes > 1)
        z = -INFINITY;
    if (i == 11)
        z = NAN;
    return z;
}

static void print_values(const char *name, const void *data, sk_index n, int is_double)
{
    for (sk_index j = 0; j < n; ++j) {
        if (is_double)
            printf("%s %lld %.17g\n", name, (long long)j, ((const double *)data)[j]);
        else
            printf("%s %lld %.9g\n", name, (long long)j, (double)((const float *)data)[j]);
    }
}

/* Runs a block kernel over every block of the batch with one scratch area. */
static void run_blocks(const sk_problem *pb, sk_block_fn block, double *scratch)
{
    const sk_index block_rows = sk_block_rows(pb->n_classes);
    for (sk_index begin = 0; begin < pb->n_rows; begin += block_rows) {
        const sk_index end = begin + block_rows < pb->n_rows ? begin + block_rows : pb->n_rows;
        block(pb, begin, end, scratch);
    }
    sk_stream_fence();
}

static void run_case(sk_index n_classes, int is_double)
{
    const size_t real = is_double ? sizeof(double) : sizeof(float);
    const sk_index n = N_ROWS * n_classes, width = n_classes * (n_classes + 1) / 2;
    char *z = malloc((size_t)n * real), *v = malloc((size_t)n * real), *weight = malloc(N_ROWS * real);
    char *out = malloc((size_t)n * real), *second = malloc((size_t)n * real), *third = malloc((size_t)n * real);
    char *hessian = malloc((size_t)(N_ROWS * width) * real);
    double *row_loss = malloc(N_ROWS * sizeof(double));
    double *sum = calloc((size_t)(2 * width), sizeof(double));
    double *scratch = malloc((size_t)sk_scratch_doubles(n_classes) * sizeof(double));
    int64_t labels[N_ROWS];
    for (sk_index i = 0; i < N_ROWS; ++i) {
        labels[i] = (i * 7) % n_classes;
        const double w = 0.5 + 0.25 * (double)(i % 5);
        if (is_double)
            ((double *)weight)[i] = w;
        else
            ((float *)weight)[i] = (float)w;
        for (sk_index k = 0; k < n_classes; ++k) {
            const double zk = logit(i, k, n_classes, is_double), vk = exact_value(i, k, 2u, 1.0);
            if (is_double) {
                ((double *)z)[i * n_classes + k] = zk;
                ((double *)v)[i * n_classes + k] = vk;
            } else {
                ((float *)z)[i * n_classes + k] = (float)zk;
                ((float *)v)[i * n_classes + k] = (float)vk;
            }
        }
    }
    labels[13] = -100; /* ignored */
    char prefix[64];
    const char *type = is_double ? "float64" : "float32";

    sk_problem pb = {0};
    pb.n_rows = N_ROWS;
    pb.n_classes = n_classes;
    pb.denominator = 1.0;
    pb.z = z;
    pb.softmax = out;
    run_blocks(&pb, sk_block_function(SK_KERNEL_SOFTMAX, is_double), scratch);
    snprintf(prefix, sizeof prefix, "%s-K%lld-softmax", type, (long long)n_classes);
    print_values(prefix, out, n, is_double);
    pb.softmax = NULL;
    pb.log_softmax = out;
    run_blocks(&pb, sk_block_function(SK_KERNEL_LOG_SOFTMAX, is_double), scratch);
    snprintf(prefix, sizeof prefix, "%s-K%lld-log_softmax", type, (long long)n_classes);
    print_values(prefix, out, n, is_double);

    const double eps = 0.1;
    pb.log_softmax = NULL;
    pb.target_kind = SK_TARGET_LABELS;
    pb.layout = SK_LAYOUT_PACKED_UPPER;
    pb.hessian_width = width;
    pb.label_smoothing = eps;
    pb.eps_over_k = eps / (double)n_classes;
    pb.one_minus_eps = 1.0 - eps;
    pb.has_ignore_index = 1;
    pb.ignore_index = -100;
    pb.labels = labels;
    pb.sample_weight = weight;
    pb.v = v;
    pb.row_loss = row_loss;
    pb.row_loss_is_double = 1;
    pb.gradient = out;
    pb.hessian = hessian;
    pb.hessian_diagonal = second;
    pb.hessian_vector_product = third;
    run_blocks(&pb, sk_block_function(SK_KERNEL_TARGETS, is_double), scratch);
    snprintf(prefix, sizeof prefix, "%s-K%lld-loss", type, (long long)n_classes);
    print_values(prefix, row_loss, N_ROWS, 1);
    snprintf(prefix, sizeof prefix, "%s-K%lld-gradient", type, (long long)n_classes);
    print_values(prefix, out, n, is_double);
    snprintf(prefix, sizeof prefix, "%s-K%lld-hessian", type, (long long)n_classes);
    print_values(prefix, hessian, N_ROWS * width, is_double);
    snprintf(prefix, sizeof prefix, "%s-K%lld-hessian_diagonal", type, (long long)n_classes);
    print_values(prefix, second, n, is_double);
    snprintf(prefix, sizeof prefix, "%s-K%lld-hessian_vector_product", type, (long long)n_classes);
    print_values(prefix, third, n, is_double);

    /* The summed Hessian of the valid rows (rows 0-10: the NaN row would make every sum NaN). */
    sk_problem sum_pb = pb;
    sum_pb.row_loss = sum_pb.gradient = sum_pb.hessian = sum_pb.hessian_diagonal = NULL;
    sum_pb.hessian_vector_product = NULL;
    sum_pb.v = NULL;
    sk_hessian_sum_function(is_double)(&sum_pb, 0, 11, scratch, sum, sum + width);
    for (sk_index j = 0; j < width; ++j)
        sum[j] += sum[width + j];
    snprintf(prefix, sizeof prefix, "%s-K%lld-hessian_sum", type, (long long)n_classes);
    print_values(prefix, sum, width, 1);

    free(z);
    free(v);
    free(weight);
    free(out);
    free(second);
    free(third);
    free(hessian);
    free(row_loss);
    free(sum);
    free(scratch);
}

int main(void)
{
    const sk_index classes[] = {3, 10, MAX_CLASSES};
    printf("simd %s\n", sk_simd_name());
    for (int is_double = 0; is_double <= 1; ++is_double)
        for (size_t c = 0; c < sizeof classes / sizeof classes[0]; ++c)
            run_case(classes[c], is_double);
    return 0;
}
