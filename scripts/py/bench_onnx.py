"""fpnstream against onnxruntime on the same models and inputs: median milliseconds per inference, as ratios.

ONNX models (CenterFace, PP-OCR, Ultralytics YOLO exports): both run the same float32 tensor (a real frame decoded
and resized by ffmpeg, as in scripts/parity-onnx); fpnstream through its ONNX import (`fpnstream onnx-run`).
torchvision detectors (MobileNetV3-Large-FPN Faster R-CNNs, Keypoint R-CNN): the whole detector on frame 100 of
vtest.avi at the builder's own transform size, with the same calibrated random weights (scripts/py/parity_detector.py
export-onnx, built once into samples/torchvision/): onnxruntime runs torch.onnx.export of the torchvision model
(transform, backbone, RPN, RoI heads, post-processing) on the [3, H, W] frame, fpnstream the converted safetensors
(`fpnstream bench detector`: transform to detections).
Both use 2 threads. Rounds alternate between the two runtimes so that load from other processes on a shared machine
hits both alike; each round times `--runs` inferences after one warm-up. Reported: median over all timed runs.

Usage: bench_onnx.py FPNSTREAM_BINARY WORKDIR [--rounds R] [--runs N] [--only NAME[,NAME...]]  (substrings of case names)
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
    ("yolo11n-detect vtest", "samples/yolo/yolo11-detect.onnx", "vtest.avi", 100, None),
    ("yolo11n-seg vtest", "samples/yolo/yolo11-seg.onnx", "vtest.avi", 100, None),
]
# torchvision detectors: name, scripts/py/parity_detector.py config, transform min_size, max_size (the builders').
DETECTORS = [
    ("frcnn-mobilenet-v3-fpn vtest", "mobilenet-v3-fpn", 800, 1333),
    ("frcnn-mobilenet-v3-320 vtest", "mobilenet-v3-320-fpn", 320, 640),
    ("keypointrcnn-r50-fpn vtest", "keypointrcnn", 800, 1333),
]
DETECTOR_FRAME = 100


def torch_python():
    """The python of the torch-onnx venv (scripts/lib/venv.sh; created on first use)."""
    return subprocess.run(["bash", "-c", "source scripts/lib/venv.sh && fpn_py torch-onnx"], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def detector_dir(config, min_size, max_size):
    """samples/torchvision/CONFIG with weights.safetensors, frames.safetensors, model.onnx and input.npy (built once)."""
    out = f"samples/torchvision/{config}"
    if not os.path.exists(os.path.join(out, "model.onnx")):
        subprocess.run([torch_python(), "scripts/py/parity_detector.py", "export-onnx", "--config", config,
                        "--video", "samples/external/vtest.avi", "--frame", str(DETECTOR_FRAME),
                        "--min-size", str(min_size), "--max-size", str(max_size), "--out", out], check=True)
    return out


def bench_detector(binary, directory, runs):
    """`fpnstream bench detector` on the directory's weights and frame: (per-run ms, detections, input line)."""
    r = subprocess.run([binary, "bench", "detector", "--model", os.path.join(directory, "weights.safetensors"),
                        "--frames", os.path.join(directory, "frames.safetensors"), "--runs", str(runs),
                        "--warmup", "1"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench-onnx: fpnstream bench detector failed: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    ms = [float(v) for v in next(l for l in lines if l.startswith("runs ms: "))[len("runs ms: "):].split()]
    head = next(l for l in lines if l.startswith("detector: "))
    return ms, int(head.rsplit(", ", 1)[1].split()[0]), head


def time_ort(sess, feed, runs):
    """Milliseconds of `runs` onnxruntime inferences of `feed`."""
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def main():
    binary, work = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    os.makedirs(work, exist_ok=True)
    import onnxruntime
    version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout.splitlines()
    print("\n".join(line for line in version if line.startswith(("CPU:", "compute:"))))
    print(f"onnxruntime {onnxruntime.__version__}: CPU execution provider, 2 intra-op threads, all graph optimizations")
    rows = []
    for name, model, video, index, scale in CASES:
        if only and not any(o in name for o in only):
            continue
        if not os.path.exists(model):
            print(f"{name:28s} skipped: {model} not built (scripts/parity-yolo builds it)")
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
            ort_ms += time_ort(sess, feed, runs)
            out = os.path.join(work, "out")
            r = subprocess.run([binary, "onnx-run", model, "--input", tensor, "--shape", f"1x3x{h}x{w}",
                                "--output-dir", out, "--runs", str(runs + 1)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"bench-onnx: fpnstream onnx-run failed: {r.stderr.strip()}")
            fpn_ms += json.load(open(os.path.join(out, "outputs.json")))["run_ms"][1:]  # first run plans buffers
        o, f = float(np.median(ort_ms)), float(np.median(fpn_ms))
        rows.append((name, f"{w}x{h}", f, o, f / o))
        print(f"{name:28s} {w}x{h:<5d} fpnstream {f:8.1f} ms   onnxruntime {o:8.1f} ms   fpnstream/onnxruntime {f / o:5.2f}x",
              flush=True)
    for name, config, min_size, max_size in DETECTORS:
        if only and not any(o in name for o in only):
            continue
        directory = detector_dir(config, min_size, max_size)
        sess = session(os.path.join(directory, "model.onnx"))
        x = np.load(os.path.join(directory, "input.npy"))
        feed = {sess.get_inputs()[0].name: x}
        ort_count = len(sess.run(None, feed)[0])
        ort_ms, fpn_ms = [], []
        for _ in range(rounds):
            ort_ms += time_ort(sess, feed, runs)
            ms, count, head = bench_detector(binary, directory, runs)
            fpn_ms += ms
        o, f = float(np.median(ort_ms)), float(np.median(fpn_ms))
        size = head.split(" → input ")[1].split(" ")[0]
        print(f"{name:28s} {size:9s} fpnstream {f:8.1f} ms   onnxruntime {o:8.1f} ms   fpnstream/onnxruntime {f / o:5.2f}x"
              f"   ({count} / {ort_count} detections)", flush=True)
    print(f"(medians of {rounds} alternating rounds x {runs} runs, 2 threads each; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
