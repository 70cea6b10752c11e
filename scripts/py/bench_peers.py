"""Times the same ResNet-FPN backbone (weights and input written by `fpnstream bench backbone --export DIR`) in torch,
onnxruntime and OpenVINO, 2 threads each, median of --runs after --warmup untimed runs. Driven by scripts/bench-peers.

    bench_peers.py DIR [--runs 10] [--warmup 3]
    bench_peers.py --report DIR [--arch A] [--size S]

The first form prints one line per engine, `peer NAME MEDIAN_MS ms (details)`, and writes DIR/peers.json. onnxruntime
and OpenVINO run the ONNX export of the torch model (torch.onnx.export, dynamo=False); each is checked against
torch's output (max relative L2 over the pyramid levels, so the timed graphs compute the same thing). OpenVINO runs
twice: with INFERENCE_PRECISION_HINT f32 (`openvino`) and with its default precision (`openvino-default`: bf16 on
CPUs with native bf16, else f32); each line says the precision the compiled model reports.

--report prints the final table from DIR/peers.json and the `fpnstream bench backbone` outputs that scripts/bench-peers
saved in DIR (fpnstream-PRECISION-before.txt / -after.txt)."""
import argparse
import json
import os
import re
import statistics
import sys
import time


def load_backbone(path):
    import torch
    from safetensors import safe_open
    from safetensors.numpy import load_file
    from torchvision.ops.misc import FrozenBatchNorm2d

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import parity_backbone as pb

    with safe_open(path, "np") as f:
        meta = f.metadata() or {}
    config = meta["architecture"]
    _, _, _, _, _, frozen, eps = pb.CONFIGS[config]
    eps = float(meta.get("bn_eps", eps))
    model = pb.build(config)
    if frozen:
        model = pb.frozen_copy(config, model)
    state = {k[len("backbone."):]: torch.from_numpy(v) for k, v in load_file(path).items()}
    for k, v in model.state_dict().items():  # BatchNorm2d counters are not stored by fpnstream
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    model.load_state_dict(state, strict=True)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = eps
    return model.eval(), config


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def rel_l2(outs, ref):
    import numpy as np
    return max(float(np.linalg.norm(np.asarray(o, dtype=np.float64) - r) / np.linalg.norm(r)) for o, r in zip(outs, ref))


def ov_precision(compiled):
    """The precision the compiled model runs at ("f32", "bf16", ...), as OpenVINO reports it."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = getattr(value, "get_type_name", None)
    return name() if name else str(value)


def ov_conv_kernels(compiled):
    """The oneDNN primitives OpenVINO's CPU plugin chose for the convolutions, most frequent first
    (e.g. `{"brgconv_avx512_bf16": 21, "brgconv_avx512_1x1_bf16": 7}`), from the runtime model's rt_info."""
    from collections import Counter
    kinds = Counter()
    try:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                kinds[info["primitiveType"].astype(str)] += 1
    except Exception:  # the rt_info keys are not a stable API
        return {}
    return dict(kinds.most_common())


