"""The ONNX project's backend node tests (shipped in the onnx wheel: onnx/backend/test/data/node/*) through
fpnstream's importer, for every op docs/onnx.md lists as supported.

A test is taken when its model is one node of a supported op (the `_expanded` variants, which rewrite an op into
others, are left out). fpnstream's importer takes one runtime input (a float32 tensor), so the harness adapts
each test the same way: inputs after the first become initializers holding the test's own values (the importer
wants shape-like operands such as Reshape's shape or Slice's starts to be constants anyway), and the first input
is fed as a flat [1, 1, 1, N] tensor reshaped to its real shape by a Reshape node in front. Outputs must match the
test's expected outputs as the ONNX backend runner checks them (numpy.testing.assert_allclose, rtol 1e-3,
atol 1e-7). Printed: per op the tests passed and, for each failure, the reason (fpnstream's error, a shape or value
mismatch); exit status 0 (the list is the result: failures are limits to read, not regressions to gate on).

Usage: onnx_node_tests.py FPNSTREAM_BINARY WORKDIR [--op OP] [--verbose]
"""
import collections
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def supported_ops():
    """First-column op names of the table under docs/onnx.md's '## Supported ops'."""
    lines = open("docs/onnx.md").read().split("\n")
    start = lines.index("## Supported ops")
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(line)
            seen = True
        elif seen:
            break
    ops = set()
    for row in rows[2:]:
        for name in row.split("|")[1].split(","):
            ops.add(name.strip().strip("`"))
    return ops


def load_pb(path):
    t = onnx.TensorProto()
    t.ParseFromString(open(path, "rb").read())
    return numpy_helper.to_array(t)


def adapt(model, inputs):
    """The test model with inputs 1.. as initializers and input 0 fed flat through a Reshape; or a reason."""
    g = model.graph
    real = [i for i in g.input if i.name not in {t.name for t in g.initializer}]
    if not real:
        return None, "no runtime input"
    first = inputs[0]
    if first.dtype != np.float32:
        return None, f"input dtype {first.dtype} (the importer runs float32)"
    for info, value in zip(real[1:], inputs[1:]):
        g.initializer.append(numpy_helper.from_array(value, info.name))
    for info in real[1:]:
        g.input.remove(info)
    name = real[0].name
    flat = f"{name}__flat"
    shape = numpy_helper.from_array(np.array(first.shape, np.int64), f"{name}__shape")
    g.initializer.append(shape)
    g.node.insert(0, helper.make_node("Reshape", [flat, shape.name], [name]))
    g.input.remove(real[0])
    g.input.insert(0, helper.make_tensor_value_info(flat, onnx.TensorProto.FLOAT, [1, 1, 1, max(first.size, 1)]))
    return model, None


def run_case(binary, case_dir, work):
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    data = sorted(glob.glob(os.path.join(case_dir, "test_data_set_0", "input_*.pb")))
    try:
        expected = [load_pb(p) for p in sorted(glob.glob(os.path.join(case_dir, "test_data_set_0", "output_*.pb")))]
        inputs = [load_pb(p) for p in data]
    except ValueError:
        return False, "inputs or outputs are not plain tensors (sequence/optional)"
    if not inputs:
        return False, "no inputs"
    adapted, reason = adapt(model, inputs)
    if adapted is None:
        return False, reason
    path = os.path.join(work, "model.onnx")
    onnx.save(adapted, path)
    x = inputs[0].astype(np.float32).reshape(-1)
    if x.size == 0:
        return False, "empty input"
    x.tofile(os.path.join(work, "x.f32"))
    out_dir = os.path.join(work, "out")
    r = subprocess.run([binary, "onnx-run", path, "--input", os.path.join(work, "x.f32"), "--shape", f"1x1x1x{x.size}",
                        "--output-dir", out_dir], capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip().split("\n")
        detail = msg[-1].strip() if len(msg) > 1 else msg[0]
        return False, re.sub(r"^.*?: ", "", detail.replace(path, "model.onnx"), count=0)[:220]
    manifest = json.load(open(os.path.join(out_dir, "outputs.json")))["outputs"]
    if len(manifest) != len(expected):
        return False, f"{len(manifest)} outputs, expected {len(expected)}"
    for o, e in zip(manifest, expected):
        got = np.fromfile(os.path.join(out_dir, o["file"]), np.float32).reshape(o["shape"])
        if e.dtype != np.float32:
            return False, f"expected output dtype {e.dtype}"
        if list(got.shape) != list(e.shape):
            return False, f"output shape {list(got.shape)}, expected {list(e.shape)}"
        try:
            np.testing.assert_allclose(got, e, rtol=1e-3, atol=1e-7)
        except AssertionError:
            return False, f"values differ (max abs error {float(np.abs(got - e).max()):.3g})"
    return True, ""


def main():
    binary, work = sys.argv[1], sys.argv[2]
    only = sys.argv[sys.argv.index("--op") + 1] if "--op" in sys.argv else None
    verbose = "--verbose" in sys.argv
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    ops = supported_ops()
    results = collections.defaultdict(list)
    for case_dir in sorted(glob.glob(os.path.join(root, "test_*"))):
        name = os.path.basename(case_dir)
        if "_expanded" in name:
            continue
        model = onnx.load(os.path.join(case_dir, "model.onnx"), load_external_data=False)
        if len(model.graph.node) != 1 or model.graph.node[0].op_type not in ops or model.graph.node[0].domain not in ("", "ai.onnx"):
            continue
        op = model.graph.node[0].op_type
        if only and op != only:
            continue
        os.makedirs(os.path.join(work, name), exist_ok=True)
        ok, reason = run_case(binary, case_dir, os.path.join(work, name))
        results[op].append((name, ok, reason))
        if verbose:
            print(f"{'pass' if ok else 'FAIL'} {name} {reason}", flush=True)
    total_pass = total = 0
    for op in sorted(ops):
        rows = results.get(op, [])
        passed = sum(ok for _, ok, _ in rows)
        total_pass += passed
        total += len(rows)
        print(f"{op:20s} {passed:3d}/{len(rows):<3d} passed")
        for name, ok, reason in rows:
            if not ok:
                print(f"    FAIL {name}: {reason}")
    print(f"onnx-node-tests: {total_pass}/{total} passed over {len(ops)} ops (onnx {onnx.__version__} node tests)")


if __name__ == "__main__":
    main()
