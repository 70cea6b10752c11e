/*
 * Direct convolution for the image-reading conv of a network (see ckernels.h).
 *
 * A ResNet stem (3 input channels, 7x7, stride 2) is a GEMM with K = 147 and
 * only 64 rows: packing its im2col columns costs as much as multiplying them.
 * Here the input is split once into its even and odd columns (zero-padded),
 * so tap (ky, kx) of 16 consecutive outputs is one contiguous load from phase
 * kx & 1 at column ox + kx / 2. Each load feeds 16 output channels (broadcast
 * weights, 16 accumulators): 16 pixels x 16 channels per register block.
 * Per output value the taps are summed in (ci, ky, kx) order with FMA from 0,
 * whatever the segments, so tile passes equal the dense pass bit for bit.
 */
#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f")))
static void rows_avx512(const float *phases, int cin, int h, int wp, const long *seg, int s0, int s1, float *out,
                        const float *res, int cout, int ho, int wo, const float *wt, const float *bias, int kh, int kw,
                        int ph, int relu) {
    const int taps = cin * kh * kw;
    const long plane = (long)ho * wo;
    for (int s = s0; s < s1; s++) {
        const int oy = (int)seg[4 * s], ox0 = (int)seg[4 * s + 1], len = (int)seg[4 * s + 2];
        for (int o = 0; o < len; o += 16) {
            const int ox = ox0 + o, n = len - o < 16 ? len - o : 16;
            const __mmask16 m = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
            for (int oc0 = 0; oc0 < cout; oc0 += 16) {
                __m512 acc[16];
                for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
                for (int ci = 0; ci < cin; ci++) {
                    for (int ky = 0; ky < kh; ky++) {
                        const int iy = oy * 2 - ph + ky;
                        if (iy < 0 || iy >= h) continue;
                        for (int kx = 0; kx < kw; kx++) {
                            const float *src = phases + (((long)ci * 2 + (kx & 1)) * h + iy) * wp + ox + (kx >> 1);
                            const __m512 x = _mm512_loadu_ps(src);
                            const float *w = wt + (long)((ci * kh + ky) * kw + kx) * cout + oc0;
                            for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), x, acc[i]);
                        }
                    }
                }
                for (int i = 0; i < 16; i++) {
                    const int oc = oc0 + i;
                    float *d = out + oc * plane + (long)oy * wo + ox;
                    __m512 v = _mm512_add_ps(acc[i], _mm512_set1_ps(bias ? bias[oc] : 0.0f));
                    if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + oc * plane + (long)oy * wo + ox));
                    if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);
                    _mm512_mask_storeu_ps(d, m, v);
                }
            }
        }
    }
    (void)taps;
}
#endif

int fpn_stem_supported(int isa, int cin, int cout, int kh, int kw, int sh, int sw, int dh, int dw) {
#if defined(__x86_64__)
    return isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512) && cin >= 1 && cin <= 4 && cout % 16 == 0
        && sh == 2 && sw == 2 && dh == 1 && dw == 1 && kh * kw >= 9;
#else
    (void)isa; (void)cin; (void)cout; (void)kh; (void)kw; (void)sh; (void)sw; (void)dh; (void)dw;
    return 0;
#endif
}

int fpn_stem_phase_width(int wo, int kw) { return wo + 16 + kw / 2 + 1; }

void fpn_stem_phases(const float *x, int cin, int h, int w, int pw, int wp, float *phases) {
    for (int ci = 0; ci < cin; ci++) {
        for (int p = 0; p < 2; p++) {
            for (int y = 0; y < h; y++) {
                const float *src = x + ((long)ci * h + y) * w;
                float *d = phases + (((long)ci * 2 + p) * h + y) * wp;
                for (int j = 0; j < wp; j++) {
                    const int c = 2 * j + p - pw; /* input column of padded column 2j + p */
                    d[j] = c >= 0 && c < w ? src[c] : 0.0f;
                }
            }
        }
    }
}

void fpn_stem_weights(const float *weight, int cout, int taps, float *wt) {
    for (int t = 0; t < taps; t++)
        for (int oc = 0; oc < cout; oc++) wt[(long)t * cout + oc] = weight[(long)oc * taps + t];
}

void fpn_stem(int isa, const float *phases, int cin, int h, int wp, const long *segments, int s0, int s1, float *out,
              const float *residual, int cout, int ho, int wo, const float *wt, const float *bias, int kh, int kw,
              int ph, int relu) {
#if defined(__x86_64__)
    if (isa < FPN_ISA_AVX512 || !fpn_isa_supported(FPN_ISA_AVX512)) return;
    rows_avx512(phases, cin, h, wp, segments, s0, s1, out, residual, cout, ho, wo, wt, bias, kh, kw, ph, relu);
#else
    (void)isa; (void)phases; (void)cin; (void)h; (void)wp; (void)segments; (void)s0; (void)s1; (void)out;
    (void)residual; (void)cout; (void)ho; (void)wo; (void)wt; (void)bias; (void)kh; (void)kw; (void)ph; (void)relu;
#endif
}
