/*
 * Opt-in bfloat16 GEMM on AVX512_BF16: C = act(bf16(A) * bf16(B) + beta * C + bias[row]).
 *
 * A and B are rounded to bf16 (round to nearest even, NaN kept as a quiet NaN, ±inf kept) while packing;
 * `vdpbf16ps` multiplies pairs of bf16 along K and accumulates both products into one fp32 lane, so one
 * instruction does 2 multiply-adds per lane (2x the fp32 FMA rate on Zen 4, Cooper Lake, Sapphire Rapids).
 * Products of two bf16 are exact in fp32; only the fp32 accumulation rounds. C and the epilogue are fp32.
 * Like every AVX512_BF16 instruction, vdpbf16ps treats denormal inputs as zero and flushes denormal
 * results, so bf16 values below 2^-126 count as 0 (the packers flush them too, consistently for A and B).
 *
 * Packed element: one dword = bf16(x[k]) in the low half, bf16(x[k+1]) in the high half (k even); an odd K
 * pads the last pair's high half with +0 in both A and B.
 *   A: panels of MR rows; panel i holds, for every k-pair q in [0, KP), MR dwords (rows past M are 0).
 *      KP = ceil(K/2). A K block of a panel is the contiguous slice at q0 * MR, independent of blocking.
 *   B: per call, a KCP x NC block is packed into NR-wide panels: per k-pair, NR dwords (2 zmm), 64-byte
 *      aligned, columns past N zero.
 *
 * Driver (same nest as sgemm.c): jc over N in NC, pc over k-pairs in KCP (pack B block, sized to a quarter
 * of L2), ir over M in MR (A micro-panel MR x KCP dwords stays in L1), jr over NC in NR (B panel from L2).
 * The epilogue is fused into the micro-kernel store (beta*C and bias on the first K block, ReLU on the last).
 * While a block is computed, its kernels prefetch (one line per K step) the fp32 source of the next B block,
 * so packing a B larger than the caches (e.g. a 35 MB im2col matrix) does not stall on DRAM.
 *
 * Micro-kernel 14 x 32: per k-pair two B loads, 14 dword broadcasts of A (folded into vdpbf16ps's
 * {1to16} memory operand), 28 vdpbf16ps into 28 zmm accumulators. Narrower/shorter instantiations
 * (8-column units, even row counts) serve ragged edges.
 */
#include "ckernels.h"
#include "sgemm_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF_MR 14
#define BF_NR 32
#define BF_KCP 256          /* preferred K block in k-pairs: A micro-panel 14 x 256 dwords = 14 KB */
#ifndef BF_PF_HINT
#define BF_PF_HINT _MM_HINT_T0
#endif
#ifndef BF_PREFETCH_NEXT
#define BF_PREFETCH_NEXT 1
#endif
#define BF_WS_SLACK 64      /* bytes of slack so the packed B block can be 64-byte aligned */

int fpn_gemm_bf16_mr(void) { return BF_MR; }
int fpn_gemm_bf16_nr(void) { return BF_NR; }

static size_t bf_round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }
static int bf_pairs(int k) { return k > 0 ? (k + 1) / 2 : 0; }

/*
 * fp32 -> bf16 bits, round to nearest even. NaN stays NaN (quiet bit set), ±inf stays, values that round past
 * FLT_MAX become ±inf, denormal inputs become signed zero (what vcvtne2ps2bf16 does, used for B).
 */
static uint32_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x0040u;
    if ((u & 0x7F800000u) == 0) return (u >> 16) & 0x8000u;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return u >> 16;
}

size_t fpn_gemm_bf16_packed_a_bytes(int m, int k) {
    if (m <= 0 || k <= 0) return 0;
    return bf_round_up((size_t)m, BF_MR) * (size_t)bf_pairs(k) * 4;
}

size_t fpn_gemm_bf16_packed_a_offset(int row0, int k) {
    return (size_t)(row0 / BF_MR) * BF_MR * (size_t)bf_pairs(k) * 4;
}

