/*
 * Depthwise convolution over output row segments (see ckernels.h).
 *
 * 16 output pixels of a row are one register: per tap, one (masked) load of
 * the input row, a multiply and an add, so the accumulator never leaves the
 * register. Stride 2 loads 32 consecutive inputs and keeps the even ones.
 * Lanes outside the image (padding) or past the segment are masked: their
 * accumulator is left as it is, which is what skipping the tap does. The
 * arithmetic per pixel is the scalar loop's: taps summed from 0 in (ky, kx)
 * order with separate multiply and add, then + bias, + residual, ReLU; no FMA
 * contraction, so results are bit-identical to it. Lanes clear of the borders
 * skip the masks, 64 at a time where a row allows (four independent sums hide
 * the add latency that one register's chain of taps would wait on).
 */
#pragma clang fp contract(off)

#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* Lanes j in [0, 16) with lo <= j < hi. */
static inline __mmask16 lanes(int lo, int hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)((((unsigned)1 << hi) - 1) & ~(((unsigned)1 << lo) - 1));
}

/* Ceiling of a / b for b > 0 and any sign of a. */
static inline int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/* Output lanes [0, 64) of a row whose every tap lies inside the input row (`first` = input column of lane 0):
 * four independent sums, so one's adds do not wait on another's; each keeps the tap order of the masked loop. */
__attribute__((target("avx512f"), always_inline))
static inline void interior64(const float *src, int h, int w, int oy, int first, const float *k, int kh, int kw,
                              int sh, int sw, int ph, int dh, int dw, __m512i even, __m512 b, const float *r,
                              float *d, int relu) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 acc0 = zero, acc1 = zero, acc2 = zero, acc3 = zero;
    for (int ky = 0; ky < kh; ky++) {
        const int iy = oy * sh - ph + ky * dh;
        if (iy < 0 || iy >= h) continue;
        const float *row = src + (long)iy * w + first;
        for (int kx = 0; kx < kw; kx++) {
            const float *q = row + kx * dw;
            const __m512 wk = _mm512_set1_ps(k[ky * kw + kx]);
            __m512 x0, x1, x2, x3;
            if (sw == 1) {
                x0 = _mm512_loadu_ps(q); x1 = _mm512_loadu_ps(q + 16);
                x2 = _mm512_loadu_ps(q + 32); x3 = _mm512_loadu_ps(q + 48);
            } else {
                x0 = _mm512_permutex2var_ps(_mm512_loadu_ps(q), even, _mm512_loadu_ps(q + 16));
                x1 = _mm512_permutex2var_ps(_mm512_loadu_ps(q + 32), even, _mm512_loadu_ps(q + 48));
                x2 = _mm512_permutex2var_ps(_mm512_loadu_ps(q + 64), even, _mm512_loadu_ps(q + 80));
                x3 = _mm512_permutex2var_ps(_mm512_loadu_ps(q + 96), even, _mm512_loadu_ps(q + 112));
            }
            acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(wk, x0));
            acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(wk, x1));
            acc2 = _mm512_add_ps(acc2, _mm512_mul_ps(wk, x2));
            acc3 = _mm512_add_ps(acc3, _mm512_mul_ps(wk, x3));
        }
    }
    __m512 v0 = _mm512_add_ps(acc0, b), v1 = _mm512_add_ps(acc1, b);
    __m512 v2 = _mm512_add_ps(acc2, b), v3 = _mm512_add_ps(acc3, b);
    if (r) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(r)); v1 = _mm512_add_ps(v1, _mm512_loadu_ps(r + 16));
        v2 = _mm512_add_ps(v2, _mm512_loadu_ps(r + 32)); v3 = _mm512_add_ps(v3, _mm512_loadu_ps(r + 48));
    }
    if (relu) {
        v0 = _mm512_max_ps(zero, v0); v1 = _mm512_max_ps(zero, v1);
        v2 = _mm512_max_ps(zero, v2); v3 = _mm512_max_ps(zero, v3);
    }
    _mm512_storeu_ps(d, v0); _mm512_storeu_ps(d + 16, v1);
    _mm512_storeu_ps(d + 32, v2); _mm512_storeu_ps(d + 48, v3);
}

