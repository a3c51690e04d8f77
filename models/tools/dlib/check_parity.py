"""Compares models/dlib_resnet.onnx (onnxruntime) with dlib's own descriptors in the fixtures.

The input is computed from each fixture PNG exactly as the manifest entry says:
float32 (pixel - mean[c]) / std[c], RGB, NCHW. Prints per case the max |onnx - dlib| and the
Euclidean distance between the two descriptors, then one summary line
`max_abs_diff=... output_range=... cases=...` that build.sh writes into the entry.

usage: check_parity.py MODEL.onnx FIXTURE_DIR [--mean r,g,b --std r,g,b]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("fixtures")
    ap.add_argument("--mean", default="122.782,117.001,104.298")
    ap.add_argument("--std", default="256,256,256")
    args = ap.parse_args()
    mean = np.array([float(v) for v in args.mean.split(",")], dtype=np.float32)
    std = np.array([float(v) for v in args.std.split(",")], dtype=np.float32)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    lo, hi = np.inf, -np.inf
    n = 0
    for js in sorted(pathlib.Path(args.fixtures).glob("*.json")):
        doc = json.loads(js.read_text())
        px = np.asarray(Image.open(js.with_suffix(".png")).convert("RGB"), dtype=np.float32)
        x = ((px - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        (y,) = sess.run(["embedding"], {"input": x})
        ref = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(doc["outputs"][0]["shape"])
        diff = float(np.abs(y - ref).max())
        dist = float(np.linalg.norm(y - ref))
        worst = max(worst, diff)
        lo, hi = min(lo, float(ref.min())), max(hi, float(ref.max()))
        n += 1
        print(f"{js.stem}: max_abs_diff={diff:.3g} l2_distance={dist:.3g} |ref|={np.linalg.norm(ref):.4f}")
    if n == 0:
        raise SystemExit("no fixtures")
    print(f"max_abs_diff={worst:.3g} output_range={hi - lo:.7g} cases={n}")


if __name__ == "__main__":
    main()
