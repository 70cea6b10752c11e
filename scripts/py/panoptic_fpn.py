"""Panoptic FPN in torch: torchvision Mask R-CNN (small ResNet-FPN) + detectron2's semantic FPN head, and
detectron2's panoptic merge. This is the oracle for the Swift implementation (Vision/Heads/SemanticFPNHead.swift,
Vision/Postprocess/PanopticMerge.swift): same keys, same math.

Semantic head (detectron2 `SemSegFPNHead`): for P2..P5 (strides 4..32) `max(1, log2(stride) - 2)` blocks of
[conv3x3 (no bias) -> GroupNorm(32) -> ReLU] each followed by 2x bilinear upsampling (align_corners=False) unless
the level's stride is 4; keys `sem_seg_head.p{k}.{0,2,4}.weight` / `.norm.weight` / `.norm.bias`; sum of levels ->
`sem_seg_head.predictor` 1x1 -> classes (0 = things, 1..N stuff) -> x4 bilinear (align_corners=False).
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d with a `norm` submodule (keys `.weight`, `.norm.weight`, `.norm.bias`)."""

    def __init__(self, cin, cout, groups=32):
        super().__init__(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, cout, eps=1e-5)

    def forward(self, x):
        return F.relu(self.norm(super().forward(x)))


class SemSegFPNHead(nn.Module):
    def __init__(self, in_channels, num_classes, conv_dims=128, strides=(4, 8, 16, 32), common_stride=4, groups=32):
        super().__init__()
        self.common_stride = common_stride
        self.levels = []
        for stride in strides:
            name = f"p{int(math.log2(stride))}"
            n = max(1, int(math.log2(stride) - math.log2(common_stride)))
            layers = []
            for k in range(n):
                conv = ConvNorm(in_channels if k == 0 else conv_dims, conv_dims, groups)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")   # c2_msra_fill
                layers.append(conv)
                if stride != common_stride:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(name, nn.Sequential(*layers))
            self.levels.append(name)
        self.predictor = nn.Conv2d(conv_dims, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def logits(self, feats):
        """feats: list [P2, P3, P4, P5] -> logits at input resolution (stride 1 of the padded batch)."""
        x = None
        for name, f in zip(self.levels, feats):
            y = getattr(self, name)(f)
            x = y if x is None else x + y
        x = self.predictor(x)
        return F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False)


