"""Why a matched Mask R-CNN pair's masks differ (used by `parity_detector.py compare`).

A matched pair has the same label and boxes with IoU >= 0.99, but the two boxes are not bit-identical. Two
consequences of that can change a mask a lot without any defect:

- paste shift: `paste_masks_in_image` truncates the expanded box to integers; a coordinate on the other side of an
  integer moves or resizes the pasted mask by one pixel (small masks lose a large share of their IoU);
- FPN level boundary: the level mapper's k = floor(4 + log2(sqrt(wh) / 224) + 1e-6) sits on an integer, so the two
  boxes are pooled from different pyramid levels and the mask head sees different features.

`diagnose` re-runs torch's mask branch for the pair: at torch's own box (must reproduce the reference), at torch's box
pasted with fpnstream's box (paste shift), and at fpnstream's box on the level the mapper gives it and on the
neighbouring level when k is within `LEVEL_EDGE` of an integer (level boundary). A pair is explained when one of
these reproduces fpnstream's mask (IoU >= the parity threshold) while the reference is reproduced too.
"""
import math

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align

LEVEL_EDGE = 1e-4


def level_k(box):
    """The mapper's unfloored k = 4 + log2(sqrt(area) / 224) + 1e-6 (float64, for display and edge tests)."""
    area = float(box[2] - box[0]) * float(box[3] - box[1])
    return 4 + math.log2(math.sqrt(max(area, 1e-12)) / 224) + 1e-6


def expanded_ints(box, m=28, padding=1):
    """paste_masks_in_image's integer box (expand about the centre by (m + 2 padding) / m, truncate)."""
    b = torch.tensor([box], dtype=torch.float32)
    scale = (m + 2 * padding) / m
    w, h = (b[:, 2] - b[:, 0]) * 0.5 * scale, (b[:, 3] - b[:, 1]) * 0.5 * scale
    xc, yc = (b[:, 2] + b[:, 0]) * 0.5, (b[:, 3] + b[:, 1]) * 0.5
    e = torch.stack([xc - w, yc - h, xc + w, yc + h], 1).to(torch.int64)
    return [int(v) for v in e[0]]


class FrameMasks:
    """Torch's mask branch on one frame, callable at any box and level."""

    def __init__(self, model, image, mask_thresh):
        self.model, self.thresh = model, mask_thresh
        self.h, self.w = image.shape[0], image.shape[1]
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
        rh = model.roi_heads
        captured = {}

        def keep_boxes(module, args, out):  # returns None: the pooler's output stays as it is
            captured["boxes"] = args[1][0]

        hook = rh.mask_roi_pool.register_forward_hook(keep_boxes)
        with torch.no_grad():
            images, _ = model.transform([x])
            self.features = model.backbone(images.tensors)
            model([x])  # fills the pooler's scales/mapper and captures the detections' boxes (resized image)
        hook.remove()
        self.image_sizes = images.image_sizes
        self.boxes = captured.get("boxes")
        rs = self.image_sizes[0]
        self.ratio = (torch.tensor(self.w, dtype=torch.float32) / torch.tensor(rs[1], dtype=torch.float32),
                      torch.tensor(self.h, dtype=torch.float32) / torch.tensor(rs[0], dtype=torch.float32))
        pool = rh.mask_roi_pool
        self.levels = [self.features[n] for n in pool.featmap_names]
        self.scales, self.mapper = pool.scales, pool.map_levels

    def to_resized(self, box):
        rw, rh = self.ratio
        b = torch.tensor(box, dtype=torch.float32)
        return torch.stack([b[0] / rw, b[1] / rh, b[2] / rw, b[3] / rh])

    def level(self, box_resized):
        return int(self.mapper([box_resized[None]])[0])

    def probs(self, box_resized, level, label):
        """28x28 probabilities of `label` for a box (resized-image pixels) pooled from `level`."""
        rh = self.model.roi_heads
        with torch.no_grad():
            rois = torch.cat([torch.zeros(1, 1), box_resized[None]], 1)
            x = roi_align(self.levels[level], rois, output_size=rh.mask_roi_pool.output_size,
                          spatial_scale=self.scales[level], sampling_ratio=rh.mask_roi_pool.sampling_ratio)
            logits = rh.mask_predictor(rh.mask_head(x))
        return logits[0, label].sigmoid()

    def paste(self, probs, box):
        """Binary source-size mask of 28x28 `probs` pasted at `box` (source pixels)."""
        with torch.no_grad():
            m = paste_masks_in_image(probs[None, None], torch.tensor([box], dtype=torch.float32), (self.h, self.w))
        return (m[0, 0] > self.thresh).numpy()


def iou(a, b):
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


def diagnose(fm, index, ref, got, ref_mask, got_mask, min_iou):
    """(explained, text) for the matched pair (torch detection `index` = `ref`, fpnstream's `got`)."""
    label = ref["label"]
    t_box = fm.boxes[index]
    g_box = fm.to_resized(got["box"])
    t_lvl, g_lvl = fm.level(t_box), fm.level(g_box)
    t_probs = fm.probs(t_box, t_lvl, label)
    own = iou(fm.paste(t_probs, ref["box"]), ref_mask)
    lines = [f"torch box k={level_k(t_box.tolist()):.7f} -> P{t_lvl + 2}, paste ints {expanded_ints(ref['box'])}; "
             f"fpnstream box k={level_k(g_box.tolist()):.7f} -> P{g_lvl + 2}, paste ints {expanded_ints(got['box'])}; "
             f"torch mask head re-run at torch's box reproduces the reference: IoU {own:.4f}"]
    if own < 0.999:
        return False, "; ".join(lines) + " (not reproduced: no diagnosis)"
    cause = None
    shift = iou(fm.paste(t_probs, got["box"]), got_mask)
    lines.append(f"torch's mask pasted at fpnstream's box vs fpnstream: IoU {shift:.4f}")
    if shift >= min_iou and expanded_ints(ref["box"]) != expanded_ints(got["box"]):
        cause = "paste shift (the boxes truncate to different integer paste bounds)"
    candidates = [g_lvl]
    k = level_k(g_box.tolist())
    if abs(k - round(k)) <= LEVEL_EDGE:
        candidates.append(g_lvl - 1 if k - math.floor(k) < 0.5 else g_lvl + 1)
    for lvl in candidates:
        if not 0 <= lvl < len(fm.levels):
            continue
        at = iou(fm.paste(fm.probs(g_box, lvl, label), got["box"]), got_mask)
        lines.append(f"torch mask head at fpnstream's box on P{lvl + 2} vs fpnstream: IoU {at:.4f}")
        if at >= min_iou and cause is None and lvl != t_lvl:
            cause = (f"FPN level boundary (torch pools P{t_lvl + 2}, fpnstream's box maps to P{lvl + 2}; "
                     f"k within {abs(k - round(k)):.1e} of an integer)")
    if cause is None:
        return False, "; ".join(lines)
    return True, f"explained: {cause}: " + "; ".join(lines)
