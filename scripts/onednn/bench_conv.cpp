// oneDNN convolution timings on the conv shapes of `fpnstream bench ops` and on every conv layer of
// ResNet-50-FPN, for scripts/bench-engines (which compiles this file against Debian's libdnnl-dev; fpnstream
// itself never links oneDNN).
//
//   bench_conv [--size WxH] [--runs N] [--no-bf16]
//
// Per shape: forward-inference convolution, algorithm auto, bias + ReLU as a post-op, source and destination in
// the layout oneDNN picks (format_tag::any, e.g. nChw16c), weights reordered once to its layout (as fpnstream packs
// its weights once). Two timings interleaved run by run, median of --runs:
//   conv       the primitive alone, blocked layout in and out (a network kept blocked throughout);
//   +reorders  NCHW f32 -> blocked, the conv, blocked -> NCHW f32 (fpnstream's NCHW at every boundary).
// Stride-1 3x3 shapes are also timed with algorithm winograd where oneDNN has it ("-" where it does not).
// With AVX512_BF16 (unless --no-bf16) each shape runs again with bf16 source and weights, f32 bias and
// destination (fpnstream's --precision bf16 does the same: bf16 GEMM inputs, f32 accumulation and output).
//
// Output: '#' lines describe the run; each row is tab-separated:
//   row  name  count  batch  gflop  precision  impl  conv_ms  reorders_ms  winograd_ms
// count = occurrences in one ResNet-50-FPN forward pass (0: not part of it, e.g. the RoI-head rows), so
// sum(count * ms) is the network's conv time and sum(count * gflop) its 67.9 GFLOP at 640x384.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

struct Shape {
    std::string name;
    int cin, cout, k, stride, h, w, count, batch;
};

// The shapes of `fpnstream bench ops` (same names, input sizes and counts), then the FPN layers it leaves out,
// so that all rows with a count make up the whole ResNet-50-FPN, then its RoI-head rows.
std::vector<Shape> shapes(int w, int h) {
    const int h4 = h / 4, w4 = w / 4, h8 = h / 8, w8 = w / 8, h16 = h / 16, w16 = w / 16, h32 = h / 32, w32 = w / 32;
    return {
        {"stem 7x7/2 3→64", 3, 64, 7, 2, h, w, 1, 1},
        {"l1 1x1 64→64", 64, 64, 1, 1, h4, w4, 1, 1},
        {"l1 1x1 256→64", 256, 64, 1, 1, h4, w4, 2, 1},
        {"l1 3x3 64→64", 64, 64, 3, 1, h4, w4, 3, 1},
        {"l1 1x1 64→256", 64, 256, 1, 1, h4, w4, 4, 1},
        {"l2 1x1 256→128", 256, 128, 1, 1, h4, w4, 1, 1},
        {"l2 3x3/2 128→128", 128, 128, 3, 2, h4, w4, 1, 1},
        {"l2 1x1/2 256→512", 256, 512, 1, 2, h4, w4, 1, 1},
        {"l2 1x1 512→128", 512, 128, 1, 1, h8, w8, 3, 1},
        {"l2 3x3 128→128", 128, 128, 3, 1, h8, w8, 3, 1},
        {"l2 1x1 128→512", 128, 512, 1, 1, h8, w8, 4, 1},
        {"l3 1x1 512→256", 512, 256, 1, 1, h8, w8, 1, 1},
        {"l3 3x3/2 256→256", 256, 256, 3, 2, h8, w8, 1, 1},
        {"l3 1x1/2 512→1024", 512, 1024, 1, 2, h8, w8, 1, 1},
        {"l3 1x1 1024→256", 1024, 256, 1, 1, h16, w16, 5, 1},
        {"l3 3x3 256→256", 256, 256, 3, 1, h16, w16, 5, 1},
        {"l3 1x1 256→1024", 256, 1024, 1, 1, h16, w16, 6, 1},
        {"l4 1x1 1024→512", 1024, 512, 1, 1, h16, w16, 1, 1},
        {"l4 3x3/2 512→512", 512, 512, 3, 2, h16, w16, 1, 1},
        {"l4 1x1/2 1024→2048", 1024, 2048, 1, 2, h16, w16, 1, 1},
        {"l4 1x1 2048→512", 2048, 512, 1, 1, h32, w32, 2, 1},
        {"l4 3x3 512→512", 512, 512, 3, 1, h32, w32, 2, 1},
        {"l4 1x1 512→2048", 512, 2048, 1, 1, h32, w32, 3, 1},
        {"fpn 3x3 256→256 p2", 256, 256, 3, 1, h4, w4, 1, 1},
        {"fpn 3x3 256→256 p3", 256, 256, 3, 1, h8, w8, 1, 1},
        {"fpn 3x3 256→256 p4", 256, 256, 3, 1, h16, w16, 1, 1},
        {"fpn 3x3 256→256 p5", 256, 256, 3, 1, h32, w32, 1, 1},
        {"fpn 1x1 256→256 p2", 256, 256, 1, 1, h4, w4, 1, 1},
        {"fpn 1x1 512→256 p3", 512, 256, 1, 1, h8, w8, 1, 1},
        {"fpn 1x1 1024→256 p4", 1024, 256, 1, 1, h16, w16, 1, 1},
        {"fpn 1x1 2048→256 p5", 2048, 256, 1, 1, h32, w32, 1, 1},
        {"mask head 3x3 256→256, 100 RoIs 14x14", 256, 256, 3, 1, 14, 14, 0, 100},
        {"box head v2 3x3 256→256, 200 RoIs 7x7", 256, 256, 3, 1, 7, 7, 0, 200},
    };
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void fill(memory &m, unsigned seed) {
    auto *p = static_cast<float *>(m.get_data_handle());
    size_t n = m.get_desc().get_size() / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = float(seed >> 9) / float(1 << 23) - 0.5f;
    }
}

