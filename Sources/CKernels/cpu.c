/*
 * CPU feature detection via CPUID + XGETBV.
 *
 * A CPUID feature bit only says the silicon implements the instructions; the
 * OS must also save/restore the wider register state on context switches, or
 * the upper register halves get corrupted (or the instructions fault). That is
 * what XCR0 reports, so every flag below is CPUID && XCR0.
 */
#include "ckernels.h"
#include "sgemm_internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 state-component bits (Intel SDM vol. 1, 13.1). */
#define XCR0_SSE        (1ull << 1)
#define XCR0_YMM        (1ull << 2)
#define XCR0_OPMASK     (1ull << 5)
#define XCR0_ZMM_HI256  (1ull << 6)
#define XCR0_HI16_ZMM   (1ull << 7)
#define XCR0_XTILECFG   (1ull << 17)
#define XCR0_XTILEDATA  (1ull << 18)

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

/* xgetbv is emitted as raw asm so the file needs no -mxsave and any compiler accepts it. */
static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int bit(unsigned v, int b) { return (int)((v >> b) & 1u); }

/* Deterministic cache parameters (Intel leaf 4, AMD leaf 0x8000001D share the format). */
static void cache_sizes_from_leaf(unsigned leaf, int *l1d_kb, int *l2_kb) {
    for (unsigned sub = 0; sub < 16; sub++) {
        unsigned r[4];
        cpuid(leaf, sub, r);
        unsigned type = r[0] & 0x1f;           /* 0 = no more caches */
        if (type == 0) break;
        unsigned level = (r[0] >> 5) & 0x7;
        unsigned ways = ((r[1] >> 22) & 0x3ff) + 1;
        unsigned parts = ((r[1] >> 12) & 0x3ff) + 1;
        unsigned line = (r[1] & 0xfff) + 1;
        unsigned sets = r[2] + 1;
        int kb = (int)((unsigned long long)ways * parts * line * sets / 1024);
        if (level == 1 && type == 1) *l1d_kb = kb;       /* data cache */
        if (level == 2 && (type == 3 || type == 2)) *l2_kb = kb; /* unified */
    }
}

