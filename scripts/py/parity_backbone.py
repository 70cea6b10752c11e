"""Torch oracle for the ResNet-FPN backbone and the GeneralizedRCNNTransform (driven by scripts/parity).

    parity_backbone.py export  --config NAME --video V --frame K --out DIR [--fixture PATH]
    parity_backbone.py compare DIR

`export` builds the torchvision backbone for CONFIG (weights=None), gives it reproducible weights, runs the
transform and the backbone on a real video frame in torch and writes, in DIR:
  weights.safetensors    the backbone state_dict with torchvision's key names (prefix `backbone.`) + __metadata__
  input.safetensors      `image` (HxWx3 RGB values 0..255, stored as float32) and `input` (float 1x3xHpxWp, torch's transform output)
  reference.safetensors  `input` (the transform output) and every pyramid level `p2`..`p7` (1xCxHxW)
With --fixture it also writes the compact committed test fixture (see `write_fixture`).

`compare` checks DIR/swift.safetensors (written by `fpnstream features`) against DIR/reference.safetensors:
per tensor, relative L2 error <= 1e-5 and max abs error <= 1e-4 * max|reference|; exit 1 on any failure.

Weights: every conv weight (rank 4) comes from a counter-based generator (`generated_weight`) that the Swift tests
reimplement bit for bit, so committed fixtures need not carry the 11M ResNet-18 parameters. BatchNorm statistics are
calibrated on the input frame in train mode (so activations stay O(1) through 50 layers, like a trained network)
and then perturbed; weight/bias of BN and conv biases are random. v1 configs use FrozenBatchNorm2d with eps 0.0
(what torchvision's COCO v1 detectors run with); v2 configs use nn.BatchNorm2d (eps 1e-5, eval mode).
"""
import argparse
import copy
import json
import math
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import torch
import torchvision
from safetensors.numpy import save_file as save_np
from safetensors.numpy import load_file as load_np
from torch import nn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

# name -> (resnet, returned layers, FPN norm, extra block, P6 source, frozen BN, BN eps)
CONFIGS = {
    "resnet18-fpn": ("resnet18", [1, 2, 3, 4], False, "pool", None, True, 0.0),
    "resnet18-fpn-v2": ("resnet18", [1, 2, 3, 4], True, "pool", None, False, 1e-5),
    "resnet34-fpn": ("resnet34", [1, 2, 3, 4], False, "pool", None, True, 0.0),
    "resnet50-fpn": ("resnet50", [1, 2, 3, 4], False, "pool", None, True, 0.0),
    "resnet50-fpn-v2": ("resnet50", [1, 2, 3, 4], True, "pool", None, False, 1e-5),
    "resnet101-fpn": ("resnet101", [1, 2, 3, 4], False, "pool", None, True, 0.0),
    # RetinaNet v1 (P6 from P5) and RetinaNet v2 (P6 from C5).
    "resnet50-p6p7": ("resnet50", [2, 3, 4], False, "p6p7", "p5", True, 0.0),
    "resnet50-p6p7-c5": ("resnet50", [2, 3, 4], False, "p6p7", "c5", False, 1e-5),
    "resnet18-p6p7-c5": ("resnet18", [2, 3, 4], False, "p6p7", "c5", False, 1e-5),
}
# MobileNetV3-Large + FPN (torchvision's `_mobilenet_extractor`, fasterrcnn_mobilenet_v3_large[_320]_fpn's backbone):
# stages 4 and 5 (features 13 and 16, both stride 32) + LastLevelMaxPool, BatchNorm2d (eps 1e-5) in eval mode.
MOBILENET = {"mobilenet-v3-large-fpn": [4, 5]}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
REL_L2_TOL = 1e-5
MAX_ABS_TOL = 1e-4


