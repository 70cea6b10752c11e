#!/usr/bin/env python3
"""Scores fpnstream's ByteTrack against a published ByteTrack on the same detections (run by scripts/eval-tracking).

1. Generates a deterministic synthetic sequence with ground-truth tracks: pedestrian-like boxes that walk with
   slowly varying velocity, enter and leave through the borders, stand still, cross and occlude each other (the box
   with the lower bottom edge is in front; visibility = fraction of the box not covered by boxes in front).
2. Derives detections like a detector's: misses that grow with occlusion, box jitter, low scores for occluded or
   uncertain objects, scattered false positives (mostly low-score) and short-lived "ghost" false-positive tracks.
3. Runs the real Swift tracker (`fpnstream track-dets`) and supervision's ByteTrack (pinned) with the same
   parameters, on the same det.txt.
4. Scores every tracker's MOT output with TrackEval (HOTA, MOTA, IDF1) and prints the rows side by side.
"""
import argparse
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

# TrackEval and older trackers use the aliases removed in numpy 2; put them back if missing (harmless otherwise).
for _name, _type in (("float", float), ("int", int), ("bool", bool), ("object", object)):
    if _name not in np.__dict__:
        setattr(np, _name, _type)
if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]

SEQ = "SYN-01"


# ---------------------------------------------------------------------------------------------------------------------
# Ground truth


def generate_ground_truth(rng, frames, objects, width, height):
    """Returns {frame (1-based): [(id, x1, y1, x2, y2, visibility)]} and the number of distinct ids."""
    tracks = []  # dicts: id, x (centre), yb (bottom), h, aspect, vx, vy, still, alive
    next_id = 1

    def spawn(at_border):
        nonlocal next_id
        h = rng.uniform(90, 230)
        aspect = rng.uniform(0.36, 0.5)
        still = rng.random() < 0.12
        speed = 0.0 if still else rng.uniform(0.8, 4.5)
        direction = 1.0 if rng.random() < 0.5 else -1.0
        if at_border:
            x = -h * aspect * 0.4 if direction > 0 else width + h * aspect * 0.4
            if still:  # stationary people do not walk in; place them inside
                x = rng.uniform(0.1 * width, 0.9 * width)
        else:
            x = rng.uniform(0.05 * width, 0.95 * width)
        yb = rng.uniform(0.45 * height, 1.02 * height)
        t = dict(id=next_id, x=x, yb=yb, h=h, aspect=aspect, vx=direction * speed,
                 vy=rng.normal(0, 0.4) if not still else 0.0, still=still,
                 life=int(rng.integers(120, 400)) if still else 10**9)
        next_id += 1
        tracks.append(t)

    for _ in range(objects):
        spawn(at_border=False)

    gt = {}
    for f in range(1, frames + 1):
        # Entries keep the population near the target; the odd extra one makes crowds.
        alive = [t for t in tracks if t.get("gone") is None]
        if len(alive) < objects and rng.random() < 0.25:
            spawn(at_border=True)
        if rng.random() < 0.004:
            spawn(at_border=True)
        boxes = []
        for t in tracks:
            if t.get("gone") is not None:
                continue
            if not t["still"]:
                # Smoothly varying walk: small accelerations, occasional stops and turns.
                t["vx"] += rng.normal(0, 0.06)
                t["vy"] += rng.normal(0, 0.03)
                t["vx"] = float(np.clip(t["vx"], -5, 5))
                t["vy"] = float(np.clip(t["vy"], -1.2, 1.2))
                t["x"] += t["vx"]
                t["yb"] += t["vy"]
                # Perspective: nearer (lower) people look taller.
                t["h"] *= 1 + t["vy"] / max(t["yb"], 1) * 0.8
            t["life"] -= 1
            w = t["h"] * t["aspect"]
            x1, y1 = t["x"] - w / 2, t["yb"] - t["h"]
            x2, y2 = x1 + w, t["yb"]
            if x2 < 0 or x1 > width or y1 > height or y2 < 0 or t["life"] <= 0:
                t["gone"] = f
                continue
            boxes.append((t["id"], x1, y1, x2, y2))
        gt[f] = with_visibility(boxes, width, height)
    return gt, next_id - 1