def run_peers(a):
    import numpy as np
    import torch
    from safetensors.numpy import load_file

    torch.set_num_threads(2)
    torch.set_num_interop_threads(1)
    model, config = load_backbone(f"{a.dir}/weights.safetensors")
    x = torch.from_numpy(load_file(f"{a.dir}/input.safetensors")["input"])
    peers = []

    def report(name, med, best, precision, path, line, check=None):
        peers.append({"engine": name, "ms": med, "min_ms": best, "precision": precision, "path": path,
                      "max_rel_l2_vs_torch": check})
        print(f"peer {name} {med:.1f} ms (min {best:.1f}; {line})", flush=True)

    with torch.no_grad():
        ref = [t.numpy().astype(np.float64) for t in model(x).values()]
        med, best = timed(lambda: model(x), a.runs, a.warmup)
    cap = torch.backends.cpu.get_cpu_capability()
    report("torch", med, best, "f32", f"torch {torch.__version__}, oneDNN/ATen, CPU capability {cap}",
           f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cap}; precision f32")

    import onnxruntime as ort
    onnx_path = f"{a.dir}/backbone.onnx"
    torch.onnx.export(model, (x,), onnx_path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=[f"out{i}" for i in range(len(ref))])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    worst = rel_l2(sess.run(None, feed), ref)
    med, best = timed(lambda: sess.run(None, feed), a.runs, a.warmup)
    report("onnxruntime", med, best, "f32",
           f"onnxruntime {ort.__version__}, CPU EP (MLAS picks its kernels itself)",
           f"onnxruntime {ort.__version__}, 2 intra-op threads; max rel L2 vs torch {worst:.1e}; precision f32", worst)

    import openvino as ov
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    ov_model = core.read_model(onnx_path)
    names = [f"out{i}" for i in range(len(ref))]
    for name, ov_config in [("openvino", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32"}),
                            ("openvino-default", {"INFERENCE_NUM_THREADS": 2})]:
        compiled = core.compile_model(ov_model, "CPU", ov_config)
        req = compiled.create_infer_request()
        ov_feed = {"input": x.numpy()}
        res = req.infer(ov_feed)
        by_name = {o.get_any_name(): res[o] for o in compiled.outputs}
        worst = rel_l2([by_name[n] for n in names], ref)
        med, best = timed(lambda: req.infer(ov_feed), a.runs, a.warmup)
        precision = ov_precision(compiled)
        threads = compiled.get_property("INFERENCE_NUM_THREADS")
        streams = compiled.get_property("NUM_STREAMS")
        hint = "INFERENCE_PRECISION_HINT f32" if "INFERENCE_PRECISION_HINT" in ov_config else "no precision hint"
        kernels = ov_conv_kernels(compiled)
        convs = " + ".join(kernels) or "unknown kernels"
        report(name, med, best, precision, f"openvino {ov.get_version().split('-')[0]}, {precision} (oneDNN convs {convs})",
               f"openvino {ov.get_version()}, {threads} threads, {streams} stream(s), {hint}; CPU capabilities "
               f"{' '.join(caps)}; max rel L2 vs torch {worst:.1e}; precision {precision}; conv kernels "
               f"{', '.join(f'{k} x{n}' for k, n in kernels.items()) or 'unknown'}", worst)

    with open(f"{a.dir}/peers.json", "w") as f:
        json.dump({"config": config, "peers": peers}, f, indent=1)


def parse_fpnstream(path):
    text = open(path).read()

    def grab(pattern):
        m = re.search(pattern, text, re.M)
        if not m:
            sys.exit(f"bench_peers: no match for {pattern!r} in {path}")
        return m.group(1)
    return {"ms": float(grab(r"^frame: median ([0-9.]+) ms")), "gflop": float(grab(r"^work: ([0-9.]+) GFLOP")),
            "limit": float(grab(r"^FMA-loop limit \([^)]*\): ([0-9.]+) GFLOP/s")),
            "limit_isa": grab(r"^FMA-loop limit \(([^,]*),"), "compute": grab(r"^compute: (.*)$")}


def report_table(a):
    runs = {}
    for precision in ("f32", "bf16"):
        files = [f"{a.dir}/fpnstream-{precision}-{when}.txt" for when in ("before", "after")]
        if all(os.path.exists(p) for p in files):
            runs[precision] = [parse_fpnstream(p) for p in files]
    peers = json.load(open(f"{a.dir}/peers.json"))["peers"]
    all_runs = [r for rs in runs.values() for r in rs]
    gflop = all_runs[0]["gflop"]
    limit = max(r["limit"] for r in all_runs)
    ours = {p: sum(r["ms"] for r in rs) / len(rs) for p, rs in runs.items()}

    rows = []
    for p, rs in runs.items():
        compute = re.sub(r"^(\S+?)(, precision \w+)? \(", r"\1 (", rs[0]["compute"])
        rows.append(("fpnstream", p, compute, ours[p], "-", "-"))
    for peer in peers:
        # f32 peers against fpnstream f32; OpenVINO at its default precision against fpnstream bf16 (when it ran).
        mine = "bf16" if peer["engine"] == "openvino-default" and "bf16" in ours else "f32"
        check = peer["max_rel_l2_vs_torch"]
        rows.append((peer["engine"], peer["precision"], peer["path"], peer["ms"],
                     "reference" if check is None else f"{check:.1e}",
                     f"{ours[mine] / peer['ms']:.2f} ({mine}/{peer['precision']})"))

    print()
    print(f"== {a.arch} at {a.size}, 2 threads each: median ms/frame; work {gflop:.2f} GFLOP/frame; "
          f"FMA-loop limit {limit:.1f} GFLOP/s")
    head = ("engine", "precision", "ISA / path", "median ms", "GFLOP/s", "% FMA limit", "rel L2 vs torch",
            "fpnstream/peer")
    table = [head] + [(e, p, path, f"{ms:.1f}", f"{gflop / ms * 1e3:.1f}", f"{100 * gflop / ms * 1e3 / limit:.1f}",
                       check, ratio) for e, p, path, ms, check, ratio in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    right = {3, 4, 5, 6}
    for i, r in enumerate(table):
        print("  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("fpnstream rows: mean of its medians before and after the peers ("
          + "; ".join(f"{p}: {rs[0]['ms']:.1f} before, {rs[1]['ms']:.1f} after" for p, rs in runs.items())
          + "). fpnstream/peer: fpnstream at the precision shown / the peer (> 1: fpnstream slower).")
    measured = ", ".join(f"{r['limit']:.1f}" for r in all_runs)
    print(f"FMA-loop limit: register-only {all_runs[0]['limit_isa']} f32 FMAs on all {os.cpu_count()} cores, the "
          f"highest of the {len(all_runs)} fpnstream runs ({measured}); "
          f"bf16 dot products do twice the f32 FMA work per instruction, so bf16 rows can exceed 100%.")
    print()
    ms = {peer["engine"]: peer for peer in peers}
    print(f"fpnstream/torch = {ours['f32'] / ms['torch']['ms']:.2f}   "
          f"fpnstream/onnxruntime = {ours['f32'] / ms['onnxruntime']['ms']:.2f}   (> 1: fpnstream slower)")
    ov, dflt = ms["openvino"], ms["openvino-default"]
    mine = "bf16" if "bf16" in ours else "f32"
    print(f"fpnstream/openvino = {ours['f32'] / ov['ms']:.2f} (f32 vs {ov['precision']})   "
          f"fpnstream {mine}/openvino default = {ours[mine] / dflt['ms']:.2f} ({mine} vs {dflt['precision']})   "
          f"(> 1: fpnstream slower)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--report", action="store_true", help="print the final table from DIR instead of timing")
    p.add_argument("--arch", default="resnet50-fpn")
    p.add_argument("--size", default="640x384")
    a = p.parse_args()
    report_table(a) if a.report else run_peers(a)


if __name__ == "__main__":
    main()
