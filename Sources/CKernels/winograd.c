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

void fpn_winograd_transform_weights(int m, int cout, int cin, const float *weight, float *u) {
    const int a = m + 2;
    const double *G = m == 4 ? &G6[0][0] : &G4[0][0];
    size_t plane = (size_t)cout * cin;
    for (int o = 0; o < cout; o++) {
        for (int c = 0; c < cin; c++) {
            const float *w = weight + ((size_t)o * cin + c) * 9;
            double t[6][3];
            for (int i = 0; i < a; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] = G[i * 3] * w[j] + G[i * 3 + 1] * w[3 + j] + G[i * 3 + 2] * w[6 + j];
            for (int i = 0; i < a; i++)
                for (int k = 0; k < a; k++) {
                    double s = t[i][0] * G[k * 3] + t[i][1] * G[k * 3 + 1] + t[i][2] * G[k * 3 + 2];
                    u[(size_t)(i * a + k) * plane + (size_t)o * cin + c] = (float)s;
                }
        }
    }
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

INLINE void input_tile_generic(const int A, const float (*BT)[A], const struct fpn_winograd *g, const float *x,
                               const int *tiles, int t0, int tb, float *v, int ldv) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)g->cin * ldv;
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
            for (int j = 0; j < A; j++) {
                for (int r = 0; r < A; r++) col[r] = d[r][j];
                for (int i = 0; i < A; i++) ROW_DOT(BT, i, col, A, tmp[i][j]);
            }
            for (int i = 0; i < A; i++)
                for (int k = 0; k < A; k++) {
                    float s;
                    ROW_DOT(BT, k, tmp[i], A, s);
                    v[(size_t)(i * A + k) * plane + (size_t)c * ldv + t] = s;
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
                                const float *mm, int ldm, const int *tiles, int t0, int tb, const float *bias,
                                const float *residual, int relu, float *out) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)g->cout * ldm;
    for (int t = 0; t < tb; t++) {
        int ty = TILE(tiles, t0, t) / tw, tx = TILE(tiles, t0, t) % tw;
        for (int oc = 0; oc < g->cout; oc++) {
            float d[6][6], col[6], tmp[4][6], y[16];
            for (int r = 0; r < A; r++)
                for (int j = 0; j < A; j++) d[r][j] = mm[(size_t)(r * A + j) * plane + (size_t)oc * ldm + t];
            for (int j = 0; j < A; j++) {
                for (int r = 0; r < A; r++) col[r] = d[r][j];
                for (int i = 0; i < M; i++) ROW_DOT(AT, i, col, A, tmp[i][j]);
            }
            for (int i = 0; i < M; i++)
                for (int k = 0; k < M; k++) ROW_DOT(AT, k, tmp[i], A, y[i * M + k]);
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

INLINE T512 __m512 run_column6(const struct tile_run *u, const float *row, int j) {
    static const int idx[4][16] = {
        {0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28},
        {1, 5, 9, 13, 17, 21, 25, 29, 1, 5, 9, 13, 17, 21, 25, 29},
        {2, 6, 10, 14, 18, 22, 26, 30, 2, 6, 10, 14, 18, 22, 26, 30},
        {3, 7, 11, 15, 19, 23, 27, 31, 3, 7, 11, 15, 19, 23, 27, 31},
    };
    const float *p = row + u->b;
    /* Columns 4 and 5 are columns 0 and 1 moved down one lane, with the row's next position in lane 15. */
    const int j0 = j < 4 ? j : j - 4;
    const __m512i ix = _mm512_loadu_si512(idx[j0]);
    const __m512 lo = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(u->span[0], p), ix,
                                             _mm512_maskz_loadu_ps(u->span[1], p + 16));
    const __m512 hi = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(u->span[2], p + 32), ix,
                                             _mm512_maskz_loadu_ps(u->span[3], p + 48));
    const __m512 v = _mm512_shuffle_f32x4(lo, hi, 0x44);
    if (j < 4) return v;
    const __m512i next = _mm512_castps_si512(_mm512_maskz_loadu_ps(u->last[j - 4], p + 60 + j));
    return _mm512_castsi512_ps(_mm512_alignr_epi32(next, _mm512_castps_si512(v), 1));
}

