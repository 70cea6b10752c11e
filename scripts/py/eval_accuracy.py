"""Scores per-frame JSONL predictions (fpnstream's, or predict_torch.py's in the same format) against the synthetic
ground truth written by synth.py: COCO bbox/segm AP with pycocotools, PQ/SQ/RQ (COCO panoptic definition, own code:
pycocotools has none; checked by --self-test) and, for MOT txt files, HOTA/MOTA/IDF1 with TrackEval.

  eval_accuracy.py --gt DIR --pred NAME=DIR [--pred NAME=DIR ...] [--mot NAME=DIR] [--baseline NAME] [--json OUT]
  eval_accuracy.py --self-test
"""
import argparse
import contextlib
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def decode(seg):
    from pycocotools import mask as mu
    h, w = seg["size"]
    rle = mu.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else {"size": [h, w],
                                                                             "counts": seg["counts"].encode()}
    return mu.decode(rle).astype(bool)


def to_coco_rle(seg):
    from pycocotools import mask as mu
    h, w = seg["size"]
    if isinstance(seg["counts"], list):
        r = mu.frPyObjects(seg, h, w)
    else:
        r = {"size": [h, w], "counts": seg["counts"].encode()}
    r = dict(r); r["counts"] = r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]
    return r


def read_predictions(pred_dir, images):
    """JSONL per clip (DIR/clip_XXX.jsonl) -> {image_id: frame record}. Frame indices are 0-based."""
    by_clip = {}
    for im in images:
        by_clip.setdefault(im["video"], {})[im["frame"] - 1] = im["id"]
    out = {}
    for clip, frames in by_clip.items():
        path = os.path.join(pred_dir, clip + ".jsonl")
        if not os.path.exists(path):
            sys.exit(f"eval-accuracy: missing predictions {path}")
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r.get("type") == "frame" and r["frame"] in frames:
                    out[frames[r["frame"]]] = r
    return out


def coco_eval(gt_path, preds):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
    res_b, res_s = [], []
    for image_id, r in preds.items():
        for d in r["detections"]:
            x1, y1, x2, y2 = d["box"]
            res_b.append({"image_id": image_id, "category_id": d["class_id"], "bbox": [x1, y1, x2 - x1, y2 - y1],
                          "score": d["score"]})
            if "mask" in d:
                res_s.append({"image_id": image_id, "category_id": d["class_id"],
                              "segmentation": to_coco_rle(d["mask"]), "score": d["score"]})
    names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
    out = {}
    for kind, res in (("bbox", res_b), ("segm", res_s)):
        if not res:
            out[kind] = {n: 0.0 for n in names}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(res)
            e = COCOeval(gt, dt, kind)
            e.params.imgIds = sorted(preds.keys())
            e.evaluate(); e.accumulate(); e.summarize()
        out[kind] = {n: float(e.stats[i]) for i, n in enumerate(names)}
    return out


def pq_image(gt_ids, gt_segs, pred_ids, pred_segs, stats):
    """Accumulates COCO panoptic matching of one image into stats[cat] = [tp, fp, fn, iou_sum].
    gt_ids/pred_ids: int maps (0 = void); *_segs: {id: (category, iscrowd)} (pred iscrowd ignored)."""
    void = gt_ids == 0
    gt_area = {s: int((gt_ids == s).sum()) for s in gt_segs}
    pred_area = {s: int((pred_ids == s).sum()) for s in pred_segs}
    # Intersections via a joint label histogram.
    pairs, counts = np.unique(np.stack([gt_ids.ravel(), pred_ids.ravel()]), axis=1, return_counts=True)
    inter = {(int(g), int(p)): int(c) for (g, p), c in zip(pairs.T, counts)}
    matched_g, matched_p = set(), set()
    for (g, p), c in inter.items():
        if g == 0 or p == 0 or g not in gt_segs or p not in pred_segs:
            continue
        gc, crowd = gt_segs[g]
        if crowd or gc != pred_segs[p][0]:
            continue
        union = pred_area[p] + gt_area[g] - c - inter.get((0, p), 0)
        iou = c / union
        if iou > 0.5:
            st = stats.setdefault(gc, [0, 0, 0, 0.0])
            st[0] += 1; st[3] += iou
            matched_g.add(g); matched_p.add(p)
    crowd_by_cat = {}
    for g, (gc, crowd) in gt_segs.items():
        if crowd:
            crowd_by_cat.setdefault(gc, []).append(g)
        elif g not in matched_g:
            stats.setdefault(gc, [0, 0, 0, 0.0])[2] += 1
    for p, (pc, _) in pred_segs.items():
        if p in matched_p:
            continue
        ignored = inter.get((0, p), 0) + sum(inter.get((g, p), 0) for g in crowd_by_cat.get(pc, []))
        if pred_area[p] == 0 or ignored / pred_area[p] > 0.5:
            continue
        stats.setdefault(pc, [0, 0, 0, 0.0])[1] += 1


