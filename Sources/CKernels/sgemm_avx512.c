/*
 * AVX-512 SGEMM micro-kernel: 14 rows x 32 columns.
 *
 * Per K step: 2 zmm loads of packed B, 14 broadcasts of packed A, 28 FMAs into
 * 28 zmm accumulators (30 of 32 registers live, no spills). 28 independent
 * FMA chains cover latency x throughput on every AVX-512 core we target
 * (2 FMA ports x 4 cycles = 8 on Intel, 1 zmm/cycle x 4 on Zen 4), and the
 * load:FMA ratio (16:28) stays under the 2-loads-per-cycle limit.
 *
 * Ragged edges cost nothing inside the K loop: packed panels are zero-padded,
 * and only the final C update uses k-masks. Narrower instantiations (one zmm
 * per row, fewer rows) handle tails of <= 16 columns or < 14 rows, so narrow-N
 * calls and the last row panel do not waste FMAs on padding.
 */
#if defined(__x86_64__)

#include "sgemm_internal.h"

#include <immintrin.h>

#define MR 14
#define NR 32

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))

static inline __mmask16 tail_mask(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Fused epilogue for one row segment of 16 (zmm) or 8 (ymm) columns. */
INLINE T512 void update16(float *c, __m512 acc, __mmask16 m, int flags, float beta, float bias) {
    if (flags & FPN_F_BIAS) acc = _mm512_add_ps(acc, _mm512_set1_ps(bias));
    if (flags & FPN_F_LOADC)
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c), _mm512_set1_ps(beta), acc);
    if (flags & FPN_F_RELU) acc = _mm512_max_ps(acc, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(c, m, acc);
}

INLINE T512 void update8(float *c, __m256 acc, __mmask8 m, int flags, float beta, float bias) {
    if (flags & FPN_F_BIAS) acc = _mm256_add_ps(acc, _mm256_set1_ps(bias));
    if (flags & FPN_F_LOADC)
        acc = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(m, c), _mm256_set1_ps(beta), acc);
    if (flags & FPN_F_RELU) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    _mm256_mask_storeu_ps(c, m, acc);
}

/*
 * The body is written once and instantiated for W = 1..4 units of 8 columns
 * (ymm, zmm, zmm+ymm, 2 zmm per row) and MV = 2, 4, ..., 14 computed rows;
 * both are compile-time constants after inlining, so unused accumulators and
 * FMAs vanish. This matters for the ragged edges that dominate small shapes:
 * channel counts are multiples of 8 or 16, never of 14, so the last row panel
 * is partial, and narrow N (e.g. 9..48 columns) leaves column tails. A ymm
 * FMA costs half a zmm FMA on Zen 4 and the same issue slot on Intel, so the
 * 8-column units never lose and often win.
 */
#define ACC_DECL(r)                                                              \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();         \
    __m256 y##r = _mm256_setzero_ps();
#define ACC_STEP(r, A)                                                           \
    if (r < MV) {                                                                \
        if (W == 1) {                                                            \
            y##r = _mm256_fmadd_ps(_mm256_set1_ps((A)[r]), bq, y##r);            \
        } else {                                                                 \
            const __m512 av = _mm512_set1_ps((A)[r]);                            \
            c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                          \
            if (W == 4) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);              \
            if (W == 3) y##r = _mm256_fmadd_ps(_mm512_castps512_ps256(av), bq, y##r); \
        }                                                                        \
    }
#define LOAD_B(P)                                                                \
    b0 = W >= 2 ? _mm512_load_ps(P) : b0;                                        \
    b1 = W == 4 ? _mm512_load_ps((P) + 16) : b1;                                 \
    bq = W == 3 ? _mm256_load_ps((P) + 16) : W == 1 ? _mm256_load_ps(P) : bq;
#define ALL_ROWS(X, A) \
    X(0, A) X(1, A) X(2, A) X(3, A) X(4, A) X(5, A) X(6, A) \
    X(7, A) X(8, A) X(9, A) X(10, A) X(11, A) X(12, A) X(13, A)
