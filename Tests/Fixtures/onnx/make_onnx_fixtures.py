#!/usr/bin/env python3
"""ONNX files exported by PyTorch, with fixed inputs and PyTorch's outputs, for Kiln's ONNX
importer tests (Tests/ZooTests/ONNXTests.swift). README.md in this folder.

usage:  python Tests/Fixtures/onnx/make_onnx_fixtures.py [OUTDIR]   (default: this folder)

Python: the versions of bench/onnx/requirements.txt (the venv of bench/onnx/install.sh).
Every model is built with the zoo's architecture and parameter names (Sources/Zoo/Models.swift,
ResNet.swift, Generative.swift), weights drawn by torch from a fixed seed (batch-norm running
statistics and affine parameters drawn too, so that they matter), put in eval mode and exported
with the TorchScript exporter (dynamo=False; opset 17; batch axis dynamic). For each NAME:
  NAME.onnx               the model
  NAME.io.safetensors     "input" (float32, a batch of 4 drawn from a fixed seed) and "output"
                          (PyTorch's output on it, float32)
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
BATCH = 4


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, 0, []
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class MLP(nn.Module):  # mlp(): 784-200-200-10, ReLU
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 200), nn.Linear(200, 200), nn.Linear(200, 10)

    def forward(self, x):
        h = F.relu(self.fc1(self.flatten(x)))
        return self.fc3(F.relu(self.fc2(h)))


class LeNet5(nn.Module):  # lenet5()
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = torch.flatten(h, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(h)))))


class BasicBlock(nn.Module):  # GraphBuilder.basicBlock
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNet20(nn.Module):  # resnet20(): 16-32-64 x 3 blocks, projection shortcuts
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        cin = 16
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for block in range(3):
                blocks.append(BasicBlock(cin, width, 2 if stage > 0 and block == 0 else 1))
                cin = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class VAEDecoder(nn.Module):  # vae().decode: 20-400-784, then sigmoid of the logits: the image
    def __init__(self):
        super().__init__()
        self.dec1, self.dec2 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, z):
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z))).view(-1, 1, 28, 28))


class Ops(nn.Module):
    """A small net that uses the importer's other ops."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.w = nn.Parameter(torch.randn(8 * 4 * 4, 6) * 0.2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):  # x [N, 2, 8, 8]
        h = F.leaky_relu(self.conv(x), 0.1)                     # Conv, LeakyRelu: [N, 4, 4, 4]
        h = F.pad(h, (1, 1, 1, 1))                              # Pad: [N, 4, 6, 6]
        h = F.avg_pool2d(h, 3, stride=1)                        # AveragePool: [N, 4, 4, 4]
        t = h.transpose(2, 3)                                   # Transpose
        h = torch.cat([h - t, torch.tanh(h) * 0.5], dim=1)      # Sub, Tanh, Mul, Concat: [N, 8, 4, 4]
        h = self.drop(torch.sigmoid(h) / 3.0)                   # Sigmoid, Div, Dropout (eval: identity)
        h = torch.flatten(h, 1) @ self.w                        # Flatten, MatMul: [N, 6]
        return torch.cat([F.softmax(h, dim=1), F.log_softmax(h, dim=1)], dim=1)   # Softmax, LogSoftmax


