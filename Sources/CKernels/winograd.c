/*
 * Winograd F(m x m, 3 x 3) convolution transforms (Lavin & Gray, 2016), m = 2 or 4.
 *
 * A stride-1 3x3 convolution of an image is computed tile by tile: each output tile of m x m pixels needs an
 * alpha x alpha input tile (alpha = m + 2). With U = G g G^T (weights, once) and V = B^T d B (input), the tile is
 * Y = A^T [sum over input channels of U (.) V] A, so the work is alpha^2 GEMMs [cout x cin] x [cin x tiles]
 * between the two transforms: 16 products per 4 outputs instead of 36 (m = 2), or 36 per 16 instead of 144
 * (m = 4). The transforms are the only new arithmetic; the GEMMs run on the packed SGEMM kernels.
 *
 * The matrices compute cross-correlation (what nn.Conv2d computes). Zero entries are skipped and unit entries
 * become additions at compile time: the transforms below are written over the constant tables with the loops
 * fully unrolled.
 */
#include "ckernels.h"

#include <stdlib.h>
#include <string.h>

/* F(4x4, 3x3): alpha = 6, interpolation points 0, +-1, +-2, inf. */
static const float BT6[6][6] = {
    {4, 0, -5, 0, 1, 0},
    {0, -4, -4, 1, 1, 0},
    {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0},
    {0, 2, -1, -2, 1, 0},
    {0, 4, 0, -5, 0, 1},
};
static const double G6[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};
static const float AT6[4][6] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1},
};

/* F(2x2, 3x3): alpha = 4, points 0, +-1, inf. */
static const float BT4[4][4] = {
    {1, 0, -1, 0},
    {0, 1, 1, 0},
    {0, -1, 1, 0},
    {0, 1, 0, -1},
};
static const double G4[4][3] = {
    {1, 0, 0},
    {0.5, 0.5, 0.5},
    {0.5, -0.5, 0.5},
    {0, 0, 1},
};
static const float AT4[2][4] = {
    {1, 1, 1, 0},
    {0, 1, -1, -1},
};

#define INLINE static inline __attribute__((always_inline))

/* Tile number of block entry l: from the caller's list, or consecutive from t0. */
#define TILE(tiles, t0, l) ((tiles) ? (tiles)[(l)] : (t0) + (l))

int fpn_winograd_tiles(const struct fpn_winograd *g) {
    return ((g->ho + g->m - 1) / g->m) * ((g->wo + g->m - 1) / g->m);
}

/*
 * U = G g G^T for the cin kernels of one output channel, input channels across the vector lanes: t = G g row by row
 * into `tg` ([a][3][cin] doubles) from the weights transposed to `wt` ([9][cin]), then each of the a * a planes'
 * cin floats at `col`. Per kernel the same operations in the same order as one kernel at a time, and none fused:
 * every instantiation gives the same bits.
 */
INLINE void transform_output_channel(int a, const double *G, int cin, const float *wt, double *tg, float *u,
                                     size_t plane, size_t col) {
#pragma clang fp contract(off)
    for (int i = 0; i < a; i++) {
        const double g0 = G[i * 3], g1 = G[i * 3 + 1], g2 = G[i * 3 + 2];
        for (int j = 0; j < 3; j++) {
            double *t = tg + (size_t)(i * 3 + j) * cin;
            const float *w0 = wt + (size_t)j * cin, *w1 = wt + (size_t)(3 + j) * cin, *w2 = wt + (size_t)(6 + j) * cin;
            for (int c = 0; c < cin; c++) t[c] = g0 * w0[c] + g1 * w1[c] + g2 * w2[c];
        }
    }
    for (int i = 0; i < a; i++) {
        const double *t0 = tg + (size_t)(i * 3) * cin, *t1 = t0 + cin, *t2 = t1 + cin;
        for (int k = 0; k < a; k++) {
            const double h0 = G[k * 3], h1 = G[k * 3 + 1], h2 = G[k * 3 + 2];
            float *dst = u + (size_t)(i * a + k) * plane + col;
            for (int c = 0; c < cin; c++) dst[c] = (float)(t0[c] * h0 + t1[c] * h1 + t2[c] * h2);
        }
    }
}

static void transform_output_channel_generic(int a, const double *G, int cin, const float *wt, double *tg, float *u,
                                             size_t plane, size_t col) {
    transform_output_channel(a, G, cin, wt, tg, u, plane, col);
}

#if defined(__x86_64__)
__attribute__((target("avx2")))
static void transform_output_channel_avx2(int a, const double *G, int cin, const float *wt, double *tg, float *u,
                                          size_t plane, size_t col) {
    transform_output_channel(a, G, cin, wt, tg, u, plane, col);
}

__attribute__((target("avx512f,avx512vl,avx512dq")))
static void transform_output_channel_avx512(int a, const double *G, int cin, const float *wt, double *tg, float *u,
                                            size_t plane, size_t col) {
    transform_output_channel(a, G, cin, wt, tg, u, plane, col);
}
#endif

