"""Procedural multi-scale video dataset with exact ground truth (issue 8).

Each clip: a static textured background made of "stuff" regions (sky, grass, road, wall), optionally panned by the
camera, with moving textured "things" (circle, square, triangle, star) of sizes spanning COCO small/medium/large,
drawn in z-order (occlusions), entering and leaving the frame, under a slowly changing global illumination and
per-frame sensor noise. Everything is a pure function of (seed, clip index): numpy only, no global state.

Ground truth per frame: visible instance masks, boxes, track ids, the stuff label map and the panoptic map.
`python synth.py --out DIR ...` writes COCO instances JSON, COCO panoptic (PNG + JSON), MOTChallenge gt and MP4 clips
(ffmpeg, libx264 high quality, yuv420p). The training script imports this module and renders frames in memory.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

THINGS = ["circle", "square", "triangle", "star"]          # category ids 1..4 (Mask R-CNN labels 1..4)
STUFF = ["sky", "grass", "road", "wall"]                   # category ids 5..8; semantic labels 1..4 (0 = things)
THING_IDS = {n: i + 1 for i, n in enumerate(THINGS)}
STUFF_IDS = {n: len(THINGS) + i + 1 for i, n in enumerate(STUFF)}
# Tiny visible fragments (fewer pixels than this) are marked "ignore" (COCO iscrowd=1, MOT consider=0): a detector
# cannot be expected to find a 10-pixel sliver of an occluded shape and it must not be punished for finding it either.
MIN_VISIBLE = 24


def categories():
    cats = [{"id": THING_IDS[n], "name": n, "supercategory": "shape", "isthing": 1} for n in THINGS]
    cats += [{"id": STUFF_IDS[n], "name": n, "supercategory": "stuff", "isthing": 0} for n in STUFF]
    return cats


def _smooth_noise(rng, h, w, cell):
    """Value noise: a coarse random grid bilinearly upsampled to (h, w), values in [0, 1]."""
    gh, gw = h // cell + 2, w // cell + 2
    g = rng.random((gh, gw))
    ys = np.arange(h) / cell
    xs = np.arange(w) / cell
    y0 = ys.astype(int); x0 = xs.astype(int)
    fy = (ys - y0)[:, None]; fx = (xs - x0)[None, :]
    a = g[y0][:, x0]; b = g[y0][:, x0 + 1]; c = g[y0 + 1][:, x0]; d = g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _background(rng, h, w):
    """Returns (rgb float32 [h,w,3], stuff label uint8 [h,w] in 1..4) for a canvas of width w."""
    yy, xx = np.mgrid[0:h, 0:w]
    label = np.zeros((h, w), np.uint8)
    horizon = h * rng.uniform(0.28, 0.45) + h * 0.04 * np.sin(xx[0] / w * 2 * np.pi * rng.uniform(1, 3)
                                                               + rng.uniform(0, 6))
    label[:] = 2                                             # grass
    label[yy < horizon[None, :]] = 1                        # sky
    # Road: a band below the horizon whose edges slant (perspective-ish).
    r0 = h * rng.uniform(0.55, 0.68); r1 = r0 + h * rng.uniform(0.18, 0.28)
    slope = rng.uniform(-0.12, 0.12)
    top = r0 + slope * (xx - w / 2); bot = r1 - slope * (xx - w / 2) * 0.5
    label[(yy >= top) & (yy < bot)] = 3
    # Wall: a block standing on the horizon (most clips).
    if rng.random() < 0.8:
        ww = int(w * rng.uniform(0.2, 0.35)); x0 = int(rng.uniform(0, w - ww))
        wt = int(h * rng.uniform(0.08, 0.2)); hz = int(horizon[x0:x0 + ww].mean())
        label[max(0, hz - wt - int(h * 0.1)):min(h, hz + int(h * 0.12)), x0:x0 + ww] = 4
    rgb = np.zeros((h, w, 3), np.float32)
    # Sky: vertical gradient + soft clouds.
    t = (yy / h)[..., None]
    clouds = _smooth_noise(rng, h, w, 24)[..., None]
    sky = (1 - t) * np.array([95, 145, 225]) + t * np.array([175, 205, 240]) + 45 * np.clip(clouds - 0.55, 0, 1)
    # Grass: green with fine high-contrast speckle and vertical blades.
    fine = rng.random((h, w))
    blades = _smooth_noise(rng, 1, w, 2)[0][None, :]
    grass = np.stack([50 + 30 * fine, 125 + 50 * fine * blades + 20 * blades, 40 + 15 * fine], -1)
    # Road: dark grey asphalt grain, dashed bright lane marks along the band's middle.
    road = np.repeat((85 + 18 * rng.random((h, w)))[..., None], 3, -1) * np.array([1.0, 1.0, 1.06])
    mid = (top + bot) / 2
    lane = (np.abs(yy - mid) < 1.6) & ((xx // 18) % 2 == 0)
    road[lane] = [225, 220, 170]
    # Wall: bricks with mortar lines.
    row = yy // 8
    brick_x = (xx + (row % 2) * 8) % 16
    mortar = (yy % 8 == 0) | (brick_x == 0)
    shade = _smooth_noise(rng, h, w, 6)
    wall = np.stack([150 + 40 * shade, 70 + 20 * shade, 50 + 15 * shade], -1)
    wall[mortar] = [205, 195, 180]
    for k, tex in ((1, sky), (2, grass), (3, road), (4, wall)):
        m = label == k
        rgb[m] = tex[m]
    return rgb, label


def _shape_mask(kind, size, angle, xs, ys):
    """Inside test for a shape centred at 0 with rotation `angle`; xs, ys are pixel centres relative to the centre."""
    c, s = math.cos(angle), math.sin(angle)
    u = c * xs + s * ys; v = -s * xs + c * ys
    r = size / 2
    if kind == "circle":
        return u * u + v * v <= r * r
    if kind == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if kind == "triangle":
        # Equilateral triangle inscribed in the circle of radius r, apex up.
        inside = v >= -r * 0.5                             # top edge (image y grows downward)
        for a in (math.pi / 6, 5 * math.pi / 6):
            nx, ny = math.cos(a), math.sin(a)             # outward normals of the two lower sides
            inside &= (u * nx + v * ny) <= r * 0.5
        return inside
    if kind == "star":
        th = np.arctan2(v, u) + math.pi / 2
        k = (th / (2 * math.pi / 5)) % 1.0                 # position inside one spike period
        t = np.abs(k - 0.5) * 2                             # 1 at the tips, 0 between them
        rr = r * (0.45 + 0.55 * t)
        return u * u + v * v <= rr * rr
    raise ValueError(kind)


def _shape_texture(kind, tint, angle, xs, ys, size):
    """RGB texture of a thing (float, [...,3]); distinct per class so the classes are visually separable."""
    c, s = math.cos(angle), math.sin(angle)
    u = c * xs + s * ys; v = -s * xs + c * ys
    if kind == "circle":                                    # orange, shaded like a ball
        d = np.sqrt(xs * xs + ys * ys) / (size / 2 + 1e-6)
        base = np.array([245, 140, 25]) * tint
        return base * (1.05 - 0.45 * d[..., None] ** 2)
    if kind == "square":                                    # blue/yellow checker
        cell = max(size / 4, 3)
        chk = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None]
        return chk * np.array([40, 60, 205]) * tint + (1 - chk) * np.array([235, 215, 40]) * tint
    if kind == "triangle":                                  # magenta / white stripes
        st = ((np.floor((u + v) / max(size / 6, 2.5))) % 2)[..., None]
        return st * np.array([200, 40, 170]) * tint + (1 - st) * np.array([245, 235, 245])
    if kind == "star":                                      # cyan with dark dots
        cell = max(size / 5, 3)
        du = (u / cell) % 1 - 0.5; dv = (v / cell) % 1 - 0.5
        dot = ((du * du + dv * dv) < 0.06)[..., None]
        return np.where(dot, np.array([20, 60, 70]), np.array([40, 215, 215]) * tint)
    raise ValueError(kind)


class Clip:
    """One deterministic clip. `render(t)` returns the frame and its ground truth (t = 0-based frame index)."""

    def __init__(self, seed, index, frames=60, width=320, height=240, pan=None, light=True, noise=None, sparse=False,
                 parked=False):
        self.rng = np.random.default_rng([seed, index])
        rng = self.rng
        self.w, self.h, self.frames = width, height, frames
        self.pan = (rng.random() < 0.5) if pan is None else pan
        self.pan_range = 48 if self.pan else 0
        self.bg, self.stuff = _background(rng, height, width + self.pan_range)
        self.pan_speed = rng.uniform(0.4, 1.2) * (1 if rng.random() < 0.5 else -1)
        self.light_amp = rng.uniform(0.08, 0.25); self.light_period = rng.uniform(40, 120)
        self.light_phase = rng.uniform(0, 2 * math.pi); self.noise = rng.uniform(2, 6)
        if not light:                                       # after the draws, so the rest of the clip is unchanged
            self.light_amp = 0.0
        if noise is not None:
            self.noise = noise
        self.noise_seed = int(rng.integers(0, 2**31))
        self.objects = []
        n0 = int(rng.integers(1, 3)) if sparse else int(rng.integers(3, 7))
        for _ in range(n0):
            self._spawn(start=0, inside=True)
            if parked:                                      # after the draws, so the rest of the clip is unchanged
                self.objects[-1].update(vx=0.0, vy=0.0, spin=0.0)
        t = 0
        while True:                                         # later entries from the edges
            t += int(rng.integers(40, 100)) if sparse else int(rng.integers(6, 25))
            if t >= frames:
                break
            self._spawn(start=t, inside=False)
        for i, o in enumerate(self.objects):
            o["track"] = i + 1

    def _size(self):
        u = self.rng.random()
        if u < 0.3:
            return self.rng.uniform(16, 30)                # small: area < 32^2 for every shape
        if u < 0.75:
            return self.rng.uniform(36, 90)                # medium
        return self.rng.uniform(112, min(160, self.h * 0.75))  # large: bounding box > 96^2

    def _spawn(self, start, inside):
        rng = self.rng
        kind = THINGS[int(rng.integers(0, len(THINGS)))]
        size = self._size()
        speed = rng.uniform(0.8, 3.5) * (0.6 if size > 100 else 1.0)
        if inside:
            cx, cy = rng.uniform(0, self.w), rng.uniform(self.h * 0.1, self.h * 0.95)
            a = rng.uniform(0, 2 * math.pi)
        else:                                               # enter from the left or right edge, move inward
            side = rng.random() < 0.5
            cx = -size / 2 if side else self.w + size / 2
            cy = rng.uniform(self.h * 0.15, self.h * 0.9)
            a = rng.uniform(-0.5, 0.5) + (0 if side else math.pi)
        self.objects.append(dict(
            kind=kind, size=size, cx=cx, cy=cy, vx=speed * math.cos(a), vy=speed * math.sin(a) * 0.5,
            angle=rng.uniform(0, 2 * math.pi), spin=rng.uniform(-0.05, 0.05) if kind != "circle" else 0.0,
            tint=rng.uniform(0.8, 1.1, 3), z=rng.random(), start=start))

    def _offset(self, t):
        if not self.pan:
            return 0
        p = abs(self.pan_speed) * t
        period = 2 * self.pan_range
        p = p % period
        p = p if p <= self.pan_range else period - p       # ping-pong
        return int(round(p if self.pan_speed > 0 else self.pan_range - p))

    def render(self, t):
        """Frame `t`: dict with rgb uint8 [h,w,3], stuff uint8 [h,w] (1..4), ids int32 [h,w] (0 = no thing, else
        index+1 into `instances`), instances (list of dict kind/category/track/area/bbox xywh/ignore/visibility)."""
        h, w = self.h, self.w
        off = self._offset(t)
        img = self.bg[:, off:off + w].copy()
        stuff = self.stuff[:, off:off + w].copy()
        owner = np.zeros((h, w), np.int32)                  # track id of the topmost thing per pixel
        full_area = {}
        active = [o for o in self.objects if o["start"] <= t]
        for o in sorted(active, key=lambda o: o["z"]):
            dt = t - o["start"]
            cx, cy = o["cx"] + o["vx"] * dt, o["cy"] + o["vy"] * dt
            ang = o["angle"] + o["spin"] * dt
            r = o["size"] / 2 + 1
            x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
            y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            xs = xs + 0.5 - cx; ys = ys + 0.5 - cy
            m = _shape_mask(o["kind"], o["size"], ang, xs, ys)
            if not m.any():
                continue
            tex = _shape_texture(o["kind"], o["tint"], ang, xs, ys, o["size"])
            img[y0:y1, x0:x1][m] = tex[m]
            owner[y0:y1, x0:x1][m] = o["track"]
            # Full (unoccluded, uncropped) area for the MOT visibility column.
            full_area[o["track"]] = _shape_mask(o["kind"], o["size"], 0.0, *np.meshgrid(
                np.arange(-r, r) + 0.5, np.arange(-r, r) + 0.5)).sum()
        light = 1 + self.light_amp * math.sin(2 * math.pi * t / self.light_period + self.light_phase)
        noise = np.random.default_rng([self.noise_seed, t])
        img = img * light + noise.normal(0, self.noise, img.shape)
        rgb = np.clip(img, 0, 255).astype(np.uint8)
        instances = []
        ids = np.zeros((h, w), np.int32)
        for o in self.objects:
            tr = o["track"]
            if tr not in full_area:
                continue
            m = owner == tr
            area = int(m.sum())
            if area == 0:
                continue
            yy, xx = np.nonzero(m)
            x0, y0, x1, y1 = int(xx.min()), int(yy.min()), int(xx.max()) + 1, int(yy.max()) + 1
            instances.append(dict(kind=o["kind"], category=THING_IDS[o["kind"]], track=tr, area=area,
                                  bbox=[x0, y0, x1 - x0, y1 - y0], ignore=area < MIN_VISIBLE,
                                  visibility=min(1.0, area / max(1.0, float(full_area[tr])))))
            ids[m] = len(instances)
        return dict(rgb=rgb, stuff=stuff, ids=ids, instances=instances)


# ---------------------------------------------------------------------------------------------------------------
# COCO helpers

def rle_encode(mask):
    """COCO uncompressed RLE counts of a bool mask [h,w] (column-major, runs starting with zeros)."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    edges = np.nonzero(np.diff(flat))[0] + 1                 # indices where the value changes
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return [int(c) for c in counts]