#define ROW_STORE(r, _)                                                                   \
    if (r < mv) {                                                                          \
        float *cr = c + (size_t)(r) * ldc;                                                 \
        const float bv = (flags & FPN_F_BIAS) ? bias[r] : 0.0f;                            \
        if (W == 1) update8(cr, y##r, (__mmask8)m0, flags, beta, bv);                      \
        if (W >= 2) update16(cr, c##r##0, m0, flags, beta, bv);                            \
        if (W == 3) update8(cr + 16, y##r, (__mmask8)m1, flags, beta, bv);                 \
        if (W == 4) update16(cr + 16, c##r##1, m1, flags, beta, bv);                       \
    }

/*
 * Start fetching the C tile's rows (both halves when `wide`) so the misses overlap the K loop. Needed even when C
 * is write-only: a store miss still reads the line (RFO), and 28 of them at the end of the kernel would stall on
 * memory.
 */
INLINE void prefetch_c(const float *c, int ldc, int mv, int wide) {
    for (int r = 0; r < mv; r++) {
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        if (wide) _mm_prefetch((const char *)(c + (size_t)r * ldc + 16), _MM_HINT_T0);
    }
}

INLINE T512 void kernel_body(int kc, const float *a, const float *b,
                             float *c, int ldc, int mv, int nv,
                             int flags, float beta, const float *bias, const int W, const int MV) {
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6)
    ACC_DECL(7) ACC_DECL(8) ACC_DECL(9) ACC_DECL(10) ACC_DECL(11) ACC_DECL(12) ACC_DECL(13)

    prefetch_c(c, ldc, mv, W >= 3);

    __m512 b0 = _mm512_setzero_ps(), b1 = b0;
    __m256 bq = _mm256_setzero_ps();
    int p = 0;
    for (; p + 2 <= kc; p += 2) {
        LOAD_B(b)
        ALL_ROWS(ACC_STEP, a)
        LOAD_B(b + NR)
        ALL_ROWS(ACC_STEP, a + MR)
        a += 2 * MR;
        b += 2 * NR;
    }
    if (p < kc) {
        LOAD_B(b)
        ALL_ROWS(ACC_STEP, a)
    }

    const __mmask16 m0 = tail_mask(nv), m1 = tail_mask(nv - 16);
    ALL_ROWS(ROW_STORE, _)
}

T512 static void kernel_14x32(int kc, const float *a, const float *b,
                              float *c, int ldc, int mv, int nv,
                              int flags, float beta, const float *bias) {
#define CASE(MV)                                                                     \
    case MV:                                                                         \
        switch ((nv + 7) >> 3) {                                                     \
        case 1: kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 1, MV); return; \
        case 2: kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 2, MV); return; \
        case 3: kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 3, MV); return; \
        default: kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 4, MV); return; \
        }
    switch ((mv + 1) & ~1) {
        CASE(2) CASE(4) CASE(6) CASE(8) CASE(10) CASE(12)
    default:
        CASE(14)
    }
#undef CASE
}

/*
 * kernel_body reading B rows from the matrix (row stride ldb) with the column tail masked: no packed panel, and
 * no column past nv is read. W = 2 (nv <= 16) or 4.
 */
INLINE T512 void kernel_body_direct(int kc, const float *a, const float *b, long ldb,
                                    float *c, int ldc, int mv, int nv,
                                    int flags, float beta, const float *bias, const int W, const int MV) {
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6)
    ACC_DECL(7) ACC_DECL(8) ACC_DECL(9) ACC_DECL(10) ACC_DECL(11) ACC_DECL(12) ACC_DECL(13)
    prefetch_c(c, ldc, mv, W == 4);
    const __mmask16 m0 = tail_mask(nv), m1 = tail_mask(nv - 16);
    __m512 b0, b1 = _mm512_setzero_ps();
    __m256 bq = _mm256_setzero_ps();
    (void)bq;
    for (int p = 0; p < kc; p++) {
        b0 = _mm512_maskz_loadu_ps(m0, b);
        if (W == 4) b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        ALL_ROWS(ACC_STEP, a)
        a += MR;
        b += ldb;
    }
    ALL_ROWS(ROW_STORE, _)
}

T512 static void kernel_14x32_direct(int kc, const float *a, const float *b, long ldb,
                                     float *c, int ldc, int mv, int nv,
                                     int flags, float beta, const float *bias) {
#define CASE(MV)                                                                                       \
    case MV:                                                                                           \
        if (nv <= 16) kernel_body_direct(kc, a, b, ldb, c, ldc, mv, nv, flags, beta, bias, 2, MV);      \
        else kernel_body_direct(kc, a, b, ldb, c, ldc, mv, nv, flags, beta, bias, 4, MV);               \
        return;
    switch ((mv + 1) & ~1) {
        CASE(2) CASE(4) CASE(6) CASE(8) CASE(10) CASE(12)
    default:
        CASE(14)
    }
#undef CASE
}

/*
 * kernel_body reading A from its rows (row r at a + r * lda; rows >= mv read row 0 instead, their results are
 * never stored), so a row-major A needs no packing. The 14 rows are 14 streams along k, each a new cache line
 * every 16 steps; the column panels after the first find them in L1.
 */