void fpn_winograd_transform_weights(int m, int cout, int cin, const float *weight, float *u) {
    const int a = m + 2;
    const double *G = m == 4 ? &G6[0][0] : &G4[0][0];
    const size_t plane = (size_t)cout * cin;
    float *wt = malloc(sizeof(float) * 9 * (size_t)cin);
    double *tg = malloc(sizeof(double) * 3 * (size_t)a * (size_t)cin);
    if (!wt || !tg) abort();
    /* The same bits on every ISA, so the widest the CPU has (loading weights is not a compute-path choice). */
    void (*channel)(int, const double *, int, const float *, double *, float *, size_t, size_t) =
        transform_output_channel_generic;
#if defined(__x86_64__)
    if (fpn_best_isa() >= FPN_ISA_AVX512) channel = transform_output_channel_avx512;
    else if (fpn_best_isa() >= FPN_ISA_AVX2) channel = transform_output_channel_avx2;
#endif
    for (int o = 0; o < cout; o++) {
        const float *w = weight + (size_t)o * cin * 9;
        for (int c = 0; c < cin; c++)
            for (int t = 0; t < 9; t++) wt[(size_t)t * cin + c] = w[(size_t)c * 9 + t];
        channel(a, G, cin, wt, tg, u, plane, (size_t)o * cin);
    }
    free(wt);
    free(tg);
}

/* ------------------------------------------------------------------------ */
/* Portable transforms (one tile at a time)                                   */
/* ------------------------------------------------------------------------ */

/* r = sum_j M[i][j] x[j] over a constant row of M: zero terms vanish, +-1 terms need no multiply. */
#define ROW_DOT(M, i, x, n, r)                                         \
    do {                                                               \
        float acc_ = 0;                                                \
        for (int j_ = 0; j_ < (n); j_++) {                             \
            float c_ = (M)[i][j_];                                     \
            if (c_ == 0) continue;                                     \
            acc_ += c_ == 1 ? (x)[j_] : c_ == -1 ? -(x)[j_] : c_ * (x)[j_]; \
        }                                                              \
        (r) = acc_;                                                    \
    } while (0)

/*
 * F(4x4, 3x3) rows as factored sums: B^T d in 14 operations instead of 22, A^T m in 10 instead of 18 (the
 * compiler may not re-associate the generic dot products above, so it would not find these itself).
 */
#define BT6_ROWS(d, r, ADD, SUB, MADD, NMADD, K)                                           \
    do {                                                                                   \
        const __typeof__(d[0]) s12_ = ADD(d[1], d[2]), s34_ = ADD(d[3], d[4]);             \
        const __typeof__(d[0]) d12_ = SUB(d[1], d[2]), d43_ = SUB(d[4], d[3]);             \
        const __typeof__(d[0]) d42_ = SUB(d[4], d[2]), d31_ = SUB(d[3], d[1]);             \
        (r)[0] = NMADD(K(5), d[2], MADD(K(4), d[0], d[4]));                                \
        (r)[1] = NMADD(K(4), s12_, s34_);                                                  \
        (r)[2] = MADD(K(4), d12_, d43_);                                                   \
        (r)[3] = MADD(K(2), d31_, d42_);                                                   \
        (r)[4] = NMADD(K(2), d31_, d42_);                                                  \
        (r)[5] = NMADD(K(5), d[3], MADD(K(4), d[1], d[5]));                                \
    } while (0)
#define AT6_ROWS(d, y, ADD, SUB, MADD, K)                                                  \
    do {                                                                                   \
        const __typeof__(d[0]) s12_ = ADD(d[1], d[2]), s34_ = ADD(d[3], d[4]);             \
        const __typeof__(d[0]) d12_ = SUB(d[1], d[2]), d34_ = SUB(d[3], d[4]);             \
        (y)[0] = ADD(ADD(d[0], s12_), s34_);                                               \
        (y)[1] = MADD(K(2), d34_, d12_);                                                   \
        (y)[2] = MADD(K(4), s34_, s12_);                                                   \
        (y)[3] = ADD(MADD(K(8), d34_, d12_), d[5]);                                        \
    } while (0)
#define S_ADD(a, b) ((a) + (b))
#define S_SUB(a, b) ((a) - (b))
#define S_MADD(k, a, b) ((k) * (a) + (b))
#define S_NMADD(k, a, b) ((b) - (k) * (a))
#define S_K(v) ((float)(v))

/* r = BT x (A values), over a constant BT: the factored rows for A = 6. */
INLINE void bt_apply(const int A, const float (*BT)[A], const float *x, float *r) {
    if (A == 6) { BT6_ROWS(x, r, S_ADD, S_SUB, S_MADD, S_NMADD, S_K); return; }
    for (int i = 0; i < A; i++) ROW_DOT(BT, i, x, A, r[i]);
}

/* y = AT x (M values from A). */
INLINE void at_apply(const int A, const int M, const float (*AT)[A], const float *x, float *y) {
    if (A == 6) { AT6_ROWS(x, y, S_ADD, S_SUB, S_MADD, S_K); return; }
    for (int i = 0; i < M; i++) ROW_DOT(AT, i, x, A, y[i]);
}

