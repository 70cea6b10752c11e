"""Box IoU of [x1, y1, x2, y2] lists (torchvision's convention: no +1), shared by the parity compare scripts
(parity_detector.py runs in the torch venv, parity_panoptic.py in the scoring venv; this module needs neither)."""


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0
