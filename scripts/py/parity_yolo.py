"""Parity of fpnstream's Ultralytics YOLO support against the ultralytics package and onnxruntime (the oracles).

build:  parity_yolo.py build CONFIG OUT.onnx
    Builds the model from ultralytics' own yaml with seeded random weights (nothing is downloaded), calibrates the
    BatchNorm statistics on 4 real frames (else random features saturate and most anchors tie), shifts each
    class-score bias so that about the top 0.03% of that class's anchors on those frames pass the 0.25 threshold
    (Ultralytics' bias_init puts every score near 1e-4; random weights alone would give no detection), and exports
    with ultralytics' own exporter (`model.export(format="onnx")`, opset and onnxslim as ultralytics picks them).

check:  parity_yolo.py check CONFIG MODEL.onnx FPNSTREAM_BINARY WORKDIR
    For frames of vtest.avi, carphone_pristine.mp4 and bikes.mp4 (decoded by ffmpeg as RGB24): ultralytics'
    LetterBox makes the network input; onnxruntime and `fpnstream onnx-run` run the same tensor;
    - raw outputs: for each of boxes (network-input pixels), class scores, mask coefficients and prototypes, max abs
      error / max |onnxruntime value| <= 3x the float32 floor of that output (at least 1e-6). The floor is measured
      in the same run: ultralytics' torch model carrying the export's weights (torch_twin), float32, against
      onnxruntime, the worst over the cases. Two float32 implementations of the same network differ by that much
      (BatchNorm-calibrated random weights through 60+ convs: up to 3.7e-5 of the largest class score); fpnstream's
      Winograd F(4x4, 3x3) convolutions, 9x the rounding error of a direct conv like any F(4x4, 3x3), put it at
      up to 2.3x the floor, within 1.4x with FPNSTREAM_WINOGRAD=off (docs/onnx.md; `floor` below measures it);
    - decoded: ultralytics' non_max_suppression (conf 0.25, iou 0.7, max_det 300), scale_boxes and, for segment,
      process_mask_native (masks at source resolution) on onnxruntime's outputs against fpnstream's YOLO.decode
      on its own outputs: >= 99% of detections matched one to one (same class, box IoU >= 0.99, |score diff|
      <= 1e-4), every box corner within 0.05 source pixels, matched masks IoU >= 0.99.
    - end to end: `fpnstream process` on vtest.avi frames 0-9 (its own decode and letterbox) against ultralytics'
      predictor (`YOLO(model.onnx).predict`) on the same frames: >= 99% of detections matched (same class, box
      IoU >= 0.99, score within 1e-3, JSONL's rounding).
    Exit status 1 on any failure; all numbers are printed.

floor:  parity_yolo.py floor CONFIG MODEL.onnx FPNSTREAM_BINARY WORKDIR
    The float32 floor on vtest.avi frame 100 (FLOOR_ALL=1: every case): torch float32, onnxruntime and fpnstream
    against torch float64 (the same weights in double) and against each other, per raw output; then each
    ultralytics layer's output (FLOOR_LAYERS=0 skips it; fpnstream runs the model cut at that layer), to show
    where differences arise.
"""
import json
import os
import subprocess
import sys

import numpy as np

CONFIGS = {
    "yolov8-detect": "yolov8n.yaml",
    "yolov8-seg": "yolov8n-seg.yaml",
    "yolo11-detect": "yolo11n.yaml",
    "yolo11-seg": "yolo11n-seg.yaml",
}
CASES = [("vtest.avi", 100), ("vtest.avi", 400), ("carphone_pristine.mp4", 60), ("bikes.mp4", 50)]
# Raw outputs: fpnstream vs onnxruntime within FLOOR_FACTOR x the float32 floor (see check), never below TOL_MIN.
FLOOR_FACTOR = 3.0
TOL_MIN = 1e-6


def calibration_batch(imgsz=640):
    """Letterboxed frames (NCHW float 0..1) to calibrate BatchNorm statistics on real images."""
    from ultralytics.data.augment import LetterBox
    frames = [frame_rgb("samples/external/vtest.avi", 10), frame_rgb("samples/external/bikes.mp4", 10),
              frame_rgb("samples/external/carphone_pristine.mp4", 10), frame_rgb("samples/external/vtest.avi", 700)]
    boxed = [LetterBox((imgsz, imgsz), auto=False, stride=32)(image=np.ascontiguousarray(f[..., ::-1]))[..., ::-1] for f in frames]
    return np.stack([b.transpose(2, 0, 1) for b in boxed]).astype(np.float32) / 255


