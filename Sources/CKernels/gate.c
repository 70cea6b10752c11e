/*
 * Output gating of a tile pass whose results lie in output planes (the Winograd tile pass): per listed pixel, the
 * largest |act(stage + bias + residual) - out| over the channels as absolute-value bits (a NaN difference sorts
 * above infinity), and the commit of act(stage + bias + residual) into out on a pixel mask. The pixels come as row
 * spans with a byte mask each: the pixels of scattered 2x2 tiles form runs of 2, which a loop per run pays for in
 * overhead. The same operations in the same order on every ISA: (stage + bias) + residual, then ReLU as
 * t < 0 ? 0 : t (a NaN and -0 pass unchanged), so the committed values equal the scalar scatter's bits.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float gate_act(float v, float b, const float *r, int relu) {
    float t = v + b;
    if (r) t = t + *r;
    return relu && t < 0.0f ? 0.0f : t;
}

static inline uint32_t abs_bits(float d) {
    uint32_t u;
    memcpy(&u, &d, sizeof u);
    return u & 0x7fffffffu;
}

static void gate_scalar(int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                        const unsigned char *mask, const float *stage, long stage_plane, float *out,
                        const float *residual, long plane, const float *bias, int relu, uint32_t *pixmax) {
    for (int oc = 0; oc < cout; oc++) {
        const float b = bias ? bias[oc] : 0.0f;
        const float *s = stage + oc * stage_plane, *r = residual ? residual + oc * plane : NULL;
        float *o = out + oc * plane;
        for (int i = 0; i < nrows; i++) {
            const long row = (long)rows[i] * wo;
            for (int x = x0[i]; x < x1[i]; x++) {
                const long p = row + x;
                if (!mask[p]) continue;
                const float t = gate_act(s[p], b, r ? r + p : NULL, relu);
                if (pixmax) {
                    const uint32_t d = abs_bits(t - o[p]);
                    if (d > pixmax[p]) pixmax[p] = d;
                } else {
                    o[p] = t;
                }
            }
        }
    }
}

#if defined(__x86_64__)
/* The spans' 16-pixel chunks that hold a masked pixel, with their lane masks: found once, then every channel
   walks only those. */
static T512 int gate_chunks(int wo, const int *rows, const int *x0, const int *x1, int nrows,
                            const unsigned char *mask, long *at, __mmask16 *lanes) {
    int n = 0;
    for (int i = 0; i < nrows; i++) {
        const long row = (long)rows[i] * wo;
        for (int x = x0[i]; x < x1[i]; x += 16) {
            const int w = x1[i] - x < 16 ? x1[i] - x : 16;
            const __mmask16 live = (__mmask16)((1u << w) - 1u);
            const __mmask16 m = _mm_mask_cmpneq_epi8_mask(live, _mm_maskz_loadu_epi8(live, mask + row + x),
                                                          _mm_setzero_si128());
            if (m) { at[n] = row + x; lanes[n] = m; n++; }
        }
    }
    return n;
}

static T512 void gate_avx512(int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                             const unsigned char *mask, const float *stage, long stage_plane, float *out,
                             const float *residual, long plane, const float *bias, int relu, uint32_t *pixmax) {
    long chunks = 0;
    for (int i = 0; i < nrows; i++) chunks += (x1[i] - x0[i] + 15) / 16;
    long *at = malloc((size_t)(chunks > 0 ? chunks : 1) * sizeof *at);
    __mmask16 *lanes = malloc((size_t)(chunks > 0 ? chunks : 1) * sizeof *lanes);
    if (!at || !lanes) {
        free(at); free(lanes);
        gate_scalar(cout, wo, rows, x0, x1, nrows, mask, stage, stage_plane, out, residual, plane, bias, relu, pixmax);
        return;
    }
    const int n = gate_chunks(wo, rows, x0, x1, nrows, mask, at, lanes);
    const __m512 zero = _mm512_setzero_ps();
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    for (int oc = 0; oc < cout; oc++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[oc] : 0.0f);
        const float *s = stage + oc * stage_plane, *r = residual ? residual + oc * plane : NULL;
        float *o = out + oc * plane;
        for (int c = 0; c < n; c++) {
            const long p = at[c];
            const __mmask16 m = lanes[c];
            __m512 t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, s + p), b);
            if (r) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, r + p));
            if (relu) t = _mm512_max_ps(zero, t);   /* the second operand on a NaN or two zeros: t */
            if (pixmax) {
                const __m512 d = _mm512_sub_ps(t, _mm512_maskz_loadu_ps(m, o + p));
                const __m512i bits = _mm512_and_si512(_mm512_castps_si512(d), abs_mask);
                const __m512i old = _mm512_maskz_loadu_epi32(m, pixmax + p);
                _mm512_mask_storeu_epi32(pixmax + p, m, _mm512_max_epu32(old, bits));
            } else {
                _mm512_mask_storeu_ps(o + p, m, t);
            }
        }
    }
    free(at);
    free(lanes);
}
#endif

static void gate(int isa, int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                 const unsigned char *mask, const float *stage, long stage_plane, float *out, const float *residual,
                 long plane, const float *bias, int relu, uint32_t *pixmax) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) {
        gate_avx512(cout, wo, rows, x0, x1, nrows, mask, stage, stage_plane, out, residual, plane, bias, relu, pixmax);
        return;
    }
#endif
    (void)isa;
    gate_scalar(cout, wo, rows, x0, x1, nrows, mask, stage, stage_plane, out, residual, plane, bias, relu, pixmax);
}

void fpn_gate_max_planes(int isa, int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                         const unsigned char *mask, const float *stage, long stage_plane, const float *out,
                         const float *residual, long plane, const float *bias, int relu, uint32_t *pixmax) {
    gate(isa, cout, wo, rows, x0, x1, nrows, mask, stage, stage_plane, (float *)out, residual, plane, bias, relu,
         pixmax);
}

void fpn_gate_commit_planes(int isa, int cout, int wo, const int *rows, const int *x0, const int *x1, int nrows,
                            const unsigned char *mask, const float *stage, long stage_plane, float *out,
                            const float *residual, long plane, const float *bias, int relu) {
    gate(isa, cout, wo, rows, x0, x1, nrows, mask, stage, stage_plane, out, residual, plane, bias, relu, NULL);
}
