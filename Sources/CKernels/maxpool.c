/*
 * Max pooling's two steps (see ckernels.h): the max down a window's rows and along its columns, NaN winning as in
 * torch. Comparisons and selects only: every ISA gives the bits of the scalar loop.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

/* v wins over m when it is greater or NaN (torch propagates NaN). */
static inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

#if defined(__x86_64__)
static T512 inline __m512 max_nan512(__m512 m, __m512 v) {
    const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(m, take, v);
}

static T512 void max_rows_avx512(float *acc, const float *row, long n) {
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(acc + i, m, max_nan512(_mm512_maskz_loadu_ps(m, acc + i), _mm512_maskz_loadu_ps(m, row + i)));
    }
}

/* Lanes of a 16-float load at index start that lie before w. */
static inline __mmask16 below(long start, int w) {
    const long left = w - start;
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/*
 * Outputs [ox, end) at stride 1 or 2, 16 per step, for windows that lie inside [0, w) (the caller passes only
 * those): loads are masked at w (lanes past it only feed discarded odd columns or outputs past end), the last
 * step's store at end.
 */
static T512 void max_windows_avx512(const float *v, int w, long ox, long end, int kw, int sw, int pw, float *d) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (; ox < end; ox += 16) {
        const __mmask16 out = end - ox >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (end - ox)) - 1u);
        const long x0 = ox * sw - pw;
        __m512 m = _mm512_setzero_ps();
        for (int t = 0; t < kw; t++) {
            const long at = x0 + t;
            __m512 x = _mm512_maskz_loadu_ps(below(at, w), v + at);
            if (sw == 2) x = _mm512_permutex2var_ps(x, even, _mm512_maskz_loadu_ps(below(at + 16, w), v + at + 16));
            m = t == 0 ? x : max_nan512(m, x);
        }
        _mm512_mask_storeu_ps(d + ox, out, m);
    }
}
#endif

void fpn_max_rows(int isa, float *acc, const float *row, long n) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { max_rows_avx512(acc, row, n); return; }
#endif
    (void)isa;
    for (long i = 0; i < n; i++) acc[i] = max_nan(acc[i], row[i]);
}

/* Output ox of a row: the max over its window's columns inside [0, w), in order. */
static inline void max_window(const float *v, int w, long ox, int kw, int sw, int pw, float *d) {
    const long x0 = ox * sw - pw;
    const long xlo = x0 > 0 ? x0 : 0, xhi = x0 + kw < w ? x0 + kw : w;
    float m = v[xlo];
    for (long xx = xlo + 1; xx < xhi; xx++) m = max_nan(m, v[xx]);
    d[ox] = m;
}

void fpn_max_windows(int isa, const float *v, int w, long ox0, long count, int kw, int sw, int pw, float *d) {
    long ox = ox0;
    const long end = ox0 + count;
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512 && (sw == 1 || sw == 2)) {
        const long first = (pw + sw - 1) / sw;   /* the first output whose window starts at or after column 0 */
        for (; ox < end && ox < first; ox++) max_window(v, w, ox, kw, sw, pw, d);
        /* Outputs whose window ends at or before column w. */
        long inside = w + pw - kw < 0 ? 0 : (w + pw - kw) / sw + 1;
        if (inside > end) inside = end;
        if (ox < inside) { max_windows_avx512(v, w, ox, inside, kw, sw, pw, d); ox = inside; }
    }
#endif
    (void)isa;
    for (; ox < end; ox++) max_window(v, w, ox, kw, sw, pw, d);
}
