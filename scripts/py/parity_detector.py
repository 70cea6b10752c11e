"""Torch oracle for the detectors (driven by `scripts/parity maskrcnn|maskrcnn-v2|retinanet|retinanet-v2|fcos|...`).

    parity_detector.py export  --config NAME --video V --frames 0,100,... --out DIR [--min-size 480 --max-size 800]
    parity_detector.py compare DIR
    parity_detector.py fixture --config NAME --video V --out FILE     (small committed fixture for `swift test`)
    parity_detector.py export-onnx --config NAME --video V --frame K --min-size M --max-size X --out DIR
                                                     (the same detector as ONNX, for scripts/bench-onnx)

`export` builds torchvision's detector with reproducible weights that give real, varied detections on real frames:
the backbone comes from scripts/py/parity_backbone.py (generated conv weights, BatchNorm calibrated on the frame);
every head weight of rank >= 2 is the same counter-based generated tensor (reimplemented in Swift by
`SyntheticWeights`) times a power of two, chosen on the frame so that each layer's output has a target spread
(e.g. RPN objectness logits std 1.5, box-class logits std 1.5 with a background bias, mask logits std 3);
biases and head BatchNorm statistics are calibrated the same way. The model's state_dict goes through
scripts/convert-torchvision (so the converter is exercised) into DIR/weights.safetensors; the frames go to
DIR/frames.safetensors (`frame.K` = HxWx3 RGB 0..255 as float32) and torch's detections to DIR/reference.json.

`compare` matches DIR/swift.json (written by `fpnstream detect-frames`) against the reference one to one
(same label, box IoU >= 0.99, |score difference| <= 1e-3; greedy by score), requires >= 99% of the detections of both
sides matched, explains every unmatched one (score within 1e-3 of the score threshold or of the top-N cutoff, or an
NMS decision on a knife edge: IoU with a same-class higher-scored box within 0.01 of the NMS threshold, or overlapping
such an explained box) and requires mask IoU >= 0.98 (binary at > mask threshold) for every matched pair, unless
every differing pixel has a torch probability within 1e-3 of the mask threshold (then float32 noise explains it;
the pair is reported). A pair failing that is diagnosed by scripts/py/parity_masks.py with torch's model (saved by
`export` as DIR/torch_model.pt): torch's mask branch re-run at fpnstream's box (float32 box differences within the
0.99 IoU match) either reproduces fpnstream's mask — a one-pixel paste shift or an FPN level-boundary flip, printed
as such with the level k values and integer paste bounds, and counted as explained — or the pair fails.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parity_backbone as pb  # noqa: E402
from box_iou import iou  # noqa: E402
import tv_models  # noqa: E402
import convert_torchvision  # noqa: E402
import parity_masks  # noqa: E402

# name -> (arch, variant, depth, backbone config in parity_backbone.py, classes)
CONFIGS = {
    "maskrcnn": ("maskrcnn", "v1", "resnet50", "resnet50-fpn", 91),
    "maskrcnn-v2": ("maskrcnn", "v2", "resnet50", "resnet50-fpn-v2", 91),
    "fasterrcnn": ("fasterrcnn", "v1", "resnet50", "resnet50-fpn", 91),
    "fasterrcnn-v2": ("fasterrcnn", "v2", "resnet50", "resnet50-fpn-v2", 91),
    "retinanet": ("retinanet", "v1", "resnet50", "resnet50-p6p7", 91),
    "retinanet-v2": ("retinanet", "v2", "resnet50", "resnet50-p6p7-c5", 91),
    "fcos": ("fcos", "v1", "resnet50", "resnet50-p6p7", 91),
    # torchvision's CPU detectors: Faster R-CNN on MobileNetV3-Large-FPN (variant "320": the 320/640 builder).
    "keypointrcnn": ("keypointrcnn", "v1", "resnet50", "resnet50-fpn", 2),
    "mobilenet-v3-fpn": ("fasterrcnn", "v1", "mobilenet_v3_large", "mobilenet-v3-large-fpn", 91),
    "mobilenet-v3-320-fpn": ("fasterrcnn", "320", "mobilenet_v3_large", "mobilenet-v3-large-fpn", 91),
    # Small configurations for the committed fixtures (ResNet-18 body, 5 classes).
    "tiny-maskrcnn": ("maskrcnn", "v1", "resnet18", "resnet18-fpn", 5),
    "tiny-maskrcnn-v2": ("maskrcnn", "v2", "resnet18", "resnet18-fpn-v2", 5),
    "tiny-retinanet-v2": ("retinanet", "v2", "resnet18", "resnet18-p6p7-c5", 5),
    "tiny-fcos": ("fcos", "v1", "resnet18", "resnet18-p6p7", 5),
}
pb.CONFIGS.setdefault("resnet18-p6p7", ("resnet18", [2, 3, 4], False, "p6p7", "p5", True, 0.0))

MATCH_IOU = 0.99
SCORE_TOL = 1e-3
MASK_IOU = 0.98
MIN_MATCHED = 0.99
MASK_EDGE = 1e-3


# ---- weights ----
class Recorder:
    """Captures the output (or input) of one module during a forward pass."""

    def __init__(self, module, inputs=False):
        self.values = []
        self.inputs = inputs
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, args, out):
        self.values.append((args[0] if self.inputs else out).detach())

    def close(self):
        self.handle.remove()

    def cat(self, dim_channels=1):
        """All captured values as [N, channels] (channels = dim 1)."""
        vs = [v.transpose(0, 1).reshape(v.shape[1], -1) for v in self.values if v.numel() > 0]
        return torch.cat(vs, 1).t() if vs else None


def forward(model, images):
    with torch.no_grad():
        return model(images)


def calibrate_layer(model, images, module, std, mean=0.0, channel_spread=0.0, extra_bias=None, gen=None):
    """Scales `module.weight` by a power of two so its pre-bias output has about `std` spread, and sets the bias to
    `mean` (+ per-channel N(0, channel_spread) + `extra_bias`)."""
    rec = Recorder(module)
    forward(model, images)
    rec.close()
    out = rec.cat()
    if out is None:
        raise SystemExit(f"parity: calibration saw no input for {module}")
    b = module.bias.detach() if module.bias is not None else torch.zeros(out.shape[1])
    pre = out - b
    cur = float(pre.std())
    k = round(math.log2(std / max(cur, 1e-12)))
    with torch.no_grad():
        module.weight.mul_(2.0 ** k)
        if module.bias is not None:
            bias = torch.full_like(module.bias, mean)
            if channel_spread:
                bias += torch.randn(bias.shape, generator=gen) * channel_spread
            if extra_bias is not None:
                bias += extra_bias
            module.bias.copy_(bias)
    return k


def calibrate_bn(model, images, bn, gen):
    """Running statistics of a head BatchNorm from its input on the frames, then perturbed (as the backbone's)."""
    rec = Recorder(bn, inputs=True)
    forward(model, images)
    rec.close()
    x = rec.cat()
    with torch.no_grad():
        var = x.var(0, unbiased=False).clamp_min(1e-3 * float(x.var(0).mean()) + 1e-12)
        bn.running_mean.copy_(x.mean(0) + 0.2 * var.sqrt() * torch.randn(var.shape, generator=gen))
        bn.running_var.copy_(var * (0.7 + 0.7 * torch.rand(var.shape, generator=gen)))
        bn.weight.copy_(0.5 + torch.rand(var.shape, generator=gen))
        bn.bias.copy_(0.2 * torch.randn(var.shape, generator=gen))


def head_params(model):
    return [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]


def make_model(name, calib_images, min_size, max_size, seed=0):
    arch, variant, depth, bb_config, classes = CONFIGS[name]
    x, _ = pb.transform(calib_images[0], min_size, max_size)
    bb = pb.make_model(bb_config, x, seed)
    model = tv_models.build(arch, variant, depth, classes, min_size=min_size, max_size=max_size)
    missing = model.backbone.load_state_dict(bb.state_dict(), strict=False)
    assert not [k for k in missing.missing_keys + missing.unexpected_keys if "num_batches_tracked" not in k], missing
    gen = torch.Generator().manual_seed(seed + 1)
    scales = {}
    with torch.no_grad():
        for n, p in head_params(model):
            if p.dim() >= 2:
                p.copy_(torch.from_numpy(pb.generated_weight(n, tuple(p.shape))))
                scales[n] = 0
            elif n.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif n.endswith(".weight"):  # GroupNorm / BN gamma
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=gen))
    images = [torch.from_numpy(im).permute(2, 0, 1).float().div(255) for im in calib_images]
    model.eval()

    def cal(key, std, **kw):
        module = model.get_submodule(key)
        scales[key + ".weight"] += calibrate_layer(model, images, module, std, gen=gen, **kw)

    def bn(key):
        calibrate_bn(model, images, model.get_submodule(key), gen)

    if arch in ("maskrcnn", "fasterrcnn", "keypointrcnn"):
        for i in range(1 if variant != "v2" else 2):
            cal(f"rpn.head.conv.{i}.0", 1.0, channel_spread=0.3)
        cal("rpn.head.cls_logits", 1.5, mean=-1.0, channel_spread=0.5)
        cal("rpn.head.bbox_pred", 0.15)
        if variant != "v2":
            cal("roi_heads.box_head.fc6", 1.0, channel_spread=0.3)
            cal("roi_heads.box_head.fc7", 1.0, channel_spread=0.3)
        else:
            for i in range(4):
                cal(f"roi_heads.box_head.{i}.0", 1.0)
                bn(f"roi_heads.box_head.{i}.1")
            cal("roi_heads.box_head.5", 1.0, channel_spread=0.3)
        k = model.roi_heads.box_predictor.cls_score.out_features
        background = torch.zeros(k)
        background[0] = 3.0
        cal("roi_heads.box_predictor.cls_score", 1.5, channel_spread=0.8, extra_bias=background)
        cal("roi_heads.box_predictor.bbox_pred", 1.0)
        if arch == "maskrcnn":
            for i in range(4):
                cal(f"roi_heads.mask_head.{i}.0", 1.0, channel_spread=0.2)
                if variant == "v2":
                    bn(f"roi_heads.mask_head.{i}.1")
            cal("roi_heads.mask_predictor.conv5_mask", 1.0, channel_spread=0.2)
            cal("roi_heads.mask_predictor.mask_fcn_logits", 3.0, channel_spread=0.5)
        if arch == "keypointrcnn":
            for i in range(8):
                cal(f"roi_heads.keypoint_head.{2 * i}", 1.0, channel_spread=0.2)
            cal("roi_heads.keypoint_predictor.kps_score_lowres", 2.0, channel_spread=0.3)
    elif arch == "retinanet":
        for tower in ("classification_head", "regression_head"):
            for i in range(4):
                cal(f"head.{tower}.conv.{i}.0", 1.0, channel_spread=0.2 if variant == "v1" else 0.0)
        cal("head.classification_head.cls_logits", 1.0, mean=-4.5, channel_spread=0.5)
        cal("head.regression_head.bbox_reg", 0.15)
    else:  # fcos
        for tower in ("classification_head", "regression_head"):
            for i in range(4):
                cal(f"head.{tower}.conv.{3 * i}", 1.0, channel_spread=0.2)
        cal("head.classification_head.cls_logits", 1.0, mean=-3.5, channel_spread=0.5)
        cal("head.regression_head.bbox_ctrness", 1.0)
        cal("head.regression_head.bbox_reg", 0.5, mean=1.5, channel_spread=0.2)
    return model.eval(), scales


