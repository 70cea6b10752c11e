/*
 * Packed SGEMM driver (BLIS-style blocking), shared by all ISAs.
 *
 * C is row-major with N contiguous, so kernels vectorize along N: each K step
 * loads NR columns of a packed B row and broadcasts MR elements of a packed A
 * column. Loop nest, outermost first:
 *
 *   jc over N in NC blocks
 *     pc over K in KC blocks:  pack B[pc:pc+KC, jc:jc+NC] into NR-wide panels
 *                              (the packed block is sized to stay in L2)
 *       ir over M in MR rows:  A micro-panel (MR x KC, prepacked) stays in L1
 *         jr over NC in NR:    B panel streams from L2, C tile updated once
 *
 * The epilogue (beta*C, bias, ReLU) is fused into the micro-kernel's store, so C
 * is touched once per K block and there is no separate pass.
 *
 * Packed A layout: row panels of MR rows; panel i holds, for every k in [0, K),
 * MR consecutive floats A[i*MR + r][k] (zero for rows past M). A KC block of a
 * panel is therefore the contiguous slice starting at k0 * MR, and the layout
 * does not depend on KC, so packing happens once regardless of blocking.
 */
#include "ckernels.h"
#include "sgemm_internal.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct fpn_gemm_impl *impl_for(int isa) {
    int best = fpn_best_isa();
    if (isa > best) isa = best;
#if defined(__x86_64__)
    if (isa == FPN_ISA_AVX512) return &fpn__impl_avx512;
    if (isa == FPN_ISA_AVX2) return &fpn__impl_avx2;
#endif
    return &fpn__impl_generic;
}

int fpn_sgemm_mr(int isa) { return impl_for(isa)->mr; }
int fpn_sgemm_nr(int isa) { return impl_for(isa)->nr; }

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* K block: the preferred KC, but split K evenly so no block is a tiny remainder. */
static int k_block(const struct fpn_gemm_impl *im, int k) {
    if (k <= im->kc) return k < 1 ? 1 : k;
    int nblocks = (k + im->kc - 1) / im->kc;
    return (k + nblocks - 1) / nblocks;
}

/*
 * N block: the packed B block (KC x NC floats) gets a quarter of L2. It is
 * re-read from L2 once per A row panel, while the unpacked B rows being packed
 * next, the A panels and the C tiles all stream through the same L2; a larger
 * block gets partly evicted by that traffic (costly when M is small and the
 * block is reused only a few times), and a smaller one shortens the contiguous
 * runs read from each B row during packing.
 */
static int n_block(const struct fpn_gemm_impl *im, int kc, int n) {
    int l2_kb = fpn__l2_kb();
    if (l2_kb <= 0) l2_kb = 512;
    if (l2_kb > 4096) l2_kb = 4096;
    long bytes = (long)l2_kb * 1024 / 4;
    int nc = (int)(bytes / ((long)kc * 4)) / im->nr * im->nr;
    if (nc < 4 * im->nr) nc = 4 * im->nr;
    if (nc > 4096) nc = 4096;
    int n_padded = (int)round_up((size_t)(n < 1 ? 1 : n), (size_t)im->nr);
    return nc < n_padded ? nc : n_padded;
}

size_t fpn_sgemm_packed_a_size(int isa, int m, int k) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    return round_up((size_t)(m < 0 ? 0 : m), (size_t)im->mr) * (size_t)(k < 0 ? 0 : k);
}

size_t fpn_sgemm_packed_a_offset(int isa, int row0, int k) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    return (size_t)(row0 / im->mr) * (size_t)im->mr * (size_t)k;
}

void fpn_sgemm_pack_a(int isa, int m, int k, const float *a, int lda, float *packed) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    const int mr = im->mr;
    for (int i0 = 0; i0 < m; i0 += mr) {
        int mv = m - i0 < mr ? m - i0 : mr;
        float *dst = packed + (size_t)i0 * k;
        /* The panel is the transpose of its mv rows (ld mr); rows past M are zero. */
        fpn_transpose(isa, mv, k, a + (size_t)i0 * lda, lda, dst, mr);
        for (int r = mv; r < mr; r++)
            for (int p = 0; p < k; p++) dst[(size_t)p * mr + r] = 0.0f;
    }
}