void fpn_gemm_bf16_pack_a(int m, int k, const float *a, int lda, void *packed) {
    const int kp = bf_pairs(k);
    uint32_t *out = (uint32_t *)packed;
    for (int i0 = 0; i0 < m; i0 += BF_MR) {
        const int mv = m - i0 < BF_MR ? m - i0 : BF_MR;
        uint32_t *dst = out + (size_t)i0 * kp;
        for (int r = 0; r < BF_MR; r++) {
            if (r < mv) {
                const float *src = a + (size_t)(i0 + r) * lda;
                for (int q = 0; q < kp; q++) {
                    const uint32_t lo = bf16_bits(src[2 * q]);
                    const uint32_t hi = 2 * q + 1 < k ? bf16_bits(src[2 * q + 1]) : 0u;
                    dst[(size_t)q * BF_MR + r] = lo | hi << 16;
                }
            } else {
                for (int q = 0; q < kp; q++) dst[(size_t)q * BF_MR + r] = 0u;
            }
        }
    }
}

/* K block in k-pairs: at most BF_KCP, K split evenly so no block is a tiny remainder. */
static int bf_k_block(int kp) {
    if (kp <= BF_KCP) return kp < 1 ? 1 : kp;
    const int nblocks = (kp + BF_KCP - 1) / BF_KCP;
    return (kp + nblocks - 1) / nblocks;
}

/* N block: the packed B block (KCP x NC dwords) gets a quarter of L2 (see n_block in sgemm.c). */
static int bf_n_block(int kcp, int n) {
    int l2_kb = fpn__l2_kb();
    if (l2_kb <= 0) l2_kb = 512;
    if (l2_kb > 4096) l2_kb = 4096;
    const long bytes = (long)l2_kb * 1024 / 4;
    int nc = (int)(bytes / ((long)kcp * 4)) / BF_NR * BF_NR;
    if (nc < 4 * BF_NR) nc = 4 * BF_NR;
    if (nc > 4096) nc = 4096;
    const int n_padded = (int)bf_round_up((size_t)(n < 1 ? 1 : n), BF_NR);
    return nc < n_padded ? nc : n_padded;
}

size_t fpn_gemm_bf16_workspace_bytes(int n, int k) {
    const int kcp = bf_k_block(bf_pairs(k));
    const int nc = bf_n_block(kcp, n);
    return (size_t)kcp * (size_t)nc * 4 + BF_WS_SLACK;
}

#if defined(__x86_64__)

#include <immintrin.h>

static volatile int g_bf16_ok = -1;

int fpn_bf16_supported(void) {
    if (g_bf16_ok < 0) {
        struct fpn_cpu_info ci;
        fpn_cpu_detect(&ci);
        g_bf16_ok = ci.os_avx512 && ci.avx512f && ci.avx512bw && ci.avx512vl && ci.avx512dq && ci.avx512_bf16 &&
                    ci.fma;
    }
    return g_bf16_ok;
}

#define TBF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define INLINE static inline __attribute__((always_inline))

static inline __mmask16 bf_tail_mask(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

INLINE TBF void bf_update16(float *c, __m512 acc, __mmask16 m, int flags, float beta, float bias) {
    if (flags & FPN_F_BIAS) acc = _mm512_add_ps(acc, _mm512_set1_ps(bias));
    if (flags & FPN_F_LOADC)
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c), _mm512_set1_ps(beta), acc);
    if (flags & FPN_F_RELU) acc = _mm512_max_ps(acc, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(c, m, acc);
}

INLINE TBF void bf_update8(float *c, __m256 acc, __mmask8 m, int flags, float beta, float bias) {
    if (flags & FPN_F_BIAS) acc = _mm256_add_ps(acc, _mm256_set1_ps(bias));
    if (flags & FPN_F_LOADC)
        acc = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(m, c), _mm256_set1_ps(beta), acc);
    if (flags & FPN_F_RELU) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    _mm256_mask_storeu_ps(c, m, acc);
}

/*
 * Body instantiated for W = 1..4 units of 8 columns (ymm, zmm, zmm+ymm, 2 zmm per row) and MV = 2..14 rows
 * (compile-time after inlining), as in sgemm_avx512.c.
 */
#define BF_ACC_DECL(r)                                                           \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();         \
    __m256 y##r = _mm256_setzero_ps();