INLINE void input_tile_generic(const int A, const float (*BT)[A], const struct fpn_winograd *g, const float *x,
                               const int *tiles, int t0, int tb, float *v, int ldv, long ldp) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)ldp;
    for (int t = 0; t < tb; t++) {
        int ty = TILE(tiles, t0, t) / tw, tx = TILE(tiles, t0, t) % tw;
        int iy0 = ty * m - g->ph, ix0 = tx * m - g->pw;
        for (int c = 0; c < g->cin; c++) {
            const float *xc = x + (size_t)c * g->h * g->w;
            float d[6][6], col[6], tmp[6][6];
            for (int r = 0; r < A; r++) {
                int iy = iy0 + r;
                for (int j = 0; j < A; j++) {
                    int ix = ix0 + j;
                    d[r][j] = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w ? xc[(size_t)iy * g->w + ix] : 0.0f;
                }
            }
            /* Rows first, then columns, as the vector transforms. */
            for (int r = 0; r < A; r++) bt_apply(A, BT, d[r], tmp[r]);
            for (int k = 0; k < A; k++) {
                float s[6];
                for (int r = 0; r < A; r++) col[r] = tmp[r][k];
                bt_apply(A, BT, col, s);
                for (int i = 0; i < A; i++) v[(size_t)(i * A + k) * plane + (size_t)c * ldv + t] = s[i];
            }
        }
    }
}

/* Writes one transformed m x m tile y for output channel oc with the epilogue. */
INLINE void store_tile(const struct fpn_winograd *g, int oc, int oy0, int ox0, const float *y, float bias,
                       const float *residual, int relu, float *out) {
    const int m = g->m;
    size_t plane = (size_t)oc * g->ho * g->wo;
    for (int i = 0; i < m && oy0 + i < g->ho; i++)
        for (int k = 0; k < m && ox0 + k < g->wo; k++) {
            size_t at = plane + (size_t)(oy0 + i) * g->wo + ox0 + k;
            float s = y[i * m + k] + bias + (residual ? residual[at] : 0.0f);
            out[at] = relu && s < 0 ? 0.0f : s;
        }
}

