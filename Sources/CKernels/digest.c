/*
 * A 128-bit digest of a float row's bit patterns (see ckernels.h). Integer arithmetic only: every ISA below
 * computes the same 16 lane sums, so the digest does not depend on the CPU.
 */
#include <string.h>

#include "isa_dispatch.h"

#define LANES 16
#define GOLDEN 0x9E3779B9u
#define MIX 0x85EBCA6Bu

/* Lane sums of positions [from, n): position i adds to lane i % 16. */
static void lanes_scalar(const float *x, long from, long n, uint32_t a[LANES], uint32_t b[LANES]) {
    for (long i = from; i < n; i++) {
        uint32_t v;
        memcpy(&v, x + i, sizeof v);
        const uint32_t w = (uint32_t)i * 2u + 1u;
        a[i % LANES] += v * ((w * GOLDEN) | 1u);
        b[i % LANES] += (v ^ w) * MIX;
    }
}

#if defined(__x86_64__)
/* Whole 16-float blocks; returns the number of positions done. wg = w * GOLDEN advances by 32 * GOLDEN a block. */
__attribute__((target("avx512f")))
static long lanes_avx512(const float *x, long n, uint32_t a[LANES], uint32_t b[LANES]) {
    __m512i A = _mm512_setzero_si512(), B = _mm512_setzero_si512();
    __m512i w = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512i wg = _mm512_mullo_epi32(w, _mm512_set1_epi32((int)GOLDEN));
    const __m512i step = _mm512_set1_epi32(32), stepg = _mm512_set1_epi32((int)(32u * GOLDEN));
    const __m512i one = _mm512_set1_epi32(1), mix = _mm512_set1_epi32((int)MIX);
    long i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m512i v = _mm512_loadu_si512((const void *)(x + i));
        A = _mm512_add_epi32(A, _mm512_mullo_epi32(v, _mm512_or_si512(wg, one)));
        B = _mm512_add_epi32(B, _mm512_mullo_epi32(_mm512_xor_si512(v, w), mix));
        w = _mm512_add_epi32(w, step);
        wg = _mm512_add_epi32(wg, stepg);
    }
    _mm512_storeu_si512((void *)a, A);
    _mm512_storeu_si512((void *)b, B);
    return i;
}

/* The same lanes as two 8-lane halves. */
__attribute__((target("avx2")))
static long lanes_avx2(const float *x, long n, uint32_t a[LANES], uint32_t b[LANES]) {
    __m256i A0 = _mm256_setzero_si256(), A1 = A0, B0 = A0, B1 = A0;
    __m256i w0 = _mm256_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15), w1 = _mm256_setr_epi32(17, 19, 21, 23, 25, 27, 29, 31);
    const __m256i g = _mm256_set1_epi32((int)GOLDEN);
    __m256i wg0 = _mm256_mullo_epi32(w0, g), wg1 = _mm256_mullo_epi32(w1, g);
    const __m256i step = _mm256_set1_epi32(32), stepg = _mm256_set1_epi32((int)(32u * GOLDEN));
    const __m256i one = _mm256_set1_epi32(1), mix = _mm256_set1_epi32((int)MIX);
    long i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(x + i + 8));
        A0 = _mm256_add_epi32(A0, _mm256_mullo_epi32(v0, _mm256_or_si256(wg0, one)));
        A1 = _mm256_add_epi32(A1, _mm256_mullo_epi32(v1, _mm256_or_si256(wg1, one)));
        B0 = _mm256_add_epi32(B0, _mm256_mullo_epi32(_mm256_xor_si256(v0, w0), mix));
        B1 = _mm256_add_epi32(B1, _mm256_mullo_epi32(_mm256_xor_si256(v1, w1), mix));
        w0 = _mm256_add_epi32(w0, step); w1 = _mm256_add_epi32(w1, step);
        wg0 = _mm256_add_epi32(wg0, stepg); wg1 = _mm256_add_epi32(wg1, stepg);
    }
    _mm256_storeu_si256((__m256i *)a, A0); _mm256_storeu_si256((__m256i *)(a + 8), A1);
    _mm256_storeu_si256((__m256i *)b, B0); _mm256_storeu_si256((__m256i *)(b + 8), B1);
    return i;
}
#endif

void fpn_row_digest(int isa, const float *x, long n, uint64_t out[2]) {
    uint32_t a[LANES] = {0}, b[LANES] = {0};
    long done = 0;
    isa = resolve(isa);
#if defined(__x86_64__)
    if (isa >= FPN_ISA_AVX512) done = lanes_avx512(x, n, a, b);
    else if (isa >= FPN_ISA_AVX2) done = lanes_avx2(x, n, a, b);
#endif
    lanes_scalar(x, done, n, a, b);
    /* The weights already depend on the position; the fold keeps the lanes apart. */
    uint64_t h0 = 0xCBF29CE484222325ull, h1 = 0x84222325CBF29CE4ull;
    for (int l = 0; l < LANES; l++) {
        h0 = (h0 ^ a[l]) * 0x100000001B3ull;
        h1 = (h1 ^ b[l]) * 0x100000001B3ull;
    }
    out[0] = h0 ^ (uint64_t)n;
    out[1] = h1;
}