# ---- detections ----
def rle_counts(mask):
    """COCO RLE counts (column-major, starting with zeros) of a boolean HxW mask."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return [int(c) for c in counts]


def rle_decode(counts, h, w):
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos:pos + c] = True
        pos += c
        val = not val
    return flat.reshape((w, h)).T


def run_torch(model, frames, mask_thresh):
    out = []
    for k, im in frames:
        x = torch.from_numpy(im).permute(2, 0, 1).float().div(255)
        r = forward(model, [x])[0]
        dets = []
        for i in range(len(r["boxes"])):
            d = {"box": [float(v) for v in r["boxes"][i]], "score": float(r["scores"][i]),
                 "label": int(r["labels"][i])}
            if "keypoints" in r:
                d["keypoints"] = [[float(v) for v in p] for p in r["keypoints"][i]]
                d["keypoint_scores"] = [float(v) for v in r["keypoints_scores"][i]]
            if "masks" in r:
                soft = r["masks"][i, 0].numpy()
                d["mask"] = rle_counts(soft > mask_thresh)
                # Pixels whose probability is on the threshold's knife edge (float32 noise can flip them).
                d["mask_edge"] = rle_counts(np.abs(soft - mask_thresh) <= MASK_EDGE)
            dets.append(d)
        out.append({"frame": k, "width": im.shape[1], "height": im.shape[0], "detections": dets})
    return out


# ---- export ----
def read_frames(video, indices):
    return [(k, pb.read_frame(video, k)) for k in indices]


def convert(model, path, name, min_size, max_size, classes_file=None):
    arch, variant, depth, _, classes = CONFIGS[name]
    sd = {k: v for k, v in model.state_dict().items()}
    argv = ["in.pth", str(path), "--min-size", str(min_size), "--max-size", str(max_size)]
    if depth == tv_models.MOBILENET:
        argv += ["--arch", convert_torchvision.architecture_name(arch, variant, depth)]
    args = convert_torchvision.parser().parse_args(argv)
    eps = tv_models.bn_eps(arch, variant, depth)
    args.eps = eps
    tensors, meta = convert_torchvision.convert_state_dict(sd, args, f"scripts/parity {name}")
    return tensors, meta


def cmd_export(a):
    torch.set_num_threads(2)
    indices = [int(v) for v in a.frames.split(",")]
    frames = read_frames(a.video, indices)
    model, scales = make_model(a.config, [frames[0][1]], a.min_size, a.max_size)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors, meta = convert(model, out / "weights.safetensors", a.config, a.min_size, a.max_size)
    save_np(tensors, str(out / "weights.safetensors"), metadata=meta)
    save_np({f"frame.{k}": im.astype(np.float32) for k, im in frames}, str(out / "frames.safetensors"))
    import time
    t0 = time.perf_counter()
    ref = run_torch(model, frames, float(meta.get("mask_thresh", 0.5)))
    dt = (time.perf_counter() - t0) / len(frames)
    doc = {"config": a.config, "thresholds": {k: meta.get(k) for k in ("score_thresh", "nms_thresh",
                                                                       "detections_per_img", "mask_thresh")},
           "torch_seconds_per_frame": dt, "frames": ref}
    (out / "reference.json").write_text(json.dumps(doc))
    if CONFIGS[a.config][0] == "maskrcnn":
        # For `compare`'s mask diagnosis (re-running the mask head at fpnstream's box); a temp dir file.
        torch.save({"config": a.config, "min_size": a.min_size, "max_size": a.max_size,
                    "state_dict": model.state_dict()}, out / "torch_model.pt")
    n = sum(len(f["detections"]) for f in ref)
    print(f"parity: torch {a.config}: {n} detections on {len(ref)} frames ({dt:.2f} s/frame, 2 threads)")


# ---- bench ----
def write_model(a, im):
    """The calibrated detector for `a.config` on frame `im`, written to `a.out` as weights.safetensors (converted) and
    frames.safetensors (the frame): returns (model, out directory)."""
    model, _ = make_model(a.config, [im], a.min_size, a.max_size)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors, meta = convert(model, out / "weights.safetensors", a.config, a.min_size, a.max_size)
    save_np(tensors, str(out / "weights.safetensors"), metadata=meta)
    save_np({f"frame.{a.frame}": im.astype(np.float32)}, str(out / "frames.safetensors"))
    return model, out


def cmd_bench(a):
    """Times torchvision on one frame (median of --runs after --warmup) and writes the same weights and frame
    for `fpnstream bench detector`."""
    import time
    torch.set_num_threads(a.threads)
    im = pb.read_frame(a.video, a.frame)
    if a.size != "native":
        w, h = (int(v) for v in a.size.split("x"))
        x = torch.from_numpy(im).permute(2, 0, 1).float()[None]
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        im = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    model, out = write_model(a, im)
    x = torch.from_numpy(im).permute(2, 0, 1).float().div(255)
    for _ in range(a.warmup):
        forward(model, [x])
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        forward(model, [x])
        times.append((time.perf_counter() - t0) * 1000)
    med = float(np.median(times))
    (out / "torch.json").write_text(json.dumps({"median_ms": med, "runs_ms": times}))
    print(f"torch {a.config} ms/frame: {med:.1f} (median of {a.runs}, {a.threads} threads, input {im.shape[1]}x{im.shape[0]})")


def cmd_export_onnx(a):
    """Writes the calibrated detector three ways for scripts/bench-onnx: DIR/weights.safetensors (converted, for
    `fpnstream bench detector`), DIR/model.onnx (torch.onnx.export of the whole torchvision model: transform, backbone,
    RPN, RoI heads, post-processing; input [3, H, W] RGB 0..1) and the frame (DIR/frames.safetensors, DIR/input.npy).
    onnxruntime's detections on the frame are checked against torch's, so the timed graph computes the same thing."""
    import onnxruntime as ort
    torch.set_num_threads(2)
    im = pb.read_frame(a.video, a.frame)
    model, out = write_model(a, im)
    x = torch.from_numpy(im).permute(2, 0, 1).float().div(255).contiguous()
    np.save(out / "input.npy", x.numpy())
    ref = forward(model, [x])[0]
    names = [k for k in ("boxes", "labels", "scores", "keypoints", "keypoints_scores") if k in ref]
    onnx_path = out / "model.onnx.partial"  # renamed to model.onnx once checked
    torch.onnx.export(model, ([x],), str(onnx_path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=names)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    got = dict(zip(names, ort.InferenceSession(str(onnx_path), so).run(None, {"image": x.numpy()})))

    def detections(r):
        return [{"box": [float(v) for v in b], "score": float(c), "label": int(l)}
                for b, c, l in zip(r["boxes"], r["scores"], r["labels"])]
    want, have = detections({k: v.numpy() for k, v in ref.items()}), detections(got)
    matched = len(match(want, have))
    print(f"export-onnx: {a.config} on frame {a.frame} ({im.shape[1]}x{im.shape[0]}, min_size {a.min_size}, max_size "
          f"{a.max_size}): torch {len(want)} detections, onnxruntime {len(have)}, {matched} matched one to one "
          f"(same label, box IoU >= {MATCH_IOU}, score within {SCORE_TOL})")
    if matched < MIN_MATCHED * max(len(want), len(have)):
        sys.exit("export-onnx: onnxruntime's detections differ from torch's")
    onnx_path.rename(out / "model.onnx")


# ---- compare ----
def match(ref, got):
    """Greedy one-to-one matching by reference score: same label, IoU >= 0.99, |score diff| <= 1e-3."""
    pairs, used = [], set()
    for i in sorted(range(len(ref)), key=lambda i: -ref[i]["score"]):
        best, best_iou = None, MATCH_IOU
        for j, g in enumerate(got):
            if j in used or g["label"] != ref[i]["label"] or abs(g["score"] - ref[i]["score"]) > SCORE_TOL:
                continue
            v = iou(ref[i]["box"], g["box"])
            if v >= best_iou:
                best, best_iou = j, v
        if best is not None:
            used.add(best)
            pairs.append((i, best))
    return pairs


def explain(d, side, others, thresholds, explained):
    """Why an unmatched detection `d` may legitimately differ, or None."""
    score_t = float(thresholds["score_thresh"])
    nms_t = float(thresholds["nms_thresh"])
    top_n = int(thresholds["detections_per_img"])
    if abs(d["score"] - score_t) <= SCORE_TOL:
        return f"score {d['score']:.5f} within {SCORE_TOL} of the score threshold {score_t}"
    for name, dets in others:
        if len(dets) >= top_n and abs(d["score"] - min(x["score"] for x in dets)) <= SCORE_TOL:
            return f"score {d['score']:.5f} at the top-{top_n} cutoff of {name}"
    for name, dets in others:
        for x in dets:
            if x is d or x["label"] != d["label"]:
                continue
            v = iou(x["box"], d["box"])
            if abs(v - nms_t) <= 0.01 and x["score"] >= d["score"] - SCORE_TOL:
                return (f"NMS knife edge: IoU {v:.4f} with a {name} box of score {x['score']:.4f} "
                        f"(NMS threshold {nms_t})")
    for e in explained:
        if e["label"] == d["label"] and iou(e["box"], d["box"]) > nms_t - 0.01:
            return f"overlaps an explained unmatched box (score {e['score']:.4f}): NMS cascade"
    return None


def mask_iou(a, b, h, w):
    ma, mb = rle_decode(a, h, w), rle_decode(b, h, w)
    u = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / u) if u else 1.0


class Diagnosis:
    """Torch's model and frames for re-running the mask branch in `compare` (loaded on first use)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.model, self.frames = None, {}

    def frame(self, k, mask_thresh):
        """parity_masks.FrameMasks of frame k, or None without the exported torch model."""
        path = self.dir / "torch_model.pt"
        if not path.exists():
            return None
        if k not in self.frames:
            if self.model is None:
                torch.set_num_threads(2)
                ck = torch.load(path, weights_only=False)
                arch, variant, depth, _, classes = CONFIGS[ck["config"]]
                self.model = tv_models.build(arch, variant, depth, classes, min_size=ck["min_size"],
                                             max_size=ck["max_size"])
                self.model.load_state_dict(ck["state_dict"])
                self.model.eval()
            from safetensors.numpy import load_file
            image = load_file(str(self.dir / "frames.safetensors"))[f"frame.{k}"].astype(np.uint8)
            self.frames[k] = parity_masks.FrameMasks(self.model, image, mask_thresh)
        return self.frames[k]