INLINE void output_tile_generic(const int A, const int M, const float (*AT)[A], const struct fpn_winograd *g,
                                const float *mm, int ldm, long ldp, const int *tiles, int t0, int tb,
                                const float *bias, const float *residual, int relu, float *out) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)ldp;
    for (int t = 0; t < tb; t++) {
        int ty = TILE(tiles, t0, t) / tw, tx = TILE(tiles, t0, t) % tw;
        for (int oc = 0; oc < g->cout; oc++) {
            float d[6][6], col[6], tmp[4][6], y[16];
            for (int r = 0; r < A; r++)
                for (int j = 0; j < A; j++) d[r][j] = mm[(size_t)(r * A + j) * plane + (size_t)oc * ldm + t];
            for (int j = 0; j < A; j++) {
                float r4[4];
                for (int r = 0; r < A; r++) col[r] = d[r][j];
                at_apply(A, M, AT, col, r4);
                for (int i = 0; i < M; i++) tmp[i][j] = r4[i];
            }
            for (int i = 0; i < M; i++) at_apply(A, M, AT, tmp[i], y + i * M);
            store_tile(g, oc, ty * m, tx * m, y, bias ? bias[oc] : 0.0f, residual, relu, out);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* AVX-512: 16 tiles per vector lane group                                    */
/* ------------------------------------------------------------------------ */

#if defined(__x86_64__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* acc = sum_j M[i][j] x[j] over vectors, with the constant row's zeros skipped and +-1 as add/sub. */
#define VROW_DOT(M, i, x, n, r)                                                           \
    do {                                                                                  \
        __m512 acc_ = _mm512_setzero_ps();                                                \
        for (int j_ = 0; j_ < (n); j_++) {                                                \
            float c_ = (M)[i][j_];                                                        \
            if (c_ == 0) continue;                                                        \
            acc_ = c_ == 1 ? _mm512_add_ps(acc_, (x)[j_])                                 \
                 : c_ == -1 ? _mm512_sub_ps(acc_, (x)[j_])                                \
                 : _mm512_fmadd_ps(_mm512_set1_ps(c_), (x)[j_], acc_);                    \
        }                                                                                 \
        (r) = acc_;                                                                       \
    } while (0)

#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_SUB(a, b) _mm512_sub_ps(a, b)
#define V_MADD(k, a, b) _mm512_fmadd_ps(k, a, b)
#define V_NMADD(k, a, b) _mm512_fnmadd_ps(k, a, b)
#define V_K(v) _mm512_set1_ps((float)(v))

INLINE T512 void vbt_apply(const int A, const float (*BT)[A], const __m512 *x, __m512 *r) {
    if (A == 6) { BT6_ROWS(x, r, V_ADD, V_SUB, V_MADD, V_NMADD, V_K); return; }
    for (int i = 0; i < A; i++) VROW_DOT(BT, i, x, A, r[i]);
}

INLINE T512 void vat_apply(const int A, const int M, const float (*AT)[A], const __m512 *x, __m512 *y) {
    if (A == 6) { AT6_ROWS(x, y, V_ADD, V_SUB, V_MADD, V_K); return; }
    for (int i = 0; i < M; i++) VROW_DOT(AT, i, x, A, y[i]);
}

/* Mask of the positions [start, start + count) (count <= 16) of a row of w that lie inside it. */
static inline __mmask16 span_mask(int start, int w, int count) {
    const int lo = start < 0 ? -start : 0;
    const int hi = w - start < count ? w - start : count;
    return lo >= hi ? (__mmask16)0 : (__mmask16)((((1u << hi) - 1u) >> lo) << lo);
}

/*
 * A run of consecutive tiles in one tile row, read with loads and permutes instead of gathers (F(4x4, 3x3)):
 * lane l of column j of input row r is x[iy0 + r][b + 4l + j] (b: the input column of lane 0's window, as if the
 * run started at lane 0). The 66 positions of a row are four 16-float loads and two single floats, each masked
 * to the row (zero padding outside it).
 */
struct tile_run {
    int iy0, b;
    __mmask16 lanes;
    __mmask16 span[4], last[2];
};

/* Lane l of ix[j] picks position 4l + j of a 32-float pair of loads (lanes 8-15 repeat lanes 0-7). */
static const int deinterleave4[4][16] = {
    {0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28},
    {1, 5, 9, 13, 17, 21, 25, 29, 1, 5, 9, 13, 17, 21, 25, 29},
    {2, 6, 10, 14, 18, 22, 26, 30, 2, 6, 10, 14, 18, 22, 26, 30},
    {3, 7, 11, 15, 19, 23, 27, 31, 3, 7, 11, 15, 19, 23, 27, 31},
};

/* The six columns of one input row of a run: d[j] lane l = row[b + 4l + j] (zero outside the row). */
INLINE T512 void run_row6(const struct tile_run *u, const float *row, const __m512i ix[4], __m512 d[6]) {
    const float *p = row + u->b;
    const __m512 q0 = _mm512_maskz_loadu_ps(u->span[0], p), q1 = _mm512_maskz_loadu_ps(u->span[1], p + 16);
    const __m512 q2 = _mm512_maskz_loadu_ps(u->span[2], p + 32), q3 = _mm512_maskz_loadu_ps(u->span[3], p + 48);
    for (int j = 0; j < 4; j++)
        d[j] = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(q0, ix[j], q1), _mm512_permutex2var_ps(q2, ix[j], q3), 0x44);
    /* Columns 4 and 5 are columns 0 and 1 moved down one lane, with the row's next position in lane 15. */
    for (int j = 4; j < 6; j++) {
        const __m512i next = _mm512_castps_si512(_mm512_maskz_loadu_ps(u->last[j - 4], p + 60 + j));
        d[j] = _mm512_castsi512_ps(_mm512_alignr_epi32(next, _mm512_castps_si512(d[j - 4]), 1));
    }
}

/* Input transform of tiles t0..t0+tb-1; lanes are tiles, gathered with zero padding by mask. */
INLINE T512 void input_avx512(const int A, const float (*BT)[A], const struct fpn_winograd *g, const float *x,
                              const int *tiles, int t0, int tb, float *v, int ldv, long ldp) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)ldp, hw = (size_t)g->h * g->w;
    for (int l0 = 0; l0 < tb; l0 += 16) {
        __mmask16 live = tb - l0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (tb - l0)) - 1u);
        int tyv[16], txv[16];
        for (int l = 0; l < 16; l++) {
            int t = l0 + l < tb ? TILE(tiles, t0, l0 + l) : 0;
            tyv[l] = t / tw;
            txv[l] = t % tw;
        }
        /* Runs of consecutive tiles in one tile row: up to 3 are read with loads and permutes (A = 6). */
        enum { MAX_RUNS = 3 };
        struct tile_run run[MAX_RUNS];
        int runs = 0;
        if (A == 6) {
            const int lanes = tb - l0 < 16 ? tb - l0 : 16;
            for (int l = 0; l < lanes && runs <= MAX_RUNS; l++) {
                if (l == 0 || tyv[l] != tyv[l - 1] || txv[l] != txv[l - 1] + 1) {
                    if (runs == MAX_RUNS) { runs++; break; }
                    struct tile_run *u = &run[runs++];
                    u->iy0 = tyv[l] * m - g->ph;
                    u->b = (txv[l] - l) * m - g->pw;
                    u->lanes = 0;
                    for (int q = 0; q < 4; q++) u->span[q] = span_mask(u->b + 16 * q, g->w, 16);
                    for (int q = 0; q < 2; q++) u->last[q] = span_mask(u->b + 64 + q, g->w, 1);
                }
                run[runs - 1].lanes |= (__mmask16)(1u << l);
            }
        }
        const int by_runs = A == 6 && runs <= MAX_RUNS;
        __m512i ix[4];
        for (int j = 0; j < 4; j++) ix[j] = _mm512_loadu_si512(deinterleave4[j]);
        __mmask16 rowok[6], colok[6];
        __m512i base = _mm512_setzero_si512();
        if (!by_runs) {
            __m512i ty = _mm512_loadu_si512(tyv), tx = _mm512_loadu_si512(txv);
            __m512i iy0 = _mm512_sub_epi32(_mm512_mullo_epi32(ty, _mm512_set1_epi32(m)), _mm512_set1_epi32(g->ph));
            __m512i ix0 = _mm512_sub_epi32(_mm512_mullo_epi32(tx, _mm512_set1_epi32(m)), _mm512_set1_epi32(g->pw));
            for (int r = 0; r < A; r++) {
                __m512i iy = _mm512_add_epi32(iy0, _mm512_set1_epi32(r));
                rowok[r] = live & _mm512_cmpge_epi32_mask(iy, _mm512_setzero_si512())
                         & _mm512_cmplt_epi32_mask(iy, _mm512_set1_epi32(g->h));
                __m512i cx = _mm512_add_epi32(ix0, _mm512_set1_epi32(r));
                colok[r] = _mm512_cmpge_epi32_mask(cx, _mm512_setzero_si512())
                         & _mm512_cmplt_epi32_mask(cx, _mm512_set1_epi32(g->w));
            }
            base = _mm512_add_epi32(_mm512_mullo_epi32(iy0, _mm512_set1_epi32(g->w)), ix0);
        }
        for (int c = 0; c < g->cin; c++) {
            const float *xc = x + (size_t)c * hw;
            /* Rows first (h[r][k] = sum_j BT[k][j] d[r][j]), then columns: the same operations in the same order
               whichever way the row is read, so a tile's V does not depend on the block it was transformed in. */
            __m512 h[6][6];
            for (int r = 0; r < A; r++) {
                __m512 d[6];
                if (by_runs) {
                    for (int j = 0; j < 6; j++) d[j] = _mm512_setzero_ps();
                    for (int s = 0; s < runs; s++) {
                        const int iy = run[s].iy0 + r;
                        if (iy < 0 || iy >= g->h) continue;
                        __m512 e[6];
                        run_row6(&run[s], xc + (size_t)iy * g->w, ix, e);
                        for (int j = 0; j < 6; j++) d[j] = runs == 1 ? e[j] : _mm512_mask_mov_ps(d[j], run[s].lanes, e[j]);
                    }
                } else {
                    for (int j = 0; j < A; j++) {
                        __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(r * g->w + j));
                        d[j] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rowok[r] & colok[j], idx, xc, 4);
                    }
                }
                vbt_apply(A, BT, d, h[r]);
            }
            float *vc = v + (size_t)c * ldv + l0;
            for (int k = 0; k < A; k++) {
                __m512 col[6], s6[6];
                for (int r = 0; r < A; r++) col[r] = h[r][k];
                vbt_apply(A, BT, col, s6);
                for (int i = 0; i < A; i++) _mm512_mask_storeu_ps(vc + (size_t)(i * A + k) * plane, live, s6[i]);
            }
        }
    }
}