#define BF_ACC_STEP(r, A)                                                                  \
    if (r < MV) {                                                                          \
        if (W == 1) {                                                                      \
            y##r = _mm256_dpbf16_ps(y##r, (__m256bh)_mm256_set1_epi32((int)(A)[r]), bq);   \
        } else {                                                                           \
            const __m512i av = _mm512_set1_epi32((int)(A)[r]);                             \
            c##r##0 = _mm512_dpbf16_ps(c##r##0, (__m512bh)av, b0);                         \
            if (W == 4) c##r##1 = _mm512_dpbf16_ps(c##r##1, (__m512bh)av, b1);             \
            if (W == 3) y##r = _mm256_dpbf16_ps(y##r, (__m256bh)_mm512_castsi512_si256(av), bq); \
        }                                                                                  \
    }
#define BF_LOAD_B(P)                                                                       \
    b0 = W >= 2 ? (__m512bh)_mm512_load_si512((const void *)(P)) : b0;                     \
    b1 = W == 4 ? (__m512bh)_mm512_load_si512((const void *)((P) + 16)) : b1;              \
    bq = W == 3 ? (__m256bh)_mm256_load_si256((const __m256i *)((P) + 16))                 \
       : W == 1 ? (__m256bh)_mm256_load_si256((const __m256i *)(P)) : bq;
#define BF_ALL_ROWS(X, A) \
    X(0, A) X(1, A) X(2, A) X(3, A) X(4, A) X(5, A) X(6, A) \
    X(7, A) X(8, A) X(9, A) X(10, A) X(11, A) X(12, A) X(13, A)