def build(config, out):
    import torch
    from ultralytics import YOLO
    torch.manual_seed(0)
    model = YOLO(CONFIGS[config])
    net = model.model
    # Random weights with BatchNorm's initial statistics saturate: most anchors get the very same score. Calibrate
    # the statistics on real frames (cumulative average) so features vary with the image, as a trained model's do.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    x = torch.from_numpy(calibration_batch())
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    head = net.model[-1]
    # Class biases: bias_init() puts every score near 1e-4. Centre each class's logits on the calibration frames
    # so that roughly the top 0.03% of anchors of each class pass the 0.25 threshold, plus a random per-class shift.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        feats = [seq(f) for seq, f in zip(head.cv3, head_inputs(net, x))]
        logits = torch.cat([f.flatten(2) for f in feats], 2)  # [B, nc, anchors]
        top = torch.quantile(logits.transpose(0, 1).flatten(1), 0.9997, dim=1)
        shift = torch.logit(torch.tensor(0.25)) - top + torch.randn(top.shape, generator=g) * 0.3
        for seq in head.cv3:
            seq[-1].bias.add_(shift)
    workdir = os.path.dirname(os.path.abspath(out))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        path = model.export(format="onnx", imgsz=640, verbose=False)
    finally:
        os.chdir(cwd)
    os.replace(os.path.join(workdir, path) if not os.path.isabs(path) else path, out)
    print(f"parity-yolo: built {CONFIGS[config]} (seed 0, BatchNorm calibrated on 4 frames, class biases centred) -> {out}")


def head_inputs(net, x):
    """The feature maps the Detect/Segment head receives (the outputs of the layers it reads)."""
    y, head = [], net.model[-1]
    for m in net.model[:-1]:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        y.append(x)
    return [y[j] for j in head.f]


def probe_size(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                          "-of", "csv=p=0", path], check=True, capture_output=True, text=True).stdout
    w, h = out.strip().split(",")[:2]
    return int(w), int(h)


def frame_rgb(path, index):
    w, h = probe_size(path)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def oracle(outputs, shape0, imgsz):
    """Ultralytics' own post-processing (predictor defaults) on onnxruntime's outputs."""
    import torch
    from ultralytics.utils import nms, ops
    preds = torch.from_numpy(outputs[0])
    det = nms.non_max_suppression(preds, 0.25, 0.7, max_det=300, nc=0 if len(outputs) == 1 else preds.shape[1] - 36)[0]
    nc = preds.shape[1] - 4 - (32 if len(outputs) > 1 else 0)
    boxes = ops.scale_boxes(imgsz, det[:, :4].clone(), shape0)
    out = {"boxes": boxes.numpy(), "scores": det[:, 4].numpy(), "classes": det[:, 5].numpy().astype(int)}
    if len(outputs) > 1:
        proto = torch.from_numpy(outputs[1])[0]
        out["masks"] = ops.process_mask_native(proto, det[:, 4 + 2:], boxes, shape0).numpy() if len(det) else \
            np.zeros((0,) + tuple(shape0), np.uint8)
    assert nc > 0
    return out


def rle_decode(s, h, w):
    """COCO compressed RLE string (column-major) -> HxW uint8."""
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, np.uint8)
    at, v = 0, 0
    for c in counts:
        flat[at:at + c] = v
        at += c
        v = 1 - v
    return flat.reshape(w, h).T


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(np.allclose(a, b))


