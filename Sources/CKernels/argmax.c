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
