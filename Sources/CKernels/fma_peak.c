/*
 * The fp32 limit of one core: a loop of independent FMAs on registers only (no memory traffic), the figure a
 * GEMM's efficiency is quoted against.
 */
#define _POSIX_C_SOURCE 199309L

#include "ckernels.h"

#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 12 independent accumulators hide the FMA latency (4 cycles x 2-3 ports) on every current core. */
#define FMA_CHAINS 12

#if defined(__x86_64__)
__attribute__((target("avx512f,fma")))
static float fma_loop_avx512(long iterations) {
    __m512 acc[FMA_CHAINS];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float fma_loop_avx2(long iterations) {
    __m256 acc[FMA_CHAINS];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    __m256 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

/* vdpbf16ps: 2 bf16 products per fp32 lane, accumulated in fp32 (64 flops per zmm instruction). */
__attribute__((target("avx512f,avx512bf16")))
static float bf16_dot_loop(long iterations) {
    __m512 acc[FMA_CHAINS];
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x33d6); /* 1, ~1e-7 */
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

static float fma_loop_generic(long iterations) {
    float acc[FMA_CHAINS];
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = (float)i;
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
    }
    float s = 0;
    for (int i = 0; i < FMA_CHAINS; i++) s += acc[i];
    return s;
}

/* Per-thread sink so the compiler keeps the loops and cores measured at once do not share (or race on) it. */
static _Thread_local volatile float fma_peak_sink;

double fpn_fma_peak_gflops(int isa, double seconds) {
    if (isa > fpn_best_isa()) isa = fpn_best_isa();
    int lanes = 1;
    float (*loop)(long) = fma_loop_generic;
#if defined(__x86_64__)
    if (isa == FPN_ISA_AVX512) { loop = fma_loop_avx512; lanes = 16; }
    else if (isa == FPN_ISA_AVX2) { loop = fma_loop_avx2; lanes = 8; }
#endif
    long iterations = 1 << 16;
    double best = 0, spent = 0;
    while (spent < seconds) {
        double t0 = now_seconds();
        fma_peak_sink = loop(iterations);
        double dt = now_seconds() - t0;
        spent += dt;
        if (dt < 0.005) { iterations *= 2; continue; }
        double g = 2.0 * FMA_CHAINS * lanes * (double)iterations / dt / 1e9;
        if (g > best) best = g;
    }
    return best;
}

double fpn_bf16_rate_ratio(void) {
#if defined(__x86_64__)
    if (!fpn_bf16_supported()) return 0;
    /* Fixed short loops (about a millisecond each), alternated so a frequency change hits both; best of each. */
    const long iterations = 1 << 17;
    double best_f32 = 1e30, best_bf16 = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now_seconds();
        fma_peak_sink = fma_loop_avx512(iterations);
        double t1 = now_seconds();
        fma_peak_sink = bf16_dot_loop(iterations);
        double t2 = now_seconds();
        if (t1 - t0 < best_f32) best_f32 = t1 - t0;
        if (t2 - t1 < best_bf16) best_bf16 = t2 - t1;
    }
    /* Same instruction count: a bf16 instruction does twice an FMA's work. */
    return best_bf16 > 0 ? 2.0 * best_f32 / best_bf16 : 0;
#else
    return 0;
#endif
}
