"""fpnstream's ONNX import against onnxruntime on the same inputs: median milliseconds per inference, as ratios.

Both run the same float32 tensor (a real frame decoded and resized by ffmpeg, as in scripts/parity-onnx) with
2 threads. Rounds alternate between the two runtimes so that load from other processes on a shared machine hits
both alike; each round times `--runs` inferences after one warm-up. Reported: median over all timed runs.

Usage: bench_onnx.py FPNSTREAM_BINARY WORKDIR [--rounds R] [--runs N] [--only NAME]
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from parity_onnx import frame_rgb, probe_size, session  # noqa: E402

CASES = [
    # name, model, video, frame, input scale
    ("centerface carphone 1x", "samples/onnx/centerface.onnx", "carphone_pristine.mp4", 0, 1.0),
    ("centerface vtest 1x", "samples/onnx/centerface.onnx", "vtest.avi", 100, 1.0),
    ("centerface vtest 2x", "samples/onnx/centerface.onnx", "vtest.avi", 100, 2.0),
    ("ppocr-det vtest 1x", "samples/onnx/ch_PP-OCRv4_det_infer.onnx", "vtest.avi", 100, 1.0),
    ("ppocr-det bikes 1x", "samples/onnx/ch_PP-OCRv4_det_infer.onnx", "bikes.mp4", 50, 1.0),
    # Ultralytics exports built by scripts/parity-yolo (skipped when absent); a fixed 640x640 input.
    ("yolov8n-detect vtest", "samples/yolo/yolov8-detect.onnx", "vtest.avi", 100, None),
    ("yolov8n-seg vtest", "samples/yolo/yolov8-seg.onnx", "vtest.avi", 100, None),
]


def main():
    binary, work = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    os.makedirs(work, exist_ok=True)
    rows = []
    for name, model, video, index, scale in CASES:
        if only and only not in name:
            continue
        if not os.path.exists(model):
            print(f"{name:24s} skipped: {model} not built (scripts/parity-yolo builds it)")
            continue
        path = os.path.join("samples/external", video)
        w0, h0 = probe_size(path)
        if scale is None:
            w, h = 640, 640
        else:
            w, h = max(32, int(np.ceil(w0 * scale / 32) * 32)), max(32, int(np.ceil(h0 * scale / 32) * 32))
        x = np.ascontiguousarray(frame_rgb(path, index, w, h).transpose(2, 0, 1)[None].astype(np.float32))
        if scale is None:
            x /= 255
        tensor = os.path.join(work, "input.f32")
        x.tofile(tensor)
        sess = session(model)
        feed = {sess.get_inputs()[0].name: x}
        sess.run(None, feed)
        ort_ms, fpn_ms = [], []
        for _ in range(rounds):
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run(None, feed)
                ort_ms.append((time.perf_counter() - t0) * 1000)
            out = os.path.join(work, "out")
            r = subprocess.run([binary, "onnx-run", model, "--input", tensor, "--shape", f"1x3x{h}x{w}",
                                "--output-dir", out, "--runs", str(runs + 1)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"bench-onnx: fpnstream onnx-run failed: {r.stderr.strip()}")
            fpn_ms += json.load(open(os.path.join(out, "outputs.json")))["run_ms"][1:]  # first run plans buffers
        o, f = float(np.median(ort_ms)), float(np.median(fpn_ms))
        rows.append((name, f"{w}x{h}", f, o, f / o))
        print(f"{name:24s} {w}x{h:<5d} fpnstream {f:8.1f} ms   onnxruntime {o:8.1f} ms   fpnstream/onnxruntime {f / o:5.2f}x",
              flush=True)
    print(f"(medians of {rounds} alternating rounds x {runs} runs, 2 threads each; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
