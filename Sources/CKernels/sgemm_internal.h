/* Private interface between the SGEMM driver (sgemm.c) and the per-ISA kernels. */
#ifndef FPN_SGEMM_INTERNAL_H
#define FPN_SGEMM_INTERNAL_H

#include <stddef.h>

#include "ckernels.h"

/* Epilogue flags for one micro-tile update. */
#define FPN_F_LOADC 1   /* acc += beta * C (beta is 1 after the first K block) */
#define FPN_F_BIAS  2   /* acc += bias[row] (first K block only) */
#define FPN_F_RELU  4   /* max(acc, 0) (last K block only) */

/*
 * Micro-kernel: C[mv, nv] (ldc) = epilogue(sum_p a[p][0..MR) x b[p][0..NR)).
 *   a: MR floats per k step (rows beyond mv are zero padding),
 *   b: NR floats per k step, 64-byte aligned (columns beyond nv are zero),
 *   bias: NULL or the mv bias values of these rows.
 * Only rows < mv and columns < nv of C are read or written.
 */
typedef void (*fpn_kernel_fn)(int kc, const float *a, const float *b,
                              float *c, int ldc, int mv, int nv,
                              int flags, float beta, const float *bias);

/*
 * The same product reading B straight from the matrix: row p of the panel at b + p * ldb, nv (<= NR) columns,
 * nothing read past them. For products with few row panels, where packing B would cost as much as using it.
 */
typedef void (*fpn_kernel_direct_fn)(int kc, const float *a, const float *b, long ldb,
                                     float *c, int ldc, int mv, int nv,
                                     int flags, float beta, const float *bias);

/*
 * The product with A read straight from its rows: row r of the micro-tile is a + r * lda, k steps contiguous,
 * rows >= mv never read. For a row-major A used by few column panels (fully connected layers), where packing A
 * would cost as much as using it.
 */
typedef void (*fpn_kernel_rows_fn)(int kc, const float *a, long lda, const float *b,
                                   float *c, int ldc, int mv, int nv,
                                   int flags, float beta, const float *bias);

/* Packs B[kc, nc] (ldb) into ceil(nc/NR) panels of kc x NR floats, zero-padded. */
typedef void (*fpn_pack_b_fn)(int kc, int nc, const float *b, int ldb, float *dst);

/* dst[j] = src[2 * j] for j in [0, n): reads src[0 .. 2n-2] only. */
typedef void (*fpn_gather2_fn)(const float *src, int n, float *dst);

struct fpn_gemm_impl {
    int mr, nr;
    int kc;              /* preferred K block: A micro-panel (MR x KC) stays in L1 */
    fpn_kernel_fn kernel;
    fpn_kernel_direct_fn kernel_direct;  /* NULL: B is always packed */
    fpn_kernel_rows_fn kernel_rows;      /* NULL: A is always packed */
    fpn_pack_b_fn pack_b;
    fpn_gather2_fn gather2;  /* NULL: the driver's scalar loop */
};

/* Rows r0 .. r0+kc-1 (channel, ky, kx) of an im2col matrix: the input plane and the tap's offset. */
#define FPN_IM2COL_MAX_KC 1024
#define FPN_IM2COL_MAX_NR 64
struct fpn_im2col_rows {
    const float *src[FPN_IM2COL_MAX_KC];
    int dy[FPN_IM2COL_MAX_KC], dx[FPN_IM2COL_MAX_KC];
};
void fpn__im2col_rows(const struct fpn_im2col *g, int r0, int kc, struct fpn_im2col_rows *rows);

/*
 * One panel (nr <= FPN_IM2COL_MAX_NR wide) of the im2col matrix of g: block rows p0 .. p0+kc-1 of `rows`,
 * columns col .. col+n-1 (output pixels g->col0 + col ...), written as kc rows of nr floats (columns past n zero).
 */
void fpn__im2col_panel(const struct fpn_im2col *g, const struct fpn_im2col_rows *rows, fpn_gather2_fn gather2,
                       int p0, int kc, int col, int n, int nr, float *d);

extern const struct fpn_gemm_impl fpn__impl_generic;
#if defined(__x86_64__)
extern const struct fpn_gemm_impl fpn__impl_avx2;
extern const struct fpn_gemm_impl fpn__impl_avx512;
#endif

/* Per-core L2 size in KB from the cached CPU detection (0 if unknown). */
int fpn__l2_kb(void);

#endif