def compare_detections(ref, mine, shape0):
    """Greedy one-to-one matching in reference order; returns (matched, total, max corner error, min mask IoU)."""
    used, matched, corner, mask_iou = set(), 0, 0.0, 1.0
    for i in range(len(ref["scores"])):
        best, bj = 0.0, None
        for j, d in enumerate(mine):
            if j in used or d["class"] != ref["classes"][i] or abs(d["score"] - ref["scores"][i]) > 1e-4:
                continue
            v = iou(ref["boxes"][i], d["box"])
            if v > best:
                best, bj = v, j
        if bj is None or best < 0.99:
            continue
        used.add(bj)
        matched += 1
        corner = max(corner, float(np.abs(np.asarray(mine[bj]["box"]) - ref["boxes"][i]).max()))
        if "masks" in ref:
            m = rle_decode(mine[bj]["mask"], *shape0)
            r = ref["masks"][i].astype(bool)
            union = np.logical_or(m, r).sum()
            mask_iou = min(mask_iou, np.logical_and(m, r).sum() / union if union else 1.0)
    total = max(len(ref["scores"]), len(mine))
    return matched, total, corner, mask_iou


def raw_pieces(outs, seg):
    """The raw outputs by kind: boxes (network-input pixels), class scores, mask coefficients, prototypes."""
    nc = outs[0].shape[1] - 4 - (32 if seg else 0)
    r = {"boxes": outs[0][:, :4], "scores": outs[0][:, 4:4 + nc]}
    if seg:
        r["coefficients"] = outs[0][:, 4 + nc:]
        r["prototypes"] = outs[1]
    return r