/* Input transform of tiles t0..t0+tb-1; lanes are tiles, gathered with zero padding by mask. */
INLINE T512 void input_avx512(const int A, const float (*BT)[A], const struct fpn_winograd *g, const float *x,
                              const int *tiles, int t0, int tb, float *v, int ldv) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)g->cin * ldv, hw = (size_t)g->h * g->w;
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
                __m512i ix = _mm512_add_epi32(ix0, _mm512_set1_epi32(r));
                colok[r] = _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512())
                         & _mm512_cmplt_epi32_mask(ix, _mm512_set1_epi32(g->w));
            }
            base = _mm512_add_epi32(_mm512_mullo_epi32(iy0, _mm512_set1_epi32(g->w)), ix0);
        }
        for (int c = 0; c < g->cin; c++) {
            const float *xc = x + (size_t)c * hw;
            __m512 tmp[6][6];
            if (by_runs) {
                for (int j = 0; j < A; j++) {
                    __m512 col[6];
                    for (int r = 0; r < A; r++) {
                        col[r] = _mm512_setzero_ps();
                        for (int s = 0; s < runs; s++) {
                            const int iy = run[s].iy0 + r;
                            if (iy < 0 || iy >= g->h) continue;
                            const __m512 v = run_column6(&run[s], xc + (size_t)iy * g->w, j);
                            col[r] = runs == 1 ? v : _mm512_mask_mov_ps(col[r], run[s].lanes, v);
                        }
                    }
                    for (int i = 0; i < A; i++) VROW_DOT(BT, i, col, A, tmp[i][j]);
                }
            } else {
                for (int j = 0; j < A; j++) {
                    __m512 col[6];
                    for (int r = 0; r < A; r++) {
                        __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(r * g->w + j));
                        col[r] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rowok[r] & colok[j], idx, xc, 4);
                    }
                    for (int i = 0; i < A; i++) VROW_DOT(BT, i, col, A, tmp[i][j]);
                }
            }
            float *vc = v + (size_t)c * ldv + l0;
            for (int i = 0; i < A; i++)
                for (int k = 0; k < A; k++) {
                    __m512 s;
                    VROW_DOT(BT, k, tmp[i], A, s);
                    _mm512_mask_storeu_ps(vc + (size_t)(i * A + k) * plane, live, s);
                }
        }
    }
}