INLINE T512 void output_avx512(const int A, const int M, const float (*AT)[A], const struct fpn_winograd *g,
                               const float *mm, int ldm, long ldp, const int *tiles, int t0, int tb,
                               const float *bias, const float *residual, int relu, float *out) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)ldp;
    for (int l0 = 0; l0 < tb; l0 += 16) {
        int lanes = tb - l0 < 16 ? tb - l0 : 16;
        __mmask16 live = lanes == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << lanes) - 1u);
        int oy0[16], ox0[16];
        for (int l = 0; l < lanes; l++) {
            int t = TILE(tiles, t0, l0 + l);
            oy0[l] = t / tw * m;
            ox0[l] = t % tw * m;
        }
        /* The 16 tiles lie side by side in one tile row (tile numbers ascend), all inside the image: rows of 16*M
           contiguous pixels. */
        /* Per tile: output rows and columns inside the image (a mask of the M columns). */
        int rows_in[16];
        __mmask8 cols_in[16];
        for (int l = 0; l < lanes; l++) {
            const int rh = g->ho - oy0[l], cw = g->wo - ox0[l];
            rows_in[l] = rh < M ? rh : M;
            cols_in[l] = (__mmask8)((1u << (cw < M ? cw : M)) - 1u);
        }
        int row_run = lanes == 16 && oy0[0] == oy0[15] && ox0[15] == ox0[0] + 15 * M && oy0[0] + M <= g->ho
                   && ox0[15] + M <= g->wo;
        for (int oc = 0; oc < g->cout; oc++) {
            const float *mo = mm + (size_t)oc * ldm + l0;
            __m512 tmp[4][6];
            for (int j = 0; j < A; j++) {
                __m512 col[6];
                for (int r = 0; r < A; r++) col[r] = _mm512_maskz_loadu_ps(live, mo + (size_t)(r * A + j) * plane);
                __m512 r4[4];
                vat_apply(A, M, AT, col, r4);
                for (int i = 0; i < M; i++) tmp[i][j] = r4[i];
            }
            __m512 bv = _mm512_set1_ps(bias ? bias[oc] : 0.0f);
            size_t plane = (size_t)oc * g->ho * g->wo;
            for (int i = 0; i < M; i++) {
                __m512 y[4];
                vat_apply(A, M, AT, tmp[i], y);
                for (int k = 0; k < M; k++) y[k] = _mm512_add_ps(y[k], bv);
                /* Interleave y[k][lane] into pixel lane*M + k: vector q holds pixels 16q..16q+15 of the 16 tiles'
                   row i, lane (16q+e)/M, column (16q+e)%M. */
                __m512 px[4];
                for (int q = 0; q < M; q++) {
                    __m512i e = _mm512_add_epi32(_mm512_set1_epi32(16 * q),
                                                 _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
                    __m512i ln = M == 4 ? _mm512_srli_epi32(e, 2) : _mm512_srli_epi32(e, 1);
                    __m512i kk = _mm512_and_si512(e, _mm512_set1_epi32(M - 1));
                    px[q] = _mm512_setzero_ps();
                    for (int k = 0; k < M; k++) {
                        __mmask16 sel = _mm512_cmpeq_epi32_mask(kk, _mm512_set1_epi32(k));
                        px[q] = _mm512_mask_permutexvar_ps(px[q], sel, ln, y[k]);
                    }
                }
                if (row_run) {
                    /* The 16 tiles' row i is 16*M contiguous pixels. */
                    size_t at = plane + (size_t)(oy0[0] + i) * g->wo + ox0[0];
                    for (int q = 0; q < M; q++) {
                        __m512 s = px[q];
                        if (residual) s = _mm512_add_ps(s, _mm512_loadu_ps(residual + at + 16 * q));
                        if (relu) s = _mm512_max_ps(s, _mm512_setzero_ps());
                        _mm512_storeu_ps(out + at + 16 * q, s);
                    }
                } else {
                    /* Tile by tile: M pixels each, masked to the image. */
                    float buf[64];
                    for (int q = 0; q < M; q++) _mm512_storeu_ps(buf + 16 * q, px[q]);
                    for (int l = 0; l < lanes; l++) {
                        const __mmask8 k = i < rows_in[l] ? cols_in[l] : 0;
                        if (!k) continue;
                        const size_t at = plane + (size_t)(oy0[l] + i) * g->wo + ox0[l];
                        __m128 s = _mm_maskz_loadu_ps(k, buf + l * M);
                        if (residual) s = _mm_add_ps(s, _mm_maskz_loadu_ps(k, residual + at));
                        if (relu) s = _mm_max_ps(s, _mm_setzero_ps());
                        _mm_mask_storeu_ps(out + at, k, s);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* AVX2: F(4x4, 3x3) with 8 tiles per vector                                  */
/* ------------------------------------------------------------------------ */

#define T256 __attribute__((target("avx2,fma")))

#define Y_ADD(a, b) _mm256_add_ps(a, b)
#define Y_SUB(a, b) _mm256_sub_ps(a, b)
#define Y_MADD(k, a, b) _mm256_fmadd_ps(k, a, b)
#define Y_NMADD(k, a, b) _mm256_fnmadd_ps(k, a, b)
#define Y_K(v) _mm256_set1_ps((float)(v))

/*
 * 4x4 transposes within each 128-bit half: lane l of out[j] is element j of in[l] (l < 4) or of the high half
 * of in[l - 4]. Its own inverse: applied to out it gives in back.
 */
INLINE T256 void transpose4_halves(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 out[4]) {
    const __m256d t0 = _mm256_castps_pd(_mm256_unpacklo_ps(r0, r1)), t1 = _mm256_castps_pd(_mm256_unpackhi_ps(r0, r1));
    const __m256d t2 = _mm256_castps_pd(_mm256_unpacklo_ps(r2, r3)), t3 = _mm256_castps_pd(_mm256_unpackhi_ps(r2, r3));
    out[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2));
    out[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2));
    out[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3));
    out[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3));
}

/*
 * The six columns of one input row under 8 consecutive tiles: d[j] lane l = row[b + 4l + j], zero outside the
 * row (w wide). The 34 positions are read as 4-float groups (group l = lane l's first four columns) and
 * transposed; columns 4 and 5 are columns 0 and 1 moved down one lane.
 */
INLINE T256 void run_row6_avx2(const float *row, int b, int w, __m256 d[6]) {
    float edge[40];
    const float *p = row + b;
    if (b < 0 || b + 34 > w) {
        for (int j = 0; j < 34; j++) edge[j] = b + j >= 0 && b + j < w ? row[b + j] : 0.0f;
        p = edge;
    }
    const __m256 q0 = _mm256_loadu_ps(p), q1 = _mm256_loadu_ps(p + 8);
    const __m256 q2 = _mm256_loadu_ps(p + 16), q3 = _mm256_loadu_ps(p + 24);
    transpose4_halves(_mm256_permute2f128_ps(q0, q2, 0x20), _mm256_permute2f128_ps(q0, q2, 0x31),
                      _mm256_permute2f128_ps(q1, q3, 0x20), _mm256_permute2f128_ps(q1, q3, 0x31), d);
    const __m256i down = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    d[4] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[0], down), _mm256_set1_ps(p[32]), 0x80);
    d[5] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[1], down), _mm256_set1_ps(p[33]), 0x80);
}