void fpn_cpu_detect(struct fpn_cpu_info *out) {
    memset(out, 0, sizeof *out);
    unsigned r[4];

    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    memcpy(out->vendor + 0, &r[1], 4);   /* EBX, EDX, ECX spell the vendor */
    memcpy(out->vendor + 4, &r[3], 4);
    memcpy(out->vendor + 8, &r[2], 4);
    out->vendor[12] = '\0';

    cpuid(0x80000000u, 0, r);
    unsigned max_ext = r[0];
    if (max_ext >= 0x80000004u) {
        char brand[49];
        for (unsigned i = 0; i < 3; i++) {
            cpuid(0x80000002u + i, 0, r);
            memcpy(brand + 16 * i, r, 16);
        }
        brand[48] = '\0';
        const char *p = brand;
        while (*p == ' ') p++;
        strncpy(out->brand, p, sizeof out->brand - 1);
        size_t len = strlen(out->brand);
        while (len > 0 && out->brand[len - 1] == ' ') out->brand[--len] = '\0';
    }

    if (max_leaf < 1) return;
    cpuid(1, 0, r);
    unsigned eax1 = r[0], ecx1 = r[2];
    unsigned base_family = (eax1 >> 8) & 0xf;
    unsigned base_model = (eax1 >> 4) & 0xf;
    out->stepping = (int)(eax1 & 0xf);
    out->family = (int)base_family;
    out->model = (int)base_model;
    /* Extended family only counts for family 15; extended model for 6 and 15. */
    if (base_family == 0xf) out->family += (int)((eax1 >> 20) & 0xff);
    if (base_family == 0x6 || base_family == 0xf) out->model += (int)(((eax1 >> 16) & 0xf) << 4);

    int osxsave = bit(ecx1, 27);
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    out->os_avx = (xcr0 & (XCR0_SSE | XCR0_YMM)) == (XCR0_SSE | XCR0_YMM);
    const unsigned long long zmm = XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM;
    out->os_avx512 = out->os_avx && (xcr0 & zmm) == zmm;
    out->amx_os_enabled = (xcr0 & (XCR0_XTILECFG | XCR0_XTILEDATA)) == (XCR0_XTILECFG | XCR0_XTILEDATA);

    out->sse3 = bit(ecx1, 0);
    out->avx = bit(ecx1, 28) && out->os_avx;
    out->fma = bit(ecx1, 12) && out->os_avx;

    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        unsigned ebx7 = r[1], ecx7 = r[2], edx7 = r[3], max_sub7 = r[0];
        out->avx2 = bit(ebx7, 5) && out->os_avx;
        out->avx512f = bit(ebx7, 16) && out->os_avx512;
        out->avx512dq = bit(ebx7, 17) && out->os_avx512;
        out->avx512bw = bit(ebx7, 30) && out->os_avx512;
        out->avx512vl = bit(ebx7, 31) && out->os_avx512;
        out->avx512_vnni = bit(ecx7, 11) && out->os_avx512;
        out->amx_bf16_cpu = bit(edx7, 22);
        out->amx_tile_cpu = bit(edx7, 24);
        out->amx_int8_cpu = bit(edx7, 25);
        if (max_sub7 >= 1) {
            cpuid(7, 1, r);
            out->avx_vnni = bit(r[0], 4) && out->os_avx;
            out->avx512_bf16 = bit(r[0], 5) && out->os_avx512;
        }
    }
    out->amx_tile = out->amx_tile_cpu && out->amx_os_enabled;
    out->amx_bf16 = out->amx_bf16_cpu && out->amx_os_enabled;
    out->amx_int8 = out->amx_int8_cpu && out->amx_os_enabled;

    /* Cache sizes, used to size the GEMM blocks. */
    if (strcmp(out->vendor, "GenuineIntel") == 0 && max_leaf >= 4) {
        cache_sizes_from_leaf(4, &out->l1d_kb, &out->l2_kb);
    } else {
        if (max_ext >= 0x8000001Du) cache_sizes_from_leaf(0x8000001Du, &out->l1d_kb, &out->l2_kb);
        if (out->l1d_kb == 0 && max_ext >= 0x80000005u) {
            cpuid(0x80000005u, 0, r);
            out->l1d_kb = (int)(r[2] >> 24);
        }
        if (out->l2_kb == 0 && max_ext >= 0x80000006u) {
            cpuid(0x80000006u, 0, r);
            out->l2_kb = (int)(r[2] >> 16);
        }
    }
}

#else /* not x86 */

void fpn_cpu_detect(struct fpn_cpu_info *out) {
    memset(out, 0, sizeof *out);
    strncpy(out->vendor, "unknown", sizeof out->vendor - 1);
}

#endif

/*
 * Detection result cached for the dispatch helpers. The race on first use is
 * benign: every thread computes the same value and int stores are atomic on
 * the targets we support.
 */
static volatile int g_best_isa = -1;
static volatile int g_l2_kb = 0;

static void detect_once(void) {
    if (g_best_isa >= 0) return;
    struct fpn_cpu_info info;
    fpn_cpu_detect(&info);
    int isa = FPN_ISA_GENERIC;
#if defined(__x86_64__)
    if (info.avx2 && info.fma) isa = FPN_ISA_AVX2;
    if (isa == FPN_ISA_AVX2 && info.avx512f && info.avx512bw && info.avx512vl && info.avx512dq)
        isa = FPN_ISA_AVX512;
#endif
    g_l2_kb = info.l2_kb;
    g_best_isa = isa;
}

int fpn_best_isa(void) {
    detect_once();
    return g_best_isa;
}

int fpn__l2_kb(void) {
    detect_once();
    return g_l2_kb;
}

int fpn_isa_supported(int isa) {
    return isa >= FPN_ISA_GENERIC && isa <= fpn_best_isa();
}

const char *fpn_isa_name(int isa) {
    switch (isa) {
    case FPN_ISA_GENERIC: return "generic";
    case FPN_ISA_AVX2: return "avx2";
    case FPN_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

static _Thread_local int t_width;

int fpn_thread_width(void) { return t_width; }

void fpn_set_thread_width(int width) { t_width = width > 0 ? width : 0; }
