/*
 * CKernels: hand-written CPU kernels with run-time ISA dispatch.
 *
 * One binary runs on every x86_64 CPU: AVX2 and AVX-512 code is compiled with
 * per-function target attributes and is only entered when the caller passes an
 * ISA that fpn_cpu_detect() reported as usable. On other architectures only
 * the portable C path exists and every ISA argument resolves to it.
 */
#ifndef FPN_CKERNELS_H
#define FPN_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* CPU feature detection                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Every feature flag is 1 only when the CPU reports it AND the OS saves the
 * register state it needs (XCR0 via xgetbv), so a 1 means "safe to execute".
 * AMX is the exception the OS can still veto: on Linux a process must also
 * call arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) before touching
 * tile registers. This library never requests that permission; amx_* says
 * only that the CPU has the unit and the kernel enabled the XTILE state in
 * XCR0.
 */
struct fpn_cpu_info {
    char vendor[16];       /* "GenuineIntel", "AuthenticAMD", ... (NUL-terminated) */
    char brand[64];        /* processor brand string, leading spaces trimmed */
    int family;            /* display family (base + extended) */
    int model;             /* display model (extended model folded in) */
    int stepping;

    int os_avx;            /* XCR0 has SSE + YMM state */
    int os_avx512;         /* XCR0 has opmask + ZMM_Hi256 + Hi16_ZMM state */

    int sse3;
    int avx;
    int avx2;
    int fma;
    int avx512f;
    int avx512bw;
    int avx512vl;
    int avx512dq;
    int avx512_bf16;
    int avx512_vnni;
    int avx_vnni;

    int amx_tile_cpu;      /* CPUID says the CPU has AMX-TILE */
    int amx_bf16_cpu;
    int amx_int8_cpu;
    int amx_os_enabled;    /* XCR0 has XTILECFG + XTILEDATA */
    int amx_tile;          /* cpu && os_enabled (Linux still needs ARCH_REQ_XCOMP_PERM) */
    int amx_bf16;
    int amx_int8;

    int l1d_kb;            /* per-core data cache sizes, 0 if unknown */
    int l2_kb;
};

/* Fills *out. Cheap enough to call at start-up; not meant for hot loops. */
void fpn_cpu_detect(struct fpn_cpu_info *out);

/* ------------------------------------------------------------------------ */
/* ISA selection                                                              */
/* ------------------------------------------------------------------------ */

enum fpn_isa {
    FPN_ISA_GENERIC = 0,   /* portable C, any architecture */
    FPN_ISA_AVX2 = 1,      /* AVX2 + FMA (Haswell, Zen 1 and later) */
    FPN_ISA_AVX512 = 2     /* AVX-512 F/BW/VL/DQ + FMA (Skylake-SP, Ice Lake, SPR, Zen 4) */
};

/* Best ISA this process may execute (detected once, then cached). */
int fpn_best_isa(void);

/* 1 if the CPU and OS support the ISA, else 0. */
int fpn_isa_supported(int isa);

/* "generic", "avx2", "avx512". */
const char *fpn_isa_name(int isa);

/*
 * How many cores work on one call made from the calling thread: 0 = all of
 * them (the default), n > 0 = at most n. Thread-local, so one thread can run
 * a whole frame single-threaded while another thread runs another frame.
 */
int fpn_thread_width(void);
void fpn_set_thread_width(int width);

/*
 * Every SGEMM entry point below resolves its isa argument the same way:
 * a value above fpn_best_isa() is lowered to fpn_best_isa(), so an
 * unsupported ISA is never executed and pack/compute always agree on the
 * packed layout as long as they receive the same isa value.
 */

/* ------------------------------------------------------------------------ */
/* Packed SGEMM: C[M,N] = act(A[M,K] * B[K,N] + beta * C + bias[row])          */
/* ------------------------------------------------------------------------ */

/*
 * All matrices are row-major float32. A is a constant weight matrix packed once
 * with fpn_sgemm_pack_a and reused by every call; B (e.g. an im2col matrix) is
 * packed per call into a caller-provided workspace.
 *
 * Calls are single-threaded and reentrant (no global mutable state besides the
 * cached CPU detection). To use several threads, either
 *   - split N:  thread t passes b + n0, c + n0, n = n1 - n0 (any n0; a multiple
 *               of fpn_sgemm_nr keeps full-width tiles), or
 *   - split M:  thread t passes packed_a + fpn_sgemm_packed_a_offset(isa, m0, k),
 *               c + m0 * ldc, bias + m0, m = m1 - m0, where m0 is a multiple of
 *               fpn_sgemm_mr(isa);
 * each thread with its own workspace.
 */