/* Lanes [0, n) set. */
INLINE T256 __m256i live8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static T256 void input6_avx2(const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                             float *v, int ldv, long ldp) {
    const int m = 4, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)ldp, hw = (size_t)g->h * g->w;
    for (int l0 = 0; l0 < tb; l0 += 8) {
        const int lanes = tb - l0 < 8 ? tb - l0 : 8;
        int ty[8], tx[8];
        for (int l = 0; l < 8; l++) {
            const int t = TILE(tiles, t0, l0 + (l < lanes ? l : 0));
            ty[l] = t / tw;
            tx[l] = t % tw;
        }
        /* Eight consecutive tiles of one tile row are read as a run; other groups lane by lane. */
        int run = lanes == 8;
        for (int l = 1; l < 8 && run; l++) run = ty[l] == ty[0] && tx[l] == tx[0] + l;
        for (int c = 0; c < g->cin; c++) {
            const float *xc = x + (size_t)c * hw;
            /* Rows first, then columns: the operations of the other paths, so a tile's V does not depend on the
               path or block it was transformed in. */
            __m256 h[6][6];
            for (int r = 0; r < 6; r++) {
                __m256 d[6];
                if (run) {
                    const int iy = ty[0] * m - g->ph + r;
                    if (iy < 0 || iy >= g->h) {
                        for (int j = 0; j < 6; j++) d[j] = _mm256_setzero_ps();
                    } else {
                        run_row6_avx2(xc + (size_t)iy * g->w, tx[0] * m - g->pw, g->w, d);
                    }
                } else {
                    float cols[6][8];
                    for (int l = 0; l < 8; l++) {
                        const int iy = ty[l] * m - g->ph + r, ix0 = tx[l] * m - g->pw;
                        const int inside = l < lanes && iy >= 0 && iy < g->h;
                        for (int j = 0; j < 6; j++) {
                            const int ix = ix0 + j;
                            cols[j][l] = inside && ix >= 0 && ix < g->w ? xc[(size_t)iy * g->w + ix] : 0.0f;
                        }
                    }
                    for (int j = 0; j < 6; j++) d[j] = _mm256_loadu_ps(cols[j]);
                }
                BT6_ROWS(d, h[r], Y_ADD, Y_SUB, Y_MADD, Y_NMADD, Y_K);
            }
            float *vc = v + (size_t)c * ldv + l0;
            for (int k = 0; k < 6; k++) {
                __m256 col[6], s6[6];
                for (int r = 0; r < 6; r++) col[r] = h[r][k];
                BT6_ROWS(col, s6, Y_ADD, Y_SUB, Y_MADD, Y_NMADD, Y_K);
                for (int i = 0; i < 6; i++) {
                    float *dst = vc + (size_t)(i * 6 + k) * plane;
                    if (lanes == 8) {
                        _mm256_storeu_ps(dst, s6[i]);
                    } else {
                        /* vmaskmovps stores are microcoded on AMD cores: a partial group through a buffer. */
                        float part[8];
                        _mm256_storeu_ps(part, s6[i]);
                        for (int l = 0; l < lanes; l++) dst[l] = part[l];
                    }
                }
            }
        }
    }
}