KP_TOL = 0.05     # px: keypoints are heatmap cell centres, so equal argmaxes give equal positions up to rounding
KP_SCORE_TOL = 1e-3


def keypoint_mismatches(ref, got):
    """Keypoints that differ: position beyond KP_TOL, or score beyond KP_SCORE_TOL (relative to max(1, |score|)).
    A different argmax (a neighbouring heatmap cell, e.g. two cells within float noise of the maximum) moves a
    keypoint by one cell (about one input pixel); it is explained when the two cells' scores agree within the
    tolerance and the positions are at most 1.5 px apart."""
    out = []
    if "keypoints" not in got:
        return ["swift detection has no keypoints"]
    for n, (r, g, rs, gs) in enumerate(zip(ref["keypoints"], got["keypoints"], ref["keypoint_scores"],
                                          got["keypoint_scores"])):
        same_score = abs(rs - gs) <= KP_SCORE_TOL * max(1.0, abs(rs))
        if abs(r[0] - g[0]) <= KP_TOL and abs(r[1] - g[1]) <= KP_TOL and same_score:
            continue
        if same_score and abs(r[0] - g[0]) <= 1.5 and abs(r[1] - g[1]) <= 1.5:
            print(f"  keypoint {n}: ({r[0]:.2f}, {r[1]:.2f}) vs ({g[0]:.2f}, {g[1]:.2f}), scores {rs:.5f} / {gs:.5f}: "
                  "explained, a tie between two heatmap cells")
            continue
        out.append(f"keypoint {n}: torch ({r[0]:.2f}, {r[1]:.2f}) score {rs:.5f}, swift ({g[0]:.2f}, {g[1]:.2f}) "
                   f"score {gs:.5f}")
    return out


