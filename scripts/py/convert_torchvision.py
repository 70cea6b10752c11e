"""Converts a torchvision detection checkpoint (state_dict .pth) into fpnstream's safetensors weights.

Usage: scripts/convert-torchvision IN.pth OUT.safetensors [options]   (see --help)

The architecture (Mask R-CNN, Faster R-CNN, RetinaNet, FCOS; v1/v2), ResNet depth and class count are read from the
checkpoint's keys and shapes. The state_dict is loaded into the matching torchvision model, which applies torchvision's
own old-to-new key renames (FPN `inner_blocks.i.weight` -> `inner_blocks.i.0.weight`, RPN `conv.weight` ->
`conv.0.0.weight`, `mask_fcn{k}` -> `mask_head.{k-1}.0`, RetinaNet `conv.{2i}` -> `conv.{i}.0`), and every key and
shape is verified; the model's state_dict (without `num_batches_tracked`) is written as float32 with metadata:
architecture, variant, backbone layout, BatchNorm eps, class names and test-time thresholds.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tv_models  # noqa: E402

FORMAT = "fpnstream-weights-1"
MOBILENET_ARCHS = ["fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]


def fail(msg):
    print(f"convert-torchvision: {msg}", file=sys.stderr)
    sys.exit(1)


def backbone_metadata(arch, variant, depth, eps, frozen):
    if depth == tv_models.MOBILENET:
        return {"backbone": depth, "returned_layers": "4,5", "fpn_norm": "none", "extra_blocks": "pool",
                "fpn_channels": "256", "bn_eps": repr(float(eps)), "frozen_bn": "true" if frozen else "false"}
    bottleneck = tv_models.DEPTHS[depth][1]
    rcnn = arch in ("maskrcnn", "fasterrcnn", "keypointrcnn")
    if rcnn:
        extra = "pool"
    else:
        extra = "p6p7_from_c5" if (arch == "retinanet" and variant == "v2") else "p6p7_from_p5"
    return {
        "backbone": depth,
        "returned_layers": "1,2,3,4" if rcnn else "2,3,4",
        "fpn_norm": "batchnorm" if (rcnn and variant == "v2") else "none",
        "extra_blocks": extra,
        "fpn_channels": "256",
        "bn_eps": repr(float(eps)),
        "frozen_bn": "true" if frozen else "false",
        "c5_channels": str(2048 if bottleneck else 512),
    }


def architecture_name(arch, variant, depth):
    """torchvision's builder name, generalised to other depths: maskrcnn_resnet50_fpn_v2, fcos_resnet18_fpn, ..."""
    if depth == tv_models.MOBILENET:
        return f"{arch}_{depth}" + ("_320" if variant == "320" else "") + "_fpn"
    return f"{arch}_{depth}_fpn" + ("_v2" if variant == "v2" else "")


def metadata(arch, variant, depth, num_classes, class_names, eps, frozen, args, source, keypoint_names=None):
    d = dict(tv_models.DEFAULTS[arch])
    for k in ("score_thresh", "nms_thresh", "detections_per_img", "topk_candidates"):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    meta = {
        "format": FORMAT,
        "architecture": architecture_name(arch, variant, depth),
        "num_classes": str(num_classes),
        "class_names": json.dumps(class_names),
        "min_size": str(args.min_size),
        "max_size": str(args.max_size),
        "image_mean": json.dumps([0.485, 0.456, 0.406]),
        "image_std": json.dumps([0.229, 0.224, 0.225]),
        "score_thresh": repr(float(d["score_thresh"])),
        "nms_thresh": repr(float(d["nms_thresh"])),
        "detections_per_img": str(int(d["detections_per_img"])),
        "source": source,
    }
    if "topk_candidates" in d:
        meta["topk_candidates"] = str(int(d["topk_candidates"]))
    if arch in ("maskrcnn", "fasterrcnn", "keypointrcnn"):
        top_n = "150" if variant == "320" else "1000"  # fasterrcnn_mobilenet_v3_large_320_fpn's test-time top-n
        meta.update({"rpn_pre_nms_top_n": top_n, "rpn_post_nms_top_n": top_n, "rpn_nms_thresh": "0.7",
                     "rpn_score_thresh": "0.05" if depth == tv_models.MOBILENET else "0.0",
                     "box_min_size": "0.01", "rpn_min_size": "0.001"})
    if arch == "maskrcnn":
        meta["mask_thresh"] = repr(float(args.mask_thresh))
    if arch == "keypointrcnn":
        meta["keypoint_names"] = json.dumps(keypoint_names)
    meta.update(backbone_metadata(arch, variant, depth, eps, frozen))
    return meta