INLINE T512 void output_avx512(const int A, const int M, const float (*AT)[A], const struct fpn_winograd *g,
                               const float *mm, int ldm, const int *tiles, int t0, int tb, const float *bias,
                               const float *residual, int relu, float *out) {
    const int m = g->m, tw = (g->wo + m - 1) / m;
    const size_t plane = (size_t)g->cout * ldm;
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
        int row_run = lanes == 16 && oy0[0] == oy0[15] && ox0[15] == ox0[0] + 15 * M && oy0[0] + M <= g->ho
                   && ox0[15] + M <= g->wo;
        for (int oc = 0; oc < g->cout; oc++) {
            const float *mo = mm + (size_t)oc * ldm + l0;
            __m512 tmp[4][6];
            for (int j = 0; j < A; j++) {
                __m512 col[6];
                for (int r = 0; r < A; r++) col[r] = _mm512_maskz_loadu_ps(live, mo + (size_t)(r * A + j) * plane);
                for (int i = 0; i < M; i++) VROW_DOT(AT, i, col, A, tmp[i][j]);
            }
            __m512 bv = _mm512_set1_ps(bias ? bias[oc] : 0.0f);
            size_t plane = (size_t)oc * g->ho * g->wo;
            for (int i = 0; i < M; i++) {
                __m512 y[4];
                for (int k = 0; k < M; k++) {
                    VROW_DOT(AT, k, tmp[i], A, y[k]);
                    y[k] = _mm512_add_ps(y[k], bv);
                }
                if (row_run) {
                    /* Interleave y[k][lane] into pixel lane*M + k of the row. */
                    size_t at = plane + (size_t)(oy0[0] + i) * g->wo + ox0[0];
                    for (int q = 0; q < M; q++) {
                        /* Output vector q holds pixels 16q..16q+15: lane (16q+e)/M, column (16q+e)%M. */
                        __m512i e = _mm512_add_epi32(_mm512_set1_epi32(16 * q),
                                                     _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                                       14, 15));
                        __m512i ln = M == 4 ? _mm512_srli_epi32(e, 2) : _mm512_srli_epi32(e, 1);
                        __m512i kk = _mm512_and_si512(e, _mm512_set1_epi32(M - 1));
                        __m512 s = _mm512_setzero_ps();
                        for (int k = 0; k < M; k++) {
                            __mmask16 sel = _mm512_cmpeq_epi32_mask(kk, _mm512_set1_epi32(k));
                            s = _mm512_mask_permutexvar_ps(s, sel, ln, y[k]);
                        }
                        if (residual) s = _mm512_add_ps(s, _mm512_loadu_ps(residual + at + 16 * q));
                        if (relu) s = _mm512_max_ps(s, _mm512_setzero_ps());
                        _mm512_storeu_ps(out + at + 16 * q, s);
                    }
                } else {
                    float buf[4][16];
                    for (int k = 0; k < M; k++) _mm512_storeu_ps(buf[k], y[k]);
                    for (int l = 0; l < lanes; l++) {
                        int oy = oy0[l] + i;
                        if (oy >= g->ho) continue;
                        size_t row = plane + (size_t)oy * g->wo;
                        for (int k = 0; k < M && ox0[l] + k < g->wo; k++) {
                            float s = buf[k][l] + (residual ? residual[row + ox0[l] + k] : 0.0f);
                            out[row + ox0[l] + k] = relu && s < 0 ? 0.0f : s;
                        }
                    }
                }
            }
        }
    }
}

static T512 void input6_avx512(const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                               float *v, int ldv) {
    input_avx512(6, BT6, g, x, tiles, t0, tb, v, ldv);
}
static T512 void input4_avx512(const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                               float *v, int ldv) {
    input_avx512(4, BT4, g, x, tiles, t0, tb, v, ldv);
}
static T512 void output6_avx512(const struct fpn_winograd *g, const float *mm, int ldm, const int *tiles, int t0,
                                int tb, const float *bias, const float *residual, int relu, float *out) {
    output_avx512(6, 4, AT6, g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
}
static T512 void output4_avx512(const struct fpn_winograd *g, const float *mm, int ldm, const int *tiles, int t0,
                                int tb, const float *bias, const float *residual, int relu, float *out) {
    output_avx512(4, 2, AT4, g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
}
#endif

void fpn_winograd_input(int isa, const struct fpn_winograd *g, const float *x, const int *tiles, int t0, int tb,
                        float *v, int ldv) {
#if defined(__x86_64__)
    if (isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512)) {
        if (g->m == 4) input6_avx512(g, x, tiles, t0, tb, v, ldv);
        else input4_avx512(g, x, tiles, t0, tb, v, ldv);
        return;
    }
#endif
    (void)isa;
    if (g->m == 4) input_tile_generic(6, BT6, g, x, tiles, t0, tb, v, ldv);
    else input_tile_generic(4, BT4, g, x, tiles, t0, tb, v, ldv);
}

void fpn_winograd_output(int isa, const struct fpn_winograd *g, const float *mm, int ldm, const int *tiles, int t0,
                         int tb, const float *bias, const float *residual, int relu, float *out) {
#if defined(__x86_64__)
    if (isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512)) {
        if (g->m == 4) output6_avx512(g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
        else output4_avx512(g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
        return;
    }
#endif
    (void)isa;
    if (g->m == 4) output_tile_generic(6, 4, AT6, g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
    else output_tile_generic(4, 2, AT4, g, mm, ldm, tiles, t0, tb, bias, residual, relu, out);
}
