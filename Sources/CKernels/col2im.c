/*
 * col2im of a transposed conv whose stride equals its kernel (see ckernels.h): every output pixel is bias + its
 * one tap, so the plane is written once instead of cleared and accumulated. Same arithmetic as the scalar loop.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

#if defined(__x86_64__)
/* kw == 2: output row (iy, ky) interleaves the kx = 0 and kx = 1 rows of the columns. */
static T512 void col2im_kw2_avx512(const float *cols, long ld, int h, int w, int kh, float bias, int relu,
                                   float *out) {
    const __m512 vb = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const long wo = 2L * w;
    for (int iy = 0; iy < h; iy++) {
        for (int ky = 0; ky < kh; ky++) {
            const float *c0 = cols + (long)(ky * 2) * ld + (long)iy * w, *c1 = c0 + ld;
            float *o = out + ((long)iy * kh + ky) * wo;
            for (int ix = 0; ix < w; ix += 16) {
                const int left = w - ix;
                const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
                __m512 a = _mm512_add_ps(vb, _mm512_maskz_loadu_ps(m, c0 + ix));
                __m512 b = _mm512_add_ps(vb, _mm512_maskz_loadu_ps(m, c1 + ix));
                if (relu) {
                    a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), zero);
                    b = _mm512_mask_mov_ps(b, _mm512_cmp_ps_mask(b, zero, _CMP_LT_OQ), zero);
                }
                const __m512 x0 = _mm512_permutex2var_ps(a, lo, b), x1 = _mm512_permutex2var_ps(a, hi, b);
                const int n = 2 * left;
                const __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
                const __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1u);
                _mm512_mask_storeu_ps(o + 2L * ix, m0, x0);
                _mm512_mask_storeu_ps(o + 2L * ix + 16, m1, x1);
            }
        }
    }
}
#endif

void fpn_col2im_one_tap(int isa, const float *cols, long ld, int h, int w, int kh, int kw, float bias, int relu,
                        float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512 && kw == 2) { col2im_kw2_avx512(cols, ld, h, w, kh, bias, relu, out); return; }
#endif
    (void)isa;
    const long wo = (long)w * kw;
    for (int iy = 0; iy < h; iy++)
        for (int ky = 0; ky < kh; ky++) {
            float *o = out + ((long)iy * kh + ky) * wo;
            for (int kx = 0; kx < kw; kx++) {
                const float *c = cols + (long)(ky * kw + kx) * ld + (long)iy * w;
                for (int ix = 0; ix < w; ix++) {
                    const float v = bias + c[ix];
                    o[(long)ix * kw + kx] = relu && v < 0 ? 0.0f : v;
                }
            }
        }
}