def cmd_compare(a):
    ref_doc = json.loads(Path(a.dir, "reference.json").read_text())
    got_doc = json.loads(Path(a.dir, "swift.json").read_text())
    th = ref_doc["thresholds"]
    got_by_frame = {f["frame"]: f for f in got_doc["frames"]}
    total_ref = total_got = matched = 0
    bad = 0
    worst_mask = 1.0
    worst_score = 0.0
    worst_iou = 1.0
    worst_kp = 0.0
    explained_masks = 0
    diagnosis = Diagnosis(a.dir)
    for fr in ref_doc["frames"]:
        k = fr["frame"]
        gf = got_by_frame.get(k)
        if gf is None:
            print(f"frame {k}: missing from swift output")
            return 1
        ref, got = fr["detections"], gf["detections"]
        pairs = match(ref, got)
        total_ref += len(ref)
        total_got += len(got)
        matched += len(pairs)
        for i, j in pairs:
            worst_score = max(worst_score, abs(ref[i]["score"] - got[j]["score"]))
            worst_iou = min(worst_iou, iou(ref[i]["box"], got[j]["box"]))
            if "keypoints" in ref[i]:
                kp_bad = keypoint_mismatches(ref[i], got[j])
                worst_kp = max([worst_kp] + [abs(r[0] - g[0]) + abs(r[1] - g[1]) for r, g in
                                             zip(ref[i]["keypoints"], got[j].get("keypoints", []))])
                for why in kp_bad:
                    print(f"frame {k}: label {ref[i]['label']} score {ref[i]['score']:.4f}: {why}")
                bad += len(kp_bad)
            if "mask" in ref[i]:
                if "mask" not in got[j]:
                    print(f"frame {k}: swift detection {j} has no mask")
                    bad += 1
                    continue
                m = mask_iou(ref[i]["mask"], got[j]["mask"], fr["height"], fr["width"])
                worst_mask = min(worst_mask, m)
                if m < MASK_IOU:
                    h, w = fr["height"], fr["width"]
                    diff = rle_decode(ref[i]["mask"], h, w) != rle_decode(got[j]["mask"], h, w)
                    edge = rle_decode(ref[i].get("mask_edge", [h * w]), h, w)
                    desc = (f"frame {k}: mask IoU {m:.4f} < {MASK_IOU} for label {ref[i]['label']} "
                            f"score {ref[i]['score']:.4f} ({int(diff.sum())} pixels differ)")
                    if not (diff & ~edge).any():
                        print(f"{desc}: explained, every differing pixel has a torch probability within "
                              f"{MASK_EDGE} of the mask threshold")
                        continue
                    print(f"{desc}: {int((diff & ~edge).sum())} differing pixels are not near the threshold")
                    fm = diagnosis.frame(k, float(th.get("mask_thresh") or 0.5))
                    if fm is None:
                        bad += 1
                        continue
                    ok, why = parity_masks.diagnose(fm, i, ref[i], got[j], rle_decode(ref[i]["mask"], h, w),
                                                    rle_decode(got[j]["mask"], h, w), MASK_IOU)
                    print(f"  {why}" if ok else f"  UNEXPLAINED: {why}")
                    explained_masks += ok
                    bad += not ok
        mi = {i for i, _ in pairs}
        mj = {j for _, j in pairs}
        unmatched = [(side, d) for side, dets, used in (("torch", ref, mi), ("swift", got, mj))
                     for idx, d in enumerate(dets) if idx not in used]
        # Until nothing changes: a cascade on one side is explained by a knife edge found on the other side later.
        explained, why = [], {}
        while True:
            new = [(n, w) for n, (side, d) in enumerate(unmatched) if n not in why
                   for w in [explain(d, side, [("torch", ref), ("swift", got)], th, explained)] if w]
            if not new:
                break
            for n, w in new:
                why[n] = w
                explained.append(unmatched[n][1])
        for n, (side, d) in enumerate(unmatched):
            desc = (f"frame {k}: unmatched {side} detection label {d['label']} score {d['score']:.5f} "
                    f"box [{', '.join(f'{v:.1f}' for v in d['box'])}]")
            print(f"{desc}: {why.get(n, 'UNEXPLAINED')}")
            bad += n not in why
        print(f"frame {k}: torch {len(ref)}, swift {len(got)}, matched {len(pairs)}")
    frac_ref = matched / total_ref if total_ref else 1.0
    frac_got = matched / total_got if total_got else 1.0
    print(f"parity: matched {matched} of {total_ref} torch / {total_got} swift detections "
          f"({100 * frac_ref:.2f}% / {100 * frac_got:.2f}%); worst matched box IoU {worst_iou:.5f}, "
          f"score diff {worst_score:.2e}, mask IoU {worst_mask:.4f}"
          + (f", keypoint |dx|+|dy| {worst_kp:.3f} px" if worst_kp else "")
          + (f" ({explained_masks} explained by the box difference)" if explained_masks else ""))
    if "swift_seconds_per_frame" in got_doc:
        print(f"parity: seconds per frame: torch {ref_doc['torch_seconds_per_frame']:.2f} (2 threads), "
              f"swift {got_doc['swift_seconds_per_frame']:.2f}")
    ok = bad == 0 and frac_ref >= MIN_MATCHED and frac_got >= MIN_MATCHED and total_ref > 0
    if total_ref == 0:
        print("parity: torch produced no detections: the weights need calibrating")
    return 0 if ok else 1