#define ACC_STEP_ROWS(r, P)                                                      \
    if (r < MV) {                                                                \
        const float ar = row##r[P];                                              \
        if (W == 1) {                                                            \
            y##r = _mm256_fmadd_ps(_mm256_set1_ps(ar), bq, y##r);                \
        } else {                                                                 \
            const __m512 av = _mm512_set1_ps(ar);                                \
            c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                          \
            if (W == 4) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);              \
            if (W == 3) y##r = _mm256_fmadd_ps(_mm512_castps512_ps256(av), bq, y##r); \
        }                                                                        \
    }
#define ROW_PTR(r, _) const float *row##r = a + (r < mv ? (long)(r) * lda : 0);

INLINE T512 void kernel_body_rows(int kc, const float *a, long lda, const float *b,
                                  float *c, int ldc, int mv, int nv,
                                  int flags, float beta, const float *bias, const int W, const int MV) {
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6)
    ACC_DECL(7) ACC_DECL(8) ACC_DECL(9) ACC_DECL(10) ACC_DECL(11) ACC_DECL(12) ACC_DECL(13)
    ALL_ROWS(ROW_PTR, _)
    prefetch_c(c, ldc, mv, W >= 3);
    __m512 b0 = _mm512_setzero_ps(), b1 = b0;
    __m256 bq = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        LOAD_B(b)
        ALL_ROWS(ACC_STEP_ROWS, p)
        b += NR;
    }
    const __mmask16 m0 = tail_mask(nv), m1 = tail_mask(nv - 16);
    ALL_ROWS(ROW_STORE, _)
}

T512 static void kernel_14x32_rows(int kc, const float *a, long lda, const float *b,
                                   float *c, int ldc, int mv, int nv,
                                   int flags, float beta, const float *bias) {
#define CASE(MV)                                                                          \
    case MV:                                                                              \
        switch ((nv + 7) >> 3) {                                                          \
        case 1: kernel_body_rows(kc, a, lda, b, c, ldc, mv, nv, flags, beta, bias, 1, MV); return; \
        case 2: kernel_body_rows(kc, a, lda, b, c, ldc, mv, nv, flags, beta, bias, 2, MV); return; \
        case 3: kernel_body_rows(kc, a, lda, b, c, ldc, mv, nv, flags, beta, bias, 3, MV); return; \
        default: kernel_body_rows(kc, a, lda, b, c, ldc, mv, nv, flags, beta, bias, 4, MV); return; \
        }
    switch ((mv + 1) & ~1) {
        CASE(2) CASE(4) CASE(6) CASE(8) CASE(10) CASE(12)
    default:
        CASE(14)
    }
#undef CASE
}

/*
 * Pack B[kc, nc] into NR-wide panels. Rows are read contiguously (one B row
 * feeds every panel) so the source is streamed once; the ragged last panel is
 * filled with masked loads, which also zero the padding.
 */
T512 static void pack_b_32(int kc, int nc, const float *b, int ldb, float *dst) {
    const size_t panel = (size_t)NR * kc;
    const int full = nc / NR * NR;
    const int rem = nc - full;
    const __mmask16 m0 = tail_mask(rem), m1 = tail_mask(rem - 16);
    for (int p = 0; p < kc; p++) {
        const float *src = b + (size_t)p * ldb;
        float *d = dst + (size_t)p * NR;
        int j = 0;
        for (; j < full; j += NR, d += panel) {
            _mm512_store_ps(d, _mm512_loadu_ps(src + j));
            _mm512_store_ps(d + 16, _mm512_loadu_ps(src + j + 16));
        }
        if (rem) {
            _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, src + j));
            _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, src + j + 16));
        }
    }
}

/* Every other float (stride-2 convs' im2col rows): 16 outputs per two loads and one two-source permute. */
T512 static void gather2_avx512(const float *src, int n, float *dst) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int j = 0; j < n; j += 16) {
        const int left = n - j < 16 ? n - j : 16;
        const int need = 2 * left - 1;           /* inputs read: src[2j .. 2j + need) */
        const __mmask16 lo = tail_mask(need), hi = tail_mask(need - 16);
        const __m512 a = _mm512_maskz_loadu_ps(lo, src + 2 * j);
        const __m512 b = _mm512_maskz_loadu_ps(hi, src + 2 * j + 16);
        _mm512_mask_storeu_ps(dst + j, tail_mask(left), _mm512_permutex2var_ps(a, even, b));
    }
}

const struct fpn_gemm_impl fpn__impl_avx512 = {
    .mr = MR, .nr = NR, .kc = 256, .kernel = kernel_14x32, .kernel_direct = kernel_14x32_direct,
    .kernel_rows = kernel_14x32_rows, .pack_b = pack_b_32,
    .gather2 = gather2_avx512,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int fpn__sgemm_avx512_unused;
#endif /* __x86_64__ */