#define BF_ROW_STORE(r, _)                                                                \
    if (r < mv) {                                                                          \
        float *cr = c + (size_t)(r) * ldc;                                                 \
        const float bv = (flags & FPN_F_BIAS) ? bias[r] : 0.0f;                            \
        if (W == 1) bf_update8(cr, y##r, (__mmask8)m0, flags, beta, bv);                   \
        if (W >= 2) bf_update16(cr, c##r##0, m0, flags, beta, bv);                         \
        if (W == 3) bf_update8(cr + 16, y##r, (__mmask8)m1, flags, beta, bv);              \
        if (W == 4) bf_update16(cr + 16, c##r##1, m1, flags, beta, bv);                    \
    }

INLINE TBF void bf_kernel_body(int kcp, const uint32_t *a, const uint32_t *b,
                               float *c, int ldc, int mv, int nv,
                               int flags, float beta, const float *bias, const char *pf, size_t pfs, int pfn,
                               const int W, const int MV) {
    BF_ACC_DECL(0) BF_ACC_DECL(1) BF_ACC_DECL(2) BF_ACC_DECL(3) BF_ACC_DECL(4) BF_ACC_DECL(5) BF_ACC_DECL(6)
    BF_ACC_DECL(7) BF_ACC_DECL(8) BF_ACC_DECL(9) BF_ACC_DECL(10) BF_ACC_DECL(11) BF_ACC_DECL(12) BF_ACC_DECL(13)

    /* Fetch the C tile early so its misses (or RFOs when C is write-only) overlap the K loop. */
    for (int r = 0; r < mv; r++) {
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        if (W >= 3) _mm_prefetch((const char *)(c + (size_t)r * ldc + 16), _MM_HINT_T0);
    }

    __m512bh b0 = (__m512bh)_mm512_setzero_si512(), b1 = b0;
    __m256bh bq = (__m256bh)_mm256_setzero_si256();
    int q = 0;
    for (; q + 2 <= kcp; q += 2) {
        if (pfn > 0) {   /* next B block's source lines (see the driver) */
            _mm_prefetch(pf, BF_PF_HINT);
            _mm_prefetch(pf + pfs, BF_PF_HINT);
            pf += 2 * pfs;
            pfn -= 2;
        }
        BF_LOAD_B(b)
        BF_ALL_ROWS(BF_ACC_STEP, a)
        BF_LOAD_B(b + BF_NR)
        BF_ALL_ROWS(BF_ACC_STEP, a + BF_MR)
        a += 2 * BF_MR;
        b += 2 * BF_NR;
    }
    if (q < kcp) {
        BF_LOAD_B(b)
        BF_ALL_ROWS(BF_ACC_STEP, a)
    }

    const __mmask16 m0 = bf_tail_mask(nv), m1 = bf_tail_mask(nv - 16);
    BF_ALL_ROWS(BF_ROW_STORE, _)
}

TBF static void bf_kernel_14x32(int kcp, const uint32_t *a, const uint32_t *b,
                                float *c, int ldc, int mv, int nv,
                                int flags, float beta, const float *bias, const char *pf, size_t pfs, int pfn) {
#define BF_CASE(MV)                                                                          \
    case MV:                                                                                 \
        switch ((nv + 7) >> 3) {                                                             \
        case 1: bf_kernel_body(kcp, a, b, c, ldc, mv, nv, flags, beta, bias, pf, pfs, pfn, 1, MV); return; \
        case 2: bf_kernel_body(kcp, a, b, c, ldc, mv, nv, flags, beta, bias, pf, pfs, pfn, 2, MV); return; \
        case 3: bf_kernel_body(kcp, a, b, c, ldc, mv, nv, flags, beta, bias, pf, pfs, pfn, 3, MV); return; \
        default: bf_kernel_body(kcp, a, b, c, ldc, mv, nv, flags, beta, bias, pf, pfs, pfn, 4, MV); return; \
        }
    switch ((mv + 1) & ~1) {
        BF_CASE(2) BF_CASE(4) BF_CASE(6) BF_CASE(8) BF_CASE(10) BF_CASE(12)
    default:
        BF_CASE(14)
    }
#undef BF_CASE
}

/*
 * Pack rows [0, kv) of B (kv <= 2 * kcp; a missing odd row reads as 0) and columns [0, nc) into NR-wide
 * panels of kcp x NR dwords. Per k-pair and 32 columns: vcvtne2ps2bf16 turns each of the two fp32 rows into
 * 32 bf16 (RNE, NaN quieted), and two vpermt2w interleave them into the 32 (row k, row k+1) dwords.
 */
TBF static void bf_pack_b(int kcp, int kv, int nc, const float *b, int ldb, uint32_t *dst) {
    static const uint16_t idx_tab[64] = {
        0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
        8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47,
        16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
        24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63,
    };
    const __m512i idx0 = _mm512_loadu_si512((const void *)idx_tab);
    const __m512i idx1 = _mm512_loadu_si512((const void *)(idx_tab + 32));
    const size_t panel = (size_t)BF_NR * kcp;
    const int full = nc / BF_NR * BF_NR;
    const int rem = nc - full;
    const __mmask16 t0 = bf_tail_mask(rem), t1 = bf_tail_mask(rem - 16);
    for (int q = 0; q < kcp; q++) {
        const float *r0 = b + (size_t)(2 * q) * ldb;
        const int has1 = 2 * q + 1 < kv;
        const float *r1 = has1 ? r0 + ldb : r0;
        uint32_t *d = dst + (size_t)q * BF_NR;
        int j = 0;
        if (has1) {
            for (; j < full; j += BF_NR, d += panel) {
                const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r0 + j + 16), _mm512_loadu_ps(r0 + j));
                const __m512i y = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r1 + j + 16), _mm512_loadu_ps(r1 + j));
                _mm512_store_si512((void *)d, _mm512_permutex2var_epi16(x, idx0, y));
                _mm512_store_si512((void *)(d + 16), _mm512_permutex2var_epi16(x, idx1, y));
            }
        } else {
            const __m512i y = _mm512_setzero_si512();
            for (; j < full; j += BF_NR, d += panel) {
                const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r0 + j + 16), _mm512_loadu_ps(r0 + j));
                _mm512_store_si512((void *)d, _mm512_permutex2var_epi16(x, idx0, y));
                _mm512_store_si512((void *)(d + 16), _mm512_permutex2var_epi16(x, idx1, y));
            }
        }
        if (rem) {
            const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(t1, r0 + j + 16),
                                                           _mm512_maskz_loadu_ps(t0, r0 + j));
            const __m512i y = has1 ? (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(t1, r1 + j + 16),
                                                                  _mm512_maskz_loadu_ps(t0, r1 + j))
                                   : _mm512_setzero_si512();
            _mm512_store_si512((void *)d, _mm512_permutex2var_epi16(x, idx0, y));
            _mm512_store_si512((void *)(d + 16), _mm512_permutex2var_epi16(x, idx1, y));
        }
    }
}