# ---- committed fixture ----
def cmd_fixture(a):
    """A small fixture for `swift test`: every non-generated tensor, the generated keys with their shapes and
    power-of-two scales (metadata), a crop of a real frame, and torch's detections."""
    torch.set_num_threads(2)
    image = pb.read_frame(a.video, a.frame)
    x0, y0, w, h = (int(v) for v in a.crop.split(","))
    image = image[y0:y0 + h, x0:x0 + w].copy()
    model, scales = make_model(a.config, [image], a.min_size, a.max_size)
    tensors, meta = convert(model, a.out, a.config, a.min_size, a.max_size)
    write_fixture(model, meta, tensors, scales, image, a.frame, a.out, a.detections, a.rpn_pre, a.rpn_post)


def set_limits(model, meta, detections, rpn_pre, rpn_post):
    """Detections per image and (R-CNN) RPN pre/post-NMS proposal counts, on the model and in the metadata."""
    meta["detections_per_img"] = str(detections)
    if hasattr(model, "roi_heads"):
        model.roi_heads.detections_per_img = detections
        model.rpn._pre_nms_top_n["testing"] = rpn_pre
        model.rpn._post_nms_top_n["testing"] = rpn_post
        meta["rpn_pre_nms_top_n"] = str(rpn_pre)
        meta["rpn_post_nms_top_n"] = str(rpn_post)
    else:
        model.detections_per_img = detections