def panoptic_png(frame, stuff_offset=len(THINGS)):
    """Panoptic id map (uint32 [h,w]) and segments_info for a rendered frame. Thing segment ids are their track ids
    (unique inside a frame); stuff segments get 1000 + category id; 0 is void (never produced here)."""
    ids = np.zeros(frame["stuff"].shape, np.uint32)
    segments = []
    for k in range(1, len(STUFF) + 1):
        m = (frame["stuff"] == k) & (frame["ids"] == 0)
        if m.any():
            sid = 1000 + stuff_offset + k
            ids[m] = sid
            yy, xx = np.nonzero(m)
            segments.append({"id": sid, "category_id": stuff_offset + k, "iscrowd": 0, "area": int(m.sum()),
                             "bbox": [int(xx.min()), int(yy.min()), int(xx.max() - xx.min() + 1),
                                      int(yy.max() - yy.min() + 1)]})
    for i, inst in enumerate(frame["instances"]):
        m = frame["ids"] == i + 1
        ids[m] = inst["track"]
        segments.append({"id": inst["track"], "category_id": inst["category"], "iscrowd": int(inst["ignore"]),
                         "area": inst["area"], "bbox": inst["bbox"]})
    return ids, segments


def write_png_rgb(path, ids):
    from PIL import Image
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--first-clip", type=int, default=0, help="index of the first clip (held-out sets use other ranges)")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--crf", type=int, default=16)
    ap.add_argument("--pan", choices=["random", "on", "off"], default="random",
                    help="camera pan per clip: random (half the clips, as training), on, or off (static camera)")
    ap.add_argument("--light", choices=["on", "off"], default="on",
                    help="slow global illumination change (on, as training) or constant lighting (off)")
    ap.add_argument("--traffic", choices=["busy", "sparse", "parked"], default="busy",
                    help="busy: 3-6 things at the start, one entering every 6-24 frames (training); sparse: 1-2, one "
                         "every 40-99 frames (a quiet surveillance scene); parked: sparse whose first things stand "
                         "still (nothing moves until the first entry)")
    ap.add_argument("--noise", type=float, default=None,
                    help="sensor noise sigma in grey levels for every clip (default: drawn per clip, 2-6)")
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--no-panoptic", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    images, anns, pan_anns = [], [], []
    for ci in range(args.first_clip, args.first_clip + args.clips):
        name = f"clip_{ci:03d}"
        clip = Clip(args.seed, ci, frames=args.frames, width=w, height=h,
                    pan=None if args.pan == "random" else args.pan == "on", light=args.light == "on", noise=args.noise, sparse=args.traffic != "busy",
                    parked=args.traffic == "parked")
        mot_dir = os.path.join(args.out, "mot", name, "gt"); os.makedirs(mot_dir, exist_ok=True)
        pan_dir = os.path.join(args.out, "panoptic", name)
        if not args.no_panoptic:
            os.makedirs(pan_dir, exist_ok=True)
        enc = None
        if not args.no_video:
            os.makedirs(os.path.join(args.out, "videos"), exist_ok=True)
            enc = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo",
                 "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(args.fps), "-i", "-", "-c:v", "libx264",
                 "-preset", "medium", "-crf", str(args.crf), "-pix_fmt", "yuv420p", "-threads", "1", "-bitexact",
                 "-map_metadata", "-1", "-movflags", "+faststart", os.path.join(args.out, "videos", name + ".mp4")],
                stdin=subprocess.PIPE)
        with open(os.path.join(mot_dir, "gt.txt"), "w") as mot:
            for t in range(args.frames):
                fr = clip.render(t)
                if enc:
                    enc.stdin.write(fr["rgb"].tobytes())
                image_id = ci * 100000 + t + 1
                fname = f"{name}/{t + 1:06d}.png"
                images.append({"id": image_id, "file_name": fname, "width": w, "height": h, "video": name,
                               "frame": t + 1})
                for i, inst in enumerate(fr["instances"]):
                    m = fr["ids"] == i + 1
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": inst["category"],
                                 "bbox": inst["bbox"], "area": inst["area"], "iscrowd": int(inst["ignore"]),
                                 "track_id": inst["track"],
                                 "segmentation": {"size": [h, w], "counts": rle_encode(m)}})
                    x, y, bw, bh = inst["bbox"]
                    mot.write(f"{t + 1},{inst['track']},{x},{y},{bw},{bh},{0 if inst['ignore'] else 1},1,"
                              f"{inst['visibility']:.3f}\n")
                if not args.no_panoptic:
                    pid, segs = panoptic_png(fr)
                    write_png_rgb(os.path.join(pan_dir, f"{t + 1:06d}.png"), pid)
                    pan_anns.append({"image_id": image_id, "file_name": fname, "segments_info": segs})
        if enc:
            enc.stdin.close()
            if enc.wait() != 0:
                sys.exit(f"synth: ffmpeg failed for {name}")
        with open(os.path.join(args.out, "mot", name, "seqinfo.ini"), "w") as f:
            f.write(f"[Sequence]\nname={name}\nimDir=img1\nframeRate={args.fps}\nseqLength={args.frames}\n"
                    f"imWidth={w}\nimHeight={h}\nimExt=.png\n")
    info = {"description": f"fpnstream synthetic shapes, seed {args.seed}, clips {args.first_clip}.."
                           f"{args.first_clip + args.clips - 1}", "version": "1"}
    with open(os.path.join(args.out, "instances.json"), "w") as f:
        json.dump({"info": info, "images": images, "annotations": anns,
                   "categories": [c for c in categories() if c["isthing"]]}, f)
    if not args.no_panoptic:
        with open(os.path.join(args.out, "panoptic.json"), "w") as f:
            json.dump({"info": info, "images": images, "annotations": pan_anns, "categories": categories()}, f)
    print(f"synth: {args.clips} clips x {args.frames} frames ({w}x{h}) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