__attribute__((target("avx512f")))
static void channel_avx512(const float *src, int h, int w, const long *seg, int nseg, float *plane,
                           const float *res, int wo, const float *k, float bias, int kh, int kw, int sh, int sw,
                           int ph, int pw, int dh, int dw, int relu) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    for (int s = 0; s < nseg; s++) {
        const int oy = (int)seg[4 * s], ox0 = (int)seg[4 * s + 1], len = (int)seg[4 * s + 2];
        const int span = (kw - 1) * dw + (sw == 1 ? 16 : 32);
        for (int o = 0; o < len;) {
            const int first64 = (ox0 + o) * sw - pw;
            if (o + 64 <= len && first64 >= 0 && first64 + 48 * sw + span <= w) {
                const long at = (long)oy * wo + ox0 + o;
                interior64(src, h, w, oy, first64, k, kh, kw, sh, sw, ph, dh, dw, even, b, res ? res + at : 0,
                           plane + at, relu);
                o += 64;
                continue;
            }
            const int ox = ox0 + o;
            const __mmask16 m = lanes(0, len - o);
            __m512 acc = zero;
            /* 16 lanes whose every tap lies inside the row: no masks to compute. The same multiplies and adds in
             * the same order as the masked loop below with all lanes set. */
            const int first = ox * sw - pw, reach = first + (kw - 1) * dw + (sw == 1 ? 16 : 32);
            if (len - o >= 16 && first >= 0 && reach <= w) {
                for (int ky = 0; ky < kh; ky++) {
                    const int iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h) continue;
                    const float *row = src + (long)iy * w + first;
                    for (int kx = 0; kx < kw; kx++) {
                        const float *q = row + kx * dw;
                        const __m512 x = sw == 1 ? _mm512_loadu_ps(q)
                            : _mm512_permutex2var_ps(_mm512_loadu_ps(q), even, _mm512_loadu_ps(q + 16));
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(k[ky * kw + kx]), x));
                    }
                }
            } else for (int ky = 0; ky < kh; ky++) {
                const int iy = oy * sh - ph + ky * dh;
                if (iy < 0 || iy >= h) continue;
                const float *row = src + (long)iy * w;
                for (int kx = 0; kx < kw; kx++) {
                    const int ix0 = ox * sw - pw + kx * dw; /* input column of lane 0 */
                    __mmask16 vm;
                    __m512 x;
                    if (sw == 1) {
                        vm = m & lanes(-ix0, w - ix0);
                        if (!vm) continue;
                        x = _mm512_maskz_loadu_ps(vm, row + ix0);
                    } else {
                        /* Lane j reads column ix0 + 2j; the 32 columns from ix0 hold them at even offsets. */
                        vm = m & lanes(ceil_div(-ix0, 2), ceil_div(w - ix0, 2));
                        if (!vm) continue;
                        const __m512 lo = _mm512_maskz_loadu_ps(lanes(-ix0, w - ix0), row + ix0);
                        const __m512 hi = _mm512_maskz_loadu_ps(lanes(-ix0 - 16, w - ix0 - 16), row + ix0 + 16);
                        x = _mm512_permutex2var_ps(lo, even, hi);
                    }
                    const __m512 p = _mm512_mul_ps(_mm512_set1_ps(k[ky * kw + kx]), x);
                    acc = _mm512_mask_add_ps(acc, vm, acc, p);
                }
            }
            float *d = plane + (long)oy * wo + ox;
            __m512 v = _mm512_add_ps(acc, b);
            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + (long)oy * wo + ox));
            /* max(0, v) keeps v when v is NaN or -0, as `v < 0 ? 0 : v` does. */
            if (relu) v = _mm512_max_ps(zero, v);
            _mm512_mask_storeu_ps(d, m, v);
            o += 16;
        }
    }
}
#endif

int fpn_depthwise_supported(int isa, int stride_w) {
#if defined(__x86_64__)
    return isa >= FPN_ISA_AVX512 && fpn_isa_supported(FPN_ISA_AVX512) && (stride_w == 1 || stride_w == 2);
#else
    (void)isa; (void)stride_w;
    return 0;
#endif
}

void fpn_depthwise(int isa, const float *x, int h, int w, long in_plane, const long *segments, int segment_count, float *out,
                   const float *residual, int ho, int wo, const float *weight, const float *bias, int oc0, int oc1,
                   int multiplier, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int relu) {
#if defined(__x86_64__)
    if (!fpn_depthwise_supported(isa, sw)) return;
    for (int oc = oc0; oc < oc1; oc++) {
        const long plane = (long)ho * wo;
        channel_avx512(x + (long)(oc / multiplier) * in_plane, h, w, segments, segment_count, out + oc * plane,
                       residual ? residual + oc * plane : 0, wo, weight + (long)oc * kh * kw, bias ? bias[oc] : 0.0f,
                       kh, kw, sh, sw, ph, pw, dh, dw, relu);
    }
#else
    (void)isa; (void)x; (void)h; (void)w; (void)in_plane; (void)segments; (void)segment_count; (void)out; (void)residual; (void)ho;
    (void)wo; (void)weight; (void)bias; (void)oc0; (void)oc1; (void)multiplier; (void)kh; (void)kw; (void)sh;
    (void)sw; (void)ph; (void)pw; (void)dh; (void)dw; (void)relu;
#endif
}