# ---- reproducible conv weights (mirrored in Tests/VisionTests/GeneratedWeights.swift) ----
M64 = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def splitmix64(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def generated_weight(key, shape):
    """Uniform in [-2^e, 2^e) with 24-bit resolution (exact in float32); e from fan-in (Kaiming-like scale)."""
    n = int(np.prod(shape))
    fan_in = int(np.prod(shape[1:]))
    e = 1 - fan_in.bit_length() // 2
    with np.errstate(over="ignore"):
        bits = splitmix64(np.arange(n, dtype=np.uint64) ^ np.uint64(fnv1a64(key)))
    u = (bits >> np.uint64(40)).astype(np.int64) - (1 << 23)
    return (u.astype(np.float64) * 2.0 ** (e - 23)).astype(np.float32).reshape(shape)


# ---- model ----
def build(config):
    if config in MOBILENET:
        from torchvision.models.detection.backbone_utils import _mobilenet_extractor
        body = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d)
        return _mobilenet_extractor(body, True, 6, returned_layers=MOBILENET[config])
    arch, layers, fpn_norm, extra, p6_from, frozen, eps = CONFIGS[config]
    body = getattr(torchvision.models, arch)(weights=None, norm_layer=nn.BatchNorm2d)
    if extra == "pool":
        extra_block = LastLevelMaxPool()
    else:
        c5 = 512 if arch in ("resnet18", "resnet34") else 2048
        extra_block = LastLevelP6P7(256 if p6_from == "p5" else c5, 256)
    return _resnet_fpn_extractor(body, 5, returned_layers=layers, extra_blocks=extra_block,
                                 norm_layer=nn.BatchNorm2d if fpn_norm else None)


def frozen_copy(config, calibrated):
    """The same backbone with FrozenBatchNorm2d(eps) in the body, loaded from `calibrated` (BN running stats)."""
    arch, layers, fpn_norm, extra, p6_from, frozen, eps = CONFIGS[config]
    body = getattr(torchvision.models, arch)(weights=None, norm_layer=FrozenBatchNorm2d)
    if extra == "pool":
        extra_block = LastLevelMaxPool()
    else:
        c5 = 512 if arch in ("resnet18", "resnet34") else 2048
        extra_block = LastLevelP6P7(256 if p6_from == "p5" else c5, 256)
    model = _resnet_fpn_extractor(body, 5, returned_layers=layers, extra_blocks=extra_block,
                                  norm_layer=nn.BatchNorm2d if fpn_norm else None)
    state = {k: v for k, v in calibrated.state_dict().items()
             if not (k.startswith("body.") and k.endswith("num_batches_tracked"))}
    model.load_state_dict(state, strict=True)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = eps
    return model


def make_model(config, calib_input, seed):
    torch.manual_seed(seed)
    model = build(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                p.copy_(torch.from_numpy(generated_weight("backbone." + name, tuple(p.shape))))
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
            m.momentum = None  # cumulative average over the calibration pass
            m.reset_running_stats()
        # The last BN of each residual branch gets a small gain, as in trained ResNets (cf. zero_init_residual):
        # otherwise a random 50-layer network amplifies float32 rounding noise far beyond what real weights do.
        for blk in model.body.modules():
            if isinstance(blk, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)):
                last = blk.bn3 if hasattr(blk, "bn3") else blk.bn2
                last.weight.uniform_(0.1, 0.4)
            if isinstance(blk, torchvision.models.mobilenetv3.InvertedResidual) and blk.use_res_connect:
                blk.block[-1][1].weight.uniform_(0.1, 0.4)
        for name, p in model.named_parameters():
            if name.endswith("bias") and "fpn." in name:
                p.normal_(0.0, 0.1)
        model.train()
        model(calib_input)
        model.eval()
        for m in bns:
            var = m.running_var.clamp_min(1e-3 * float(m.running_var.mean()) + 1e-12)
            m.running_mean.add_(0.2 * var.sqrt() * torch.randn_like(var))
            m.running_var.copy_(var * torch.empty_like(var).uniform_(0.7, 1.4))
    if config in MOBILENET:
        model.eval()
        return model
    _, _, _, _, _, frozen, eps = CONFIGS[config]
    if frozen:
        model = frozen_copy(config, model)
    model.eval()
    return model


