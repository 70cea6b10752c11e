"""YOLO end to end: `fpnstream process` against Ultralytics' own predictor on the same clip, 2 threads each.

    bench_yolo_e2e.py FPNSTREAM_BINARY WORKDIR [--frames 100] [--rounds 3] [--only yolo11-detect,yolo11-seg]
                      [--no-torch]

The clip is the first --frames frames of samples/external/vtest.avi (768x576 MPEG-4), stream-copied into WORKDIR so
that both sides decode the very same file from its start. Per model (the exports scripts/parity-yolo built into
samples/yolo/), each round times, in alternating order:
  - fpnstream: `fpnstream process CLIP --model M.onnx --jsonl OUT -q` as a whole process (FFmpeg decode, letterbox,
    inference, decoding, NMS, masks at source resolution, JSONL with RLE masks; process start and model load
    included);
  - ultralytics onnx: `YOLO(M.onnx).predict(frame, retina_masks=True)` on each frame as the ffmpeg CLI decodes
    the clip (piped, timed: the same pixels as fpnstream's FFmpeg decode; OpenCV's VideoCapture converts colours
    differently, which moves random-weight detections), i.e. letterbox, onnxruntime, NMS, masks at source
    resolution; the model is loaded and warmed up once outside the timing; boxes, scores and classes are collected
    per frame (no mask encoding, no file: a small advantage to Ultralytics);
  - ultralytics torch (unless --no-torch): the same predictor on the ultralytics torch model carrying the export's
    weights (parity_yolo.torch_twin), float32, with rect=False: the same 640x640 input as the export (Ultralytics'
    default for .pt models pads only to a multiple of 32, 640x480 here, a quarter less work).
Each engine runs one untimed warm-up. Prints per engine the median and min over the rounds (s and ms/frame), the
ratio fpnstream/peer of the medians and of the minima (> 1 = fpnstream slower; the minima are the figure a
paused or briefly loaded round does not move), and how many detections agree with fpnstream's (same
class, box IoU >= 0.99, score within 1e-3 as JSONL rounds scores to 3 decimals), with the load average before and
after each model.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity_yolo as py  # noqa: E402


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def fpnstream_run(binary, model, clip, out):
    t = time.perf_counter()
    subprocess.run([binary, "process", clip, "--model", model, "--jsonl", out, "-q"], check=True)
    dt = time.perf_counter() - t
    frames = [json.loads(line) for line in open(out) if '"type":"frame"' in line]
    return dt, [[{"box": d["box"], "score": d["score"], "class": d["class_id"]} for d in f["detections"]] for f in frames]


def ultralytics_run(model, clip, seg):
    """Ultralytics' predictor on every frame of the clip as the ffmpeg CLI decodes it (RGB24, handed over as BGR as
    OpenCV would): the same pixels as fpnstream's FFmpeg decode, decoding included in the time."""
    w, h = py.probe_size(clip)
    t = time.perf_counter()
    dec = subprocess.Popen(["ffmpeg", "-v", "error", "-i", clip, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           stdout=subprocess.PIPE)
    frames, size = [], w * h * 3
    while len(buf := dec.stdout.read(size)) == size:
        bgr = np.ascontiguousarray(np.frombuffer(buf, np.uint8).reshape(h, w, 3)[..., ::-1])
        r = model.predict(bgr, verbose=False, retina_masks=seg, conf=0.25, iou=0.7, max_det=300, rect=False)[0]
        if seg and r.masks is not None:
            r.masks.data  # computed by the predictor's postprocess (source resolution with retina_masks)
        frames.append([{"box": b, "score": s, "class": int(c)} for b, s, c in
                       zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())])
    dec.wait()
    return time.perf_counter() - t, frames


def agreement(mine, theirs):
    """(matched, total): greedy one-to-one matching per frame, in the peer's order."""
    matched = total = 0
    for a, b in zip(mine, theirs):
        used = set()
        for d in b:
            cands = [(py.iou(d["box"], e["box"]), j) for j, e in enumerate(a)
                     if j not in used and e["class"] == d["class"] and abs(e["score"] - d["score"]) <= 1e-3]
            best = max(cands, default=(0, None))
            if best[1] is not None and best[0] >= 0.99:
                used.add(best[1])
                matched += 1
        total += max(len(a), len(b))
    total += sum(len(x) for x in mine[len(theirs):]) + sum(len(x) for x in theirs[len(mine):])
    return matched, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("work")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="yolo11-detect,yolo11-seg")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    import torch
    from ultralytics import YOLO
    torch.set_num_threads(2)
    clip = os.path.join(a.work, f"vtest-{a.frames}.avi")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", "samples/external/vtest.avi", "-frames:v", str(a.frames),
                    "-c", "copy", clip], check=True)
    n = int(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", clip], check=True, capture_output=True,
                           text=True).stdout.strip())
    version = subprocess.run([a.binary, "--version"], check=True, capture_output=True, text=True).stdout
    print(f"bench yolo-e2e: {clip} ({n} frames of vtest.avi, 768x576), {a.rounds} alternating rounds, 2 threads each "
          f"(fpnstream: the CPU's {os.cpu_count()} cores; torch.set_num_threads(2); onnxruntime's default = physical "
          f"cores = {os.cpu_count()})")
    for line in version.splitlines():
        if line.startswith(("CPU:", "compute:")):
            print(f"  {line}")
    for config in a.only.split(","):
        model_path = f"samples/yolo/{config}.onnx"
        if not os.path.exists(model_path):
            print(f"== {config}: {model_path} missing (scripts/parity-yolo {config} builds it)")
            continue
        seg = "seg" in config
        task = "segment" if seg else "detect"
        print(f"== {config} ({model_path}), load average before: {load()}")
        peers = {"ultralytics onnx": YOLO(model_path, task=task)}
        if not a.no_torch:
            m = YOLO(py.CONFIGS[config], task=task)
            m.model = py.torch_twin(config, model_path, export=False)
            peers["ultralytics torch"] = m
        out = os.path.join(a.work, f"{config}.jsonl")
        times = {k: [] for k in ["fpnstream", *peers]}
        _, mine = fpnstream_run(a.binary, model_path, clip, out)  # warm-up (page cache, CPU clocks)
        results = {}
        for name, m in peers.items():
            _, results[name] = ultralytics_run(m, clip, seg)  # warm-up: predictor setup, session/graph load
        for r in range(a.rounds):
            order = ["fpnstream", *peers] if r % 2 == 0 else [*peers, "fpnstream"]
            for name in order:
                if name == "fpnstream":
                    dt, mine = fpnstream_run(a.binary, model_path, clip, out)
                else:
                    dt, results[name] = ultralytics_run(peers[name], clip, seg)
                times[name].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, v in times.items():
            frames = len(mine) if name == "fpnstream" else len(results[name])
            line = (f"  {name:<18} median {med[name]:7.2f} s ({1e3 * med[name] / max(frames, 1):6.1f} ms/frame), "
                    f"min {min(v):7.2f} s, {frames} frames, {sum(map(len, mine if name == 'fpnstream' else results[name]))} detections")
            if name != "fpnstream":
                matched, total = agreement(mine, results[name])
                line += (f"; fpnstream/{name.split()[1]} = {med['fpnstream'] / med[name]:.2f} (of the minima "
                         f"{min(times['fpnstream']) / min(v):.2f}); detections agreeing "
                         f"{matched}/{total} ({100 * matched / max(total, 1):.2f}%)")
            print(line)
        print(f"  load average after: {load()}")


if __name__ == "__main__":
    main()