static T256 void output6_avx2(const struct fpn_winograd *g, const float *mm, int ldm, long ldp, const int *tiles,
                              int t0, int tb, const float *bias, const float *residual, int relu, float *out) {
    enum { M = 4 };
    const int tw = (g->wo + M - 1) / M;
    const size_t plane = (size_t)ldp;
    for (int l0 = 0; l0 < tb; l0 += 8) {
        const int lanes = tb - l0 < 8 ? tb - l0 : 8;
        const __m256i live = live8(lanes);
        int oy0[8], ox0[8];
        for (int l = 0; l < lanes; l++) {
            const int t = TILE(tiles, t0, l0 + l);
            oy0[l] = t / tw * M;
            ox0[l] = t % tw * M;
        }
        /* Eight tiles side by side in one tile row (tile numbers ascend), inside the image: each output row is
           32 contiguous pixels. */
        const int row_run = lanes == 8 && oy0[0] == oy0[7] && ox0[7] == ox0[0] + 7 * M && oy0[0] + M <= g->ho
                         && ox0[7] + M <= g->wo;
        for (int oc = 0; oc < g->cout; oc++) {
            const float *mo = mm + (size_t)oc * ldm + l0;
            __m256 tmp[4][6];
            for (int j = 0; j < 6; j++) {
                __m256 col[6], r4[4];
                for (int r = 0; r < 6; r++) {
                    const float *src = mo + (size_t)(r * 6 + j) * plane;
                    col[r] = lanes == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, live);
                }
                AT6_ROWS(col, r4, Y_ADD, Y_SUB, Y_MADD, Y_K);
                for (int i = 0; i < M; i++) tmp[i][j] = r4[i];
            }
            const __m256 bv = _mm256_set1_ps(bias ? bias[oc] : 0.0f);
            const size_t oplane = (size_t)oc * g->ho * g->wo;
            for (int i = 0; i < M; i++) {
                __m256 y[4];
                AT6_ROWS(tmp[i], y, Y_ADD, Y_SUB, Y_MADD, Y_K);
                for (int k = 0; k < M; k++) y[k] = _mm256_add_ps(y[k], bv);
                if (row_run) {
                    /* px[g] = [tile g's row | tile g + 4's row]; pixels 8q..8q+7 are tiles 2q and 2q + 1. */
                    __m256 px[4];
                    transpose4_halves(y[0], y[1], y[2], y[3], px);
                    const __m256 q[4] = {
                        _mm256_permute2f128_ps(px[0], px[1], 0x20), _mm256_permute2f128_ps(px[2], px[3], 0x20),
                        _mm256_permute2f128_ps(px[0], px[1], 0x31), _mm256_permute2f128_ps(px[2], px[3], 0x31),
                    };
                    const size_t at = oplane + (size_t)(oy0[0] + i) * g->wo + ox0[0];
                    for (int u = 0; u < 4; u++) {
                        __m256 s = q[u];
                        if (residual) s = _mm256_add_ps(s, _mm256_loadu_ps(residual + at + 8 * u));
                        if (relu) s = _mm256_max_ps(s, _mm256_setzero_ps());
                        _mm256_storeu_ps(out + at + 8 * u, s);
                    }
                } else {
                    float buf[4][8];
                    for (int k = 0; k < M; k++) _mm256_storeu_ps(buf[k], y[k]);
                    for (int l = 0; l < lanes; l++) {
                        if (oy0[l] + i >= g->ho) continue;
                        const size_t at = oplane + (size_t)(oy0[l] + i) * g->wo + ox0[l];
                        for (int k = 0; k < M && ox0[l] + k < g->wo; k++) {
                            const float s = buf[k][l] + (residual ? residual[at + k] : 0.0f);
                            out[at + k] = relu ? (s > 0.0f ? s : 0.0f) : s; /* as max_ps(s, 0) */
                        }
                    }
                }
            }
        }
    }
}