def with_visibility(boxes, width, height):
    """Visibility of each box: fraction of an 8×16 grid of its points inside the image and not covered by a box
    whose bottom edge is lower (nearer to the camera)."""
    out = []
    gx, gy = np.meshgrid((np.arange(8) + 0.5) / 8, (np.arange(16) + 0.5) / 16)
    for (i, x1, y1, x2, y2) in boxes:
        px = x1 + gx.ravel() * (x2 - x1)
        py = y1 + gy.ravel() * (y2 - y1)
        visible = (px >= 0) & (px < width) & (py >= 0) & (py < height)
        for (j, a1, b1, a2, b2) in boxes:
            if j == i or b2 <= y2:
                continue
            visible &= ~((px >= a1) & (px < a2) & (py >= b1) & (py < b2))
        out.append((i, x1, y1, x2, y2, float(visible.mean())))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Detections


def derive_detections(rng, gt, frames, width, height):
    """Returns {frame: [(x1, y1, x2, y2, score)]} and counts per kind."""
    dets = {f: [] for f in range(1, frames + 1)}
    counts = dict(true=0, low=0, fp=0, ghost=0, missed=0)
    ghosts = []  # [x1, y1, x2, y2, score, frames_left]

    def clip_box(x1, y1, x2, y2):
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        return (float(x1), float(y1), float(x2), float(y2)) if x2 - x1 >= 4 and y2 - y1 >= 4 else None

    for f in range(1, frames + 1):
        for (_, x1, y1, x2, y2, vis) in gt[f]:
            p = 0.95 if vis >= 0.7 else (0.8 if vis >= 0.4 else (0.35 if vis >= 0.15 else 0.0))
            if rng.random() >= p:
                counts["missed"] += 1
                continue
            h = y2 - y1
            s = 0.03 * h
            box = clip_box(x1 + rng.normal(0, s), y1 + rng.normal(0, s), x2 + rng.normal(0, s), y2 + rng.normal(0, s))
            if box is None:
                continue
            # Occluded or uncertain objects get low scores: ByteTrack's second association uses them.
            if vis < 0.6 or rng.random() < 0.12:
                score = rng.uniform(0.15, 0.5)
                counts["low"] += 1
            else:
                score = rng.uniform(0.5, 0.97)
            counts["true"] += 1
            dets[f].append(box + (float(score),))
        for _ in range(rng.poisson(1.5)):
            w = rng.uniform(25, 90)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - 2 * w)
            score = rng.uniform(0.1, 0.45) if rng.random() < 0.7 else rng.uniform(0.45, 0.75)
            dets[f].append((float(x), float(y), float(x + w), float(y + 2.2 * w), float(score)))
            counts["fp"] += 1
        if rng.random() < 0.02:
            w = rng.uniform(30, 80)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - 2 * w)
            ghosts.append([x, y, x + w, y + 2.3 * w, rng.uniform(0.55, 0.85), int(rng.integers(3, 15))])
        for g in ghosts:
            if g[5] > 0:
                j = rng.normal(0, 2, 4)
                dets[f].append((g[0] + j[0], g[1] + j[1], g[2] + j[2], g[3] + j[3], float(g[4])))
                counts["ghost"] += 1
                g[5] -= 1
        ghosts = [g for g in ghosts if g[5] > 0]
        rng.shuffle(dets[f])
    return dets, counts


# ---------------------------------------------------------------------------------------------------------------------
# Trackers


def mot_line(frame, tid, x1, y1, x2, y2, score):
    return f"{frame},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n"


