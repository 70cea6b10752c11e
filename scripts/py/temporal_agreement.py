"""Agreement of two fpnstream JSONL runs of the same clip (a temporal mode against `--temporal off`), by the
definition of `fpnstream bench temporal` (docs/design/temporal.md, "Fidelity"): per frame, detections scored >= --score
on each side; a pair matches when the class is the same and box IoU >= 0.9, greedily by descending IoU; F1 =
2*matched / (reference + candidate) pooled over frames (both empty = 1); mask IoU averaged over matched pairs with
masks (pycocotools). Prints one JSON object: frames, f1, mask_iou, matched, reference, candidate, recomputed_mean,
guard (counts of temporal_guard actions). Exits 1 naming the file when a file is unreadable or the frames differ.

  python temporal_agreement.py OFF.jsonl DELTA.jsonl [--score 0.5]
  python temporal_agreement.py --self-test
"""
import argparse
import json
import sys


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mask_iou(m, n):
    from pycocotools import mask as mu
    a = {"size": m["size"], "counts": m["counts"].encode()}
    b = {"size": n["size"], "counts": n["counts"].encode()}
    if a["size"] != b["size"]:
        return 0.0
    return float(mu.iou([a], [b], [0])[0][0])


def frame_agreement(ref, cand, score, iou=0.9):
    a = [d for d in ref if d["score"] is not None and d["score"] >= score]
    b = [d for d in cand if d["score"] is not None and d["score"] >= score]
    pairs = []
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            if x["class_id"] == y["class_id"]:
                v = box_iou(x["box"], y["box"])
                if v >= iou:
                    pairs.append((-v, i, j))
    pairs.sort()
    used_a, used_b, matched, masks = set(), set(), 0, []
    for _, i, j in pairs:
        if i in used_a or j in used_b:
            continue
        used_a.add(i); used_b.add(j); matched += 1
        if "mask" in a[i] and "mask" in b[j]:
            masks.append(mask_iou(a[i]["mask"], b[j]["mask"]))
    return matched, len(a), len(b), masks


def frames(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r.get("type") == "frame":
                    out[r["frame"]] = r
    except (OSError, ValueError) as e:
        sys.exit(f"temporal_agreement: {path}: {e}")
    return out


def agreement(off, delta, score):
    if sorted(off) != sorted(delta):
        sys.exit("temporal_agreement: the two runs have different frames")
    matched = ref = cand = 0
    masks, recomputed, guard = [], [], {}
    for k in sorted(off):
        m, r, c, ms = frame_agreement(off[k]["detections"], delta[k]["detections"], score)
        matched += m; ref += r; cand += c; masks += ms
        if "recomputed" in delta[k]:
            recomputed.append(delta[k]["recomputed"])
        g = delta[k].get("temporal_guard")
        if g:
            guard[g["action"]] = guard.get(g["action"], 0) + 1
    return {"frames": len(off), "f1": 1.0 if ref + cand == 0 else 2 * matched / (ref + cand),
            "mask_iou": sum(masks) / len(masks) if masks else None, "matched": matched, "reference": ref,
            "candidate": cand, "recomputed_mean": sum(recomputed) / len(recomputed) if recomputed else None,
            "guard": guard}


def self_test():
    d = lambda x, s=0.9, c=1: {"box": [x, 0, x + 10, 10], "score": s, "class_id": c}
    assert frame_agreement([d(0), d(50)], [d(0), d(52)], 0.5)[:3] == (1, 2, 2)   # IoU 8/12 < 0.9
    assert frame_agreement([d(0)], [d(0, c=2)], 0.5)[:3] == (0, 1, 1)            # other class
    assert frame_agreement([d(0, s=0.4)], [], 0.5)[:3] == (0, 0, 0)              # below the score
    r = agreement({0: {"detections": [d(0)]}, 1: {"detections": []}},
                  {0: {"detections": [d(0)], "recomputed": 1, "temporal_guard": {"action": "hold"}},
                   1: {"detections": [d(30)], "recomputed": 0}}, 0.5)
    assert abs(r["f1"] - 2 / 3) < 1e-12 and r["recomputed_mean"] == 0.5 and r["guard"] == {"hold": 1}, r
    print("temporal_agreement: self-test passed")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("off", nargs="?")
    p.add_argument("delta", nargs="?")
    p.add_argument("--score", type=float, default=0.5)
    p.add_argument("--self-test", action="store_true")
    a = p.parse_args()
    if a.self_test:
        self_test()
    elif not a.off or not a.delta:
        p.error("give OFF.jsonl and DELTA.jsonl")
    else:
        print(json.dumps(agreement(frames(a.off), frames(a.delta), a.score)))
