/*
 * Portable SGEMM micro-kernel (any architecture). Plain C written so that the
 * compiler's auto-vectorizer maps the NR loop onto whatever SIMD the baseline
 * target has (SSE2 on x86_64, NEON on aarch64): a fixed-size accumulator tile
 * with the j loop innermost and unit stride.
 */
#include "sgemm_internal.h"

#include <string.h>

#define MR 4
#define NR 16

static void kernel_4x16(int kc, const float *a, const float *b,
                        float *c, int ldc, int mv, int nv,
                        int flags, float beta, const float *bias) {
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        const float *bp = b + (size_t)p * NR;
        const float *ap = a + (size_t)p * MR;
        for (int r = 0; r < MR; r++) {
            const float av = ap[r];
            for (int j = 0; j < NR; j++) acc[r][j] += av * bp[j];
        }
    }
    for (int r = 0; r < mv; r++) {
        float *crow = c + (size_t)r * ldc;
        const float bv = (flags & FPN_F_BIAS) ? bias[r] : 0.0f;
        for (int j = 0; j < nv; j++) {
            float v = acc[r][j] + bv;
            if (flags & FPN_F_LOADC) v += beta * crow[j];
            if ((flags & FPN_F_RELU) && v < 0.0f) v = 0.0f;
            crow[j] = v;
        }
    }
}

static void pack_b_16(int kc, int nc, const float *b, int ldb, float *dst) {
    for (int p = 0; p < kc; p++) {
        const float *src = b + (size_t)p * ldb;
        float *d = dst + (size_t)p * NR;
        for (int j = 0; j < nc; j += NR, d += (size_t)NR * kc) {
            int w = nc - j < NR ? nc - j : NR;
            memcpy(d, src + j, (size_t)w * sizeof(float));
            for (int t = w; t < NR; t++) d[t] = 0.0f;
        }
    }
}

const struct fpn_gemm_impl fpn__impl_generic = {
    .mr = MR, .nr = NR, .kc = 256, .kernel = kernel_4x16, .pack_b = pack_b_16,
};