static void bf_epilogue_only(int m, int n, float beta, float *c, int ldc, const float *bias, int relu) {
    for (int i = 0; i < m; i++) {
        const float bv = bias ? bias[i] : 0.0f;
        float *row = c + (size_t)i * ldc;
        for (int j = 0; j < n; j++) {
            const float v = (beta != 0.0f ? beta * row[j] : 0.0f) + bv;
            row[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/*
 * The B block of k-pairs [pc, pc + kcp) (kv rows) and columns [jc, jc + nc) gathered from an image as its
 * im2col matrix: per panel, 16 k-pairs at a time are gathered in fp32 (an L1-sized buffer) and converted.
 */
static void bf_pack_im2col(const struct fpn_im2col *g, int pc, int kcp, int kv, int jc, int nc, uint32_t *dst) {
    enum { PAIRS = 16 };
    float tmp[2 * PAIRS * BF_NR] __attribute__((aligned(64)));
    struct fpn_im2col_rows rows;
    fpn__im2col_rows(g, 2 * pc, kv, &rows);
    const int panels = (nc + BF_NR - 1) / BF_NR;
    for (int q = 0; q < panels; q++) {
        const int n = nc - q * BF_NR < BF_NR ? nc - q * BF_NR : BF_NR;
        uint32_t *d = dst + (size_t)q * kcp * BF_NR;
        for (int p0 = 0; p0 < kcp; p0 += PAIRS) {
            const int pairs = kcp - p0 < PAIRS ? kcp - p0 : PAIRS;
            const int rv = kv - 2 * p0 < 2 * pairs ? kv - 2 * p0 : 2 * pairs;
            fpn__im2col_panel(g, &rows, fpn__impl_avx512.gather2, 2 * p0, rv, jc + q * BF_NR, n, BF_NR, tmp);
            bf_pack_b(pairs, rv, BF_NR, tmp, BF_NR, d + (size_t)p0 * BF_NR);
        }
    }
}

static void bf_driver(int m, int n, int k, const void *packed_a, const float *b, int ldb,
                      const struct fpn_im2col *image, float beta, float *c, int ldc, const float *bias, int relu,
                      void *workspace);

void fpn_gemm_bf16_compute(int m, int n, int k, const void *packed_a, const float *b, int ldb,
                           float beta, float *c, int ldc, const float *bias, int relu, void *workspace) {
    bf_driver(m, n, k, packed_a, b, ldb, NULL, beta, c, ldc, bias, relu, workspace);
}

void fpn_gemm_bf16_conv_compute(int m, int n, int k, const void *packed_a, const struct fpn_im2col *b,
                                float beta, float *c, int ldc, const float *bias, int relu, void *workspace) {
    bf_driver(m, n, k, packed_a, NULL, 0, b, beta, c, ldc, bias, relu, workspace);
}

/* B from a matrix (b, ldb) or, when `image` is set, gathered from the image as its im2col matrix. */
static void bf_driver(int m, int n, int k, const void *packed_a, const float *b, int ldb,
                      const struct fpn_im2col *image, float beta, float *c, int ldc, const float *bias, int relu,
                      void *workspace) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        bf_epilogue_only(m, n, beta, c, ldc, bias, relu);
        return;
    }
    if (!fpn_bf16_supported()) {
        fputs("fpn_gemm_bf16_compute: AVX512_BF16 not supported on this CPU\n", stderr);
        abort();
    }
    const uint32_t *pa = (const uint32_t *)packed_a;
    const int kp = bf_pairs(k);
    const int kcp_max = bf_k_block(kp);
    const int nc_max = bf_n_block(kcp_max, n);
    uint32_t *bp = (uint32_t *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);

    for (int jc = 0; jc < n; jc += nc_max) {
        const int nc = n - jc < nc_max ? n - jc : nc_max;
        for (int pc = 0; pc < kp; pc += kcp_max) {
            const int kcp = kp - pc < kcp_max ? kp - pc : kcp_max;
            const int kv = k - 2 * pc < 2 * kcp ? k - 2 * pc : 2 * kcp;
            /*
             * The source of the B block packed next (K blocks inner, then N blocks) is prefetched by the
             * kernels of this block, spread over their K loops, so packing it does not stall on DRAM when B
             * is larger than the caches. Its lines, as columns of 64 bytes walked down the rows, are cut
             * into one segment per kernel call; each K step prefetches one line.
             */
            const char *nb = NULL;
            int nkv = 0, nnc = 0;
            if (BF_PREFETCH_NEXT && !image) {
                if (pc + kcp < kp) {
                    nb = (const char *)(b + (size_t)(2 * (pc + kcp)) * ldb + jc);
                    nkv = k - 2 * (pc + kcp) < 2 * kcp_max ? k - 2 * (pc + kcp) : 2 * kcp_max;
                    nnc = nc;
                } else if (jc + nc < n) {
                    nb = (const char *)(b + jc + nc);
                    nkv = k < 2 * kcp_max ? k : 2 * kcp_max;
                    nnc = n - jc - nc < nc_max ? n - jc - nc : nc_max;
                }
            }
            const int calls = ((m + BF_MR - 1) / BF_MR) * ((nc + BF_NR - 1) / BF_NR);
            const int n_lc = (nnc * 4 + 63) / 64;               /* line columns of the next block */
            int segs = n_lc > 0 ? calls / n_lc : 0;             /* segments per line column */
            if (segs < 1) segs = 1;
            int seg_rows = (nkv + segs - 1) / segs;
            if (seg_rows > kcp + 1) seg_rows = kcp + 1;        /* at most one line per K step */
            const size_t pfs = (size_t)ldb * sizeof(float);
            int call = 0;
            if (image) bf_pack_im2col(image, pc, kcp, kv, jc, nc, bp);
            else bf_pack_b(kcp, kv, nc, b + (size_t)(2 * pc) * ldb + jc, ldb, bp);

            const int first = pc == 0, last = pc + kcp >= kp;
            int flags = 0;
            if (!first || beta != 0.0f) flags |= FPN_F_LOADC;
            if (first && bias) flags |= FPN_F_BIAS;
            if (last && relu) flags |= FPN_F_RELU;
            const float kbeta = first ? beta : 1.0f;

            for (int ir = 0; ir < m; ir += BF_MR) {
                const int mv = m - ir < BF_MR ? m - ir : BF_MR;
                const uint32_t *ap = pa + (size_t)ir * kp + (size_t)pc * BF_MR;
                const float *bias_r = (flags & FPN_F_BIAS) ? bias + ir : NULL;
                float *crow = c + (size_t)ir * ldc + jc;
                for (int jr = 0; jr < nc; jr += BF_NR) {
                    const int nv = nc - jr < BF_NR ? nc - jr : BF_NR;
                    const char *pf = NULL;
                    int pfn = 0;
                    if (nb && call < segs * n_lc) {
                        const int lc = call / segs, r0 = (call % segs) * seg_rows;
                        pfn = nkv - r0 < seg_rows ? nkv - r0 : seg_rows;
                        pf = nb + (size_t)r0 * pfs + (size_t)lc * 64;
                    }
                    call++;
                    bf_kernel_14x32(kcp, ap, bp + (size_t)jr * kcp, crow + jr, ldc, mv, nv, flags, kbeta, bias_r,
                                    pf, pfs, pfn);
                }
            }
        }
    }
}

#else /* not x86 */

int fpn_bf16_supported(void) { return 0; }

void fpn_gemm_bf16_compute(int m, int n, int k, const void *packed_a, const float *b, int ldb,
                           float beta, float *c, int ldc, const float *bias, int relu, void *workspace) {
    (void)m; (void)n; (void)k; (void)packed_a; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc; (void)bias; (void)relu; (void)workspace;
    fputs("fpn_gemm_bf16_compute: AVX512_BF16 is x86_64 only\n", stderr);
    abort();
}

void fpn_gemm_bf16_conv_compute(int m, int n, int k, const void *packed_a, const struct fpn_im2col *b,
                                float beta, float *c, int ldc, const float *bias, int relu, void *workspace) {
    (void)m; (void)n; (void)k; (void)packed_a; (void)b;
    (void)beta; (void)c; (void)ldc; (void)bias; (void)relu; (void)workspace;
    fputs("fpn_gemm_bf16_conv_compute: AVX512_BF16 is x86_64 only\n", stderr);
    abort();
}

#endif /* __x86_64__ */
