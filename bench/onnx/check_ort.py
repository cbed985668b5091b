#!/usr/bin/env python3
"""Runs Kiln-exported ONNX files in onnxruntime and compares with Kiln's own outputs.

usage: python bench/onnx/check_ort.py MODEL.onnx SAMPLE.safetensors [MODEL.onnx SAMPLE.safetensors ...]

Each SAMPLE is written by `kiln export MODEL -o MODEL.onnx --sample SAMPLE.safetensors`: the
inputs Kiln fed (by input name) and Kiln's outputs (by output name). For each output it prints
max |ort - kiln|, max |kiln| and their ratio, and whether the ratio is at most 1e-5 (the issue's
tolerance, relative to the output's largest magnitude). Also runs onnx.checker on the file.
Exit status 1 if any output is outside the tolerance. bench/onnx/check.sh makes the files.
"""
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort

TOLERANCE = 1e-5


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"])
    return out


def main(args):
    if len(args) < 2 or len(args) % 2:
        print(__doc__)
        return 2
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    ok = True
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    print(f"{'model':28s} {'output':8s} {'shape':18s} {'max|ort-kiln|':>14s} {'max|kiln|':>10s} {'relative':>10s}  ok")
    for model_path, sample_path in zip(args[::2], args[1::2]):
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        sample = read_safetensors(sample_path)
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        feeds = {i.name: sample[i.name] for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        for name, got in zip(names, session.run(names, feeds)):
            want = sample[name]
            assert got.shape == want.shape, (model_path, name, got.shape, want.shape)
            diff = float(np.max(np.abs(got.astype(np.float64) - want)))
            scale = float(np.max(np.abs(want)))
            rel = diff / scale if scale > 0 else diff
            good = rel <= TOLERANCE
            ok &= good
            print(f"{model_path.split('/')[-1]:28s} {name:8s} {str(list(got.shape)):18s} {diff:14.3e} {scale:10.4g} {rel:10.3e}  {'yes' if good else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