def write_fixture(model, meta, tensors, scales, image, frame, path, detections, rpn_pre, rpn_post):
    set_limits(model, meta, detections, rpn_pre, rpn_post)
    ref = run_torch(model, [(frame, image)], float(meta.get("mask_thresh", 0.5)))[0]["detections"]
    out = {}
    generated = {}
    for k, v in tensors.items():
        if k.startswith("backbone.") and v.ndim == 4 or not k.startswith("backbone.") and v.ndim >= 2:
            generated[k] = {"shape": list(v.shape), "log2_scale": scales.get(k, 0)}
        else:
            out[k] = v
    out["fixture.image"] = image.astype(np.float16)  # 0..255 integers are exact in float16
    out["fixture.boxes"] = np.array([d["box"] for d in ref], dtype=np.float32).reshape(-1, 4)
    out["fixture.scores"] = np.array([d["score"] for d in ref], dtype=np.float32)
    out["fixture.labels"] = np.array([d["label"] for d in ref], dtype=np.float32)
    meta = {k: v for k, v in meta.items() if not k.startswith("fixture.")}
    meta["fixture.generated"] = json.dumps(generated, separators=(",", ":"))
    meta["fixture.frame"] = str(frame)
    if ref and "mask" in ref[0]:
        meta["fixture.masks"] = json.dumps([d["mask"] for d in ref], separators=(",", ":"))
    save_np(out, str(path), metadata=meta)
    print(f"parity: wrote {path}: {len(ref)} detections, {len(generated)} generated tensors, "
          f"{Path(path).stat().st_size} bytes")


