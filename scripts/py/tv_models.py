"""torchvision detector construction and checkpoint inspection shared by scripts/convert-torchvision and the
detector parity configs (scripts/parity maskrcnn|maskrcnn-v2|retinanet|retinanet-v2|fcos).

Models are built exactly as torchvision's `*_resnet50_fpn(_v2)` builders do, but for any ResNet depth and class
count, so that a checkpoint's state_dict loads with torchvision's own old-to-new key hooks.
"""
from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, KeypointRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.retinanet import RetinaNetHead, _default_anchorgen as retina_anchorgen
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.faster_rcnn import _default_anchorgen as rcnn_anchorgen
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

ARCHITECTURES = ("maskrcnn", "fasterrcnn", "retinanet", "fcos", "keypointrcnn")
DEPTHS = {  # name -> (blocks per stage, bottleneck)
    "resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False),
    "resnet50": ([3, 4, 6, 3], True), "resnet101": ([3, 4, 23, 3], True), "resnet152": ([3, 8, 36, 3], True),
}
# torchvision's Faster R-CNN on MobileNetV3-Large-FPN: "depth" names the body; variant "v1" is
# fasterrcnn_mobilenet_v3_large_fpn, "320" fasterrcnn_mobilenet_v3_large_320_fpn (same weights layout).
MOBILENET = "mobilenet_v3_large"
# Defaults of torchvision's detectors (test time).
DEFAULTS = {
    "maskrcnn": dict(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    "fasterrcnn": dict(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    "retinanet": dict(score_thresh=0.05, nms_thresh=0.5, detections_per_img=300, topk_candidates=1000),
    "fcos": dict(score_thresh=0.2, nms_thresh=0.6, detections_per_img=100, topk_candidates=1000),
    "keypointrcnn": dict(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
}


def coco_keypoint_names():
    """torchvision's 17 COCO person keypoint names."""
    from torchvision.models._meta import _COCO_PERSON_KEYPOINT_NAMES
    return list(_COCO_PERSON_KEYPOINT_NAMES)


def coco_categories():
    """torchvision's 91-entry COCO list ("__background__", 80 names, "N/A" for the 10 unused ids)."""
    from torchvision.models._meta import _COCO_CATEGORIES
    return list(_COCO_CATEGORIES)


def bn_eps(arch, variant, depth=None):
    """BatchNorm eps the torchvision COCO checkpoints run with (v1 R-CNN/RetinaNet: overwrite_eps(model, 0.0);
    the MobileNetV3 builders keep FrozenBatchNorm2d's 1e-5)."""
    if variant == "v2" or arch == "fcos" or depth == MOBILENET:
        return 1e-5
    return 0.0


def build(arch, variant, depth="resnet50", num_classes=91, frozen=None, eps=None, **kwargs):
    """A torchvision detector in eval mode. `frozen` (default: True for v1) uses FrozenBatchNorm2d in the body,
    with `eps` (default: `bn_eps`)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} (expected one of {', '.join(ARCHITECTURES)})")
    if depth == MOBILENET:
        if arch != "fasterrcnn" or variant not in ("v1", "320"):
            raise ValueError(f"{depth} is built by torchvision for Faster R-CNN only (v1 or 320), not {arch} {variant}")
        from torchvision.models import detection
        builder = (detection.fasterrcnn_mobilenet_v3_large_320_fpn if variant == "320"
                   else detection.fasterrcnn_mobilenet_v3_large_fpn)
        # weights=None: BatchNorm2d (eps 1e-5) in eval mode, the same arithmetic as the checkpoints' FrozenBatchNorm2d.
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs).eval()
    if variant not in ("v1", "v2") or (variant == "v2" and arch in ("fcos", "keypointrcnn")):
        raise ValueError(f"unknown variant {variant!r} for {arch}")
    if depth not in DEPTHS:
        raise ValueError(f"unsupported backbone {depth!r} (expected one of {', '.join(DEPTHS)})")
    frozen = (variant == "v1") if frozen is None else frozen
    eps = bn_eps(arch, variant) if eps is None else eps
    norm = partial(torchvision.ops.misc.FrozenBatchNorm2d, eps=eps) if frozen else nn.BatchNorm2d
    body = getattr(torchvision.models, depth)(weights=None, norm_layer=norm)
    if not frozen:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = eps
    c5 = 2048 if DEPTHS[depth][1] else 512
    if arch == "keypointrcnn":
        num_keypoints = kwargs.pop("num_keypoints", 17)
        model = KeypointRCNN(_resnet_fpn_extractor(body, 5), num_classes=num_classes, num_keypoints=num_keypoints,
                             **kwargs)
    elif arch in ("maskrcnn", "fasterrcnn"):
        if variant == "v1":
            backbone = _resnet_fpn_extractor(body, 5)
            extra = {}
        else:
            backbone = _resnet_fpn_extractor(body, 5, norm_layer=nn.BatchNorm2d)
            extra = dict(
                rpn_anchor_generator=rcnn_anchorgen(),
                rpn_head=RPNHead(backbone.out_channels, 3, conv_depth=2),
                box_head=FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256] * 4, [1024],
                                            norm_layer=nn.BatchNorm2d),
            )
            if arch == "maskrcnn":
                extra["mask_head"] = MaskRCNNHeads(backbone.out_channels, [256] * 4, 1, norm_layer=nn.BatchNorm2d)
        cls = MaskRCNN if arch == "maskrcnn" else FasterRCNN
        model = cls(backbone, num_classes=num_classes, **extra, **kwargs)
    elif arch == "retinanet":
        if variant == "v1":
            backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
            model = RetinaNet(backbone, num_classes, **kwargs)
        else:
            backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(c5, 256))
            anchors = retina_anchorgen()
            head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes,
                                 norm_layer=partial(nn.GroupNorm, 32))
            head.regression_head._loss_type = "giou"
            model = RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **kwargs)
    else:
        backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        model = FCOS(backbone, num_classes, **kwargs)
    return model.eval()


def unwrap_checkpoint(obj):
    """The state_dict inside a `.pth` (a plain state_dict, or {"model": ...} / {"state_dict": ...} wrappers)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return unwrap_checkpoint(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            sd = obj
            if sd and all(k.startswith("module.") for k in sd):
                sd = {k[len("module."):]: v for k, v in sd.items()}
            return sd
    raise ValueError("not a torchvision state_dict (expected a dict of tensors, or one under 'model'/'state_dict')")


def detect(sd):
    """(arch, variant, depth, num_classes) from a state_dict's key names and shapes (old or new key names)."""
    keys = set(sd)
    if any(k.startswith("roi_heads.keypoint_predictor.") for k in keys):
        arch = "keypointrcnn"
    elif any(k.startswith("roi_heads.mask_predictor.") for k in keys):
        arch = "maskrcnn"
    elif any(k.startswith("roi_heads.box_predictor.") for k in keys):
        arch = "fasterrcnn"
    elif "head.regression_head.bbox_ctrness.weight" in keys:
        arch = "fcos"
    elif any(k.startswith("head.classification_head.") for k in keys):
        arch = "retinanet"
    else:
        raise ValueError("cannot tell the architecture: no roi_heads.box_predictor.*, head.classification_head.* keys"
                         " (supported: Mask R-CNN, Faster R-CNN, RetinaNet, FCOS with ResNet-FPN)")
    if arch in ("maskrcnn", "fasterrcnn", "keypointrcnn"):
        variant = "v2" if "roi_heads.box_head.0.0.weight" in keys else "v1"
        num_classes = sd["roi_heads.box_predictor.cls_score.weight"].shape[0]
    elif arch == "retinanet":
        variant = "v2" if "head.classification_head.conv.0.1.weight" in keys else "v1"
        a = sd["head.regression_head.bbox_reg.weight"].shape[0] // 4
        num_classes = sd["head.classification_head.cls_logits.weight"].shape[0] // a
    else:
        variant = "v1"
        num_classes = sd["head.classification_head.cls_logits.weight"].shape[0]
    if "backbone.body.16.0.weight" in keys:
        if arch != "fasterrcnn" or variant != "v1":
            raise ValueError(f"MobileNetV3 backbone with a {arch} {variant} head: torchvision builds Faster R-CNN only")
        return arch, variant, MOBILENET, int(num_classes)
    blocks = [len({k.split(".")[3] for k in keys if k.startswith(f"backbone.body.layer{i}.")}) for i in range(1, 5)]
    bottleneck = any(k.startswith("backbone.body.layer1.0.conv3.") for k in keys)
    depth = next((n for n, (b, bn) in DEPTHS.items() if b == blocks and bn == bottleneck), None)
    if depth is None:
        raise ValueError(f"unsupported backbone: ResNet stages with {blocks} blocks "
                         f"({'bottleneck' if bottleneck else 'basic'}); expected ResNet-18/34/50/101/152")
    return arch, variant, depth, int(num_classes)
