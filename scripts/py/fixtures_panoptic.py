"""Writes Tests/Fixtures/panoptic/semseg.safetensors: a small random semantic FPN head (detectron2 keys, F16 weights),
random P2..P5 features, torch's logits, labels (crop + resize + argmax) and a panoptic merge case computed by
panoptic_fpn.panoptic_merge (detectron2's algorithm). Deterministic (seeded)."""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from panoptic_fpn import SemSegFPNHead, panoptic_merge  # noqa: E402

out = sys.argv[1]
torch.manual_seed(8)
cin, dims, classes, groups = 8, 32, 5, 16
head = SemSegFPNHead(cin, classes, conv_dims=dims, groups=groups).eval()
with torch.no_grad():
    for name, p in head.named_parameters():            # non-trivial norms and predictor (init is near zero)
        if "norm" in name or "predictor" in name:
            p.copy_(torch.randn_like(p) * (0.5 if "weight" in name else 0.2) + (1 if name.endswith("norm.weight") else 0))
    for p in head.parameters():
        p.copy_(p.half().float())                      # the file stores F16: compute with the rounded values
ph, pw = 64, 96                                        # padded input; the image inside is 61 x 90
feats = [torch.randn(1, cin, ph // s, pw // s) for s in (4, 8, 16, 32)]
with torch.no_grad():
    logits = head.logits(feats)
    crop = logits[:, :, :61, :90]
    res = F.interpolate(crop, size=(75, 110), mode="bilinear", align_corners=False)[0]
    labels = res.argmax(0)
# Merge case: rectangles and discs with overlaps, scores above and below 0.5, one empty mask.
H, W = 75, 110
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
masks, scores, classes_ = [], [], []
spec = [("rect", (10, 5, 40, 30), 0.9, 1), ("disc", (30, 25, 14), 0.8, 2), ("rect", (12, 8, 38, 28), 0.7, 3),
        ("disc", (80, 50, 20), 0.95, 4), ("rect", (85, 55, 110, 75), 0.6, 1), ("rect", (0, 0, 0, 0), 0.85, 2),
        ("disc", (20, 60, 10), 0.4, 3), ("rect", (90, 5, 109, 30), 0.55, 4)]
for kind, g, s, c in spec:
    if kind == "rect":
        m = (xx >= g[0]) & (xx < g[2]) & (yy >= g[1]) & (yy < g[3])
    else:
        m = (xx - g[0]) ** 2 + (yy - g[1]) ** 2 <= g[2] ** 2
    masks.append(m.float()); scores.append(s); classes_.append(c)
masks = torch.stack(masks); scores = torch.tensor(scores); cls = torch.tensor(classes_)
pan, segs = panoptic_merge(masks, scores, cls, labels, overlap=0.5, stuff_area=300, score_thresh=0.5)
tensors = {"sem_seg_head." + k: v.half().contiguous() for k, v in head.state_dict().items()}
for i, f in enumerate(feats):
    tensors[f"fixture.p{i + 2}"] = f.contiguous()
tensors["fixture.logits"] = logits.contiguous()
tensors["fixture.labels"] = labels.float().contiguous()
tensors["fixture.masks"] = masks.half().contiguous()
tensors["fixture.scores"] = scores.float()
tensors["fixture.classes"] = cls.float()
tensors["fixture.panoptic"] = pan.float().contiguous()
for s in segs:
    if s["isthing"]:
        s["area"] = int((pan == s["id"]).sum())
os.makedirs(os.path.dirname(out), exist_ok=True)
save_file(tensors, out, metadata={"in_channels": str(cin), "conv_dims": str(dims), "groups": str(groups), "num_classes": str(classes),
                                  "input_size": "61,90", "output_size": "75,110", "stuff_area": "300",
                                  "segments": json.dumps(segs)})
print(f"fixtures-panoptic: {out} ({os.path.getsize(out)} bytes), {len(segs)} segments", file=sys.stderr)