class PanopticFPN(nn.Module):
    """torchvision MaskRCNN + semantic head sharing its backbone."""

    def __init__(self, num_things, num_stuff, depth=18, fpn_channels=128, box_dim=128, min_size=240, max_size=320,
                 sem_dims=128, train_bn=True):
        super().__init__()
        norm = nn.BatchNorm2d if train_bn else misc_nn_ops.FrozenBatchNorm2d
        if depth == 10:
            # ResNet-10 = ResNet-18 with one BasicBlock per stage (same key layout, 4.9M instead of 11.2M
            # parameters): the demo model must stay under the repository's 20 MB file limit in F16.
            body = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], norm_layer=norm)
        else:
            body = getattr(torchvision.models, f"resnet{depth}")(weights=None, norm_layer=norm)
        # torchvision's _resnet_fpn_extractor fixes 256 channels; BackboneWithFPN takes any (same keys).
        in_list = [body.inplanes // 8 * (2 ** i) for i in range(4)]
        backbone = BackboneWithFPN(body, {f"layer{k}": str(k - 1) for k in range(1, 5)}, in_list, fpn_channels,
                                   extra_blocks=LastLevelMaxPool())
        c = fpn_channels
        self.det = MaskRCNN(
            backbone, num_classes=None, min_size=min_size, max_size=max_size,
            box_head=TwoMLPHead(c * 49, box_dim), box_predictor=FastRCNNPredictor(box_dim, num_things + 1),
            mask_head=MaskRCNNHeads(c, (c, c, c, c), 1), mask_predictor=MaskRCNNPredictor(c, c, num_things + 1),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
            box_batch_size_per_image=128, box_detections_per_img=50)
        self.sem_seg_head = SemSegFPNHead(c, 1 + num_stuff, conv_dims=sem_dims)
        self.num_things, self.num_stuff = num_things, num_stuff
        self.depth = depth

    def state_dict_flat(self):
        """Keys as fpnstream expects them: torchvision's Mask R-CNN keys + `sem_seg_head.*`, no BN counters."""
        out = {}
        for k, v in self.det.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                out[k] = v
        for k, v in self.sem_seg_head.state_dict().items():
            out["sem_seg_head." + k] = v
        return out

    def load_flat(self, sd):
        det = {k: v for k, v in sd.items() if not k.startswith("sem_seg_head.")}
        sem = {k[len("sem_seg_head."):]: v for k, v in sd.items() if k.startswith("sem_seg_head.")}
        missing, unexpected = self.det.load_state_dict(det, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        assert not missing and not unexpected, (missing, unexpected)
        self.sem_seg_head.load_state_dict(sem, strict=True)

    def features(self, images):
        """images: list of [3,H,W] float in [0,1] -> (ImageList, features OrderedDict)."""
        il, _ = self.det.transform(images)
        return il, self.det.backbone(il.tensors)

    def forward_train(self, images, targets, sem_targets, sem_weight=0.5):
        il, targets = self.det.transform(images, targets)
        feats = self.det.backbone(il.tensors)
        proposals, rpn_losses = self.det.rpn(il, feats, targets)
        _, det_losses = self.det.roi_heads(feats, proposals, il.image_sizes, targets)
        logits = self.sem_seg_head.logits([feats[k] for k in ("0", "1", "2", "3")])
        # Targets resized (nearest) like the images, padded like the batch (255 = ignore).
        st = torch.full(logits.shape[:1] + logits.shape[2:], 255, dtype=torch.long)
        for i, s in enumerate(sem_targets):
            h, w = il.image_sizes[i]
            s = F.interpolate(s[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
            st[i, :h, :w] = s
        losses = dict(rpn_losses); losses.update(det_losses)
        losses["loss_sem_seg"] = sem_weight * F.cross_entropy(logits, st, ignore_index=255)
        return losses

    @torch.no_grad()
    def predict(self, images):
        """Eval mode: per image dict(boxes, labels, scores, masks [N,1,H,W] probabilities, sem [H,W] argmax,
        sem_logits [C,H,W])."""
        il, feats = self.features(images)
        proposals, _ = self.det.rpn(il, feats)
        dets, _ = self.det.roi_heads(feats, proposals, il.image_sizes)
        orig = [img.shape[-2:] for img in images]
        dets = self.det.transform.postprocess(dets, il.image_sizes, orig)
        logits = self.sem_seg_head.logits([feats[k] for k in ("0", "1", "2", "3")])
        out = []
        for i, d in enumerate(dets):
            h, w = il.image_sizes[i]
            lg = logits[i:i + 1, :, :h, :w]                        # crop to the unpadded (resized) size
            lg = F.interpolate(lg, size=tuple(orig[i]), mode="bilinear", align_corners=False)[0]
            d["sem_logits"] = lg
            d["sem"] = lg.argmax(0)
            out.append(d)
        return out


def panoptic_merge(masks, scores, labels, sem, overlap=0.5, stuff_area=4096, score_thresh=0.5, mask_thresh=0.5):
    """detectron2 combine_semantic_and_instance_outputs. masks: [N,H,W] probabilities (pasted), scores/labels [N],
    sem: [H,W] int (0 things, 1..S stuff). Returns (panoptic int32 [H,W], segments list)."""
    pan = torch.zeros_like(sem, dtype=torch.int32)
    segs = []
    cur = 0
    order = torch.argsort(-scores, stable=True)
    for i in order.tolist():
        s = float(scores[i])
        if s < score_thresh:
            break
        m = masks[i] > mask_thresh
        area = int(m.sum())
        if area == 0:
            continue
        inter = int((m & (pan > 0)).sum())
        if inter / area > overlap:
            continue
        if inter > 0:
            m = m & (pan == 0)
        cur += 1
        pan[m] = cur
        segs.append({"id": cur, "isthing": True, "score": s, "category_id": int(labels[i]), "instance_id": i})
    for k in torch.unique(sem).tolist():
        if k == 0:
            continue
        m = (sem == k) & (pan == 0)
        area = int(m.sum())
        if area < stuff_area:
            continue
        cur += 1
        pan[m] = cur
        segs.append({"id": cur, "isthing": False, "category_id": int(k), "area": area})
    return pan, segs


def metadata(model, things, stuff, extra=None):
    c = model.det.backbone.out_channels
    md = {
        "format": "pt", "architecture": f"maskrcnn_resnet{model.depth}_fpn", "num_classes": str(model.num_things + 1),
        "class_names": json.dumps(["__background__"] + list(things)),
        "stuff_classes": json.dumps(["things"] + list(stuff)),
        "panoptic": "semantic_fpn", "sem_seg_conv_dims": str(model.sem_seg_head.predictor.in_channels),
        "sem_seg_common_stride": "4", "gn_eps": "1e-05", "gn_groups": "32",
        "fpn_channels": str(c), "box_head_dim": str(model.det.roi_heads.box_head.fc7.out_features),
        "bn_eps": "1e-05", "backbone": f"resnet{model.depth}", "returned_layers": "1,2,3,4", "fpn_norm": "none",
        "extra_blocks": "pool", "frozen_bn": "true",
        "min_size": str(model.det.transform.min_size[0]), "max_size": str(model.det.transform.max_size),
        "image_mean": json.dumps(model.det.transform.image_mean), "image_std": json.dumps(model.det.transform.image_std),
        "score_thresh": str(model.det.roi_heads.score_thresh), "nms_thresh": str(model.det.roi_heads.nms_thresh),
        "detections_per_img": str(model.det.roi_heads.detections_per_img), "mask_thresh": "0.5",
        "rpn_pre_nms_top_n": str(model.det.rpn._pre_nms_top_n["testing"]),
        "rpn_post_nms_top_n": str(model.det.rpn._post_nms_top_n["testing"]),
        "rpn_nms_thresh": str(model.det.rpn.nms_thresh),
        "panoptic_overlap_thresh": "0.5", "panoptic_stuff_area": "512", "panoptic_score_thresh": "0.5",
    }
    if extra:
        md.update({k: str(v) for k, v in extra.items()})
    return md