def load_fixture(path):
    """The torch model of a committed fixture (stored + regenerated tensors, no calibration) in eval mode, with its
    metadata, tensors, power-of-two scales and image."""
    from safetensors import safe_open
    from safetensors.numpy import load_file
    with safe_open(path, "np") as f:
        meta = dict(f.metadata())
    stored = load_file(path)
    arch_name = meta["architecture"]
    variant = "v2" if arch_name.endswith("_v2") else "v1"
    arch, depth = arch_name.split("_")[0], arch_name.split("_")[1]
    classes = int(meta["num_classes"])
    model = tv_models.build(arch, variant, depth, classes, min_size=int(meta["min_size"]),
                            max_size=int(meta["max_size"]), eps=float(meta["bn_eps"]))
    generated = json.loads(meta["fixture.generated"])
    tensors, scales = {}, {}
    for k, v in stored.items():
        if not k.startswith("fixture."):
            tensors[k] = v
    for k, g in generated.items():
        tensors[k] = pb.generated_weight(k, tuple(g["shape"])) * np.float32(2.0 ** g["log2_scale"])
        scales[k] = g["log2_scale"]
    res = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
                                strict=False)
    assert not [k for k in res.missing_keys + res.unexpected_keys if "num_batches_tracked" not in k], res
    image = stored["fixture.image"].astype(np.uint8)
    return model.eval(), meta, tensors, scales, image


