/*
 * GroupNorm's two passes (see ckernels.h): the double moments of a group, taken in 16 lanes in a fixed order, and
 * the per-channel affine step with ReLU (multiply then add, no FMA contraction, as the scalar loop).
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

#if defined(__x86_64__)
static T512 void moments_avx512(const float *x, long n, double *ls, double *lq) {
    /* Two accumulator pairs of 8 doubles (the low and high half of each 16-float load); v * v is exact in double. */
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), q0 = _mm512_setzero_pd(), q1 = _mm512_setzero_pd();
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        const __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_add_pd(s0, lo); q0 = _mm512_add_pd(q0, _mm512_mul_pd(lo, lo));
        s1 = _mm512_add_pd(s1, hi); q1 = _mm512_add_pd(q1, _mm512_mul_pd(hi, hi));
    }
    _mm512_storeu_pd(ls, _mm512_add_pd(s0, s1));
    _mm512_storeu_pd(lq, _mm512_add_pd(q0, q1));
}
#endif

void fpn_moments(int isa, const float *x, long n, double *sum, double *sum_squares) {
    /* Element i goes to lane i % 16; lanes l and l + 8 are added, then the eight sums pairwise (4, 2, 1 apart). */
    double ls[8], lq[8];
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) {
        moments_avx512(x, n, ls, lq);
    } else
#endif
    {
        (void)isa;
        double s16[16] = {0}, q16[16] = {0};
        for (long i = 0; i < n; i++) {
            const double v = x[i];
            s16[i % 16] = s16[i % 16] + v;
            q16[i % 16] = q16[i % 16] + v * v;
        }
        for (int l = 0; l < 8; l++) { ls[l] = s16[l] + s16[l + 8]; lq[l] = q16[l] + q16[l + 8]; }
    }
    for (int w = 4; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) { ls[l] = ls[l] + ls[l + w]; lq[l] = lq[l] + lq[l + w]; }
    *sum = ls[0];
    *sum_squares = lq[0];
}

#if defined(__x86_64__)
static T512 void scale_shift_avx512(const float *x, long n, float a, float b, int relu, float *out) {
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), zero = _mm512_setzero_ps();
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), va), vb);
        if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}
#endif

void fpn_scale_shift(int isa, const float *x, long n, float a, float b, int relu, float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { scale_shift_avx512(x, n, a, b, relu, out); return; }
#endif
    (void)isa;
    for (long i = 0; i < n; i++) {
        const float v = x[i] * a + b;
        out[i] = relu && v < 0 ? 0.0f : v;
    }
}
