/*
 * Mask paste: a small padded mask (p x p) resized bilinearly onto a detection's box, as torchvision's
 * paste_masks_in_image (ATen's upsample kernels, with the FMA contractions torch's build has). Each output is
 * computed with the same operations in the same order on every ISA, so the results are the same bits.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

#include <math.h>

/* ATen's cpu_upsample_linear for small outputs: h0*w0*i00 + h0*w1*i01 + h1*w0*i10 + h1*w1*i11, left to right. */
static inline float small4(float wy0, float wy1, float wx0, float wx1, float s00, float s01, float s10, float s11) {
    float v = wy0 * wx0 * s00;
    v = fmaf(wy0 * wx1, s01, v);
    v = fmaf(wy1 * wx0, s10, v);
    return fmaf(wy1 * wx1, s11, v);
}

/* ATen's generic N-d kernel: (i00*w0 + i01*w1)*h0 + (i10*w0 + i11*w1)*h1. */
static inline float generic4(float wy0, float wy1, float wx0, float wx1, float s00, float s01, float s10, float s11) {
    const float t0 = fmaf(s00, wx0, s01 * wx1);
    const float t1 = fmaf(s10, wx0, s11 * wx1);
    return fmaf(t0, wy0, t1 * wy1);
}

static void paste_scalar(const float *src, int p, const int *yi0, const int *yi1, const float *yw0, const float *yw1,
                         int rows, const int *xi0, const int *xi1, const float *xw0, const float *xw1, int cols,
                         int small, float *out) {
    for (int r = 0; r < rows; r++) {
        const float *a = src + (long)yi0[r] * p, *b = src + (long)yi1[r] * p;
        float *o = out + (long)r * cols;
        for (int c = 0; c < cols; c++) {
            const float s00 = a[xi0[c]], s01 = a[xi1[c]], s10 = b[xi0[c]], s11 = b[xi1[c]];
            o[c] = small ? small4(yw0[r], yw1[r], xw0[c], xw1[c], s00, s01, s10, s11)
                         : generic4(yw0[r], yw1[r], xw0[c], xw1[c], s00, s01, s10, s11);
        }
    }
}

#if defined(__x86_64__)
#define T512F __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* 16 columns at a time: the two source rows (p <= 32 floats) sit in two registers each, taps are permutes. */
static T512F void paste_avx512(const float *src, int p, const int *yi0, const int *yi1, const float *yw0,
                               const float *yw1, int rows, const int *xi0, const int *xi1, const float *xw0,
                               const float *xw1, int cols, int small, float *out) {
    const __mmask16 lo = (__mmask16)(p >= 16 ? 0xFFFF : (1u << p) - 1u);
    const __mmask16 hi = (__mmask16)(p <= 16 ? 0 : p >= 32 ? 0xFFFF : (1u << (p - 16)) - 1u);
    for (int r = 0; r < rows; r++) {
        const float *a = src + (long)yi0[r] * p, *b = src + (long)yi1[r] * p;
        const __m512 a0 = _mm512_maskz_loadu_ps(lo, a), a1 = _mm512_maskz_loadu_ps(hi, a + 16);
        const __m512 b0 = _mm512_maskz_loadu_ps(lo, b), b1 = _mm512_maskz_loadu_ps(hi, b + 16);
        const __m512 wy0 = _mm512_set1_ps(yw0[r]), wy1 = _mm512_set1_ps(yw1[r]);
        float *o = out + (long)r * cols;
        for (int c = 0; c < cols; c += 16) {
            const __mmask16 m = (__mmask16)(cols - c >= 16 ? 0xFFFF : (1u << (cols - c)) - 1u);
            const __m512i i0 = _mm512_maskz_loadu_epi32(m, xi0 + c), i1 = _mm512_maskz_loadu_epi32(m, xi1 + c);
            const __m512 wx0 = _mm512_maskz_loadu_ps(m, xw0 + c), wx1 = _mm512_maskz_loadu_ps(m, xw1 + c);
            const __m512 s00 = _mm512_permutex2var_ps(a0, i0, a1), s01 = _mm512_permutex2var_ps(a0, i1, a1);
            const __m512 s10 = _mm512_permutex2var_ps(b0, i0, b1), s11 = _mm512_permutex2var_ps(b0, i1, b1);
            __m512 v;
            if (small) {
                v = _mm512_mul_ps(_mm512_mul_ps(wy0, wx0), s00);
                v = _mm512_fmadd_ps(_mm512_mul_ps(wy0, wx1), s01, v);
                v = _mm512_fmadd_ps(_mm512_mul_ps(wy1, wx0), s10, v);
                v = _mm512_fmadd_ps(_mm512_mul_ps(wy1, wx1), s11, v);
            } else {
                const __m512 t0 = _mm512_fmadd_ps(s00, wx0, _mm512_mul_ps(s01, wx1));
                const __m512 t1 = _mm512_fmadd_ps(s10, wx0, _mm512_mul_ps(s11, wx1));
                v = _mm512_fmadd_ps(t0, wy0, _mm512_mul_ps(t1, wy1));
            }
            _mm512_mask_storeu_ps(o + c, m, v);
        }
    }
}
#endif

void fpn_paste_bilinear(int isa, const float *src, int p, const int *yi0, const int *yi1, const float *yw0,
                        const float *yw1, int rows, const int *xi0, const int *xi1, const float *xw0, const float *xw1,
                        int cols, int small, float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512 && p <= 32) {
        paste_avx512(src, p, yi0, yi1, yw0, yw1, rows, xi0, xi1, xw0, xw1, cols, small, out);
        return;
    }
#endif
    paste_scalar(src, p, yi0, yi1, yw0, yw1, rows, xi0, xi1, xw0, xw1, cols, small, out);
}