// One primitive descriptor for the shape: returns false (leaves pd alone) when oneDNN has no implementation.
bool make_pd(const Shape &s, algorithm alg, dt data, engine &eng, convolution_forward::primitive_desc &pd) {
    const int p = s.k / 2, ho = (s.h + 2 * p - s.k) / s.stride + 1, wo = (s.w + 2 * p - s.k) / s.stride + 1;
    memory::desc src({s.batch, s.cin, s.h, s.w}, data, tag::any), wei({s.cout, s.cin, s.k, s.k}, data, tag::any),
            bias({s.cout}, dt::f32, tag::x), dst({s.batch, s.cout, ho, wo}, dt::f32, tag::any);
    post_ops ops;
    ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    primitive_attr attr;
    attr.set_post_ops(ops);
    try {
        convolution_forward::desc d(prop_kind::forward_inference, alg, src, wei, bias, dst, {s.stride, s.stride},
                                    {p, p}, {p, p});
        pd = convolution_forward::primitive_desc(d, attr, eng);
        return true;
    } catch (const dnnl::error &) {
        return false;
    }
}

struct Timing {
    std::string impl;
    double conv = 0, reorders = 0;
};

// Times pd's convolution alone and between reorders from and to NCHW f32, interleaved, median of `runs`.
Timing time_conv(const Shape &s, const convolution_forward::primitive_desc &pd, engine &eng, stream &st, int runs) {
    memory::desc nchw_src({s.batch, s.cin, s.h, s.w}, dt::f32, tag::nchw),
            oihw({s.cout, s.cin, s.k, s.k}, dt::f32, tag::oihw);
    memory user_src(nchw_src, eng), user_wei(oihw, eng), bias({{s.cout}, dt::f32, tag::x}, eng);
    memory user_dst({pd.dst_desc().dims(), dt::f32, tag::nchw}, eng);
    memory src(pd.src_desc(), eng), wei(pd.weights_desc(), eng), dst(pd.dst_desc(), eng);
    fill(user_src, 7);
    fill(user_wei, 11);
    fill(bias, 13);
    reorder(user_wei, wei).execute(st, user_wei, wei);  // once, like weight packing at load
    reorder to_blocked(user_src, src), to_nchw(dst, user_dst);
    convolution_forward conv(pd);
    auto run_conv = [&] {
        conv.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    };
    auto run_all = [&] {
        to_blocked.execute(st, user_src, src);
        run_conv();
        to_nchw.execute(st, dst, user_dst);
    };
    std::vector<double> a, b;
    for (int i = 0; i < 2; i++) { run_all(); st.wait(); }
    for (int i = 0; i < runs; i++) {
        double t0 = now();
        run_conv();
        st.wait();
        a.push_back(now() - t0);
        t0 = now();
        run_all();
        st.wait();
        b.push_back(now() - t0);
    }
    return {pd.impl_info_str(), median(a), median(b)};
}