class DeconvDecoder(nn.Module):
    """A DCGAN-style decoder with transposed convolutions (Kiln's zoo upsamples and convolves
    instead): z (8) -> 16x4x4 -> ConvTranspose 4x4/2 pad 1 -> 8x8x8 -> ConvTranspose 3x3/2 pad 1
    output_padding 1 -> 1x16x16, sigmoid."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16 * 4 * 4)
        self.deconv1 = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1)

    def forward(self, z):
        h = F.relu(self.fc(z)).view(-1, 16, 4, 4)
        return torch.sigmoid(self.deconv2(F.relu(self.deconv1(h))))


def randomize_batch_norm(model, g):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 1 + 0.2 * torch.randn(c, generator=g)
            m.bias.data = 0.1 * torch.randn(c, generator=g)
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def fold_constants(path):
    """The exporter computes F.pad's pads with ConstantOfShape, Slice, Cast, ... on constants
    (shape arithmetic that Kiln's importer does not evaluate): onnxruntime's basic
    optimisations (constant folding) replace them by one constant, and the file is rewritten."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = path
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def handmade(out):
    """A graph built node by node with onnx.helper (no exporter makes these in inference form):
    Identity, Dropout (inference), Constant, Reshape to a constant shape, Gemm with transA,
    alpha and beta, Add with broadcasting, GlobalAveragePool, MaxPool with padding and
    ceil_mode 0, BatchNormalization with other initializer names. Outputs from onnxruntime."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    import onnxruntime as ort
    rng = np.random.default_rng(9)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    inits = [numpy_helper.from_array(f(3, 2, 3, 3) * 0.3, "k"), numpy_helper.from_array(f(6, 5) * 0.3, "a"),
             numpy_helper.from_array(f(5, 1) * 0.1, "c"), numpy_helper.from_array(np.abs(f(3)) + 0.5, "var"),
             numpy_helper.from_array(f(3) * 0.1, "mean"), numpy_helper.from_array(f(3) + 1, "gamma"),
             numpy_helper.from_array(f(3) * 0.1, "beta")]
    nodes = [
        helper.make_node("Identity", ["x"], ["x1"], name="id"),
        helper.make_node("Conv", ["x1", "k"], ["c1"], name="conv", pads=[1, 0, 1, 0], strides=[1, 2]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["b1"], name="bn", epsilon=1e-3),
        helper.make_node("MaxPool", ["b1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 1], pads=[0, 0, 0, 0]),
        helper.make_node("Dropout", ["p1"], ["d1"], name="drop"),
        helper.make_node("GlobalAveragePool", ["d1"], ["g1"], name="gap"),
        helper.make_node("Constant", [], ["shape"], name="shape_const",
                         value=numpy_helper.from_array(np.array([0, 3], dtype=np.int64))),
        helper.make_node("Reshape", ["g1", "shape"], ["r1"], name="flat"),
        helper.make_node("Concat", ["r1", "r1"], ["r2"], name="cat", axis=1),
        helper.make_node("Gemm", ["a", "r2", "c"], ["y0"], name="gemm", transA=1, transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Transpose", ["y0"], ["y1"], name="t"),
        helper.make_node("Constant", [], ["half"], name="half", value_float=0.5),
        helper.make_node("Add", ["y1", "half"], ["y2"], name="add"),
        helper.make_node("Softmax", ["y2"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(nodes, "handmade", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2, 8, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_onnx_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(out, "handmade.onnx")
    onnx.save(model, path)
    x = np.random.default_rng(10).random((4, 2, 8, 9), dtype=np.float32)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    write_safetensors(os.path.join(out, "handmade.io.safetensors"), [("input", x), ("output", y)],
                      {"onnxruntime": ort.__version__, "opset": 13})
    print(f"handmade: {os.path.getsize(path):,} bytes, output {list(y.shape)}")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    specs = [  # name, module class, input shape of one example, seed
        ("mlp", MLP, [1, 28, 28], 1),
        ("lenet5", LeNet5, [1, 28, 28], 2),
        ("resnet20", ResNet20, [3, 32, 32], 3),
        ("vae-decoder", VAEDecoder, [20], 4),
        ("ops", Ops, [2, 8, 8], 5),
        ("deconv-decoder", DeconvDecoder, [8], 6),
    ]
    for name, cls, shape, seed in specs:
        torch.manual_seed(seed)
        model = cls()
        g = torch.Generator().manual_seed(100 + seed)
        randomize_batch_norm(model, g)
        model.eval()
        x = torch.rand([BATCH] + shape, generator=g) if "decoder" not in name else torch.randn([BATCH] + shape, generator=g)
        with torch.no_grad():
            y = model(x)
        path = os.path.join(out, f"{name}.onnx")
        # TrainingMode.PRESERVE with the model in eval mode: batch norm stays a BatchNormalization
        # node (EVAL would fold it into the convolutions' weights).
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
        if name == "ops":
            fold_constants(path)
        write_safetensors(os.path.join(out, f"{name}.io.safetensors"), [("input", x.numpy()), ("output", y.numpy())],
                          {"torch": torch.__version__, "opset": OPSET, "seed": seed})
        print(f"{name}: {os.path.getsize(path):,} bytes, output {list(y.shape)}")
    handmade(out)


if __name__ == "__main__":
    main()
