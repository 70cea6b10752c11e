/*
 * Matrix transpose (see ckernels.h): 16x16 blocks through AVX-512 registers, ragged edges by masked loads and
 * stores. Used to pack a GEMM's per-call left operand, to put RoIAlign's pyramid levels channels-last and its bins
 * channels-first. A copy: every ISA gives the same bits.
 */
#pragma clang fp contract(off)

#include "isa_dispatch.h"

static void transpose_generic(int rows, int cols, const float *src, long lds, float *dst, long ldd) {
    for (int r0 = 0; r0 < rows; r0 += 16) {
        const int r1 = r0 + 16 < rows ? r0 + 16 : rows;
        for (int c0 = 0; c0 < cols; c0 += 16) {
            const int c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(long)c * ldd + r] = src[(long)r * lds + c];
        }
    }
}

#if defined(__x86_64__)
#include "transpose16.h"

static T512 void transpose_avx512(int rows, int cols, const float *src, long lds, float *dst, long ldd) {
    /* A last block of at most 4 rows (49 rows: 3 x 16 + 1) costs less as scalar copies than as a whole 16x16
     * register transpose. */
    const int tail = rows % 16 <= 4 ? rows % 16 : 0, body = rows - tail;
    if (tail) transpose_generic(tail, cols, src + (long)body * lds, lds, dst + body, ldd);
    /* Runs of 64 columns outermost, then 16-row blocks, then the run's 16-column blocks: each source row is read
     * 256 bytes (four cache lines) at a time rather than one line per pass over all rows. */
    for (int c00 = 0; c00 < cols; c00 += 64) {
        const int c01 = c00 + 64 < cols ? c00 + 64 : cols;
        for (int r0 = 0; r0 < body; r0 += 16) {
            const int nr = body - r0 < 16 ? body - r0 : 16;
            const __mmask16 rm = (__mmask16)((1u << nr) - 1u);
            for (int c0 = c00; c0 < c01; c0 += 16) {
                const int nc = c01 - c0 < 16 ? c01 - c0 : 16;
                const __mmask16 cm = (__mmask16)((1u << nc) - 1u);
                __m512 v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = i < nr ? _mm512_maskz_loadu_ps(cm, src + (long)(r0 + i) * lds + c0) : _mm512_setzero_ps();
                transpose16(v);
                for (int j = 0; j < nc; j++) _mm512_mask_storeu_ps(dst + (long)(c0 + j) * ldd + r0, rm, v[j]);
            }
        }
    }
}
#endif

void fpn_transpose(int isa, int rows, int cols, const float *src, long lds, float *dst, long ldd) {
    if (rows <= 0 || cols <= 0) return;
#if defined(__x86_64__)
    if (resolve(isa) == FPN_ISA_AVX512) { transpose_avx512(rows, cols, src, lds, dst, ldd); return; }
#endif
    (void)isa;
    transpose_generic(rows, cols, src, lds, dst, ldd);
}
