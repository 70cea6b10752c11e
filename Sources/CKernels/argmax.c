/*
 * Per-pixel argmax over k planes (semantic segmentation labels): the first maximum wins, a later plane takes a
 * pixel only when strictly greater (a NaN never does), as torch.argmax. Same labels on every ISA.
 */
#include "isa_dispatch.h"

static void argmax_scalar(const float *src, long plane, int k, long n0, long n1, unsigned char *labels) {
    for (long i = n0; i < n1; i++) {
        float best = src[i];
        int arg = 0;
        for (int c = 1; c < k; c++) {
            const float v = src[(long)c * plane + i];
            if (v > best) { best = v; arg = c; }
        }
        labels[i] = (unsigned char)arg;
    }
}

#if defined(__x86_64__)
static T512 void argmax_avx512(const float *src, long plane, int k, long n, unsigned char *labels) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 best = _mm512_loadu_ps(src + i);
        __m128i arg = _mm_setzero_si128();
        for (int c = 1; c < k; c++) {
            const __m512 v = _mm512_loadu_ps(src + (long)c * plane + i);
            const __mmask16 m = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, m, v);
            arg = _mm_mask_mov_epi8(arg, m, _mm_set1_epi8((char)c));
        }
        _mm_storeu_si128((__m128i *)(labels + i), arg);
    }
    argmax_scalar(src, plane, k, i, n, labels);
}
#endif

void fpn_argmax_planes(int isa, const float *src, long plane, int k, unsigned char *labels) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512 && k <= 256) { argmax_avx512(src, plane, k, plane, labels); return; }
#endif
    (void)isa;
    argmax_scalar(src, plane, k, 0, plane, labels);
}

static long row_changes_scalar(const int *ids, long stride, int rows, int lanes, int *rows_out,
                               unsigned short *masks_out) {
    long n = 0;
    for (int y = 1; y < rows; y++) {
        const int *a = ids + (long)(y - 1) * stride, *b = a + stride;
        unsigned m = 0;
        for (int j = 0; j < lanes; j++) m |= (unsigned)(a[j] != b[j]) << j;
        if (m) { rows_out[n] = y; masks_out[n] = (unsigned short)m; n++; }
    }
    return n;
}

#if defined(__x86_64__)
static T512 long row_changes_avx512(const int *ids, long stride, int rows, int lanes, int *rows_out,
                                    unsigned short *masks_out) {
    const __mmask16 lm = lanes >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << lanes) - 1u);
    long n = 0;
    __m512i prev = _mm512_maskz_loadu_epi32(lm, ids);
    for (int y = 1; y < rows; y++) {
        const __m512i cur = _mm512_maskz_loadu_epi32(lm, ids + (long)y * stride);
        const __mmask16 m = _mm512_mask_cmpneq_epi32_mask(lm, cur, prev);
        if (m) { rows_out[n] = y; masks_out[n] = (unsigned short)m; n++; }
        prev = cur;
    }
    return n;
}
#endif

long fpn_row_changes(int isa, const int *ids, long stride, int rows, int lanes, int *rows_out,
                     unsigned short *masks_out) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) return row_changes_avx512(ids, stride, rows, lanes, rows_out, masks_out);
#endif
    (void)isa;
    return row_changes_scalar(ids, stride, rows, lanes, rows_out, masks_out);
}

static void void_histogram_scalar(const int *ids, const unsigned char *labels, long p, long n, long *hist) {
    for (; p < n; p++) hist[labels[p]] += ids[p] == 0;
}

/* Four partial histograms: neighbouring pixels mostly share a label, and one histogram would chain every increment
 * on the last one through memory. */
static void void_histogram_partials(const int *ids, const unsigned char *labels, long n, long *hist) {
    int h[4][256] = {{0}};
    long p = 0;
    for (; p + 4 <= n; p += 4) {
        for (int j = 0; j < 4; j++) h[j][labels[p + j]] += ids[p + j] == 0;
    }
    for (int l = 0; l < 256; l++) hist[l] += (long)h[0][l] + h[1][l] + h[2][l] + h[3][l];
    void_histogram_scalar(ids, labels, p, n, hist);
}

static void stuff_select_scalar(int *ids, const unsigned char *labels, long p, long n, const int *table) {
    for (; p < n; p++) if (ids[p] == 0) ids[p] = table[labels[p]];
}

#if defined(__x86_64__)
/* 16 pixels at a time: all void and of one label (the inside of a stuff region) in one step, else per pixel. */
static T512 void void_histogram_avx512(const int *ids, const unsigned char *labels, long n, long *hist) {
    long p = 0;
    for (; p + 16 <= n; p += 16) {
        const __m512i id = _mm512_loadu_si512(ids + p);
        const __m128i l = _mm_loadu_si128((const __m128i *)(labels + p));
        const __mmask16 used = _mm512_test_epi32_mask(id, id);
        if (used == 0 && _mm_cmpeq_epi8_mask(l, _mm_set1_epi8((char)labels[p])) == 0xFFFF) {
            hist[labels[p]] += 16;
        } else if (used != 0xFFFF) {
            void_histogram_scalar(ids, labels, p, p + 16, hist);
        }
    }
    void_histogram_scalar(ids, labels, p, n, hist);
}

static T512 void stuff_select_avx512(int *ids, const unsigned char *labels, long n, const int *table) {
    long p = 0;
    for (; p + 16 <= n; p += 16) {
        const __m512i id = _mm512_loadu_si512(ids + p);
        const __mmask16 empty = _mm512_testn_epi32_mask(id, id);
        if (empty == 0) continue;
        const __m128i l8 = _mm_loadu_si128((const __m128i *)(labels + p));
        __m512i stuff;
        if (_mm_cmpeq_epi8_mask(l8, _mm_set1_epi8((char)labels[p])) == 0xFFFF) {
            stuff = _mm512_set1_epi32(table[labels[p]]);   /* one label: no gather */
        } else {
            stuff = _mm512_i32gather_epi32(_mm512_cvtepu8_epi32(l8), table, 4);
        }
        _mm512_mask_storeu_epi32(ids + p, empty, stuff);
    }
    stuff_select_scalar(ids, labels, p, n, table);
}
#endif

void fpn_void_label_histogram(int isa, const int *ids, const unsigned char *labels, long n, long *hist) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { void_histogram_avx512(ids, labels, n, hist); return; }
#endif
    (void)isa;
    void_histogram_partials(ids, labels, n, hist);
}

void fpn_stuff_select(int isa, int *ids, const unsigned char *labels, long n, const int *table) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { stuff_select_avx512(ids, labels, n, table); return; }
#endif
    (void)isa;
    stuff_select_scalar(ids, labels, 0, n, table);
}