/* 16 floats of slack so the packed B block can be aligned to 64 bytes. */
#define WS_ALIGN_SLACK 16

size_t fpn_sgemm_workspace_size(int isa, int n, int k) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    int kc = k_block(im, k);
    int nc = n_block(im, kc, n);
    return (size_t)kc * (size_t)nc + WS_ALIGN_SLACK;
}

/* k == 0: the product is empty, only the epilogue remains. */
static void epilogue_only(int m, int n, float beta, float *c, int ldc, const float *bias, int relu) {
    for (int i = 0; i < m; i++) {
        float bv = bias ? bias[i] : 0.0f;
        float *row = c + (size_t)i * ldc;
        for (int j = 0; j < n; j++) {
            float v = (beta != 0.0f ? beta * row[j] : 0.0f) + bv;
            row[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* Packs the B block [pc, pc+kc) x [jc, jc+nc) into NR-wide panels (`fpn_pack_b_fn` layout). */
typedef void (*pack_block_fn)(const void *source, const struct fpn_gemm_impl *im, int pc, int kc, int jc, int nc,
                              float *dst);

struct matrix_source { const float *b; int ldb; };

static void pack_matrix_block(const void *source, const struct fpn_gemm_impl *im, int pc, int kc, int jc, int nc,
                              float *dst) {
    const struct matrix_source *s = source;
    im->pack_b(kc, nc, s->b + (size_t)pc * s->ldb + jc, s->ldb, dst);
}

/*
 * B as the im2col matrix of one image, gathered while packing: row r = (channel, ky, kx), column j = output
 * pixel col0 + j (row-major over the output), so no im2col matrix is ever written. A panel's NR pixels are cut
 * into runs that lie in one output row (several runs when the output is narrower than a panel); per block row,
 * a run reads one input row at the conv's stride: a copy at stride 1, the ISA's even-element gather at stride 2,
 * with the taps that fall in the padding zeroed. Values are copied, never combined: the result does not depend
 * on how a panel is cut.
 */

/* `len` output pixels of one output row (input row iy, first tap column ix0) of one block row into d. */
static inline void im2col_run(fpn_gather2_fn gather2, const struct fpn_im2col *g, const float *plane,
                              int iy, int ix0, int len, float *d) {
    if (iy < 0 || iy >= g->h) {
        memset(d, 0, (size_t)len * sizeof(float));
        return;
    }
    const int sw = g->sw;
    /* Columns j with 0 <= ix0 + j * sw < w. */
    int lo = ix0 >= 0 ? 0 : (-ix0 + sw - 1) / sw;
    int hi = ix0 < g->w ? (g->w - ix0 + sw - 1) / sw : 0;
    if (hi > len) hi = len;
    if (lo > hi) lo = hi;
    if (lo > 0) memset(d, 0, (size_t)lo * sizeof(float));
    const float *src = plane + (size_t)iy * g->w + ix0 + (ptrdiff_t)lo * sw;
    const int n = hi - lo;
    if (sw == 1) {
        memcpy(d + lo, src, (size_t)n * sizeof(float));
    } else if (sw == 2 && gather2) {
        gather2(src, n, d + lo);
    } else {
        for (int j = 0; j < n; j++) d[lo + j] = src[(ptrdiff_t)j * sw];
    }
    if (hi < len) memset(d + hi, 0, (size_t)(len - hi) * sizeof(float));
}

void fpn__im2col_rows(const struct fpn_im2col *g, int r0, int kc, struct fpn_im2col_rows *rows) {
    const int taps = g->kh * g->kw;
    const size_t plane = (size_t)g->h * g->w;
    for (int p = 0; p < kc; p++) {
        const int r = r0 + p, ky = (r % taps) / g->kw, kx = r % g->kw;
        rows->src[p] = g->x + (size_t)(r / taps) * plane;
        rows->dy[p] = ky * g->dh;
        rows->dx[p] = kx * g->dw;
    }
}

void fpn__im2col_panel(const struct fpn_im2col *g, const struct fpn_im2col_rows *rows, fpn_gather2_fn gather2,
                       int p0, int kc, int col, int n, int nr, float *d) {
    /* The panel's runs: first input row and column of the window of the run's first pixel, length. */
    int ry[FPN_IM2COL_MAX_NR], rx[FPN_IM2COL_MAX_NR], rl[FPN_IM2COL_MAX_NR], runs = 0;
    int pix = g->col0 + col;
    for (int left = n; left > 0; runs++) {
        const int oy = pix / g->ow, ox = pix % g->ow;
        const int len = g->ow - ox < left ? g->ow - ox : left;
        ry[runs] = oy * g->sh - g->ph;
        rx[runs] = ox * g->sw - g->pw;
        rl[runs] = len;
        pix += len;
        left -= len;
    }
    for (int p = p0; p < p0 + kc; p++, d += nr) {
        float *out = d;
        for (int s = 0; s < runs; s++) {
            im2col_run(gather2, g, rows->src[p], ry[s] + rows->dy[p], rx[s] + rows->dx[p], rl[s], out);
            out += rl[s];
        }
        if (n < nr) memset(d + n, 0, (size_t)(nr - n) * sizeof(float));
    }
}

static void pack_im2col_block(const void *source, const struct fpn_gemm_impl *im, int pc, int kc, int jc, int nc,
                              float *dst) {
    const int nr = im->nr;
    struct fpn_im2col_rows rows;
    fpn__im2col_rows(source, pc, kc, &rows);
    const int panels = (nc + nr - 1) / nr;
    for (int q = 0; q < panels; q++) {
        const int n = nc - q * nr < nr ? nc - q * nr : nr;
        fpn__im2col_panel(source, &rows, im->gather2, 0, kc, jc + q * nr, n, nr, dst + (size_t)q * kc * nr);
    }
}

/* The epilogue of K block [pc, pc + kc) of k: C loaded after the first block (or with beta), bias in the first,
   ReLU in the last; *kbeta is beta for the first block, 1 after it. */
static inline int block_flags(int pc, int kc, int k, float beta, int has_bias, int relu, float *kbeta) {
    const int first = pc == 0, last = pc + kc >= k;
    int flags = 0;
    if (!first || beta != 0.0f) flags |= FPN_F_LOADC;
    if (first && has_bias) flags |= FPN_F_BIAS;
    if (last && relu) flags |= FPN_F_RELU;
    *kbeta = first ? beta : 1.0f;
    return flags;
}

static void gemm_driver(int isa, int m, int n, int k, const float *packed_a,
                        pack_block_fn pack, const void *source,
                        float beta, float *c, int ldc, const float *bias, int relu, float *workspace) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        epilogue_only(m, n, beta, c, ldc, bias, relu);
        return;
    }
    const struct fpn_gemm_impl *im = impl_for(isa);
    const int mr = im->mr, nr = im->nr;
    const int kc_max = k_block(im, k);
    const int nc_max = n_block(im, kc_max, n);
    float *bp = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);

    for (int jc = 0; jc < n; jc += nc_max) {
        const int nc = n - jc < nc_max ? n - jc : nc_max;
        for (int pc = 0; pc < k; pc += kc_max) {
            const int kc = k - pc < kc_max ? k - pc : kc_max;
            pack(source, im, pc, kc, jc, nc, bp);

            float kbeta;
            const int flags = block_flags(pc, kc, k, beta, bias != NULL, relu, &kbeta);

            for (int ir = 0; ir < m; ir += mr) {
                const int mv = m - ir < mr ? m - ir : mr;
                const float *ap = packed_a + (size_t)ir * k + (size_t)pc * mr;
                const float *bias_r = (flags & FPN_F_BIAS) ? bias + ir : NULL;
                float *crow = c + (size_t)ir * ldc + jc;
                for (int jr = 0; jr < nc; jr += nr) {
                    const int nv = nc - jr < nr ? nc - jr : nr;
                    im->kernel(kc, ap, bp + (size_t)jr * kc, crow + jr, ldc, mv, nv, flags, kbeta, bias_r);
                }
            }
        }
    }
}

/*
 * Products of at most this many row panels read B in place: packing copies every B value once for the
 * m / MR kernel calls that use it, as much memory traffic as the product itself when they are few.
 */
#define DIRECT_B_MAX_PANELS 3
/*
 * So do products at most this many columns wide (the Winograd blocks' GEMMs): their B rows are already one
 * contiguous run each, and a packed NR-wide panel would only add zero padding to them.
 */
#define DIRECT_B_MAX_COLUMNS 16

/* The driver for B read in place: per NR-wide column panel, every K block, every row panel (C stays in cache). */
static void gemm_direct(const struct fpn_gemm_impl *im, int m, int n, int k, const float *packed_a,
                        const float *b, int ldb, float beta, float *c, int ldc, const float *bias, int relu) {
    const int mr = im->mr, nr = im->nr, kc_max = k_block(im, k);
    for (int jr = 0; jr < n; jr += nr) {
        const int nv = n - jr < nr ? n - jr : nr;
        for (int pc = 0; pc < k; pc += kc_max) {
            const int kc = k - pc < kc_max ? k - pc : kc_max;
            float kbeta;
            const int flags = block_flags(pc, kc, k, beta, bias != NULL, relu, &kbeta);
            for (int ir = 0; ir < m; ir += mr) {
                const int mv = m - ir < mr ? m - ir : mr;
                im->kernel_direct(kc, packed_a + (size_t)ir * k + (size_t)pc * mr, b + (size_t)pc * ldb + jr, ldb,
                                  c + (size_t)ir * ldc + jr, ldc, mv, nv, flags, kbeta,
                                  (flags & FPN_F_BIAS) ? bias + ir : NULL);
            }
        }
    }
}

void fpn_sgemm_compute(int isa, int m, int n, int k,
                       const float *packed_a,
                       const float *b, int ldb,
                       float beta, float *c, int ldc,
                       const float *bias, int relu,
                       float *workspace) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    if (im->kernel_direct && m > 0 && n > 0 && k > 0
        && ((m + im->mr - 1) / im->mr <= DIRECT_B_MAX_PANELS || n <= DIRECT_B_MAX_COLUMNS)) {
        gemm_direct(im, m, n, k, packed_a, b, ldb, beta, c, ldc, bias, relu);
        return;
    }
    const struct matrix_source source = { b, ldb };
    gemm_driver(isa, m, n, k, packed_a, pack_matrix_block, &source, beta, c, ldc, bias, relu, workspace);
}

