"""Times the same ResNet-FPN backbone (weights and input written by `fpnstream bench backbone --export DIR`) in torch
and onnxruntime, 2 threads each, median of --runs after --warmup untimed runs. Driven by scripts/bench-peers.

    bench_peers.py DIR [--runs 10] [--warmup 3]

Prints one line per engine: `peer NAME MEDIAN_MS` plus details, and checks that torch and onnxruntime agree with
each other on the output (so the timed graphs compute the same thing)."""
import argparse
import statistics
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from torchvision.ops.misc import FrozenBatchNorm2d

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import parity_backbone as pb  # noqa: E402


def load_backbone(path):
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.set_num_interop_threads(1)
    model, config = load_backbone(f"{a.dir}/weights.safetensors")
    x = torch.from_numpy(load_file(f"{a.dir}/input.safetensors")["input"])

    with torch.no_grad():
        ref = [t.numpy().copy() for t in model(x).values()]
        med, best = timed(lambda: model(x), a.runs, a.warmup)
    print(f"peer torch {med:.1f} ms (min {best:.1f}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()})")

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
    outs = sess.run(None, feed)
    worst = max(float(np.linalg.norm(o - r) / np.linalg.norm(r)) for o, r in zip(outs, ref))
    med, best = timed(lambda: sess.run(None, feed), a.runs, a.warmup)
    print(f"peer onnxruntime {med:.1f} ms (min {best:.1f}; onnxruntime {ort.__version__}, 2 intra-op threads; "
          f"max rel L2 vs torch {worst:.1e})")


if __name__ == "__main__":
    main()