def pq_summary(stats, things):
    def agg(cats):
        pq, sq, rq, n = 0.0, 0.0, 0.0, 0
        for c in cats:
            tp, fp, fn, iou = stats.get(c, [0, 0, 0, 0.0])
            if tp + fp + fn == 0:
                continue
            n += 1
            pq += iou / (tp + 0.5 * fp + 0.5 * fn)
            sq += iou / tp if tp else 0.0
            rq += tp / (tp + 0.5 * fp + 0.5 * fn)
        return {"PQ": pq / n if n else 0.0, "SQ": sq / n if n else 0.0, "RQ": rq / n if n else 0.0, "n": n}
    cats = sorted(stats)
    return {"All": agg(cats), "Things": agg([c for c in cats if c in things]),
            "Stuff": agg([c for c in cats if c not in things])}


def panoptic_eval(gt_dir, preds):
    from PIL import Image
    with open(os.path.join(gt_dir, "panoptic.json")) as f:
        pj = json.load(f)
    things = {c["id"] for c in pj["categories"] if c["isthing"]}
    stats = {}
    for ann in pj["annotations"]:
        r = preds.get(ann["image_id"])
        if r is None:
            continue
        rgb = np.asarray(Image.open(os.path.join(gt_dir, "panoptic", ann["file_name"])), np.uint32)
        gt_ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        gt_segs = {s["id"]: (s["category_id"], s["iscrowd"]) for s in ann["segments_info"]}
        pred_ids = np.zeros(gt_ids.shape, np.int64)
        pred_segs = {}
        for s in r.get("panoptic") or []:
            pred_ids[decode(s["mask"])] = s["id"]
            pred_segs[s["id"]] = (s["category_id"], 0)
        pq_image(gt_ids.astype(np.int64), gt_segs, pred_ids, pred_segs, stats)
    return pq_summary(stats, things)


def tracking_eval(gt_dir, mot_dir, clips, frames):
    import trackeval
    import tempfile
    import shutil
    work = tempfile.mkdtemp(prefix="eval-accuracy-")
    try:
        data = os.path.join(work, "trackers", "fpnstream", "data"); os.makedirs(data)
        for c in clips:
            shutil.copy(os.path.join(mot_dir, c + ".txt"), os.path.join(data, c + ".txt"))
        ec = trackeval.Evaluator.get_default_eval_config()
        ec.update(USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                  OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False, PLOT_CURVES=False, LOG_ON_ERROR=None,
                  DISPLAY_LESS_PROGRESS=True)
        dc = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
        dc.update(GT_FOLDER=os.path.join(gt_dir, "mot"), TRACKERS_FOLDER=os.path.join(work, "trackers"),
                  TRACKERS_TO_EVAL=["fpnstream"], BENCHMARK="MOT17", SPLIT_TO_EVAL="train", SKIP_SPLIT_FOL=True,
                  SEQ_INFO={c: frames for c in clips}, PRINT_CONFIG=False, OUTPUT_FOLDER=os.path.join(work, "eval"))
        with contextlib.redirect_stdout(io.StringIO()):
            res, _ = trackeval.Evaluator(ec).evaluate([trackeval.datasets.MotChallenge2DBox(dc)],
                                                      [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(),
                                                       trackeval.metrics.Identity()])
        r = res["MotChallenge2DBox"]["fpnstream"]["COMBINED_SEQ"]["pedestrian"]
        return {"HOTA": float(np.mean(r["HOTA"]["HOTA"])), "MOTA": float(r["CLEAR"]["MOTA"]),
                "IDF1": float(r["Identity"]["IDF1"]), "IDSW": int(r["CLEAR"]["IDSW"])}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def self_test():
    """PQ on hand-made cases with known answers."""
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3] = 1            # thing cat 1, 12 px
    gt[:, 3:] = 2            # stuff cat 5, 12 px
    gt[0, 5] = 0             # one void pixel
    pred = np.zeros_like(gt)
    pred[:, :2] = 10         # 8 px inside thing 1: IoU 8/12
    pred[:, 2:] = 20         # stuff 16 px: covers 3 of thing 1, 11 of stuff, 1 void, 1 ... (4 rows x 4 cols = 16)
    stats = {}
    pq_image(gt, {1: (1, 0), 2: (5, 0)}, pred, {10: (1, 0), 20: (5, 0)}, stats)
    # thing: IoU 8/12; stuff: inter 11, union = 16 + 11 - 11 - 1(void) = 15 -> 11/15.
    assert stats[1] == [1, 0, 0, 8 / 12] and abs(stats[5][3] - 11 / 15) < 1e-12 and stats[5][:3] == [1, 0, 0], stats
    s = pq_summary(stats, {1})
    assert abs(s["All"]["PQ"] - (8 / 12 + 11 / 15) / 2) < 1e-12 and s["All"]["RQ"] == 1.0
    # A wrong-category prediction: FP + FN; a prediction inside a crowd region of its category is ignored.
    stats = {}
    pq_image(gt, {1: (1, 0), 2: (5, 1)}, pred, {10: (2, 0), 20: (5, 0)}, stats)
    assert stats[1] == [0, 0, 1, 0.0] and stats[2] == [0, 1, 0, 0.0] and 5 not in stats, stats
    s = pq_summary(stats, {1, 2})
    assert s["All"]["PQ"] == 0.0 and s["All"]["n"] == 2
    # Low IoU (<= 0.5) is not a match: 6 of 12 px.
    stats = {}
    pred2 = np.zeros_like(gt); pred2[:2, :3] = 7
    pq_image(gt, {1: (1, 0)}, pred2, {7: (1, 0)}, stats)
    assert stats[1] == [0, 1, 1, 0.0], stats
    print("eval-accuracy self-test: PQ hand-made cases OK")


