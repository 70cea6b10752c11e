"""Torch-computed fixtures for the Tensor op set (Tests/Fixtures/tensor/torch_ops.safetensors).

Each case stores its inputs and torch's output as tensors named CASE.x, CASE.w, CASE.b, CASE.y (and BN parameters),
and its parameters as JSON in the metadata under the case name. Usage: python fixtures_tensor.py OUT.safetensors
"""
import json
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.ops.misc import FrozenBatchNorm2d

torch.manual_seed(1234)
tensors, meta = {}, {}


def put(name, params, **ts):
    meta[name] = json.dumps(params)
    for k, v in ts.items():
        tensors[f"{name}.{k}"] = v.detach().float().clone().contiguous()


def conv(name, x_shape, w_shape, stride, padding, dilation, groups, relu, bias=True):
    x, w = torch.randn(x_shape), torch.randn(w_shape) * 0.3
    b = torch.randn(w_shape[0]) if bias else None
    y = F.conv2d(x, w, b, stride, padding, dilation, groups)
    if relu:
        y = F.relu(y)
    extra = {"b": b} if bias else {}
    put(name, {"op": "conv", "stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
               "relu": relu}, x=x, w=w, y=y, **extra)


conv("conv_grouped", [1, 4, 11, 13], [6, 2, 3, 3], 2, 1, 1, 2, True)
conv("conv_dilated", [2, 3, 9, 10], [5, 3, 3, 3], 1, 2, 2, 1, False)
conv("conv_depthwise", [1, 6, 12, 11], [6, 1, 5, 5], 2, 2, 1, 6, True)
conv("conv_1x1", [1, 16, 7, 9], [12, 16, 1, 1], 1, 0, 1, 1, False)
conv("conv_1x1_s2", [1, 16, 7, 9], [12, 16, 1, 1], 2, 0, 1, 1, False, bias=False)

# ResNet stem with FrozenBatchNorm2d (eps 0.0 as torchvision v1 detection checkpoints) + ReLU.
x, w = torch.randn(1, 3, 21, 19), torch.randn(8, 3, 7, 7) * 0.2
bn = FrozenBatchNorm2d(8, eps=0.0)
bn.weight.copy_(torch.rand(8) + 0.5); bn.bias.copy_(torch.randn(8))
bn.running_mean.copy_(torch.randn(8) * 0.1); bn.running_var.copy_(torch.rand(8) + 0.2)
y = F.relu(bn(F.conv2d(x, w, None, 2, 3)))
put("conv_stem_frozenbn", {"op": "conv_bn", "stride": 2, "padding": 3, "dilation": 1, "groups": 1, "relu": True,
                           "eps": 0.0}, x=x, w=w, y=y, bn_weight=bn.weight, bn_bias=bn.bias,
    bn_mean=bn.running_mean, bn_var=bn.running_var)


def convt(name, x_shape, w_shape, stride, padding, output_padding, groups):
    x, w, b = torch.randn(x_shape), torch.randn(w_shape) * 0.3, torch.randn(w_shape[1] * groups)
    y = F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups)
    put(name, {"op": "convt", "stride": stride, "padding": padding, "output_padding": output_padding,
               "groups": groups}, x=x, w=w, b=b, y=y)


convt("convt_2x2s2", [1, 4, 5, 6], [4, 3, 2, 2], 2, 0, 0, 1)
convt("convt_3x3s2p1op1", [1, 3, 5, 4], [3, 4, 3, 3], 2, 1, 1, 1)

x = torch.randn(1, 3, 13, 11)
put("maxpool_3x3s2p1", {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}, x=x, y=F.max_pool2d(x, 3, 2, 1))
put("maxpool_1x1s2", {"op": "maxpool", "kernel": 1, "stride": 2, "padding": 0}, x=x, y=F.max_pool2d(x, 1, 2, 0))

x = torch.randn(1, 2, 5, 7)
for (h, w) in [(13, 17), (10, 14), (3, 4)]:
    put(f"nearest_{h}x{w}", {"op": "nearest", "size": [h, w]}, x=x, y=F.interpolate(x, size=(h, w), mode="nearest"))
x = torch.randn(1, 2, 9, 13)
for (h, w) in [(20, 11), (5, 7), (31, 40)]:
    put(f"bilinear_{h}x{w}", {"op": "bilinear", "size": [h, w]}, x=x,
        y=F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))

x, g, b = torch.randn(2, 8, 5, 7) * 2 + 1, torch.randn(8), torch.randn(8)
put("groupnorm", {"op": "groupnorm", "groups": 4, "eps": 1e-5}, x=x, w=g, b=b, y=F.group_norm(x, 4, g, b, 1e-5))
x = torch.randn(3, 91) * 4
put("softmax", {"op": "softmax", "dim": 1}, x=x, y=F.softmax(x, dim=1))
x, w, b = torch.randn(5, 18), torch.randn(7, 18), torch.randn(7)
put("linear", {"op": "linear"}, x=x, w=w, b=b, y=F.linear(x, w, b))
x = torch.randn(2, 3, 4, 5) * 6
put("sigmoid", {"op": "sigmoid"}, x=x, y=torch.sigmoid(x))

meta["torch_version"] = torch.__version__
save_file(tensors, sys.argv[1], metadata=meta)
print(f"wrote {len(tensors)} tensors, {len(meta) - 1} cases to {sys.argv[1]}")
