/*
 * A detector's input normalisation: interleaved RGB bytes to three float planes through a per-channel table
 * (table[c * 256 + v], the model's (v / 255 - mean) / std). A lookup, so every ISA gives the table's bits.
 */
#include "isa_dispatch.h"

#include <stdint.h>

#if defined(__x86_64__)
/*
 * 16 pixels a step: the bytes of one channel are gathered as dwords at byte offsets 3x + c (scale 1) and masked
 * to their low byte, then the table is gathered. A dword read at the last pixels reaches up to 3 bytes past the
 * row's last byte, so the last vector of the image runs masked to the pixels whose dword stays inside it.
 */
static T512 void rows_avx512(const uint8_t *rgb, int w, int h, const float *table, float *out, long plane,
                             int ldo) {
    const __m512i lane3 = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(3));
    const __m512i low = _mm512_set1_epi32(0xFF);
    const long total = (long)w * h * 3;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = rgb + (long)y * w * 3;
        for (int x = 0; x < w; x += 16) {
            const int n = w - x < 16 ? w - x : 16;
            /* Pixels whose channel-2 dword would end past the image: done by the scalar loop below. */
            const long base = (long)(row - rgb) + 3L * x;
            int safe = n;
            while (safe > 0 && base + 3L * (safe - 1) + 2 + 4 > total) safe--;
            const __mmask16 ms = safe == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << safe) - 1u);
            for (int c = 0; c < 3; c++) {
                const __m512i bytes = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), ms, lane3,
                                                                  row + 3L * x + c, 1);
                const __m512i idx = _mm512_and_si512(bytes, low);
                const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ms, idx, table + c * 256, 4);
                float *d = out + c * plane + (long)y * ldo + x;
                _mm512_mask_storeu_ps(d, ms, v);
                for (int i = safe; i < n; i++) d[i] = table[c * 256 + row[3L * (x + i) + c]];
            }
        }
    }
}
#endif

void fpn_normalize_rgb(int isa, const uint8_t *rgb, int w, int h, const float *table, float *out, long plane,
                       int ldo) {
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { rows_avx512(rgb, w, h, table, out, plane, ldo); return; }
#endif
    (void)isa;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++) {
            const uint8_t *row = rgb + (long)y * w * 3 + c;
            float *d = out + c * plane + (long)y * ldo;
            for (int x = 0; x < w; x++) d[x] = table[c * 256 + row[3L * x]];
        }
}