void fpn_sgemm_conv_compute(int isa, int m, int n, int k,
                            const float *packed_a,
                            const struct fpn_im2col *b,
                            float beta, float *c, int ldc,
                            const float *bias, int relu,
                            float *workspace) {
    gemm_driver(isa, m, n, k, packed_a, pack_im2col_block, b, beta, c, ldc, bias, relu, workspace);
}

size_t fpn_sgemm_packed_b_size(int isa, int n, int k) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    return round_up((size_t)(n < 1 ? 1 : n), (size_t)im->nr) * (size_t)(k < 0 ? 0 : k) + WS_ALIGN_SLACK;
}

/* The panels start at the first 64-byte boundary of `packed` (hence the slack in the size). */
static float *aligned_panels(const float *packed) {
    return (float *)(((uintptr_t)packed + 63) & ~(uintptr_t)63);
}

void fpn_sgemm_pack_b(int isa, int n, int k, const float *b, int ldb, float *packed) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    if (n > 0 && k > 0) im->pack_b(k, n, b, ldb, aligned_panels(packed));
}

size_t fpn_sgemm_rows_workspace_size(int isa, int k) {
    const struct fpn_gemm_impl *im = impl_for(isa);
    return (size_t)im->mr * (size_t)k_block(im, k > 0 ? k : 1) + WS_ALIGN_SLACK;
}