static T512 void input6_avx512(const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                               float *v, int ldv, long ldp) {
    input_avx512(6, BT6, g, x, tiles, t0, tb, v, ldv, ldp);
}
static T512 void input4_avx512(const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                               float *v, int ldv, long ldp) {
    input_avx512(4, BT4, g, x, tiles, t0, tb, v, ldv, ldp);
}
static T512 void output6_avx512(const struct fpn_winograd *g, const float *mm, int ldm, long ldp, const int *tiles,
                                int t0, int tb, const float *bias, const float *residual, int relu, float *out) {
    output_avx512(6, 4, AT6, g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
}
static T512 void output4_avx512(const struct fpn_winograd *g, const float *mm, int ldm, long ldp, const int *tiles,
                                int t0, int tb, const float *bias, const float *residual, int relu, float *out) {
    output_avx512(4, 2, AT4, g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
}
#endif

void fpn_winograd_input(int isa, const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                        float *v, int ldv, long ldp) {
#if defined(__x86_64__)
    if (isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512)) {
        if (g->m == 4) input6_avx512(g, x, tiles, t0, tb, v, ldv, ldp);
        else input4_avx512(g, x, tiles, t0, tb, v, ldv, ldp);
        return;
    }
    if (g->m == 4 && isa >= FPN_ISA_AVX2 && fpn_isa_supported(FPN_ISA_AVX2)) {
        input6_avx2(g, x, tiles, t0, tb, v, ldv, ldp);
        return;
    }
#endif
    (void)isa;
    if (g->m == 4) input_tile_generic(6, BT6, g, x, tiles, t0, tb, v, ldv, ldp);
    else input_tile_generic(4, BT4, g, x, tiles, t0, tb, v, ldv, ldp);
}

void fpn_winograd_output(int isa, const struct fpn_winograd *g, const float *mm, int ldm, long ldp, const int *tiles,
                         int t0, int tb, const float *bias, const float *residual, int relu, float *out) {
#if defined(__x86_64__)
    if (isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512)) {
        if (g->m == 4) output6_avx512(g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
        else output4_avx512(g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
        return;
    }
    if (g->m == 4 && isa >= FPN_ISA_AVX2 && fpn_isa_supported(FPN_ISA_AVX2)) {
        output6_avx2(g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
        return;
    }
#endif
    (void)isa;
    if (g->m == 4) output_tile_generic(6, 4, AT6, g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
    else output_tile_generic(4, 2, AT4, g, mm, ldm, ldp, tiles, t0, tb, bias, residual, relu, out);
}