const char *isa_name(unsigned isa) {
    const std::pair<unsigned, const char *> names[] = {
            {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"}, {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
            {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"}, {dnnl_cpu_isa_avx512_core, "avx512_core"},
            {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"}, {dnnl_cpu_isa_avx2, "avx2"}, {dnnl_cpu_isa_avx, "avx"},
            {dnnl_cpu_isa_sse41, "sse41"}};
    for (auto &n : names)
        if ((isa & n.first) == unsigned(n.first)) return n.second;
    return "none";
}

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr, "bench_conv: %s\nusage: bench_conv [--size WxH] [--runs N] [--no-bf16]\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    int w = 640, h = 384, runs = 7;
    bool bf16 = true;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--size" && i + 1 < argc) {
            if (std::sscanf(argv[++i], "%dx%d", &w, &h) != 2 || w < 32 || h < 32) usage("--size must be WxH, each >= 32");
        } else if (a == "--runs" && i + 1 < argc) {
            runs = std::atoi(argv[++i]);
            if (runs < 1) usage("--runs must be at least 1");
        } else if (a == "--no-bf16") {
            bf16 = false;
        } else {
            usage(("unknown argument '" + a + "'").c_str());
        }
    }
    const dnnl_version_t *v = dnnl_version();
    unsigned isa = unsigned(dnnl_get_effective_cpu_isa());
    bool has_bf16 = (isa & dnnl_cpu_isa_avx512_core_bf16) == unsigned(dnnl_cpu_isa_avx512_core_bf16);
    std::printf("# oneDNN %d.%d.%d, ISA %s, %d OpenMP threads, input %dx%d, median of %d runs\n", v->major, v->minor,
                v->patch, isa_name(isa), omp_get_max_threads(), w, h, runs);
    if (!has_bf16) std::printf("# no bf16 rows: oneDNN's ISA here lacks AVX512_BF16\n");
    engine eng(engine::kind::cpu, 0);
    stream st(eng);
    std::vector<dt> types = {dt::f32};
    if (bf16 && has_bf16) types.push_back(dt::bf16);
    for (dt type : types) {
        for (const Shape &s : shapes(w, h)) {
            const int p = s.k / 2, ho = (s.h + 2 * p - s.k) / s.stride + 1, wo = (s.w + 2 * p - s.k) / s.stride + 1;
            double gflop = 2.0 * s.batch * s.cout * ho * wo * double(s.cin) * s.k * s.k / 1e9;
            convolution_forward::primitive_desc pd;
            if (!make_pd(s, algorithm::convolution_auto, type, eng, pd)) {
                std::fprintf(stderr, "bench_conv: oneDNN has no convolution for %s\n", s.name.c_str());
                return 1;
            }
            Timing t = time_conv(s, pd, eng, st, runs);
            std::string wino = "-";
            convolution_forward::primitive_desc wpd;
            if (s.k == 3 && s.stride == 1 && make_pd(s, algorithm::convolution_winograd, type, eng, wpd)) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "%.3f", time_conv(s, wpd, eng, st, runs).conv * 1e3);
                wino = buf;
            }
            std::printf("row\t%s\t%d\t%d\t%.4f\t%s\t%s\t%.3f\t%.3f\t%s\n", s.name.c_str(), s.count, s.batch, gflop,
                        type == dt::f32 ? "f32" : "bf16", t.impl.c_str(), t.conv * 1e3, t.reorders * 1e3,
                        wino.c_str());
            std::fflush(stdout);
        }
    }
    return 0;
}