/* Column panels up to which fpn_sgemm_rows reads A from its rows (kernel_rows) instead of packing each slice. */
#define ROWS_KERNEL_MAX_PANELS 8

/*
 * K blocks outermost, so a block of the packed B (KC x N) stays in L2 while every row panel passes; each
 * panel's A slice is packed into L1 right before its kernels, and C's rows stay in cache across the blocks.
 * Panel q of the packed B holds all K rows, so block [pc, pc + kc) of it starts at q * K * NR + pc * NR.
 */
void fpn_sgemm_rows(int isa, int m, int n, int k, const float *a, int lda, const float *packed_b,
                    float beta, float *c, int ldc, int relu, float *workspace) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        epilogue_only(m, n, beta, c, ldc, NULL, relu);
        return;
    }
    const struct fpn_gemm_impl *im = impl_for(isa);
    const int mr = im->mr, nr = im->nr, kc_max = k_block(im, k);
    const float *bp = aligned_panels(packed_b);
    float *ap = aligned_panels(workspace);
    /* A read from its rows where few column panels would use a packed slice (packing it cost a fifth of a 128-wide
     * box head's time); wide layers (1024 columns: 32 uses) keep the packed slice: it costs them next to nothing
     * and its loads are contiguous. */
    const fpn_kernel_rows_fn rows_kernel = (n + nr - 1) / nr <= ROWS_KERNEL_MAX_PANELS ? im->kernel_rows : NULL;
    for (int pc = 0; pc < k; pc += kc_max) {
        const int kc = k - pc < kc_max ? k - pc : kc_max;
        float kbeta;
        const int flags = block_flags(pc, kc, k, beta, 0, relu, &kbeta);
        for (int ir = 0; ir < m; ir += mr) {
            const int mv = m - ir < mr ? m - ir : mr;
            float *crow = c + (size_t)ir * ldc;
            if (rows_kernel) {
                for (int jr = 0; jr < n; jr += nr) {
                    const int nv = n - jr < nr ? n - jr : nr;
                    rows_kernel(kc, a + (size_t)ir * lda + pc, lda, bp + (size_t)(jr / nr) * k * nr + (size_t)pc * nr,
                                crow + jr, ldc, mv, nv, flags, kbeta, NULL);
                }
                continue;
            }
            fpn_transpose(isa, mv, kc, a + (size_t)ir * lda + pc, lda, ap, mr);
            for (int r = mv; r < mr; r++)
                for (int p = 0; p < kc; p++) ap[(size_t)p * mr + r] = 0.0f;
            for (int jr = 0; jr < n; jr += nr) {
                const int nv = n - jr < nr ? n - jr : nr;
                im->kernel(kc, ap, bp + (size_t)(jr / nr) * k * nr + (size_t)pc * nr, crow + jr, ldc, mv, nv,
                           flags, kbeta, NULL);
            }
        }
    }
}

int fpn_sgemm(int isa, int m, int n, int k,
              const float *a, int lda,
              const float *b, int ldb,
              float beta, float *c, int ldc,
              const float *bias, int relu) {
    if (m <= 0 || n <= 0) return 0;
    size_t pa_size = fpn_sgemm_packed_a_size(isa, m, k);
    size_t ws_size = fpn_sgemm_workspace_size(isa, n, k);
    float *pa = (float *)malloc((pa_size + ws_size) * sizeof(float) + 64);
    if (!pa) return -1;
    fpn_sgemm_pack_a(isa, m, k, a, lda, pa);
    fpn_sgemm_compute(isa, m, n, k, pa, b, ldb, beta, c, ldc, bias, relu, pa + pa_size);
    free(pa);
    return 0;
}
