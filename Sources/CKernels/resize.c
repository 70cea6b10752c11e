/*
 * Bilinear resizing's two steps (see ckernels.h): the horizontal taps of a row and the vertical blend of two rows,
 * each w0 * a + w1 * b (two multiplies, then the add, no FMA contraction): the bits of the scalar loop.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

#if defined(__x86_64__)
/* add: out += the lerp, rounded first (the bits of a resize followed by a separate add). */
static T512 void lerp_rows_avx512(const float *a, const float *b, long n, float wa, float wb, float *out, int add) {
    const __m512 va = _mm512_set1_ps(wa), vb = _mm512_set1_ps(wb);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 x = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, a + i));
        const __m512 y = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, b + i));
        const __m512 v = _mm512_add_ps(x, y);
        _mm512_mask_storeu_ps(out + i, m, add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + i), v) : v);
    }
}

static T512 void lerp_taps_avx512(const float *row, int len, const int *i0, const int *i1, const float *w0,
                                   const float *w1, const int *bases, long n, float *out) {
    for (long o = 0; o < n; o += 16) {
        const __mmask16 m = n - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - o)) - 1u);
        const __m512i j0 = _mm512_maskz_loadu_epi32(m, i0 + o), j1 = _mm512_maskz_loadu_epi32(m, i1 + o);
        int lo;
        if (bases) {
            lo = bases[o / 16];
        } else {
            lo = _mm512_mask_reduce_min_epi32(m, j0);
            if (_mm512_mask_reduce_max_epi32(m, j1) - lo >= 32) lo = -1;
        }
        __m512 a, b;
        if (lo >= 0) {
            /* Every tap within 32 floats of the first: two loads and in-register permutes instead of gathers. */
            const int left = len - lo;
            const __mmask16 l0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
            const __mmask16 l1 = left >= 32 ? (__mmask16)0xFFFF : left <= 16 ? (__mmask16)0 : (__mmask16)((1u << (left - 16)) - 1u);
            const __m512 r0 = _mm512_maskz_loadu_ps(l0, row + lo), r1 = _mm512_maskz_loadu_ps(l1, row + lo + 16);
            const __m512i base = _mm512_set1_epi32(lo);
            a = _mm512_permutex2var_ps(r0, _mm512_sub_epi32(j0, base), r1);
            b = _mm512_permutex2var_ps(r0, _mm512_sub_epi32(j1, base), r1);
        } else {
            a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, j0, row, 4);
            b = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, j1, row, 4);
        }
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w0 + o), a);
        const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w1 + o), b);
        _mm512_mask_storeu_ps(out + o, m, _mm512_add_ps(x, y));
    }
}
#endif

void fpn_lerp_rows(int isa, const float *a, const float *b, long n, float wa, float wb, float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { lerp_rows_avx512(a, b, n, wa, wb, out, 0); return; }
#endif
    (void)isa;
    for (long i = 0; i < n; i++) out[i] = wa * a[i] + wb * b[i];
}

void fpn_lerp_rows_add(int isa, const float *a, const float *b, long n, float wa, float wb, float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { lerp_rows_avx512(a, b, n, wa, wb, out, 1); return; }
#endif
    (void)isa;
    for (long i = 0; i < n; i++) {
        const float t = wa * a[i] + wb * b[i];
        out[i] = out[i] + t;
    }
}

void fpn_lerp_taps_bases(const int *i0, const int *i1, long n, int *bases) {
    for (long o = 0; o < n; o += 16) {
        const long end = n - o >= 16 ? o + 16 : n;
        int lo = i0[o], hi = i1[o];
        for (long k = o; k < end; k++) {
            if (i0[k] < lo) lo = i0[k];
            if (i1[k] > hi) hi = i1[k];
        }
        bases[o / 16] = hi - lo < 32 ? lo : -1;
    }
}

void fpn_lerp_taps(int isa, const float *row, int len, const int *i0, const int *i1, const float *w0, const float *w1,
                   const int *bases, long n, float *out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { lerp_taps_avx512(row, len, i0, i1, w0, w1, bases, n, out); return; }
#endif
    (void)isa; (void)len; (void)bases;
    for (long o = 0; o < n; o++) out[o] = w0[o] * row[i0[o]] + w1[o] * row[i1[o]];
}