def cmd_refixture(a):
    """Rebuilds the torch model from a committed fixture (no calibration) and rewrites its expected detections,
    e.g. after changing the limits or the torch version."""
    torch.set_num_threads(2)
    model, meta, tensors, scales, image = load_fixture(a.file)
    write_fixture(model, meta, tensors, scales, image, int(meta.get("fixture.frame", 150)), a.file,
                  a.detections, a.rpn_pre, a.rpn_post)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--config", required=True, choices=sorted(CONFIGS))
    e.add_argument("--video", required=True)
    e.add_argument("--frames", default="0,150,300,600")
    e.add_argument("--min-size", type=int, default=480)
    e.add_argument("--max-size", type=int, default=800)
    e.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    f = sub.add_parser("fixture")
    f.add_argument("--config", required=True, choices=sorted(CONFIGS))
    f.add_argument("--video", required=True)
    f.add_argument("--frame", type=int, default=150)
    f.add_argument("--crop", default="250,120,160,120")
    f.add_argument("--min-size", type=int, default=120)
    f.add_argument("--max-size", type=int, default=200)
    f.add_argument("--detections", type=int, default=12)
    f.add_argument("--rpn-pre", type=int, default=200, help="R-CNN: proposals per level before NMS")
    f.add_argument("--rpn-post", type=int, default=64, help="R-CNN: proposals after NMS")
    f.add_argument("--out", required=True)
    r = sub.add_parser("refixture")
    r.add_argument("file")
    r.add_argument("--detections", type=int, default=12)
    r.add_argument("--rpn-pre", type=int, default=200)
    r.add_argument("--rpn-post", type=int, default=64)
    o = sub.add_parser("export-onnx")
    o.add_argument("--config", required=True, choices=sorted(CONFIGS))
    o.add_argument("--video", required=True)
    o.add_argument("--frame", type=int, default=100)
    o.add_argument("--min-size", type=int, default=800)
    o.add_argument("--max-size", type=int, default=1333)
    o.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--config", required=True, choices=sorted(CONFIGS))
    b.add_argument("--video", required=True)
    b.add_argument("--frame", type=int, default=150)
    b.add_argument("--size", default="native", help="WxH to resize the frame to first, or 'native'")
    b.add_argument("--min-size", type=int, default=800)
    b.add_argument("--max-size", type=int, default=1333)
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "bench":
        cmd_bench(a)
        return 0
    if a.cmd == "export-onnx":
        cmd_export_onnx(a)
        return 0
    if a.cmd == "export":
        cmd_export(a)
        return 0
    if a.cmd == "fixture":
        cmd_fixture(a)
        return 0
    if a.cmd == "refixture":
        cmd_refixture(a)
        return 0
    return cmd_compare(a)


if __name__ == "__main__":
    sys.exit(main())
