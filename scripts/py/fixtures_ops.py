"""Dumps small input/output cases of torchvision's detection post-processing ops to
Tests/Fixtures/ops/ops.json, for Tests/VisionTests/OpsParityTests.swift.

Float32 arrays are stored exactly, as base64 of little-endian bytes: {"shape": [...], "f32": "..."};
int64 arrays as plain lists. Run through `scripts/parity ops --write-fixtures` (torch venv).
"""
import base64
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign, batched_nms, nms, roi_align
from torchvision.ops.poolers import LevelMapper
from torchvision.models.detection.image_list import ImageList


def f32(t):
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
    return {"shape": list(a.shape), "f32": base64.b64encode(a.tobytes()).decode()}


def i64(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def random_boxes(n, w, h, g, min_side=1.0, max_side=None):
    max_side = max_side or max(w, h) / 2
    x1 = torch.rand(n, generator=g) * w
    y1 = torch.rand(n, generator=g) * h
    bw = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    bh = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


def anchors_cases():
    out = []
    cases = [
        ("rcnn", ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (64, 96), 4, True),
        ("rcnn_odd", ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (96, 160), 4, True),
        ("retinanet", tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512]),
         ((0.5, 1.0, 2.0),) * 5, (64, 96), 8, False),
        ("fcos", ((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5, (64, 96), 8, False),
    ]
    for name, sizes, ratios, (ph, pw), first_stride, maxpool_p6 in cases:
        gen = AnchorGenerator(sizes, ratios)
        grids = []
        h, w = ph // first_stride, pw // first_stride
        for lvl in range(5):
            grids.append((h, w))
            if maxpool_p6 and lvl == 3:
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # max_pool2d(k=1, s=2)
            else:
                h, w = (h + 1) // 2, (w + 1) // 2  # conv3x3/2 pad 1 (and ResNet stages)
        feats = [torch.zeros(1, 1, gh, gw) for gh, gw in grids]
        il = ImageList(torch.zeros(1, 3, ph, pw), [(ph, pw)])
        anchors = gen(il, feats)[0]
        cells = [gen.generate_anchors(s, r) for s, r in zip(sizes, ratios)]
        out.append({
            "name": name, "sizes": [list(map(float, s)) for s in sizes], "ratios": [list(r) for r in ratios],
            "padded": [ph, pw], "grids": [list(g) for g in grids],
            "cells": [f32(c) for c in cells], "anchors": f32(anchors),
        })
    return out


def coder_cases(g):
    out = []
    ref = random_boxes(64, 200, 150, g, 2, 120)
    deltas = torch.randn(64, 4, generator=g) * 1.5
    deltas[::7, 2] = 6.0  # beyond log(1000/16): clamped
    deltas[3::7, 3] = 9.0
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        dec = coder.decode_single(deltas, ref)
        out.append({"weights": list(weights), "reference": f32(ref), "deltas": f32(deltas), "decoded": f32(dec)})
    lin = BoxLinearCoder(normalize_by_size=True)
    ltrb = torch.rand(64, 4, generator=g) * 5
    out.append({"linear": True, "reference": f32(ref), "deltas": f32(ltrb), "decoded": f32(lin.decode(ltrb, ref))})
    return out


def nms_cases(g):
    out = []
    # Clusters of overlapping boxes, with some exactly repeated scores (ties keep index order).
    centers = random_boxes(12, 300, 200, g, 10, 80)
    boxes = centers.repeat(20, 1) + torch.randn(240, 4, generator=g) * 4
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = torch.rand(240, generator=g)
    scores[10:20] = scores[0]
    for thr in (0.5, 0.7, 0.3):
        out.append({"kind": "nms", "iou": thr, "boxes": f32(boxes), "scores": f32(scores),
                    "keep": i64(nms(boxes, scores, thr))})
    # batched: small (coordinate trick) and large (> 1000 boxes: per-class loop).
    for n in (300, 1500):
        b = random_boxes(n, 400, 300, g, 4, 100)
        s = torch.rand(n, generator=g)
        idx = torch.randint(0, 7, (n,), generator=g)
        out.append({"kind": "batched", "iou": 0.5, "boxes": f32(b), "scores": f32(s), "idxs": i64(idx),
                    "keep": i64(batched_nms(b, s, idx, 0.5))})
    # topk (distinct values).
    v = torch.randn(5000, generator=g)
    out.append({"kind": "topk", "values": f32(v), "k": 300, "keep": i64(v.topk(300)[1])})
    return out


def roialign_cases(g):
    out = []
    feat = torch.randn(1, 3, 13, 17, generator=g)
    boxes = torch.cat([
        random_boxes(20, 17 / 0.25, 13 / 0.25, g, 0.5, 40),
        torch.tensor([[-10.0, -8.0, 20.0, 12.0], [60.0, 40.0, 90.0, 70.0], [0.0, 0.0, 0.1, 0.1],
                      [67.9, 51.9, 68.0, 52.0], [-6.0, -6.0, -2.0, -1.0], [3.3, 4.4, 3.3, 4.4]]),
    ])
    for scale, size in [(0.25, 7), (0.5, 14)]:
        rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
        pooled = roi_align(feat, rois, (size, size), spatial_scale=scale, sampling_ratio=2, aligned=False)
        out.append({"kind": "single", "feature": f32(feat[0]), "boxes": f32(boxes), "scale": scale,
                    "size": size, "pooled": f32(pooled)})
    # Multi-scale on an image of 100x140 (padded 128x160): levels 1/4 .. 1/32.
    img_h, img_w = 100, 140
    feats = {str(i): torch.randn(1, 2, 128 // 2 ** (i + 2), 160 // 2 ** (i + 2), generator=g) for i in range(4)}
    mboxes = torch.cat([random_boxes(30, img_w, img_h, g, 2, 130),
                        torch.tensor([[0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 111.9, 112.0], [5, 5, 61, 61.0]])])
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    pooled = pooler(feats, [mboxes], [(img_h, img_w)])
    mapper = LevelMapper(2, 5)
    out.append({"kind": "multi", "features": [f32(feats[str(i)][0]) for i in range(4)], "image": [img_h, img_w],
                "boxes": f32(mboxes), "levels": i64(mapper([mboxes])), "size": 7, "pooled": f32(pooled)})
    return out


def paste_cases(g):
    out = []
    im_h, im_w = 40, 52
    masks = torch.sigmoid(torch.randn(9, 1, 28, 28, generator=g) * 3)
    boxes = torch.tensor([[5.2, 6.7, 30.1, 33.9], [-4.0, -3.5, 20.0, 12.0], [40.0, 30.0, 60.0, 45.0],
                          [10.0, 10.0, 10.5, 10.4], [0.0, 0.0, 52.0, 40.0], [13.3, 2.2, 41.7, 39.9],
                          [20.0, 15.0, 48.0, 43.0],
                          # resized mask h + w > 128: torch's generic (not the small-output) bilinear kernel
                          [-20.0, -25.0, 90.0, 80.0], [3.5, 2.5, 70.5, 66.5]])
    pasted = paste_masks_in_image(masks, boxes, (im_h, im_w), padding=1)
    out.append({"masks": f32(masks[:, 0]), "boxes": f32(boxes), "image": [im_h, im_w], "pasted": f32(pasted[:, 0])})
    return out


def main():
    out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("Tests/Fixtures/ops/ops.json")
    g = torch.Generator().manual_seed(20261125)
    doc = {
        "generator": f"scripts/py/fixtures_ops.py, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "anchors": anchors_cases(),
        "coder": coder_cases(g),
        "nms": nms_cases(g),
        "roialign": roialign_cases(g),
        "paste": paste_cases(g),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