def run_supervision(dets, frames, fps, args, path, detection_boxes):
    """supervision's ByteTrack. Kalman boxes via update_with_tensors (what ByteTrack itself outputs), or the
    detection boxes via its public update_with_detections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import supervision as sv
        tracker = sv.ByteTrack(track_activation_threshold=args.track_thresh, lost_track_buffer=args.track_buffer,
                               minimum_matching_threshold=args.match_thresh, frame_rate=fps,
                               minimum_consecutive_frames=1)
    start = time.perf_counter()
    with open(path, "w") as out:
        for f in range(1, frames + 1):
            arr = np.asarray(dets[f], dtype=np.float32).reshape(-1, 5)
            if detection_boxes:
                d = sv.Detections(xyxy=arr[:, :4], confidence=arr[:, 4], class_id=np.zeros(len(arr), dtype=int))
                d = tracker.update_with_detections(d)
                for (x1, y1, x2, y2), s, tid in zip(d.xyxy, d.confidence, d.tracker_id):
                    out.write(mot_line(f, int(tid), x1, y1, x2, y2, float(s)))
            else:
                for t in tracker.update_with_tensors(arr):
                    x1, y1, x2, y2 = t.tlbr
                    out.write(mot_line(f, int(t.external_track_id), x1, y1, x2, y2, float(t.score)))
    return (time.perf_counter() - start) / frames * 1e3


def run_fpnstream(binary, det_path, frames, fps, args, path, detection_boxes):
    cmd = [binary, "track-dets", "--dets", det_path, "--out", path, "--frames", str(frames), "--fps", str(fps),
           "--track-thresh", str(args.track_thresh), "--track-low-thresh", "0.1",
           "--match-thresh", str(args.match_thresh), "--track-buffer", str(args.track_buffer),
           "--min-box-area", "0", "--duplicate-thresh", str(args.duplicate_thresh)]
    if detection_boxes:
        cmd.append("--output-detection-box")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) / frames * 1e3


# ---------------------------------------------------------------------------------------------------------------------
# Scoring


def score(workdir, trackers, frames):
    import trackeval

    eval_config = trackeval.Evaluator.get_default_eval_config()
    eval_config.update(USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                       OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False, PLOT_CURVES=False, LOG_ON_ERROR=None,
                       DISPLAY_LESS_PROGRESS=True)
    ds_config = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
    ds_config.update(GT_FOLDER=os.path.join(workdir, "gt"), TRACKERS_FOLDER=os.path.join(workdir, "trackers"),
                     TRACKERS_TO_EVAL=trackers, BENCHMARK="MOT17", SPLIT_TO_EVAL="train", SKIP_SPLIT_FOL=True,
                     SEQ_INFO={SEQ: frames}, PRINT_CONFIG=False, OUTPUT_FOLDER=os.path.join(workdir, "eval"))
    evaluator = trackeval.Evaluator(eval_config)
    dataset = trackeval.datasets.MotChallenge2DBox(ds_config)
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        results, _ = evaluator.evaluate([dataset], metrics)
    rows = {}
    for name in trackers:
        r = results["MotChallenge2DBox"][name]["COMBINED_SEQ"]["pedestrian"]
        rows[name] = dict(HOTA=100 * float(np.mean(r["HOTA"]["HOTA"])), DetA=100 * float(np.mean(r["HOTA"]["DetA"])),
                          AssA=100 * float(np.mean(r["HOTA"]["AssA"])), MOTA=100 * float(r["CLEAR"]["MOTA"]),
                          IDF1=100 * float(r["Identity"]["IDF1"]), IDSW=int(r["CLEAR"]["IDSW"]),
                          Frag=int(r["CLEAR"]["Frag"]))
    return rows


# ---------------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fpnstream", required=True, help="path to the fpnstream binary")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--objects", type=int, default=15, help="target number of people in view")
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--track-thresh", type=float, default=0.5, help="ByteTrack track_thresh (both trackers)")
    ap.add_argument("--match-thresh", type=float, default=0.8, help="ByteTrack match_thresh (both trackers)")
    ap.add_argument("--track-buffer", type=int, default=30, help="ByteTrack track_buffer (both trackers)")
    ap.add_argument("--duplicate-thresh", type=float, default=0.05,
                    help="fpnstream's duplicate_thresh; 0.05 is supervision's constant (ByteTrack's is 0.15)")
    ap.add_argument("--workdir", help="keep inputs and outputs here (default: a temporary directory)")
    args = ap.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="fpnstream-eval-tracking-")
    rng = np.random.default_rng(args.seed)
    gt, n_ids = generate_ground_truth(rng, args.frames, args.objects, args.width, args.height)
    dets, counts = derive_detections(rng, gt, args.frames, args.width, args.height)

    seq_dir = os.path.join(workdir, "gt", SEQ)
    os.makedirs(os.path.join(seq_dir, "gt"), exist_ok=True)
    with open(os.path.join(seq_dir, "gt", "gt.txt"), "w") as fh:
        for f in range(1, args.frames + 1):
            for (i, x1, y1, x2, y2, vis) in gt[f]:
                fh.write(f"{f},{i},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,1,{vis:.3f}\n")
    ini = configparser.ConfigParser()
    ini.optionxform = str
    ini["Sequence"] = dict(name=SEQ, frameRate=str(args.fps), seqLength=str(args.frames), imWidth=str(args.width),
                           imHeight=str(args.height))
    with open(os.path.join(seq_dir, "seqinfo.ini"), "w") as fh:
        ini.write(fh)
    det_path = os.path.join(seq_dir, "det.txt")
    with open(det_path, "w") as fh:
        for f in range(1, args.frames + 1):
            for (x1, y1, x2, y2, s) in dets[f]:
                fh.write(f"{f},-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n")

    gt_boxes = sum(len(v) for v in gt.values())
    occluded = sum(1 for v in gt.values() for b in v if b[5] < 0.5)
    n_dets = sum(len(v) for v in dets.values())
    print(f"sequence: seed {args.seed}, {args.frames} frames at {args.fps:g} fps, {args.width}x{args.height}, "
          f"{n_ids} ground-truth tracks, {gt_boxes} boxes ({occluded} under 50 % visible)")
    print(f"detections: {n_dets} ({counts['true']} true of which {counts['low']} low-score, {counts['missed']} missed, "
          f"{counts['fp']} scattered false positives, {counts['ghost']} in ghost tracks)")
    print(f"parameters (both): track_thresh {args.track_thresh}, track_low_thresh 0.1, new_track_thresh "
          f"{args.track_thresh + 0.1:g}, match_thresh {args.match_thresh}, track_buffer {args.track_buffer}, "
          f"fuse_score on, duplicate_thresh {args.duplicate_thresh}")

    variants = [
        ("fpnstream", "fpnstream ByteTrack (Kalman boxes)", lambda p: run_fpnstream(
            args.fpnstream, det_path, args.frames, args.fps, args, p, False)),
        ("supervision", "supervision 0.30.9 ByteTrack (Kalman boxes)", lambda p: run_supervision(
            dets, args.frames, args.fps, args, p, False)),
        ("fpnstream-detbox", "fpnstream --output-detection-box", lambda p: run_fpnstream(
            args.fpnstream, det_path, args.frames, args.fps, args, p, True)),
        ("supervision-detbox", "supervision update_with_detections", lambda p: run_supervision(
            dets, args.frames, args.fps, args, p, True)),
    ]
    ms = {}
    for name, _, run in variants:
        d = os.path.join(workdir, "trackers", name, "data")
        os.makedirs(d, exist_ok=True)
        ms[name] = run(os.path.join(d, SEQ + ".txt"))
    rows = score(workdir, [v[0] for v in variants], args.frames)

    print()
    print(f"{'tracker':46s} {'HOTA':>6s} {'DetA':>6s} {'AssA':>6s} {'MOTA':>6s} {'IDF1':>6s} {'IDSW':>5s} {'Frag':>5s}"
          f"  {'ms/frame':>8s}")
    for name, label, _ in variants:
        r = rows[name]
        print(f"{label:46s} {r['HOTA']:6.2f} {r['DetA']:6.2f} {r['AssA']:6.2f} {r['MOTA']:6.2f} {r['IDF1']:6.2f} "
              f"{r['IDSW']:5d} {r['Frag']:5d}  {ms[name]:8.3f}")
    print("(ms/frame: fpnstream's includes process start and file I/O; supervision's is the Python loop alone)")
    ours, ref = rows["fpnstream"], rows["supervision"]
    # `or 0.0` turns a rounded -0.0 into 0.0 so equal scores print as +0.00.
    dh = round(ours["HOTA"] - ref["HOTA"], 6) or 0.0
    di = round(ours["IDF1"] - ref["IDF1"], 6) or 0.0
    dm = round(ours["MOTA"] - ref["MOTA"], 6) or 0.0
    ok = dh >= -1 and di >= -1
    print(f"\nfpnstream − reference: HOTA {dh:+.2f}, IDF1 {di:+.2f}, MOTA {dm:+.2f} → "
          f"{'PASS' if ok else 'FAIL'} (each within 1 point of, or above, the reference)")
    if args.workdir:
        print(f"files: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