def convert_state_dict(sd, args, source):
    """(tensors, metadata) for a raw checkpoint state_dict."""
    try:
        arch, variant, depth, num_classes = tv_models.detect(sd)
    except ValueError as e:
        fail(str(e))
    if depth == tv_models.MOBILENET:
        # The 320 variant has the same weights layout: --arch or the checkpoint's file name says which.
        if args.arch in MOBILENET_ARCHS:
            variant = "320" if args.arch == MOBILENET_ARCHS[1] else "v1"
        elif args.arch:
            fail(f"--arch {args.arch} but the checkpoint is a MobileNetV3-Large Faster R-CNN "
                 f"(--arch {' or '.join(MOBILENET_ARCHS)})")
        elif "320_fpn" in Path(args.input).name:
            variant = "320"
    elif args.arch and args.arch != (arch if variant == "v1" else f"{arch}_v2"):
        fail(f"--arch {args.arch} but the checkpoint is {arch} {variant} ({depth}, {num_classes} classes)")
    if args.min_size is None:
        args.min_size = 320 if variant == "320" else 800
    if args.max_size is None:
        args.max_size = 640 if variant == "320" else 1333
    keypoint_names = None
    if arch == "keypointrcnn":
        k = sd["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1]
        keypoint_names = tv_models.coco_keypoint_names() if k == 17 else [f"keypoint{i}" for i in range(k)]
    if arch == "keypointrcnn" and num_classes == 2 and args.classes in (None, "coco"):
        names = ["__background__", "person"]  # torchvision's keypoint model: background and person
    elif args.classes in (None, "coco"):
        if num_classes == 91:
            names = tv_models.coco_categories()
        elif args.classes == "coco":
            fail(f"--classes coco needs 91 classes, the checkpoint has {num_classes}")
        else:
            print(f"convert-torchvision: warning: {num_classes} classes and no --classes FILE; naming them class0..",
                  file=sys.stderr)
            names = [f"class{i}" for i in range(num_classes)]
    else:
        names = [l.strip() for l in Path(args.classes).read_text().splitlines() if l.strip()]
        if len(names) != num_classes:
            fail(f"{args.classes} lists {len(names)} class names but the checkpoint predicts {num_classes} classes "
                 f"(index 0 is the background: list it too)")
    eps = tv_models.bn_eps(arch, variant, depth) if args.eps is None else args.eps
    frozen = variant in ("v1", "320")
    extra = {"num_keypoints": len(keypoint_names)} if keypoint_names else {}
    model = tv_models.build(arch, variant, depth, num_classes, frozen=frozen, eps=eps, **extra)
    sd = {k: v for k, v in sd.items()}
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        fail(f"checkpoint does not fit torchvision's {arch} {variant} {depth}: {e}")
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        fail(f"checkpoint does not fit torchvision's {arch} {variant} {depth}: "
             f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} "
             f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}")
    tensors = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        tensors[k] = np.ascontiguousarray(v.detach().to(torch.float32).cpu().numpy())
    meta = metadata(arch, variant, depth, num_classes, names, eps, frozen, args, source, keypoint_names)
    return tensors, meta


def parser():
    p = argparse.ArgumentParser(prog="scripts/convert-torchvision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="torchvision checkpoint: a state_dict .pth (also {'model': state_dict})")
    p.add_argument("output", help="output .safetensors")
    p.add_argument("--arch", choices=["maskrcnn", "maskrcnn_v2", "fasterrcnn", "fasterrcnn_v2", "retinanet",
                                      "retinanet_v2", "fcos", "keypointrcnn"] + MOBILENET_ARCHS,
                   help="expected architecture (checked; detected from the keys anyway, except the MobileNetV3 "
                        "320 variant: pass it, or keep '320_fpn' in the file name)")
    p.add_argument("--classes", help="class names file, one per line including index 0 (background), or 'coco' "
                                     "(default when the model has 91 classes: torchvision's COCO list)")
    p.add_argument("--eps", type=float, help="BatchNorm eps of the body (default: 0.0 for v1 R-CNN/RetinaNet "
                                             "COCO checkpoints, as torchvision's overwrite_eps; 1e-5 otherwise)")
    p.add_argument("--score-thresh", dest="score_thresh", type=float, help="default score threshold")
    p.add_argument("--nms-thresh", dest="nms_thresh", type=float, help="default NMS IoU threshold")
    p.add_argument("--detections", dest="detections_per_img", type=int, help="default maximum detections per image")
    p.add_argument("--topk", dest="topk_candidates", type=int, help="RetinaNet/FCOS candidates per level")
    p.add_argument("--mask-thresh", dest="mask_thresh", type=float, default=0.5, help="mask threshold (> t)")
    p.add_argument("--min-size", dest="min_size", type=int, help="transform min_size (default 800; 320 variant 320)")
    p.add_argument("--max-size", dest="max_size", type=int, help="transform max_size (default 1333; 320 variant 640)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    src = Path(args.input)
    if not src.is_file():
        fail(f"{src}: no such file")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad input file
        fail(f"{src}: not a loadable torch checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    try:
        sd = tv_models.unwrap_checkpoint(obj)
    except ValueError as e:
        fail(f"{src}: {e}")
    source = f"{src.name} via scripts/convert-torchvision (torch {torch.__version__}, torchvision {torchvision.__version__})"
    tensors, meta = convert_state_dict(sd, args, source)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out)
    n = sum(v.size for v in tensors.values())
    print(f"convert-torchvision: {meta['architecture']}, "
          f"{meta['num_classes']} classes, {len(tensors)} tensors, {n / 1e6:.1f} M parameters -> {out}")


if __name__ == "__main__":
    main()
