"""Tiny ONNX files in the Ultralytics YOLO layout for the end-to-end tests (Tests/Fixtures/onnx/yolo-tiny-*.onnx).

yolo-tiny-detect.onnx: input [1, 3, 64, 64]; one 8x8/stride-8 conv to 6 channels reshaped to output0 [1, 6, 64]
(2 classes, 64 anchors). The box and class weights are zero and the biases constant, so every anchor predicts the
box centre (32, 32), size 20x20 in input pixels with scores 0.05 (class 'cat') and 0.9 (class 'dog'): after NMS one
detection whose place in a frame the test computes from the letterbox alone. Metadata as Ultralytics writes it.
not-yolo.onnx: a Relu, output [1, 3, 64, 64] (an unknown layout).

Usage: fixtures_yolo.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(graph, path, metadata):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fpnstream-fixtures")
    model.ir_version = 8
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"fixtures: {path} ({os.path.getsize(path)} bytes)")


def main():
    out = sys.argv[1]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    w = numpy_helper.from_array(np.zeros((6, 3, 8, 8), np.float32), "w")
    b = numpy_helper.from_array(np.array([32, 32, 20, 20, 0.05, 0.9], np.float32), "b")
    shape = numpy_helper.from_array(np.array([1, 6, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], strides=[8, 8], kernel_shape=[8, 8]),
             helper.make_node("Reshape", ["c", "shape"], ["output0"])]
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])
    g = helper.make_graph(nodes, "yolo-tiny", [x], [y], [w, b, shape])
    save(g, os.path.join(out, "yolo-tiny-detect.onnx"),
         {"task": "detect", "imgsz": "[64, 64]", "stride": "8", "names": "{0: 'cat', 1: 'dog'}"})
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "not-yolo", [x], [y])
    save(g, os.path.join(out, "not-yolo.onnx"), {})


if __name__ == "__main__":
    main()
