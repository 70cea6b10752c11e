/*
 * A 128-bit digest of a float row's bit patterns (see ckernels.h). Integer arithmetic only, so every
 * vectorisation of the lane loop gives the same digest.
 */
#include <string.h>

#include "ckernels.h"

#define LANES 16

#if defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void fpn_row_digest(const float *x, long n, uint64_t out[2]) {
    uint32_t a[LANES] = {0}, b[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            uint32_t v;
            memcpy(&v, x + i + l, sizeof v);
            const uint32_t w = (uint32_t)(i + l) * 2u + 1u;
            a[l] += v * ((w * 0x9E3779B9u) | 1u);
            b[l] += (v ^ w) * 0x85EBCA6Bu;
        }
    }
    for (int l = 0; i + l < n; l++) {
        uint32_t v;
        memcpy(&v, x + i + l, sizeof v);
        const uint32_t w = (uint32_t)(i + l) * 2u + 1u;
        a[l] += v * ((w * 0x9E3779B9u) | 1u);
        b[l] += (v ^ w) * 0x85EBCA6Bu;
    }
    /* Lane l holds positions l mod 16; the weights already depend on the position, the fold keeps lanes apart. */
    uint64_t h0 = 0xCBF29CE484222325ull, h1 = 0x84222325CBF29CE4ull;
    for (int l = 0; l < LANES; l++) {
        h0 = (h0 ^ a[l]) * 0x100000001B3ull;
        h1 = (h1 ^ b[l]) * 0x100000001B3ull;
    }
    out[0] = h0 ^ (uint64_t)n;
    out[1] = h1;
}