def metadata(config):
    if config in MOBILENET:
        return {"format": "fpnstream-weights-1", "architecture": config, "backbone": "mobilenet_v3_large",
                "returned_layers": ",".join(str(x) for x in MOBILENET[config]), "fpn_norm": "none",
                "extra_blocks": "pool", "fpn_channels": "256", "bn_eps": "1e-05", "frozen_bn": "false",
                "source": f"scripts/parity (torch {torch.__version__}, torchvision {torchvision.__version__})"}
    arch, layers, fpn_norm, extra, p6_from, frozen, eps = CONFIGS[config]
    return {
        "format": "fpnstream-weights-1",
        "architecture": config,
        "backbone": arch,
        "returned_layers": ",".join(str(x) for x in layers),
        "fpn_norm": "batchnorm" if fpn_norm else "none",
        "extra_blocks": "pool" if extra == "pool" else f"p6p7_from_{p6_from}",
        "fpn_channels": "256",
        "bn_eps": repr(eps),
        "frozen_bn": "true" if frozen else "false",
        "source": f"scripts/parity (torch {torch.__version__}, torchvision {torchvision.__version__})",
    }


def level_names(config):
    if config in MOBILENET:
        return ["p5a", "p5b", "p6"]  # torchvision's "0", "1" (both stride 32), "pool"
    layers = CONFIGS[config][1]
    names = [f"p{k + 1}" for k in layers]
    last = layers[-1] + 1
    return names + ([f"p{last + 1}"] if CONFIGS[config][3] == "pool" else [f"p{last + 1}", f"p{last + 2}"])


def run_levels(model, config, x):
    with torch.no_grad():
        out = model(x)
    return OrderedDict((n, t.contiguous().numpy()) for n, t in zip(level_names(config), out.values()))


