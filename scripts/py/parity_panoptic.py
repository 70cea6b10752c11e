"""Compares fpnstream's JSONL with the torch model's (scripts/py/predict_torch.py) on the same clip, frame by frame
(driven by `scripts/parity panoptic MODEL`).

Detections: matched one to one, greedy by torch score: same label, box IoU >= 0.99, |score difference| <= 1e-3;
>= 99 % of the detections of both sides must match, and an unmatched one must sit on a knife edge (score within 1e-3
of the score threshold, or ranked at the per-image cutoff, or IoU with a same-label higher-scored box within 0.01 of
the NMS threshold). Matched masks: IoU >= 0.98 (or both tiny: <= 4 differing pixels).
Panoptic: each side's segment masks decoded into a per-pixel category map (0 = void); >= 99.5 % of the pixels of
the clip must get the same category on both sides, and the stuff segment lists (category, area within 1 % or
20 px) must agree on >= 99 % of the frames; frames with different numbers of thing segments are listed.

  parity_panoptic.py TORCH.jsonl FPNSTREAM.jsonl --score-thresh T --nms-thresh N --max-dets K
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from box_iou import iou  # noqa: E402
from eval_accuracy import decode  # noqa: E402


def frames(path):
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "frame":
                out[r["frame"]] = r
    return out


def match(ref, got):
    used, pairs = set(), []
    for i, d in sorted(enumerate(ref), key=lambda x: -x[1]["score"]):
        best, bi = None, -1.0
        for j, g in enumerate(got):
            if j in used or g["class_id"] != d["class_id"] or abs(g["score"] - d["score"]) > 1e-3:
                continue
            v = iou(d["box"], g["box"])
            if v >= 0.99 and v > bi:
                best, bi = j, v
        if best is not None:
            used.add(best)
            pairs.append((i, best))
    return pairs


def knife_edge(d, side, rank, a):
    if abs(d["score"] - a.score_thresh) <= 1e-3 or rank >= a.max_dets - 2:
        return True
    for o in side:
        if o is not d and o["class_id"] == d["class_id"] and o["score"] >= d["score"] - 1e-3:
            if abs(iou(o["box"], d["box"]) - a.nms_thresh) <= 0.01:
                return True
    return False


def mask_iou(a, b):
    x, y = decode(a), decode(b)
    inter, union = int((x & y).sum()), int((x | y).sum())
    return (inter / union if union else 1.0), int((x ^ y).sum())


def id_map(segs, h, w):
    ids = np.zeros((h, w), np.int64)
    for s in segs:
        ids[decode(s["mask"])] = s["id"]
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torch")
    ap.add_argument("fpnstream")
    ap.add_argument("--score-thresh", type=float, default=0.05)
    ap.add_argument("--nms-thresh", type=float, default=0.5)
    ap.add_argument("--max-dets", type=int, default=100)
    a = ap.parse_args()
    ref, got = frames(a.torch), frames(a.fpnstream)
    missing = sorted(set(ref) - set(got))
    if missing:
        print(f"parity panoptic: fpnstream lacks frames {missing[:10]}")
        return 1
    n_ref = n_got = n_match = unexplained = bad_masks = 0
    score_err = box_err = 0.0
    agree = total = 0
    stuff_ok = 0
    for k in sorted(ref):
        r, g = ref[k], got[k]
        rd, gd = r["detections"], g["detections"]
        pairs = match(rd, gd)
        n_ref += len(rd); n_got += len(gd); n_match += len(pairs)
        mi, mj = {i for i, _ in pairs}, {j for _, j in pairs}
        rank_r = {i: n for n, i in enumerate(sorted(range(len(rd)), key=lambda i: -rd[i]["score"]))}
        rank_g = {j: n for n, j in enumerate(sorted(range(len(gd)), key=lambda j: -gd[j]["score"]))}
        for i in set(range(len(rd))) - mi:
            if not knife_edge(rd[i], rd, rank_r[i], a):
                unexplained += 1
                print(f"  frame {k}: torch detection {rd[i]['class']} {rd[i]['score']} {rd[i]['box']} unmatched")
        for j in set(range(len(gd))) - mj:
            if not knife_edge(gd[j], gd, rank_g[j], a):
                unexplained += 1
                print(f"  frame {k}: fpnstream detection {gd[j]['class']} {gd[j]['score']} {gd[j]['box']} unmatched")
        for i, j in pairs:
            score_err = max(score_err, abs(rd[i]["score"] - gd[j]["score"]))
            box_err = max(box_err, max(abs(x - y) for x, y in zip(rd[i]["box"], gd[j]["box"])))
            if "mask" in rd[i] and "mask" in gd[j]:
                v, diff = mask_iou(rd[i]["mask"], gd[j]["mask"])
                if v < 0.98 and diff > 4:
                    bad_masks += 1
                    print(f"  frame {k}: mask IoU {v:.4f} ({diff} px) for {rd[i]['class']} {rd[i]['score']}")
        h, w = r["height"], r["width"]
        rp, gp = r.get("panoptic") or [], g.get("panoptic") or []
        ri, gi = id_map(rp, h, w), id_map(gp, h, w)
        rcat = {s["id"]: s["category_id"] for s in rp}; gcat = {s["id"]: s["category_id"] for s in gp}
        rc = np.vectorize(lambda v: rcat.get(v, 0))(ri) if rp else np.zeros((h, w), np.int64)
        gc = np.vectorize(lambda v: gcat.get(v, 0))(gi) if gp else np.zeros((h, w), np.int64)
        agree += int((rc == gc).sum()); total += h * w
        rs = sorted((s["category_id"], s["area"]) for s in rp if not s["is_thing"])
        gs = sorted((s["category_id"], s["area"]) for s in gp if not s["is_thing"])
        if len(rs) == len(gs) and all(x[0] == y[0] and abs(x[1] - y[1]) <= max(20, x[1] // 100) for x, y in zip(rs, gs)):
            stuff_ok += 1
        rt, gt_ = sum(s["is_thing"] for s in rp), sum(s["is_thing"] for s in gp)
        if rt != gt_:
            print(f"  frame {k}: {rt} thing segments in torch, {gt_} in fpnstream")
    nf = len(ref)
    frac = n_match / max(1, max(n_ref, n_got))
    pix = agree / max(1, total)
    print(f"parity panoptic: {nf} frames; detections torch {n_ref}, fpnstream {n_got}, matched {n_match} "
          f"({100 * frac:.2f} %), unexplained {unexplained}; max |score diff| {score_err:.2e}, max box coord diff "
          f"{box_err:.3f} px; masks below IoU 0.98: {bad_masks}")
    print(f"parity panoptic: panoptic category map agrees on {100 * pix:.3f} % of pixels; stuff segments agree on "
          f"{stuff_ok}/{nf} frames")
    ok = frac >= 0.99 and unexplained == 0 and bad_masks == 0 and pix >= 0.995 and stuff_ok >= 0.99 * nf
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