/* Micro-tile height (rows of A/C per kernel call) and width (columns of B/C). */
int fpn_sgemm_mr(int isa);
int fpn_sgemm_nr(int isa);

/* Number of floats the packed copy of an m x k matrix A occupies. */
size_t fpn_sgemm_packed_a_size(int isa, int m, int k);

/* Packs A (m x k, row stride lda) into `packed` (fpn_sgemm_packed_a_size floats). */
void fpn_sgemm_pack_a(int isa, int m, int k, const float *a, int lda, float *packed);

/* Float offset of the packed rows starting at row0 (row0 must be a multiple of MR). */
size_t fpn_sgemm_packed_a_offset(int isa, int row0, int k);

/* Floats of scratch one fpn_sgemm_compute call with this n and k needs. */
size_t fpn_sgemm_workspace_size(int isa, int n, int k);

/*
 * C = act(A * B + beta * C + bias[row]).
 *   beta == 0: C is write-only (it may hold NaN/garbage); otherwise C is read.
 *   bias:      NULL or m floats, added to every column of the matching row.
 *   relu:      nonzero applies max(x, 0) last.
 *   ldb >= n, ldc >= n. m, n, k >= 0 (k == 0 gives act(beta*C + bias)).
 *   workspace: fpn_sgemm_workspace_size(isa, n, k) floats, any alignment.
 */
void fpn_sgemm_compute(int isa, int m, int n, int k,
                       const float *packed_a,
                       const float *b, int ldb,
                       float beta, float *c, int ldc,
                       const float *bias, int relu,
                       float *workspace);

/*
 * A convolution's B operand without the im2col matrix: column j of B is output pixel col0 + j of one image
 * (row-major over an output `ow` pixels wide), row r = (channel, ky, kx) of the kernel window; the value is the
 * input pixel under that tap, or 0 in the padding. k must be channels * kh * kw.
 */
struct fpn_im2col {
    const float *x;                 /* the image's input planes [channels][h][w] */
    int h, w;                       /* input size */
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int ow;                         /* output width */
    int col0;                       /* output pixel of column 0 */
};

/* fpn_sgemm_compute with B gathered from the image while packing (same workspace size). */
void fpn_sgemm_conv_compute(int isa, int m, int n, int k,
                            const float *packed_a,
                            const struct fpn_im2col *b,
                            float beta, float *c, int ldc,
                            const float *bias, int relu,
                            float *workspace);

/*
 * The other way round, for products whose A changes every call and whose B is constant (a fully connected
 * layer: A = the rows of activations, B = the transposed weight): B is packed once with fpn_sgemm_pack_b into
 * NR-wide panels over all of K, and A is read straight from the matrix, a MR x KC slice at a time packed into
 * `workspace` right before the kernels use it (so A is read once and never written out packed).
 * C = act(A * B + beta * C); no bias (C's rows are A's rows: add a per-column bias afterwards).
 * Threading: split M (a + m0 * lda, c + m0 * ldc, any m0), each thread with its own workspace.
 */
size_t fpn_sgemm_packed_b_size(int isa, int n, int k);
void fpn_sgemm_pack_b(int isa, int n, int k, const float *b, int ldb, float *packed);
/* Floats of scratch one fpn_sgemm_rows call needs. */
size_t fpn_sgemm_rows_workspace_size(int isa, int k);
void fpn_sgemm_rows(int isa, int m, int n, int k, const float *a, int lda, const float *packed_b,
                    float beta, float *c, int ldc, int relu, float *workspace);

/*
 * Unpacked convenience for one-off GEMMs: packs A and allocates the workspace
 * internally (malloc/free per call). Returns 0 on success, -1 if allocation failed.
 */
int fpn_sgemm(int isa, int m, int n, int k,
              const float *a, int lda,
              const float *b, int ldb,
              float beta, float *c, int ldc,
              const float *bias, int relu);

/* ------------------------------------------------------------------------ */
/* Opt-in bfloat16 GEMM (AVX512_BF16): C = act(bf16(A) * bf16(B) + beta * C + bias[row]) */
/* ------------------------------------------------------------------------ */

