/*
 * AVX2 + FMA SGEMM micro-kernel: 6 rows x 16 columns.
 *
 * Per K step: 2 ymm loads of packed B, 6 broadcasts of packed A, 12 FMAs into
 * 12 ymm accumulators (15 of 16 registers live). 12 independent chains exceed
 * the 2 ports x 4-5 cycles latency product of Haswell..Zen 4, and 8 loads per
 * 12 FMAs fit in two load ports.
 *
 * Ragged edges: packed panels are zero-padded so the K loop never branches;
 * the final C update uses vmaskmovps (which does not fault on masked-off
 * lanes past the end of a row). The kernel is instantiated per tile shape so
 * tails of <= 8 columns or < 6 rows skip the dead FMAs.
 */
#if defined(__x86_64__)

#include "sgemm_internal.h"

#include <immintrin.h>
#include <stdint.h>

#define MR 6
#define NR 16

#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* mask_table + 8 - n yields n all-ones lanes followed by zero lanes. */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

INLINE T256 __m256i tail_mask(int n) {
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - n));
}

/* Fused epilogue for one row segment of 8 columns; full segments skip the masks. */
INLINE T256 void update8(float *c, __m256 acc, __m256i m, int full, int flags, float beta, float bias) {
    if (flags & FPN_F_BIAS) acc = _mm256_add_ps(acc, _mm256_set1_ps(bias));
    if (flags & FPN_F_LOADC) {
        const __m256 old = full ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, m);
        acc = _mm256_fmadd_ps(old, _mm256_set1_ps(beta), acc);
    }
    if (flags & FPN_F_RELU) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    if (full)
        _mm256_storeu_ps(c, acc);
    else
        _mm256_maskstore_ps(c, m, acc);
}

#define ACC_DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
#define ACC_STEP(r, A)                                              \
    if (r < MV) {                                                   \
        const __m256 av = _mm256_broadcast_ss((A) + (r));           \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                 \
        if (NV == 2) c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);    \
    }
#define ALL_ROWS(X, A) X(0, A) X(1, A) X(2, A) X(3, A) X(4, A) X(5, A)
#define ROW_STORE(r, _)                                                          \
    if (r < mv) {                                                                 \
        float *cr = c + (size_t)(r) * ldc;                                        \
        const float bv = (flags & FPN_F_BIAS) ? bias[r] : 0.0f;                   \
        update8(cr, c##r##0, m0, nv >= 8, flags, beta, bv);                       \
        if (NV == 2) update8(cr + 8, c##r##1, m1, nv >= 16, flags, beta, bv);     \
    }

INLINE T256 void kernel_body(int kc, const float *a, const float *b,
                             float *c, int ldc, int mv, int nv,
                             int flags, float beta, const float *bias, const int NV, const int MV) {
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5)

    /* Fetch the C tile during the K loop (stores miss too: RFO), see the AVX-512 kernel. */
    for (int r = 0; r < mv; r++) {
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        if (NV == 2) _mm_prefetch((const char *)(c + (size_t)r * ldc + 8), _MM_HINT_T0);
    }

    int p = 0;
    for (; p + 2 <= kc; p += 2) {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = NV == 2 ? _mm256_load_ps(b + 8) : b0;
        ALL_ROWS(ACC_STEP, a)
        b0 = _mm256_load_ps(b + NR);
        b1 = NV == 2 ? _mm256_load_ps(b + NR + 8) : b0;
        ALL_ROWS(ACC_STEP, a + MR)
        a += 2 * MR;
        b += 2 * NR;
    }
    if (p < kc) {
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = NV == 2 ? _mm256_load_ps(b + 8) : b0;
        ALL_ROWS(ACC_STEP, a)
    }

    const __m256i m0 = tail_mask(nv), m1 = tail_mask(nv - 8);
    ALL_ROWS(ROW_STORE, _)
}

T256 static void kernel_6x16(int kc, const float *a, const float *b,
                             float *c, int ldc, int mv, int nv,
                             int flags, float beta, const float *bias) {
    /* Instantiated per NV (ymm per row) and MV (rows computed, 2/4/6) so ragged tiles skip dead FMAs. */
#define CASE(MV)                                                                     \
    case MV:                                                                         \
        if (nv <= 8)                                                                 \
            kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 1, MV);         \
        else                                                                         \
            kernel_body(kc, a, b, c, ldc, mv, nv, flags, beta, bias, 2, MV);         \
        return;
    switch ((mv + 1) & ~1) {
        CASE(2) CASE(4)
    default:
        CASE(6)
    }
#undef CASE
}

/* Same scheme as the AVX-512 packer: stream B rows once, masked loads for the tail. */
T256 static void pack_b_16(int kc, int nc, const float *b, int ldb, float *dst) {
    const size_t panel = (size_t)NR * kc;
    const int full = nc / NR * NR;
    const int rem = nc - full;
    const __m256i m0 = tail_mask(rem), m1 = tail_mask(rem - 8);
    for (int p = 0; p < kc; p++) {
        const float *src = b + (size_t)p * ldb;
        float *d = dst + (size_t)p * NR;
        int j = 0;
        for (; j < full; j += NR, d += panel) {
            _mm256_store_ps(d, _mm256_loadu_ps(src + j));
            _mm256_store_ps(d + 8, _mm256_loadu_ps(src + j + 8));
        }
        if (rem) {
            _mm256_store_ps(d, _mm256_maskload_ps(src + j, m0));
            _mm256_store_ps(d + 8, _mm256_maskload_ps(src + j + 8, m1));
        }
    }
}

const struct fpn_gemm_impl fpn__impl_avx2 = {
    .mr = MR, .nr = NR, .kc = 256, .kernel = kernel_6x16, .pack_b = pack_b_16,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int fpn__sgemm_avx2_unused;
#endif /* __x86_64__ */
