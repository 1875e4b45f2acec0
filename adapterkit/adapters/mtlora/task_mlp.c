/* The task streams of MTLoRA's MLPs on CPU, from fc1's low-rank term to fc2's, fused.

   For T tasks, M rows, hidden width H and task rank RANK (float32, row-major):

       pre_t = base + low_t up_t^T        base (M, H); low (T, M, RANK); up_t (T, RANK, H)
       out_t = GELU(pre_t) down_t^T       down (T, RANK, H); out (T, M, RANK)

   ops.py computes the same with PyTorch ops on blocks of rows; there every rank-4
   product is a GEMM call of its own, with its own pass over the block, at a tenth of the
   machine's GEMM speed. Here one pass over a row does everything: the row's hidden layer
   never leaves the L1 cache, and backward redoes it instead of reading it back.

   RANK is a compile-time constant, so the rank loops unroll and the loops over the H
   columns vectorize (gcc vectorizes the backward loop for ranks up to 4 only); smaller
   ranks are zero-padded by the caller, which changes no product. Rows are split across
   OpenMP threads: loaded into a PyTorch process, this library binds to PyTorch's own
   libgomp (same soname), so it runs on PyTorch's thread pool.

   GELU is the exact (erf) form; erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as in
   PyTorch's vectorized CPU GELU, with exp by range reduction and Cephes' expf polynomial,
   written so that gcc vectorizes both. */
#include <omp.h>
#include <stdint.h>

#define RANK 4

/* exp(x) for x <= 0 (0 below -87) */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x; /* a ternary, not fmaxf: gcc vectorizes only this */
    const float n = __builtin_rintf(x * 1.44269504088896341f); /* round(x / ln 2) */
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* x - n ln 2, in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const union { int32_t bits; float value; } two_to_n = {((int32_t)n + 127) << 23};
    return p * two_to_n.value;
}

/* Phi(x), the standard normal CDF, given gauss = exp(-x^2 / 2) */
static inline float normal_cdf(float x, float gauss) {
    const float t = 1.0f / (1.0f + 0.3275911f * 0.70710678118654752f * (x < 0 ? -x : x));
    const float erf = 1.0f - (((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t
                                - 0.284496736f) * t + 0.254829592f) * t) * gauss;
    return 0.5f + 0.5f * (x < 0 ? -erf : erf); /* erf(|x| / sqrt(2)), signed */
}

static inline float gelu(float x) {
    return x * normal_cdf(x, exp_nonpositive(-0.5f * x * x));
}

/* One row of one task: out_row (RANK floats) */
static void forward_row(const float *restrict base, const float *restrict low,
                        const float *restrict up, const float *restrict down,
                        float *restrict out_row, const int64_t H) {
    float out[RANK] = {0};
    for (int64_t c = 0; c < H; c++) {
        float x = base[c];
        for (int k = 0; k < RANK; k++) x += low[k] * up[k * H + c];
        const float h = gelu(x);
        for (int k = 0; k < RANK; k++) out[k] += h * down[k * H + c];
    }
    for (int k = 0; k < RANK; k++) out_row[k] = out[k];
}

/* One row of one task: grad_low_row (RANK floats, written), grad_base (H floats: written
   for the first task, then added to) and the row's contributions to grad_up and grad_down
   (RANK x H each, added to); scratch holds H floats. Not inlined: inlined into the OpenMP
   region, its column loop is no longer vectorized (gcc 12). */
static __attribute__((noinline)) void backward_row(
        const float *restrict base, const float *restrict low_row, const float *restrict up,
        const float *restrict down, const float *restrict grad_out_row,
        float *restrict grad_base, float *restrict grad_low_row, float *restrict grad_up,
        float *restrict grad_down, float *restrict scratch, const int64_t H,
        const int first_task) {
    float low[RANK], grad_out[RANK], grad_low[RANK] = {0};
    for (int k = 0; k < RANK; k++) {
        low[k] = low_row[k];
        grad_out[k] = grad_out_row[k];
    }
    for (int64_t c = 0; c < H; c++) {
        float x = base[c], grad_h = 0.0f;
        for (int k = 0; k < RANK; k++) {
            x += low[k] * up[k * H + c];
            grad_h += grad_out[k] * down[k * H + c];
        }
        const float gauss = exp_nonpositive(-0.5f * x * x), cdf = normal_cdf(x, gauss);
        const float h = x * cdf;
        /* d GELU / dx = Phi(x) + x phi(x), phi(x) = gauss / sqrt(2 pi) */
        const float grad_x = grad_h * (cdf + x * gauss * 0.39894228040143268f);
        for (int k = 0; k < RANK; k++) {
            grad_down[k * H + c] += grad_out[k] * h;
            grad_low[k] += grad_x * up[k * H + c];
        }
        grad_base[c] = first_task ? grad_x : grad_base[c] + grad_x;
        scratch[c] = grad_x;
    }
    /* a loop of its own: with this update in the loop above, gcc vectorizes neither */
    for (int k = 0; k < RANK; k++)
        for (int64_t c = 0; c < H; c++) grad_up[k * H + c] += low[k] * scratch[c];
    for (int k = 0; k < RANK; k++) grad_low_row[k] = grad_low[k];
}

int task_mlp_rank(void) { return RANK; }

void task_mlp_forward(const float *base, const float *low, const float *up_t,
                      const float *down, float *out, int64_t tasks, int64_t rows,
                      int64_t width, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t row = (t * rows + i) * RANK, matrix = t * RANK * width;
            forward_row(base + i * width, low + row, up_t + matrix, down + matrix, out + row,
                        width);
        }
}

/* grad_low and grad_base are written. The gradients of up_t and down are sums over rows:
   thread w adds its rows' share into workspace[w][0] (up_t) and [w][1] (down), each
   T x RANK x H and zero on entry, and the caller adds the threads' sums up; workspace[w][2]
   is the thread's scratch (H floats). workspace: threads x (2 T RANK H + H). */
void task_mlp_backward(const float *base, const float *low, const float *up_t,
                       const float *down, const float *grad_out, float *grad_base,
                       float *grad_low, float *workspace, int64_t tasks, int64_t rows,
                       int64_t width, int threads) {
    const int64_t size = tasks * RANK * width;
#pragma omp parallel num_threads(threads)
    {
        float *grad_up_t = workspace + (2 * size + width) * omp_get_thread_num();
        float *grad_down = grad_up_t + size, *scratch = grad_down + size;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t t = 0; t < tasks; t++) {
                const int64_t row = (t * rows + i) * RANK, matrix = t * RANK * width;
                backward_row(base + i * width, low + row, up_t + matrix, down + matrix,
                             grad_out + row, grad_base + i * width, grad_low + row,
                             grad_up_t + matrix, grad_down + matrix, scratch, width, t == 0);
            }
    }
}