def table_rows(report):
    """(label, {name: value}) rows of the report: COCO AP metrics, PQ/SQ/RQ, tracking."""
    rows = [("frames", {n: r.get("frames") for n, r in report.items()})]
    for kind in ("bbox", "segm"):
        keys = next((list(r[kind]) for r in report.values() if kind in r), [])
        rows += [(f"{kind} {k}", {n: r[kind][k] for n, r in report.items() if kind in r}) for k in keys]
    for part in ("All", "Things", "Stuff"):
        for m in ("PQ", "SQ", "RQ"):
            rows.append((f"{part} {m}", {n: r["panoptic"][part][m] for n, r in report.items() if "panoptic" in r}))
    for m in ("HOTA", "MOTA", "IDF1", "IDSW"):
        rows.append((f"tracking {m}", {n: r["tracking"][m] for n, r in report.items() if "tracking" in r}))
    return [(label, vals) for label, vals in rows if any(v is not None for v in vals.values())]


def print_table(report, baseline=None):
    """One table: a column per prediction source, plus one per other source with its difference to `baseline`
    (default: torch, when both torch and fpnstream are present)."""
    names = list(report)
    if baseline is None and "torch" in report and "fpnstream" in report:
        baseline = "torch"
    others = [n for n in names if n != baseline] if baseline in report else []
    diffs = [(n, f"{n}-{baseline}") for n in others]
    width = {n: max(15, len(label) + 2) for n, label in diffs}
    head = f"{'metric':16s}" + "".join(f"{n:>12s}" for n in names) + "".join(
        f"{label:>{width[n]}s}" for n, label in diffs)
    print(head)
    print("-" * len(head))
    for label, vals in table_rows(report):
        def fmt(v):
            if v is None:
                return f"{'-':>12s}"
            return f"{v:>12d}" if isinstance(v, int) else f"{v:>12.4f}"
        line = f"{label:16s}" + "".join(fmt(vals.get(n)) for n in names)
        for n in others:
            a, b = vals.get(n), vals.get(baseline)
            w = width[n]
            line += f"{a - b:>+{w}.4f}" if isinstance(a, float) and isinstance(b, float) else f"{'-':>{w}s}"
        print(line)
    if baseline == "torch" and "fpnstream" in report and "segm" in report["torch"] and "segm" in report["fpnstream"]:
        worst = max(abs(report["fpnstream"][k][m] - report["torch"][k][m])
                    for k in ("bbox", "segm") for m in ("AP", "AP50", "AP75"))
        print(f"max |fpnstream - torch| over bbox/segm AP, AP50, AP75: {worst:.4f} "
              f"({'within' if worst <= 0.005 else 'NOT within'} 0.005)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gt")
    ap.add_argument("--pred", action="append", default=[], help="NAME=DIR of per-clip JSONL")
    ap.add_argument("--mot", action="append", default=[], help="NAME=DIR of per-clip MOT txt")
    ap.add_argument("--json")
    ap.add_argument("--baseline", help="NAME of the source the others are compared with (default: torch)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        self_test(); return
    with open(os.path.join(args.gt, "instances.json")) as f:
        images = json.load(f)["images"]
    clips = sorted({im["video"] for im in images})
    frames = max(im["frame"] for im in images)
    report = {}
    for spec in args.pred:
        name, d = spec.split("=", 1)
        preds = read_predictions(d, images)
        report[name] = {"frames": len(preds), **coco_eval(os.path.join(args.gt, "instances.json"), preds),
                        "panoptic": panoptic_eval(args.gt, preds)}
    for spec in args.mot:
        name, d = spec.split("=", 1)
        report.setdefault(name, {})["tracking"] = tracking_eval(args.gt, d, clips, frames)
    if args.baseline is not None and args.baseline not in report:
        sys.exit(f"eval-accuracy: --baseline {args.baseline} is not one of the --pred/--mot names")
    print_table(report, args.baseline)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
