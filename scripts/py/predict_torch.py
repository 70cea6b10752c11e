"""The torch model's own predictions on video clips, written as fpnstream-style JSONL frame lines (the scorer reads
both the same way). Weights come from the exported .safetensors (F16 values widened to F32: exactly what fpnstream
runs). Frames are decoded by the ffmpeg CLI to rgb24.

  predict_torch.py --model M.safetensors --out DIR clip1.mp4 clip2.mp4 ...   -> DIR/clip1.jsonl ...
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from panoptic_fpn import PanopticFPN, panoptic_merge  # noqa: E402
from synth import rle_encode as rle_counts  # noqa: E402


def load(path):
    with safe_open(path, "pt") as f:
        md = f.metadata()
        sd = {k: f.get_tensor(k).float() for k in f.keys()}
    things = json.loads(md["class_names"])[1:]
    stuff = json.loads(md["stuff_classes"])[1:]
    model = PanopticFPN(len(things), len(stuff), depth=int(md.get("backbone", "resnet18")[6:]), fpn_channels=int(md["fpn_channels"]),
                        box_dim=int(md["box_head_dim"]), min_size=int(md["min_size"]), max_size=int(md["max_size"]),
                        sem_dims=int(md["sem_seg_conv_dims"]), train_bn=False)
    model.load_flat(sd)
    # FrozenBatchNorm2d eps: torchvision's default is 1e-5, as trained (metadata bn_eps).
    model.eval()
    return model, md, things, stuff


def frames(path):
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                            "-of", "csv=p=0", path], capture_output=True, text=True, check=True).stdout.strip()
    w, h = (int(v) for v in probe.split(",")[:2])
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         stdout=subprocess.PIPE)
    n = w * h * 3
    while True:
        buf = p.stdout.read(n)
        if len(buf) < n:
            break
        yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("videos", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, md, things, stuff = load(args.model)
    nt = len(things)
    overlap = float(md.get("panoptic_overlap_thresh", 0.5)); area = int(md.get("panoptic_stuff_area", 4096))
    sthr = float(md.get("panoptic_score_thresh", 0.5))
    os.makedirs(args.out, exist_ok=True)
    for v in args.videos:
        name = os.path.splitext(os.path.basename(v))[0]
        with open(os.path.join(args.out, name + ".jsonl"), "w") as out:
            for i, rgb in enumerate(frames(v)):
                img = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
                d = model.predict([img])[0]
                h, w = rgb.shape[:2]
                masks = d["masks"][:, 0] if len(d["masks"]) else torch.zeros(0, h, w)
                dets = []
                for k in range(len(d["scores"])):
                    b = d["boxes"][k].tolist()
                    dets.append({"box": [round(x, 2) for x in b], "score": round(float(d["scores"][k]), 4),
                                 "class_id": int(d["labels"][k]), "class": things[int(d["labels"][k]) - 1],
                                 "mask": {"size": [h, w], "counts": rle_counts((masks[k] > 0.5).numpy())}})
                pan, segs = panoptic_merge(masks, d["scores"], d["labels"], d["sem"], overlap=overlap,
                                           stuff_area=area, score_thresh=sthr)
                psegs = []
                for s in segs:
                    m = (pan == s["id"]).numpy()
                    cat = s["category_id"] if s["isthing"] else nt + s["category_id"]
                    name_ = things[cat - 1] if s["isthing"] else stuff[s["category_id"] - 1]
                    e = {"id": s["id"], "category_id": cat, "category": name_, "is_thing": s["isthing"],
                         "area": int(m.sum()), "mask": {"size": [h, w], "counts": rle_counts(m)}}
                    if s["isthing"]:
                        e["score"] = round(s["score"], 4)
                    psegs.append(e)
                out.write(json.dumps({"type": "frame", "frame": i, "width": w, "height": h, "detections": dets,
                                      "panoptic": psegs}) + "\n")
        print(f"predict-torch: {v} -> {name}.jsonl", file=sys.stderr)


if __name__ == "__main__":
    main()