/*
 * A and B are fp32 in memory and rounded to bfloat16 (round to nearest even; NaN stays NaN, +-inf stays)
 * while packing: A once by fpn_gemm_bf16_pack_a, B per call. Products are exact and accumulate in fp32
 * (vdpbf16ps, 2 multiply-adds per fp32 lane per instruction: twice the fp32 FMA rate); C and the epilogue
 * are fp32. Expect a relative error of about 2^-8 * sum|a*b| against fp32 (8-bit mantissas).
 * bf16 denormals (|x| < 2^-126) count as zero, as in every AVX512_BF16 instruction.
 *
 * x86_64 only, and only where fpn_bf16_supported() returns 1: compute aborts otherwise (on other
 * architectures it always aborts). The size/offset/pack functions are portable.
 * Threading as for fpn_sgemm_compute: split N (b + n0, c + n0), or split M at a multiple of
 * fpn_gemm_bf16_mr() (packed_a + fpn_gemm_bf16_packed_a_offset(m0, k) bytes, c + m0 * ldc, bias + m0),
 * each thread with its own workspace. Calls are single-threaded and reentrant.
 */

/* 1 if the CPU and OS support AVX512_BF16 (with AVX-512 F/BW/VL/DQ). */
int fpn_bf16_supported(void);

/* Micro-tile sizes of the bf16 kernel. */
int fpn_gemm_bf16_mr(void);
int fpn_gemm_bf16_nr(void);

/* Packed A (m x k fp32, rounded to bf16 here, once) size in bytes, and packing. */
size_t fpn_gemm_bf16_packed_a_bytes(int m, int k);
void fpn_gemm_bf16_pack_a(int m, int k, const float *a, int lda, void *packed);

/* Byte offset of the packed rows starting at row0 (a multiple of MR). */
size_t fpn_gemm_bf16_packed_a_offset(int row0, int k);

/* Scratch bytes one compute call needs (B packing); any alignment. */
size_t fpn_gemm_bf16_workspace_bytes(int n, int k);

/*
 * C = act(round_bf16(A) * round_bf16(B) + beta * C + bias[row]); B fp32 row-major k x n (ldb), converted
 * while packing. Same contract as fpn_sgemm_compute: beta == 0 never reads C; bias NULL or m floats;
 * relu nonzero applies max(x, 0) last; ldb >= n, ldc >= n; k == 0 gives act(beta * C + bias).
 */
void fpn_gemm_bf16_compute(int m, int n, int k, const void *packed_a, const float *b, int ldb,
                           float beta, float *c, int ldc, const float *bias, int relu, void *workspace);

/* fpn_gemm_bf16_compute with B gathered from an image as its im2col matrix while packing (same workspace). */
void fpn_gemm_bf16_conv_compute(int m, int n, int k, const void *packed_a, const struct fpn_im2col *b,
                                float beta, float *c, int ldc, const float *bias, int relu, void *workspace);

/* ------------------------------------------------------------------------ */
/* Winograd F(m x m, 3 x 3) transforms for stride-1 3x3 convolutions            */
/* ------------------------------------------------------------------------ */

/*
 * One image's convolution geometry. Output tiles of m x m pixels (m = 2 or 4; alpha = m + 2 input pixels a
 * side) are numbered row-major over a grid of ceil(ho/m) x ceil(wo/m); tile t's output origin is
 * (t / tw * m, t % tw * m) and its input origin that minus the padding. Between the transforms, alpha^2 GEMMs
 * M[xi] (cout x tiles) = U[xi] (cout x cin) * V[xi] (cin x tiles), xi = i * alpha + k, do the products.
 */
struct fpn_winograd {
    int m;                 /* output tile size: 2 or 4 */
    int cin, cout;
    int h, w;              /* input size */
    int ph, pw;            /* zero padding */
    int ho, wo;            /* output size (h + 2ph - 2, w + 2pw - 2) */
};

/* Number of output tiles. */
int fpn_winograd_tiles(const struct fpn_winograd *g);

/* U = G g G^T (computed in double) for weight [cout][cin][3][3]: u is alpha^2 matrices [cout][cin]. */
void fpn_winograd_transform_weights(int m, int cout, int cin, const float *weight, float *u);

/*
 * A block of tb tiles: tiles[0..tb) (ascending tile numbers), or t0..t0+tb-1 when tiles is NULL. Entry l of the
 * block is column l of the GEMM operands.
 *
 * V = B^T d B for the block's tiles of image x ([cin][h][w]): v[xi][c][l] with row stride ldv (>= tb), matrix
 * stride ldp (>= cin * ldv). Zero padding outside the image.
 */
