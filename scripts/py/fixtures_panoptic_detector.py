"""Writes Tests/Fixtures/panoptic/tiny-panoptic.safetensors: a whole Panoptic FPN for `swift test`
(PanopticParityTests.testPanopticDetectorMatchesTorch): the committed tiny Mask R-CNN fixture
(Tests/Fixtures/heads/tiny-maskrcnn.safetensors: ResNet-18 FPN, 5 classes, calibrated generated weights, a 160x120
crop of a vtest.avi frame) plus a detectron2 semantic FPN head (`sem_seg_head.*`, 4 semantic classes, width 32,
GroupNorm(8)) whose convs are the same counter-based generated tensors Swift regenerates (`SyntheticWeights`), and
torch's outputs on the fixture image: detections (boxes, scores, labels, mask RLE), the panoptic id map and
segments of detectron2's merge (scripts/py/panoptic_fpn.py) with the thresholds stored in the metadata.

  fixtures_panoptic_detector.py BASE_FIXTURE OUT
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity_backbone as pb  # noqa: E402
import parity_detector as pd  # noqa: E402
from panoptic_fpn import SemSegFPNHead, panoptic_merge  # noqa: E402

STUFF = ["things", "sky", "grass", "road"]
DIMS, GROUPS, STUFF_AREA = 32, 8, 200


def main():
    base, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    model, meta, tensors, scales, image = pd.load_fixture(base)
    pd.set_limits(model, meta, int(meta["detections_per_img"]), int(meta["rpn_pre_nms_top_n"]),
                  int(meta["rpn_post_nms_top_n"]))
    c = model.backbone.out_channels
    head = SemSegFPNHead(c, len(STUFF), conv_dims=DIMS, groups=GROUPS).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in head.named_parameters():
            key = "sem_seg_head." + n
            if p.dim() >= 2:
                p.copy_(torch.from_numpy(pb.generated_weight(key, tuple(p.shape))))
                scales[key] = 0
            elif n.endswith("norm.weight"):
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    h, w = image.shape[:2]
    with torch.no_grad():
        il, _ = model.transform([x])
        feats = model.backbone(il.tensors)
        proposals, _ = model.rpn(il, feats)
        dets, _ = model.roi_heads(feats, proposals, il.image_sizes)
        d = model.transform.postprocess(dets, il.image_sizes, [(h, w)])[0]
        logits = head.logits([feats[k] for k in ("0", "1", "2", "3")])
        rh, rw = il.image_sizes[0]
        sem = F.interpolate(logits[:, :, :rh, :rw], size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)
    scores = d["scores"]
    # A merge threshold between the scores, so some instances enter the merge and some do not.
    s = sorted(scores.tolist(), reverse=True)
    thresh = round((s[len(s) // 2 - 1] + s[len(s) // 2]) / 2, 4)
    masks = d["masks"][:, 0]
    pan, segs = panoptic_merge(masks, scores, d["labels"], sem, overlap=0.5, stuff_area=STUFF_AREA,
                               score_thresh=thresh, mask_thresh=float(meta.get("mask_thresh", 0.5)))
    for sg in segs:
        sg["area"] = int((pan == sg["id"]).sum())
        sg.pop("instance_id", None)
    things = sum(sg["isthing"] for sg in segs)
    labels, counts = np.unique(sem.numpy(), return_counts=True)
    print(f"fixtures-panoptic-detector: {len(scores)} detections, merge threshold {thresh}, {len(segs)} segments "
          f"({things} things), semantic labels {dict(zip(labels.tolist(), counts.tolist()))}", file=sys.stderr)
    assert things >= 2 and len(segs) - things >= 2, "fixture should exercise things and stuff"

    # The base fixture's generated tensors stay generated (scales holds exactly those), the rest is stored.
    stored = {k: v for k, v in tensors.items() if k not in scales}
    generated = {k: {"shape": list(v.shape), "log2_scale": scales[k]} for k, v in tensors.items() if k in scales}
    for n, p in head.state_dict().items():
        key = "sem_seg_head." + n
        if key in scales:
            generated[key] = {"shape": list(p.shape), "log2_scale": 0}
        else:
            stored[key] = p.numpy().astype(np.float32)
    stored["fixture.image"] = image.astype(np.float16)
    stored["fixture.boxes"] = d["boxes"].numpy().astype(np.float32).reshape(-1, 4)
    stored["fixture.scores"] = scores.numpy().astype(np.float32)
    stored["fixture.labels"] = d["labels"].numpy().astype(np.float32)
    stored["fixture.panoptic"] = pan.numpy().astype(np.float16)       # ids < 2048: exact
    stored["fixture.semantic"] = sem.numpy().astype(np.float16)
    md = {k: v for k, v in meta.items() if not k.startswith("fixture.")}
    md.update({"panoptic": "semantic_fpn", "stuff_classes": json.dumps(STUFF), "sem_seg_conv_dims": str(DIMS),
               "gn_groups": str(GROUPS), "gn_eps": "1e-05", "sem_seg_common_stride": "4",
               "panoptic_overlap_thresh": "0.5", "panoptic_stuff_area": str(STUFF_AREA),
               "panoptic_score_thresh": str(thresh)})
    md["fixture.generated"] = json.dumps(generated, separators=(",", ":"))
    md["fixture.masks"] = json.dumps([pd.rle_counts(m > 0.5) for m in masks.numpy()], separators=(",", ":"))
    md["fixture.segments"] = json.dumps(segs, separators=(",", ":"))
    md["fixture.base"] = os.path.basename(base)
    save_file(stored, out, metadata=md)
    print(f"fixtures-panoptic-detector: wrote {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
