"""dlib_face_recognition_resnet_model_v1.dat -> models/dlib_resnet.onnx

Reads the weights with dlib_format.py (our own reader), checks them against the network definition
of dlib's dnn_face_recognition_ex.cpp (`anet_type`, spelled out below), and emits the same network
as an ONNX graph: opset 13, fixed input [1,3,150,150] (NCHW, RGB, (pixel - avg) / 256 as dlib's
input_rgb_image_sized does), output `embedding` [1,128].

Semantics reproduced from dlib's layer definitions:
  con_      cross-correlation + bias; the padding is stored in the file (dlib's default is
            0 when the stride is not 1, else kernel/2)
  affine_   per-channel y = gamma*x + beta (frozen batch norm); folded into the preceding conv
  max_pool_/avg_pool_  windowed pooling with the stored padding; output size
            1 + (in + 2*pad - window) / stride (integer division)
  add_prev_ output takes the larger of each dimension of the two inputs; where one input is smaller
            it counts as zero there (dlib's tt::add), so the smaller input is zero-padded at the end
  avg_pool_everything  global average pooling
  fc_ (no bias)  y = x @ W, W of shape [num_inputs, num_outputs]
  loss_metric_   the descriptor is the fc output as is (no normalisation)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dlib_format  # noqa: E402

# ---------------------------------------------------------------------------------------------
# anet_type of dlib/examples/dnn_face_recognition_ex.cpp, top-down, as a list of tokens.


def _block(n, stride, sub):
    # block = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>  (BN = affine)
    return [("affine",), ("con", n, 3, 1), ("relu",), ("affine",), ("con", n, 3, stride)] + sub


def _ares(n, sub):
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [("relu",), ("add_prev", 1)] + _block(n, 1, [("tag", 1)] + sub)


def _ares_down(n, sub):
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [("relu",), ("add_prev", 2), ("avg_pool", 2, 2), ("skip", 1), ("tag", 2)] + _block(
        n, 2, [("tag", 1)] + sub
    )


def anet_tokens():
    stem = [("max_pool", 3, 2), ("relu",), ("affine",), ("con", 32, 7, 2)]
    x = stem
    x = _ares(32, _ares(32, _ares(32, x)))  # alevel4
    x = _ares(64, _ares(64, _ares(64, _ares_down(64, x))))  # alevel3
    x = _ares(128, _ares(128, _ares_down(128, x)))  # alevel2
    x = _ares(256, _ares(256, _ares_down(256, x)))  # alevel1
    x = _ares_down(256, x)  # alevel0
    return [("fc", 128), ("avg_pool_everything",)] + x


KIND = {
    "con": "con_4",
    "affine": "affine_",
    "relu": "relu_",
    "max_pool": "max_pool_2",
    "avg_pool": "avg_pool_2",
    "avg_pool_everything": "avg_pool_2",
    "add_prev": "add_prev_",
    "fc": "fc_2",
}


def match(net: dlib_format.Network):
    """Pairs each token (bottom-up) with the layer read from the file; raises on any mismatch."""
    tokens = anet_tokens()
    expected_chain = ["tag_or_skip" if t[0] in ("tag", "skip") else "layer" for t in tokens]
    # the lowest layer (the 7x7 con) sits in the input add_layer, not in the chain
    got_chain = [k for k, _ in net.chain]
    if got_chain != expected_chain[:-1]:
        raise SystemExit("the file's layer nesting differs from dnn_face_recognition_ex.cpp anet_type")
    layers = iter(net.layers)
    paired = []
    for tok in reversed(tokens):
        if tok[0] in ("tag", "skip"):
            paired.append((tok, None))
            continue
        layer = next(layers)
        if layer.kind != KIND[tok[0]]:
            raise SystemExit(f"expected {KIND[tok[0]]} for {tok}, file has {layer.kind}")
        f = layer.fields
        if tok[0] == "con":
            _, n, k, s = tok
            if (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"]) != (n, k, k, s, s):
                raise SystemExit(f"con mismatch {tok} vs {f}")
        elif tok[0] in ("max_pool", "avg_pool"):
            _, k, s = tok
            if (f["nr"], f["nc"], f["stride_y"], f["stride_x"]) != (k, k, s, s):
                raise SystemExit(f"pool mismatch {tok} vs {f}")
        elif tok[0] == "avg_pool_everything":
            if (f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["padding_y"], f["padding_x"]) != (0, 0, 1, 1, 0, 0):
                raise SystemExit(f"avg_pool_everything mismatch {f}")
        elif tok[0] == "affine":
            if f["mode"] != 0:
                raise SystemExit("affine layer not in CONV_MODE")
        elif tok[0] == "fc":
            if f["num_outputs"] != tok[1] or f["bias_mode"] != 1:
                raise SystemExit(f"fc mismatch {f}")
        paired.append((tok, layer))
    if next(layers, None) is not None:
        raise SystemExit("more layers in the file than in anet_type")
    return paired


# ---------------------------------------------------------------------------------------------


class Builder:
    def __init__(self, fold_affine: bool):
        self.nodes = []
        self.inits = []
        self.fold = fold_affine
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base, arr):
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), nm))
        return nm

    def node(self, op, inputs, base, **attrs):
        out = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def pool_out(size, window, stride, pad):
    return 1 + (size + 2 * pad - window) // stride


def build(paired, input_fields, fold_affine=True):
    b = Builder(fold_affine)
    cur = "input"
    shape = (3, input_fields["nr"], input_fields["nc"])  # (C, H, W)
    tags = {}
    pending_conv = None  # (node index, weight name, bias name, W, bias) for folding

    i = 0
    while i < len(paired):
        tok, layer = paired[i]
        kind = tok[0]
        f = layer.fields if layer is not None else None
        if kind == "con":
            w = f["weight"].astype(np.float32)
            bias = f["bias"].astype(np.float32)
            nxt = paired[i + 1] if i + 1 < len(paired) else None
            if fold_affine and nxt is not None and nxt[0][0] == "affine":
                g = nxt[1].fields["gamma"].reshape(-1).astype(np.float32)
                be = nxt[1].fields["beta"].reshape(-1).astype(np.float32)
                w = w * g[:, None, None, None]
                bias = bias * g + be
                i += 1  # affine consumed
            py, px = f["padding_y"], f["padding_x"]
            cur = b.node(
                "Conv",
                [cur, b.const("W", w), b.const("B", bias)],
                "conv",
                kernel_shape=[f["nr"], f["nc"]],
                strides=[f["stride_y"], f["stride_x"]],
                pads=[py, px, py, px],
            )
            shape = (
                f["num_filters"],
                pool_out(shape[1], f["nr"], f["stride_y"], py),
                pool_out(shape[2], f["nc"], f["stride_x"], px),
            )
        elif kind == "affine":
            g = f["gamma"].reshape(1, -1, 1, 1).astype(np.float32)
            be = f["beta"].reshape(1, -1, 1, 1).astype(np.float32)
            cur = b.node("Mul", [cur, b.const("gamma", g)], "mul")
            cur = b.node("Add", [cur, b.const("beta", be)], "add")
        elif kind == "relu":
            cur = b.node("Relu", [cur], "relu")
        elif kind in ("max_pool", "avg_pool"):
            py, px = f["padding_y"], f["padding_x"]
            if py or px:
                # dlib's avg pooling with padding would divide by the in-image count; not needed here
                raise SystemExit("padded pooling not implemented")
            cur = b.node(
                "MaxPool" if kind == "max_pool" else "AveragePool",
                [cur],
                "maxpool" if kind == "max_pool" else "avgpool",
                kernel_shape=[f["nr"], f["nc"]],
                strides=[f["stride_y"], f["stride_x"]],
                pads=[0, 0, 0, 0],
            )
            shape = (
                shape[0],
                pool_out(shape[1], f["nr"], f["stride_y"], 0),
                pool_out(shape[2], f["nc"], f["stride_x"], 0),
            )
        elif kind == "avg_pool_everything":
            cur = b.node("GlobalAveragePool", [cur], "gap")
            shape = (shape[0], 1, 1)
        elif kind == "tag":
            tags[tok[1]] = (cur, shape)
        elif kind == "skip":
            cur, shape = tags[tok[1]]
        elif kind == "add_prev":
            other, oshape = tags[tok[1]]
            out_shape = tuple(max(a, c) for a, c in zip(shape, oshape))
            operands = []
            for name, shp in ((cur, shape), (other, oshape)):
                if shp != out_shape:
                    # ONNX pads: all begins (N, C, H, W), then all ends; dlib pads at the ends
                    pads = [0, 0, 0, 0, 0] + [out_shape[j] - shp[j] for j in range(3)]
                    name = b.node(
                        "Pad", [name, b.const("pads", np.array(pads, dtype=np.int64))], "pad", mode="constant"
                    )
                operands.append(name)
            cur = b.node("Add", operands, "addprev")
            shape = out_shape
        elif kind == "fc":
            cur = b.node("Flatten", [cur], "flatten", axis=1)
            w = f["weight"].astype(np.float32)
            if w.shape[0] != shape[0] * shape[1] * shape[2]:
                raise SystemExit(f"fc expects {w.shape[0]} inputs, got {shape}")
            cur = b.node("MatMul", [cur, b.const("fcW", w)], "fc")
            shape = (w.shape[1],)
        else:
            raise SystemExit(f"unhandled token {tok}")
        i += 1

    # rename the last node's output to `embedding`
    last = b.nodes[-1]
    last.output[0] = "embedding"
    graph = helper.make_graph(
        b.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, input_fields["nr"], input_fields["nc"]])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, shape[0]])],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="facecast models/tools/dlib/convert.py",
    )
    model.ir_version = 8
    model.doc_string = (
        "dlib_face_recognition_resnet_model_v1 (Davis King, CC0-1.0) rebuilt from the dlib .dat. "
        "Input: RGB 150x150 aligned chip, (pixel - [122.782, 117.001, 104.298]) / 256, NCHW. "
        "Output: 128-d descriptor; L2 distance < 0.6 means same person (dlib)."
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dat")
    ap.add_argument("out")
    ap.add_argument("--no-fold", action="store_true", help="emit affine as Mul+Add instead of folding")
    args = ap.parse_args()
    net = dlib_format.read_network(pathlib.Path(args.dat).read_bytes())
    paired = match(net)
    model = build(paired, net.input.fields, fold_affine=not args.no_fold)
    onnx.save(model, args.out)
    f = net.input.fields
    print(
        f"wrote {args.out}: {len(model.graph.node)} nodes, "
        f"{sum(int(np.prod(t.dims)) for t in model.graph.initializer)} parameters; "
        f"input mean {[f['avg_red'], f['avg_green'], f['avg_blue']]} / 256"
    )


if __name__ == "__main__":
    main()