void fpn_winograd_input(int isa, const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                        float *v, int ldv, long ldp);

/*
 * Y = A^T M A for the block's tiles from mm[xi][oc][l] (row stride ldm, matrix stride ldp >= cout * ldm), written
 * to out ([cout][ho][wo], pixels past the edge dropped) as act(Y + bias[oc] + residual), with bias and residual
 * (same layout as out; may be out itself) optional (NULL). Only the block's pixels are read or written.
 */
void fpn_winograd_output(int isa, const struct fpn_winograd *g, const float *mm, int ldm, long ldp, const int *tiles,
                         int t0, int tb, const float *bias, const float *residual, int relu, float *out);

/* ------------------------------------------------------------------------ */
/* RoIAlign accumulation (torchvision's CPU kernel, aligned = false)           */
/* ------------------------------------------------------------------------ */

/*
 * Direct stride-2 convolution of a few input channels (a network's stem, e.g.
 * 3 -> 64, 7x7): out[oc, oy, ox] for the output row segments (oy, ox0, length,
 * unused) s0..s1-1 (int64 quadruples), all cout channels. Inputs prepared once
 * per image: fpn_stem_phases splits x [cin, h, w] into even/odd padded columns
 * (phases [cin, 2, h, wp], wp = fpn_stem_phase_width(wo, kw)); fpn_stem_weights
 * transposes weight [cout, taps] to [taps, cout] (taps = cin * kh * kw).
 * Taps summed by FMA in (ci, ky, kx) order from 0 (rows outside the image
 * skipped), then + bias, + residual (may alias out), ReLU if relu: the same for
 * any segmentation. Only where fpn_stem_supported(...) (AVX-512, 1-4 input
 * channels, cout a multiple of 16, stride 2, dilation 1, at least 9 taps).
 */
int fpn_stem_supported(int isa, int cin, int cout, int kh, int kw, int sh, int sw, int dh, int dw);
int fpn_stem_phase_width(int wo, int kw);
void fpn_stem_phases(const float *x, int cin, int h, int w, int pw, int wp, float *phases);
void fpn_stem_weights(const float *weight, int cout, int taps, float *wt);
void fpn_stem(int isa, const float *phases, int cin, int h, int wp, const long *segments, int s0, int s1, float *out,
              const float *residual, int cout, int ho, int wo, const float *wt, const float *bias, int kh, int kw,
              int ph, int relu);

/*
 * Depthwise convolution (one input channel per group, `multiplier` outputs
 * per input channel) of output channels [oc0, oc1), over output row segments
 * (oy, ox0, length, unused) as int64 quadruples: out[oc, oy, ox] for
 * ox in [ox0, ox0 + length). x is [channels, h, w] with channel planes
 * in_plane floats apart (>= h * w; rows beyond h are never read), weight [outChannels, kh, kw],
 * out and residual [outChannels, ho, wo] (residual may be out itself: each
 * pixel reads its residual before writing). Padding ph/pw, dilation dh/dw.
 * Bit-identical to the scalar loop (taps from 0 in (ky, kx) order, multiply
 * then add, + bias, + residual, ReLU if relu). Runs only where
 * fpn_depthwise_supported(isa, sw) (AVX-512, stride_w 1 or 2); elsewhere the
 * caller keeps its own loop.
 */
int fpn_depthwise_supported(int isa, int stride_w);
void fpn_depthwise(int isa, const float *x, int h, int w, long in_plane, const long *segments, int segment_count, float *out,
                   const float *residual, int ho, int wo, const float *weight, const float *bias, int oc0, int oc1,
                   int multiplier, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int relu);

/*
 * feature:   [height * width][channels] floats (channels-last).
 * positions: per sample 4 pixel indices (y * width + x: low-low, low-high, high-low, high-high), samples in the
 *            kernel's (bin, iy, ix) order, bins * per_bin * 4 of them.
 * weights:   the 4 bilinear weights of each sample, same layout (a skipped sample has weight 0 at index 0).
 * scratch:   bins * channels floats of workspace (not used on AVX-512).
 * out:       [channels][bins]: per channel and bin, the sum over the bin's samples (in order) of
 *            ((w0 f0 + w1 f1) + w2 f2) + w3 f3, divided by per_bin. Plain multiplies and adds, no FMA: every ISA
 *            gives the bits of the scalar loop (and of torchvision's kernel).
 * isa:       an fpn_isa value; one the CPU lacks is lowered to fpn_best_isa().
 */
