"""Trains the demo Panoptic FPN (Mask R-CNN ResNet-18-FPN-128 + semantic FPN head) on synthetic clips, on CPU.

Deterministic: the batch of iteration i is a pure function of (seed, i), frames are rendered on the fly by synth.py,
torch is seeded and runs with 2 threads and deterministic algorithms where torch has them. The budget is an
iteration count (--iters), not wall time. A checkpoint is written every --ckpt-every iterations and a run resumes
from it (same results as an uninterrupted run up to BN/thread scheduling, which is deterministic on CPU).

  train_demo.py --work DIR --iters N [--seed S]          train (resumes from DIR/ckpt.pt)
  train_demo.py --work DIR --export OUT.safetensors      write fpnstream weights (F16) + metadata
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402
from panoptic_fpn import PanopticFPN, metadata  # noqa: E402

TRAIN_CLIPS = 400          # clip indices 0..399 of the training seed; eval uses another seed (see eval_accuracy.py)
FRAMES = 60


def chroma_420(rgb):
    """Simulates yuv420p chroma subsampling (what the MP4 clips go through) on a uint8 RGB frame."""
    x = rgb.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cb = x[..., 2] - y; cr = x[..., 0] - y
    h, w = y.shape
    def sub(c):
        c = c[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        return np.repeat(np.repeat(c, 2, 0), 2, 1)
    cb, cr = sub(cb), sub(cr)
    r = y + cr; b = y + cb; g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.clip(np.stack([r, g, b], -1) + 0.5, 0, 255).astype(np.uint8)


class Frames:
    def __init__(self, seed, width, height):
        self.seed, self.w, self.h = seed, width, height
        self.clips = {}

    def get(self, ci, t):
        c = self.clips.get(ci)
        if c is None:
            c = self.clips[ci] = synth.Clip(self.seed, ci, frames=FRAMES, width=self.w, height=self.h)
            if len(self.clips) > 300:
                self.clips.pop(next(iter(self.clips)))
        return c.render(t)


def sample(frames, seed, it, batch):
    rng = np.random.default_rng([seed, 7, it])
    images, targets, sems = [], [], []
    for _ in range(batch):
        fr = frames.get(int(rng.integers(0, TRAIN_CLIPS)), int(rng.integers(0, FRAMES)))
        rgb = chroma_420(fr["rgb"]) if rng.random() < 0.7 else fr["rgb"]
        img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        keep = [i for i, inst in enumerate(fr["instances"]) if not inst["ignore"]]
        boxes = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in
                              (fr["instances"][i]["bbox"] for i in keep)], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([fr["instances"][i]["category"] for i in keep], dtype=torch.int64)
        masks = torch.from_numpy(np.stack([fr["ids"] == i + 1 for i in keep]) if keep else
                                 np.zeros((0,) + fr["ids"].shape, bool)).to(torch.uint8)
        sem = torch.from_numpy(np.where(fr["ids"] > 0, 0, fr["stuff"]).astype(np.int64))
        images.append(img); targets.append({"boxes": boxes, "labels": labels, "masks": masks}); sems.append(sem)
    return images, targets, sems


def build(args):
    torch.manual_seed(args.seed)
    # --input-scale < 1 trains on a downscaled frame (fpnstream applies the same resize from the min_size/max_size
    # metadata); the demo model uses the full 320x240 frame because small things (16-30 px) need it.
    m = PanopticFPN(len(synth.THINGS), len(synth.STUFF), depth=getattr(args, "depth", 18), min_size=round(args.height * args.input_scale),
                    max_size=round(args.width * args.input_scale))
    m.det.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    return m


def lr_at(it, args):
    if it < args.warmup:
        return args.lr * (0.01 + 0.99 * it / args.warmup)
    p = (it - args.warmup) / max(1, args.iters - args.warmup)
    return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def train(args):
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build(args)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt = os.path.join(args.work, "ckpt.pt")
    start, wall, history = 0, 0.0, []
    if os.path.exists(ckpt):
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"])
        start, wall, history = st["iter"], st["wall"], st["history"]
        print(f"resumed at iteration {start} ({wall:.0f} s so far)", flush=True)
    frames = Frames(args.seed, args.width, args.height)
    acc = {}
    t0 = time.time()
    end = min(args.iters, args.stop_at) if args.stop_at else args.iters
    for it in range(start, end):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args)
        images, targets, sems = sample(frames, args.seed, it, args.batch)
        losses = model.forward_train(images, targets, sems)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        acc["n"] = acc.get("n", 0) + 1
        done = it + 1
        if done % args.log_every == 0 or done == end:
            n = acc.pop("n")
            avg = {k: round(v / n, 4) for k, v in acc.items()}
            avg["total"] = round(sum(avg.values()), 4)
            el = wall + time.time() - t0
            history.append({"iter": done, "wall_s": round(el, 1), "lr": lr_at(it, args), **avg})
            print(json.dumps(history[-1]), flush=True)
            acc = {}
        if done % args.ckpt_every == 0 or done == end:
            tmp = ckpt + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "iter": done,
                        "wall": wall + time.time() - t0, "history": history, "args": vars(args)}, tmp)
            os.replace(tmp, ckpt)


def export(args):
    from safetensors.torch import save_file
    st = torch.load(os.path.join(args.work, "ckpt.pt"), weights_only=False)
    targs = argparse.Namespace(**st["args"])
    model = build(targs)
    model.load_state_dict(st["model"])
    model.eval()
    sd = {k: v.detach().to(torch.float16 if args.f16 else torch.float32).contiguous()
          for k, v in model.state_dict_flat().items()}
    last = st["history"][-1] if st["history"] else {}
    md = metadata(model, synth.THINGS, synth.STUFF, extra={
        "training": json.dumps({"seed": targs.seed, "iters": st["iter"], "batch": targs.batch, "lr": targs.lr,
                                "wall_s": round(st["wall"], 1), "final_losses": last,
                                "data": f"scripts/synth clips 0..{TRAIN_CLIPS - 1} of seed {targs.seed}"})})
    os.makedirs(os.path.dirname(os.path.abspath(args.export)), exist_ok=True)
    save_file(sd, args.export, metadata=md)
    print(f"export: {len(sd)} tensors, {sum(v.numel() for v in sd.values())} parameters -> {args.export} "
          f"({os.path.getsize(args.export)} bytes)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stop-at", type=int, default=0,
                    help="end (with a checkpoint) at this iteration; the schedule still follows --iters")
    ap.add_argument("--depth", type=int, default=10, choices=[10, 18, 34])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    # One thread: reproducible float reductions, and torch's thread pool degrades badly (10x) when another job
    # competes for the second core.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--input-scale", type=float, default=1.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--export")
    ap.add_argument("--f16", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.export:
        export(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
