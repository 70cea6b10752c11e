/*
 * RoIAlign accumulation for one box (see ckernels.h).
 *
 * Channels-last: each sample reads four contiguous C-vectors, so the per-channel
 * work is four vector multiplies and four adds per sample. AVX-512 pools 16
 * bins x 16 channels in registers and transposes them there; the other ISAs
 * accumulate [bin][channel] rows in the scratch and transpose them to the
 * channels-first output at the end (fpn_transpose).
 * No FMA contraction anywhere: the sums must round as the scalar kernel does.
 */
#pragma clang fp contract(off)

#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void accumulate_generic(const float *f, int channels, const long *p, const float *w, int per_bin,
                               float *acc) {
    for (int c = 0; c < channels; c++) acc[c] = 0;
    for (int s = 0; s < per_bin; s++, p += 4, w += 4) {
        const float *f0 = f + p[0] * channels, *f1 = f + p[1] * channels;
        const float *f2 = f + p[2] * channels, *f3 = f + p[3] * channels;
        const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        for (int c = 0; c < channels; c++) {
            float t = w0 * f0[c];
            t = t + w1 * f1[c];
            t = t + w2 * f2[c];
            t = t + w3 * f3[c];
            acc[c] = acc[c] + t;
        }
    }
    const float count = (float)per_bin;
    for (int c = 0; c < channels; c++) acc[c] = acc[c] / count;
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define T256 __attribute__((target("avx2")))
#include "transpose16.h"

/*
 * The whole box on AVX-512: 16 bins x 16 channels at a time, one accumulator per bin (the samples of a bin in
 * order, the arithmetic of the scalar loop), then the 16x16 block transposed in registers and stored
 * channels-first: no [bin][channel] scratch and no separate transpose.
 */
static T512 void pool_avx512(const float *f, int channels, const long *positions, const float *weights, int bins,
                             int per_bin, float *out) {
    const __m512 count = _mm512_set1_ps((float)per_bin);
    for (int b0 = 0; b0 < bins; b0 += 16) {
        const int nb = bins - b0 < 16 ? bins - b0 : 16;
        const __mmask16 bm = (__mmask16)((1u << nb) - 1u);
        for (int c0 = 0; c0 < channels; c0 += 16) {
            const int nc = channels - c0 < 16 ? channels - c0 : 16;
            const __mmask16 cm = (__mmask16)((1u << nc) - 1u);
            __m512 a[16];
            for (int i = 0; i < 16; i++) {
                if (i >= nb) { a[i] = _mm512_setzero_ps(); continue; }
                const long *ps = positions + (long)(b0 + i) * per_bin * 4;
                const float *ws = weights + (long)(b0 + i) * per_bin * 4;
                __m512 acc = _mm512_setzero_ps();
                for (int s = 0; s < per_bin; s++, ps += 4, ws += 4) {
                    __m512 t = _mm512_mul_ps(_mm512_set1_ps(ws[0]), _mm512_maskz_loadu_ps(cm, f + ps[0] * channels + c0));
                    t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(ws[1]), _mm512_maskz_loadu_ps(cm, f + ps[1] * channels + c0)));
                    t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(ws[2]), _mm512_maskz_loadu_ps(cm, f + ps[2] * channels + c0)));
                    t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(ws[3]), _mm512_maskz_loadu_ps(cm, f + ps[3] * channels + c0)));
                    acc = _mm512_add_ps(acc, t);
                }
                a[i] = _mm512_div_ps(acc, count);
            }
            transpose16(a);
            for (int j = 0; j < nc; j++) _mm512_mask_storeu_ps(out + (long)(c0 + j) * bins + b0, bm, a[j]);
        }
    }
}

static T256 void accumulate_avx2(const float *f, int channels, const long *p, const float *w, int per_bin,
                                 float *acc) {
    const int body = channels & ~7;
    const __m256 count = _mm256_set1_ps((float)per_bin);
    for (int c0 = 0; c0 < body; c0 += 32) {
        const int vecs = (body - c0 < 32 ? body - c0 : 32) / 8;
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const long *ps = p;
        const float *ws = w;
        for (int s = 0; s < per_bin; s++, ps += 4, ws += 4) {
            const float *f0 = f + ps[0] * channels + c0, *f1 = f + ps[1] * channels + c0;
            const float *f2 = f + ps[2] * channels + c0, *f3 = f + ps[3] * channels + c0;
            const __m256 w0 = _mm256_set1_ps(ws[0]), w1 = _mm256_set1_ps(ws[1]);
            const __m256 w2 = _mm256_set1_ps(ws[2]), w3 = _mm256_set1_ps(ws[3]);
            for (int v = 0; v < vecs; v++) {
                const int o = 8 * v;
                __m256 t = _mm256_mul_ps(w0, _mm256_loadu_ps(f0 + o));
                t = _mm256_add_ps(t, _mm256_mul_ps(w1, _mm256_loadu_ps(f1 + o)));
                t = _mm256_add_ps(t, _mm256_mul_ps(w2, _mm256_loadu_ps(f2 + o)));
                t = _mm256_add_ps(t, _mm256_mul_ps(w3, _mm256_loadu_ps(f3 + o)));
                a[v] = _mm256_add_ps(a[v], t);
            }
        }
        for (int v = 0; v < vecs; v++) _mm256_storeu_ps(acc + c0 + 8 * v, _mm256_div_ps(a[v], count));
    }
    if (body < channels) {
        /* Ragged channel tail: the scalar loop on the last channels only (same arithmetic). */
        float tail[8];
        const int rest = channels - body;
        for (int c = 0; c < rest; c++) tail[c] = 0;
        const long *ps = p;
        const float *ws = w;
        for (int s = 0; s < per_bin; s++, ps += 4, ws += 4) {
            for (int c = 0; c < rest; c++) {
                float t = ws[0] * f[ps[0] * channels + body + c];
                t = t + ws[1] * f[ps[1] * channels + body + c];
                t = t + ws[2] * f[ps[2] * channels + body + c];
                t = t + ws[3] * f[ps[3] * channels + body + c];
                tail[c] = tail[c] + t;
            }
        }
        for (int c = 0; c < rest; c++) acc[body + c] = tail[c] / (float)per_bin;
    }
}
#endif

void fpn_roi_align_pool(int isa, const float *feature, int channels, const long *positions, const float *weights,
                        int bins, int per_bin, float *scratch, float *out) {
    if (isa > fpn_best_isa()) isa = fpn_best_isa();
#if defined(__x86_64__)
    if (isa == FPN_ISA_AVX512) { pool_avx512(feature, channels, positions, weights, bins, per_bin, out); return; }
#endif
    for (int b = 0; b < bins; b++) {
        const long *p = positions + (long)b * per_bin * 4;
        const float *w = weights + (long)b * per_bin * 4;
        float *acc = scratch + (long)b * channels;
#if defined(__x86_64__)
        if (isa == FPN_ISA_AVX2) { accumulate_avx2(feature, channels, p, w, per_bin, acc); continue; }
#endif
        accumulate_generic(feature, channels, p, w, per_bin, acc);
    }
    /* [bin][channel] -> [channel][bin]. */
    fpn_transpose(isa, bins, channels, scratch, channels, out, bins);
}