void fpn_roi_align_pool(int isa, const float *feature, int channels, const long *positions, const float *weights,
                        int bins, int per_bin, float *scratch, float *out);

/* ------------------------------------------------------------------------ */
/* Layout and elementwise kernels around the GEMMs                            */
/* ------------------------------------------------------------------------ */

/* transpose.c */

/*
 * dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (AVX-512: 16x16 blocks through registers, ragged
 * edges by masks). A copy: every ISA gives the same bits. isa: an fpn_isa value, lowered to fpn_best_isa().
 */
void fpn_transpose(int isa, int rows, int cols, const float *src, long lds, float *dst, long ldd);

/* groupnorm.c */

/*
 * The sum and the sum of squares of x[0..<n] in double (each v * v is exact in double). Element i is added into
 * lane i % 16, lanes l and l + 8 are added, then the eight lane sums pairwise (4, 2, 1 apart): the same order on
 * every ISA, so every ISA gives the same bits.
 */
void fpn_moments(int isa, const float *x, long n, double *sum, double *sum_squares);

/* out[i] = x[i] * a + b (multiply, then add), then 0 where that is < 0 when relu; out may be x. Same bits on every ISA. */
void fpn_scale_shift(int isa, const float *x, long n, float a, float b, int relu, float *out);

/* col2im.c */

/*
 * col2im of a transposed conv whose stride equals its kernel (no padding, dilation 1): every output pixel gets
 * exactly one tap. cols: kh * kw rows of h * w values, ld floats apart (row (ky, kx) = the tap's GEMM row for one
 * output channel); out: the (h * kh) x (w * kw) plane,
 *   out[(iy * kh + ky) * w * kw + ix * kw + kx] = bias + cols[(ky * kw + kx) * ld + iy * w + ix],
 * then 0 where that is < 0 when relu. Same bits on every ISA (AVX-512 path for kw == 2).
 */
void fpn_col2im_one_tap(int isa, const float *cols, long ld, int h, int w, int kh, int kw, float bias, int relu,
                        float *out);

/* argmax.c */

/*
 * labels[i] = the index c < k of the largest src[c * plane + i] (k <= 256), the first maximum winning (a later
 * plane takes a pixel only when strictly greater; NaN never does). Same labels on every ISA.
 */
void fpn_argmax_planes(int isa, const float *src, long plane, int k, unsigned char *labels);

/*
 * Where a block of `lanes` (1...16) neighbouring columns of a row-major int32 map changes from one row to the next:
 * for y in 1..<rows, when ids[y * stride + j] != ids[(y - 1) * stride + j] for some lane j, appends y to `rows_out`
 * and the lanes that changed (bit j) to `masks_out`. Returns the number appended (at most rows - 1). Same result on
 * every ISA.
 */
long fpn_row_changes(int isa, const int *ids, long stride, int rows, int lanes, int *rows_out,
                     unsigned short *masks_out);

/*
 * The panoptic merge's stuff pass, in two steps over n pixels. fpn_void_label_histogram: hist[labels[p]] += 1 for
 * every p with ids[p] == 0 (hist: 256 counts, added to). fpn_stuff_select: ids[p] = table[labels[p]] for every p
 * with ids[p] == 0 (table: 256 ids). Runs of 16 void pixels of one label take one step. Same result on every ISA.
 */
void fpn_void_label_histogram(int isa, const int *ids, const unsigned char *labels, long n, long *hist);
void fpn_stuff_select(int isa, int *ids, const unsigned char *labels, long n, const int *table);

/*
 * Output gating of a tile pass computed into output planes (stage, out and residual: `cout` planes; stage planes
 * `stage_plane` floats apart, out and residual `plane` apart; pixel p = y * wo + x). For each row span i (pixel
 * row rows[i], columns x0[i] <= x < x1[i]) and each pixel p there with mask[p] != 0, t = act(stage + bias[oc] +
 * residual) (ReLU when relu: t < 0 ? 0 : t); fpn_gate_max_planes raises pixmax[p] to the absolute-value bits of
 * t - out over the channels, fpn_gate_commit_planes writes t into out. bias and residual may be NULL.
 */
void fpn_gate_max_planes(int isa, int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                         const unsigned char *mask, const float *stage, long stage_plane, const float *out,
                         const float *residual, long plane, const float *bias, int relu, uint32_t *pixmax);
void fpn_gate_commit_planes(int isa, int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                            const unsigned char *mask, const float *stage, long stage_plane, float *out,
                            const float *residual, long plane, const float *bias, int relu);