def check(config, model_path, binary, work):
    import onnxruntime as ort
    import torch
    from ultralytics.data.augment import LetterBox
    torch.set_num_threads(2)
    twin = torch_twin(config, model_path)
    sess_opts = ort.SessionOptions()
    sess_opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model_path, sess_opts, providers=["CPUExecutionProvider"])
    imgsz = tuple(sess.get_inputs()[0].shape[2:])
    ok, matched_all, total_all, rows = True, 0, 0, []
    for video, index in CASES:
        rgb = frame_rgb(os.path.join("samples/external", video), index)
        boxed = LetterBox(imgsz, auto=False, stride=32)(image=np.ascontiguousarray(rgb[..., ::-1]))  # ultralytics takes BGR
        x = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None]).astype(np.float32) / 255
        ref_out = sess.run(None, {sess.get_inputs()[0].name: x})
        with torch.no_grad():
            t = twin(torch.from_numpy(x))
        torch_out = [v.numpy() for v in ([t] if torch.is_tensor(t) else t)]
        case_dir = os.path.join(work, f"{video}-{index}")
        os.makedirs(case_dir, exist_ok=True)
        x.tofile(os.path.join(case_dir, "x.f32"))
        h0, w0 = rgb.shape[:2]
        subprocess.run([binary, "onnx-run", model_path, "--input", os.path.join(case_dir, "x.f32"), "--shape",
                        "x".join(map(str, x.shape)), "--output-dir", case_dir, "--yolo-source", f"{w0}x{h0}"], check=True)
        manifest = json.load(open(os.path.join(case_dir, "outputs.json")))["outputs"]
        mine_out = [np.fromfile(os.path.join(case_dir, o["file"]), np.float32).reshape(o["shape"]) for o in manifest]
        shapes = [r.shape for r in ref_out]
        if [m.shape for m in mine_out] != shapes or [t.shape for t in torch_out] != shapes:
            print(f"  {video}#{index}: output shapes fpnstream {[m.shape for m in mine_out]}, torch "
                  f"{[t.shape for t in torch_out]}, onnxruntime {shapes}")
            ok = False
            continue
        seg = len(ref_out) > 1
        R, M, T = raw_pieces(ref_out, seg), raw_pieces(mine_out, seg), raw_pieces(torch_out, seg)
        errs = {k: rel(M[k], R[k]) for k in R}
        floors = {k: rel(T[k], R[k]) for k in R}
        ref = oracle(ref_out, (h0, w0), imgsz)
        mine = json.load(open(os.path.join(case_dir, "detections.json")))
        matched, total, corner, mask_iou = compare_detections(ref, mine, (h0, w0))
        matched_all += matched
        total_all += total
        rows.append((video, index, w0, h0, errs, floors, matched, total, len(ref["scores"]), len(mine), corner,
                     mask_iou if seg else None))
    # The float32 floor of each raw output: how far two float32 implementations of the same export (ultralytics'
    # torch model carrying the export's weights, and onnxruntime) are apart, the worst over the cases.
    floor_of = {k: max(r[5][k] for r in rows) for k in (rows[0][4] if rows else {})}
    tol = {k: max(FLOOR_FACTOR * v, TOL_MIN) for k, v in floor_of.items()}
    print("  raw outputs, max abs difference / max |onnxruntime|; tolerance = "
          f"{FLOOR_FACTOR:g} x the floor (torch float32 vs onnxruntime, worst case): "
          + ", ".join(f"{k} {tol[k]:.1e}" for k in tol))
    for video, index, w0, h0, errs, floors, matched, total, n_ref, n_mine, corner, mask_iou in rows:
        case_ok = all(errs[k] <= tol[k] for k in errs) and corner <= 0.05 and (mask_iou is None or mask_iou >= 0.99)
        ok &= case_ok
        detail = ", ".join(f"{k} {errs[k]:.1e} (torch {floors[k]:.1e})" for k in errs)
        mask_text = f", min mask IoU {mask_iou:.4f}" if mask_iou is not None else ""
        print(f"  {video}#{index} ({w0}x{h0}): fpnstream vs onnxruntime {detail}; detections {matched}/{total} matched "
              f"(onnxruntime+ultralytics {n_ref}, fpnstream {n_mine}), max corner error {corner:.3g} px"
              f"{mask_text} {'ok' if case_ok else 'FAIL'}")
    e2e_ok = end_to_end(config, model_path, binary, work)
    rate = matched_all / total_all if total_all else 1.0
    ok &= e2e_ok
    if total_all == 0:
        print("parity-yolo: no detections at all: the check would prove nothing")
        ok = False
    ok &= rate >= 0.99
    print(f"parity-yolo {config}: {matched_all}/{total_all} detections matched ({100 * rate:.2f}%) "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def end_to_end(config, model_path, binary, work, frames=10):
    """`fpnstream process` (its own FFmpeg decode and letterbox) on the first frames of vtest.avi against
    ultralytics' own predictor (OpenCV letterbox, onnxruntime) on the same frames decoded by the ffmpeg CLI; true
    when >= 99% of detections match (same class, box IoU >= 0.99, score within 1e-3: JSONL rounds scores to 3
    decimals and boxes to 0.01 px)."""
    from ultralytics import YOLO
    video = "samples/external/vtest.avi"
    out = os.path.join(work, "e2e.jsonl")
    subprocess.run([binary, "process", video, "--model", model_path, "--max-frames", str(frames), "--jsonl", out, "-q"],
                   check=True)
    mine = [json.loads(line) for line in open(out) if '"type":"frame"' in line]
    model = YOLO(model_path, task="segment" if "seg" in config else "detect")
    matched_all = total_all = 0
    for f in mine:
        rgb = frame_rgb(video, f["frame"])
        r = model.predict(np.ascontiguousarray(rgb[..., ::-1]), verbose=False, retina_masks=True)[0]
        ref = {"boxes": r.boxes.xyxy.numpy(), "scores": r.boxes.conf.numpy(), "classes": r.boxes.cls.numpy().astype(int)}
        dets = [{"box": d["box"], "score": d["score"], "class": d["class_id"]} for d in f["detections"]]
        used, matched = set(), 0
        for i in range(len(ref["scores"])):
            cands = [(iou(ref["boxes"][i], d["box"]), j) for j, d in enumerate(dets)
                     if j not in used and d["class"] == ref["classes"][i] and abs(d["score"] - ref["scores"][i]) <= 1e-3]
            best = max(cands, default=(0, None))
            if best[1] is not None and best[0] >= 0.99:
                used.add(best[1])
                matched += 1
        matched_all += matched
        total_all += max(len(ref["scores"]), len(dets))
    rate = matched_all / max(total_all, 1)
    print(f"  end to end: fpnstream process vs ultralytics predict on vtest.avi frames 0-{frames - 1}: "
          f"{matched_all}/{total_all} detections matched (same class, box IoU >= 0.99, score within 1e-3) "
          f"= {100 * rate:.2f}% {'ok' if rate >= 0.99 and total_all else 'FAIL'}")
    return rate >= 0.99 and total_all > 0


def torch_twin(config, model_path, export=True):
    """The ultralytics model of CONFIG in torch, fused and set up as ultralytics' exporter sets it up, carrying the
    export's own weights (every fused Conv weight and bias read from the ONNX initializers by name), so torch and the
    ONNX file compute the same function. export=False leaves the head's outputs as ultralytics' predictor expects
    them (the same tensors plus the raw feature maps)."""
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics import YOLO
    from ultralytics.nn.modules import C2f, Detect
    net = YOLO(CONFIGS[config]).model
    net.eval()
    net.fuse(verbose=False)
    for m in net.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format, m.xyxy, m.shape = False, export, "onnx", False, None
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    graph = onnx.load(model_path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # onnxslim shares equal initializers under one name (e.g. biases all 2.0): find a bias through its Conv.
    for n in graph.node:
        if n.op_type == "Conv" and len(n.input) == 3 and n.input[1].endswith(".weight") and n.input[2] in inits:
            inits.setdefault(n.input[1][:-len("weight")] + "bias", inits[n.input[2]])
    state = net.state_dict()
    missing = [k for k, v in state.items() if v.is_floating_point() and k not in inits and not k.endswith(("anchors", "strides"))]
    if missing:
        sys.exit(f"parity-yolo floor: {len(missing)} torch parameters not in {model_path}, e.g. {missing[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            if k in inits:
                assert tuple(v.shape) == inits[k].shape, k
                v.copy_(torch.from_numpy(inits[k].copy()))
    return net


def layer_outputs(model_path):
    """For each ultralytics layer i, the ONNX tensor it outputs: the last tensor produced by a node named /model.i/
    (in graph order) that a node outside the layer reads or that is a graph output."""
    import onnx
    g = onnx.load(model_path).graph
    prefix = lambda name: name.split("/")[1] if name.startswith("/model.") else None
    readers = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, set()).add(prefix(n.name))
    outs = {o.name for o in g.output}
    found = {}
    for n in g.node:
        p = prefix(n.name)
        if p is None:
            continue
        for t in n.output:
            if t in outs or readers.get(t, set()) - {p}:
                found[int(p.split(".")[1])] = t
    return found


def rel(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / max(np.abs(b).max(), 1e-30))


def sess_cut(path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run_cut(binary, model_path, start, end, x, work, tag):
    """fpnstream's value of tensor `end` given tensor `start` = x: `onnx-run` on the model cut between them."""
    import onnx
    sub = os.path.join(work, f"{tag}.onnx")
    onnx.utils.extract_model(model_path, sub, [start], [end])
    inp, out = os.path.join(work, f"{tag}.f32"), os.path.join(work, tag)
    x.astype(np.float32).tofile(inp)
    subprocess.run([binary, "onnx-run", sub, "--input", inp, "--shape", "x".join(map(str, x.shape)), "--output-dir", out],
                   check=True)
    e = json.load(open(os.path.join(out, "outputs.json")))["outputs"][0]
    return np.fromfile(os.path.join(out, e["file"]), np.float32).reshape(e["shape"])


def floor(config, model_path, binary, work):
    """The float32 floor: on the same export and input (vtest.avi frame 100 and the other CASES), raw outputs of
    torch float32 (the ultralytics model, fused as exported), onnxruntime and fpnstream, each against torch float64
    (the same weights in double precision, the exact function to 1e-15) and against each other; then the output of
    every ultralytics layer, to show where the differences arise."""
    import onnx
    import onnxruntime as ort
    import torch
    from ultralytics.data.augment import LetterBox
    torch.set_num_threads(2)
    net32 = torch_twin(config, model_path)
    net64 = torch_twin(config, model_path).double()
    layers = layer_outputs(model_path)
    # One onnxruntime model that also outputs every layer's tensor; fpnstream runs models cut at each layer.
    m = onnx.load(model_path)
    names = [o.name for o in m.graph.output]
    for i in sorted(layers):
        if layers[i] not in names:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(layers[i]))
    os.makedirs(work, exist_ok=True)
    all_path = os.path.join(work, "all-layers.onnx")
    onnx.save(m, all_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(all_path, opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    imgsz = tuple(sess.get_inputs()[0].shape[2:])
    cases = CASES if os.environ.get("FLOOR_ALL") else CASES[:1]
    for video, index in cases:
        rgb = frame_rgb(os.path.join("samples/external", video), index)
        boxed = LetterBox(imgsz, auto=False, stride=32)(image=np.ascontiguousarray(rgb[..., ::-1]))
        x = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None]).astype(np.float32) / 255
        case = os.path.join(work, f"{video}-{index}")
        os.makedirs(case, exist_ok=True)
        x.tofile(os.path.join(case, "x.f32"))
        acts = {32: {}, 64: {}}
        hooks = []
        for bits, net in ((32, net32), (64, net64)):
            for i, layer in enumerate(net.model):
                hooks.append(layer.register_forward_hook(
                    lambda mod, inp, out, i=i, bits=bits: acts[bits].__setitem__(i, out)))
        with torch.no_grad():
            t32 = net32(torch.from_numpy(x))
            t64 = net64(torch.from_numpy(x).double())
        for h in hooks:
            h.remove()
        t32 = [t32] if torch.is_tensor(t32) else list(t32)
        t64 = [t64] if torch.is_tensor(t64) else list(t64)
        t32 = [t.numpy() for t in t32]
        t64 = [t.numpy() for t in t64]
        ort_all = dict(zip(out_names, sess.run(None, {sess.get_inputs()[0].name: x})))
        o = [ort_all[n] for n in names]
        subprocess.run([binary, "onnx-run", model_path, "--input", os.path.join(case, "x.f32"), "--shape",
                        "x".join(map(str, x.shape)), "--output-dir", case], check=True)
        manifest = json.load(open(os.path.join(case, "outputs.json")))["outputs"]
        f = [np.fromfile(os.path.join(case, e["file"]), np.float32).reshape(e["shape"]) for e in manifest]
        seg = len(o) > 1
        pieces = lambda outs: raw_pieces(outs, seg)
        P = {"torch64": pieces(t64), "torch32": pieces(t32), "onnxruntime": pieces(o), "fpnstream": pieces(f)}
        print(f"== floor {config} {video}#{index}: max abs difference / max |reference| per raw output")
        pairs = [("torch32", "torch64"), ("onnxruntime", "torch64"), ("fpnstream", "torch64"),
                 ("onnxruntime", "torch32"), ("fpnstream", "torch32"), ("fpnstream", "onnxruntime")]
        print(f"  {'output':<14}" + "".join(f"{a + ' vs ' + b:>26}" for a, b in pairs))
        for k in P["torch64"]:
            print(f"  {k:<14}" + "".join(f"{rel(P[a][k], P[b][k]):>26.2e}" for a, b in pairs))
        # Per layer: torch32, onnxruntime and fpnstream against torch64, first through the whole network up to the
        # layer (errors accumulated), then the layer alone on torch64's input rounded to float32 (its own error).
        if os.environ.get("FLOOR_LAYERS", "1") == "1":
            print(f"  per layer, vs torch64: {'through the network':>30}   {'the layer alone':>30}")
            print(f"  {'':<28}{'torch32':>10}{'onnxrt':>10}{'fpnstream':>10}   {'torch32':>10}{'onnxrt':>10}{'fpnstream':>10}")
            for i in sorted(layers):
                layer = net32.model[i]
                if i == len(net32.model) - 1 or not torch.is_tensor(acts[64][i]):
                    continue
                ref = acts[64][i].numpy()
                whole = [rel(acts[32][i].numpy(), ref), rel(ort_all[layers[i]], ref),
                         rel(run_cut(binary, model_path, m.graph.input[0].name, layers[i], x, work, f"layer{i}"), ref)]
                alone = ["", "", ""]
                src = i - 1 if layer.f == -1 else layer.f
                if isinstance(src, int) and src >= 0 and src in layers:
                    xin = acts[64][src].float().numpy()
                    with torch.no_grad():
                        t = layer(torch.from_numpy(xin)).numpy()
                    f = run_cut(binary, model_path, layers[src], layers[i], xin, work, f"alone{i}")
                    o = sess_cut(os.path.join(work, f"alone{i}.onnx")).run(None, {layers[src]: xin})[0]
                    alone = [f"{rel(t, ref):.2e}", f"{rel(o, ref):.2e}", f"{rel(f, ref):.2e}"]
                name = type(layer).__name__
                print(f"  {i:>3} {name:<24}" + "".join(f"{v:>10.2e}" for v in whole) + "   "
                      + "".join(f"{v:>10}" for v in alone))
    return True


def main():
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "floor":
        floor(*sys.argv[2:6])
    elif sys.argv[1] == "check":
        sys.exit(0 if check(*sys.argv[2:6]) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