# ---- input ----
def read_frame(video, index):
    probe = json.loads(subprocess.check_output(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "json", video]))
    w, h = probe["streams"][0]["width"], probe["streams"][0]["height"]
    raw = subprocess.check_output(
        ["ffmpeg", "-v", "error", "-i", video, "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    if len(raw) != w * h * 3:
        sys.exit(f"parity: could not read frame {index} of {video} ({len(raw)} bytes)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy()


def transform(image, min_size, max_size):
    """torchvision's GeneralizedRCNNTransform on one uint8 HxWx3 RGB image (as the detectors call it)."""
    t = GeneralizedRCNNTransform(min_size, max_size, list(MEAN), list(STD))
    t.eval()
    x = torch.from_numpy(image).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    with torch.no_grad():
        images, _ = t([x])
    return images.tensors.contiguous(), images.image_sizes[0]


# ---- commands ----
def cmd_export(a):
    image = read_frame(a.video, a.frame)
    if a.crop:
        x0, y0, w, h = (int(v) for v in a.crop.split(","))
        image = image[y0:y0 + h, x0:x0 + w].copy()
    x, resized = transform(image, a.min_size, a.max_size)
    model = make_model(a.config, x, a.seed)
    levels = run_levels(model, a.config, x)
    # Noise floor: how far torch's own float32 result is from a float64 evaluation of the same network.
    levels64 = run_levels(copy.deepcopy(model).double(), a.config, x.double())
    floor = {n: errors(levels[n], levels64[n])[0] for n in levels}
    state = OrderedDict(("backbone." + k, v.contiguous().numpy()) for k, v in model.state_dict().items())
    meta = metadata(a.config)
    save_np(state, f"{a.out}/weights.safetensors", metadata=meta)
    params = {"min_size": str(a.min_size), "max_size": str(a.max_size),
              "resized_height": str(resized[0]), "resized_width": str(resized[1])}
    save_np({"image": image.astype(np.float32), "input": x.numpy()}, f"{a.out}/input.safetensors", metadata=params)
    save_np(OrderedDict([("input", x.numpy())] + list(levels.items())), f"{a.out}/reference.safetensors",
            metadata=dict(params, torch_f32_vs_f64=json.dumps(floor)))
    print(f"parity: {a.config}: frame {a.frame} {image.shape[1]}x{image.shape[0]} -> resized "
          f"{resized[1]}x{resized[0]} -> input {x.shape[3]}x{x.shape[2]}; levels "
          + ", ".join(f"{n} {tuple(v.shape[1:])}" for n, v in levels.items()))
    if a.fixture:
        write_fixture(a, model, image, x, resized, levels, meta, params)


def write_fixture(a, model, image, x, resized, levels, meta, params):
    """Compact fixture for `swift test`: everything but the generated conv weights, plus an unpadded odd-size run.

    Keys: the backbone's non-rank-4 tensors (BN, biases; torchvision names), `fixture.image` (0..255 as float32),
    `fixture.input` + `fixture.ref.pN` (transform output and levels), `fixture.odd_input` + `fixture.odd.pN`
    (the resized image without padding, odd sizes, so nearest upsampling to odd sizes is exercised) and
    `fixture.weight_sums` (float64 sum of each generated weight, in state_dict order, to diagnose a generator drift).
    """
    h, w = resized
    odd = x[:, :, :h, :w].contiguous()
    odd_levels = run_levels(model, a.config, odd)
    tensors = OrderedDict()
    gen_keys = []
    for k, v in model.state_dict().items():
        key = "backbone." + k
        if v.dim() == 4:
            gen_keys.append(key)
        else:
            tensors[key] = v.contiguous().numpy()
    tensors["fixture.image"] = image.astype(np.float32)
    tensors["fixture.input"] = x.numpy()
    for n, v in levels.items():
        tensors[f"fixture.ref.{n}"] = v
    tensors["fixture.odd_input"] = odd.numpy()
    for n, v in odd_levels.items():
        tensors[f"fixture.odd.{n}"] = v
    tensors["fixture.weight_sums"] = np.array(
        [float(generated_weight(k, tuple(model.state_dict()[k[9:]].shape)).astype(np.float64).sum())
         for k in gen_keys], dtype=np.float64)
    fmeta = dict(meta)
    fmeta.update(params)
    fmeta["generated_keys"] = ",".join(gen_keys)
    save_np(tensors, a.fixture, metadata=fmeta)
    print(f"parity: wrote fixture {a.fixture}")


def errors(got, ref):
    got = got.astype(np.float64)
    ref = ref.astype(np.float64)
    rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
    mx = float(np.abs(ref).max())
    return rel, float(np.abs(got - ref).max()), mx


def cmd_compare(a):
    from safetensors import safe_open
    with safe_open(f"{a.dir}/reference.safetensors", "np") as f:
        floor = json.loads((f.metadata() or {}).get("torch_f32_vs_f64", "{}"))
    ref = load_np(f"{a.dir}/reference.safetensors")
    got = load_np(f"{a.dir}/swift.safetensors")
    ok = True
    print(f"{'tensor':<8} {'shape':<20} {'rel L2':>10} {'max abs':>10} {'max|ref|':>10} {'abs/max':>10} "
          f"{'torch f32/f64':>13}  result")
    for name, r in ref.items():
        if name not in got:
            print(f"{name:<8} missing from swift output  FAIL")
            ok = False
            continue
        g = got[name]
        if g.shape != r.shape:
            print(f"{name:<8} shape {g.shape} != reference {r.shape}  FAIL")
            ok = False
            continue
        rel, mabs, mx = errors(g, r)
        good = rel <= REL_L2_TOL and mabs <= MAX_ABS_TOL * mx
        ok &= good
        fl = f"{floor[name]:13.2e}" if name in floor else f"{'-':>13}"
        print(f"{name:<8} {str(tuple(r.shape)):<20} {rel:10.2e} {mabs:10.2e} {mx:10.3e} {mabs / mx:10.2e} {fl}  "
              f"{'ok' if good else 'FAIL'}")
    print(f"tolerance: rel L2 <= {REL_L2_TOL:g}, max abs <= {MAX_ABS_TOL:g} x max|ref|; "
          "'torch f32/f64' = rel L2 of torch's float32 levels against float64 (the rounding-noise floor)")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--config", required=True, choices=sorted(CONFIGS) + sorted(MOBILENET))
    e.add_argument("--video", required=True)
    e.add_argument("--frame", type=int, default=100)
    e.add_argument("--crop", help="x,y,w,h crop of the frame before the transform")
    e.add_argument("--min-size", type=int, default=800)
    e.add_argument("--max-size", type=int, default=1333)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True)
    e.add_argument("--fixture")
    c = sub.add_parser("compare")
    c.add_argument("dir")
    a = p.parse_args()
    torch.set_num_threads(2)
    if a.cmd == "export":
        cmd_export(a)
        return 0
    return cmd_compare(a)


if __name__ == "__main__":
    sys.exit(main())