/* paste.c */

/*
 * out[r * cols + c] = the bilinear value at source rows yi0[r], yi1[r] (weights yw0, yw1) and columns xi0[c],
 * xi1[c] (xw0, xw1) of the p x p mask src: ATen's small-output formula (small != 0: h0*w0*i00 + h0*w1*i01 +
 * h1*w0*i10 + h1*w1*i11, FMA-contracted left to right) or its generic one ((i00*w0 + i01*w1)*h0 + (i10*w0 +
 * i11*w1)*h1). Indices in [0, p). Same bits on every ISA (AVX-512: p <= 32, taps permuted from registers).
 */
void fpn_paste_bilinear(int isa, const float *src, int p, const int *yi0, const int *yi1, const float *yw0,
                        const float *yw1, int rows, const int *xi0, const int *xi1, const float *xw0, const float *xw1,
                        int cols, int small, float *out);

/* resize.c */

/* out[i] = wa * a[i] + wb * b[i] (two multiplies, then the add): the vertical step of bilinear resizing. */
void fpn_lerp_rows(int isa, const float *a, const float *b, long n, float wa, float wb, float *out);
/* out[i] += (wa * a[i] + wb * b[i]), the lerp rounded before the add: a resize into a sum, same bits as the two. */
void fpn_lerp_rows_add(int isa, const float *a, const float *b, long n, float wa, float wb, float *out);

/*
 * out[o] = w0[o] * row[i0[o]] + w1[o] * row[i1[o]] for o < n, every index in [0, len): the horizontal step of
 * bilinear resizing (AVX-512: a block of 16 outputs whose taps lie within 32 floats of its smallest is permuted
 * from two loads, others gathered). `bases`: per block the smallest tap, or -1 where the taps spread wider, from
 * fpn_lerp_taps_bases (a resize applies the same taps to every row); NULL: found per block. Same bits on every ISA.
 */
void fpn_lerp_taps(int isa, const float *row, int len, const int *i0, const int *i1, const float *w0, const float *w1,
                   const int *bases, long n, float *out);
/* The bases of fpn_lerp_taps for n column taps: (n + 15) / 16 ints. */
void fpn_lerp_taps_bases(const int *i0, const int *i1, long n, int *bases);

/* normalize.c */

/*
 * out[c * plane + y * ldo + x] = table[c * 256 + rgb[(y * w + x) * 3 + c]] for the w x h interleaved RGB bytes
 * (rows packed, 3 * w bytes each), c < 3: a detector's normalisation of a frame into float planes (row stride
 * ldo >= w; nothing past column w is written). Same bits on every ISA (a lookup).
 */
void fpn_normalize_rgb(int isa, const uint8_t *rgb, int w, int h, const float *table, float *out, long plane,
                       int ldo);

/* maxpool.c */

/* acc[i] = row[i] if row[i] > acc[i] or row[i] is NaN, else acc[i]: max pooling's step down a window's rows. */
void fpn_max_rows(int isa, float *acc, const float *row, long n);

/*
 * Max pooling along a row: for ox in [ox0, ox0 + count), d[ox] = the max (NaN wins, first to last column, as
 * fpn_max_rows) of v over the window columns ox * sw - pw ... + kw - 1 that lie in [0, w). v must have w readable
 * floats; only the windows' columns affect the result. Same bits on every ISA (AVX-512 at stride 1 and 2).
 */
void fpn_max_windows(int isa, const float *v, int w, long ox0, long count, int kw, int sw, int pw, float *d);

/* ------------------------------------------------------------------------ */
/* The CPU's limit                                                            */
/* ------------------------------------------------------------------------ */

/*
 * GFLOP/s of one core running only register FMAs of the ISA's widest vectors (the fp32 limit a GEMM is quoted
 * against): the best of repeated timed loops over about `seconds`. Call from N threads for N cores.
 */
double fpn_fma_peak_gflops(int isa, double seconds);

/*
 * How fast AVX512_BF16 dot products (vdpbf16ps, 2 products per fp32 lane) run against AVX-512 fp32 FMAs on this
 * core, in multiply-adds per second: about 2 where the CPU issues both at one per cycle (AMD Zen 4), about 0.5 on
 * Intel cores without AMX. Register-only loops, a few milliseconds; 0 when the CPU lacks AVX512_BF16.
 */
double fpn_bf16_rate_ratio(void);

#ifdef __cplusplus
}
#endif

#endif /* FPN_CKERNELS_H */
