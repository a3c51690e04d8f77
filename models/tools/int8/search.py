"""Exploration (not part of the build): finds which nodes to keep in float for a model.

usage: search.py ID [KEY=VALUE ...]   (recipe keys as quantize.py; default: RECIPES[ID])

1. ranks every quantisable node by its own damage: the model is quantised with only that node
   quantised (its weights, inputs and output), run in onnxruntime (graph optimisations off, so
   QuantizeLinear / DequantizeLinear run as written, like tract) on the CALIBRATION inputs, and
   scored with the task's own metric against the fp32 model;
2. keeps the worst nodes in float one more at a time, in that order, until the calibration
   inputs meet the pass criterion with a margin (drift <= 0.7%, cosine >= 0.995, top-1 >= 97.5%),
   or a third of the nodes are in float;
3. prints the recipe (exclude=...) to try with `quantize.py try` on the held-out inputs.
Only calibration inputs are used, so the held-out figures of quantize.py stay held out.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

import quantize as q
from common import MODELS, WORK, entry

QUANTISABLE = {"Conv", "Gemm", "MatMul", "Add", "Mul", "PRelu", "MaxPool", "AveragePool",
               "GlobalAveragePool", "Concat", "Resize", "Pad", "Relu", "Reshape", "Transpose",
               "Flatten", "Squeeze", "BatchNormalization"}


def ort_outputs(path, xs):
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = onnxruntime.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return [s.run(None, {name: xs[i:i + 1]}) for i in range(len(xs))]


def evaluate(mid, e, ref, got, names):
    split = np.array(["eval"] * len(ref))
    if e["task"] == "detect":
        return q.eval_detector(mid, e, ref, got, names, split)
    if e["task"] == "mesh":
        return q.eval_mesh(ref, got, split)
    if e["task"] == "iris":
        return q.eval_iris(ref, got, split)
    if e["task"] == "embed":
        return q.eval_embed(ref, got, split)
    return q.eval_classifier(mid, e, ref, got, split)


def score(res) -> float:
    if res["metric"] == "max_drift_iod":
        pen = 0.0
        for row in res.get("per_photo", []):
            pen += abs(row["fp32_faces"] - row["matched"]) + abs(row["int8_faces"] - row["matched"])
        return res["value"] + res.get("mean_drift_iod", 0) + pen
    if res["metric"] == "min_cosine":
        return (1 - res["value"]) + (1 - res["mean_cosine"])
    po = res["per_output"].values()
    return (sum(1 - v["top1_agreement"] for v in po) + sum(v["mean_abs_prob_diff"] for v in po)
            + res.get("age_mad_years", 0) / 10)


def good(res) -> bool:
    if res["metric"] == "max_drift_iod":
        ok = res["value"] <= 0.007
        return ok and res.get("face_counts_equal", True) and res.get("face_flag_agreement", 1) == 1
    if res["metric"] == "min_cosine":
        return res["value"] >= 0.995
    return res["value"] >= 0.975


def quantise_with(mid, recipe, named, m, cache, method, exclude, only=None, out=None):
    out = out or (WORK / f"{mid}.search.onnx")
    quantize_static(str(named), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, recipe["act"]), weight_type=QuantType.QInt8,
                    nodes_to_exclude=sorted(set(exclude)),
                    nodes_to_quantize=only,
                    op_types_to_quantize=list(recipe["ops"]) if recipe.get("ops") else None,
                    calibrate_method=getattr(CalibrationMethod, method),
                    extra_options=q.quant_options(recipe),
                    calibration_cache_path=str(cache))
    return out


def main() -> int:
    mid = sys.argv[1]
    recipe = dict(q.RECIPES[mid])
    recipe.update(q.parse_kv(sys.argv[2:]))
    e = entry(mid)
    named, m = q.named_model(mid, recipe)
    cache, method = q.calibration_cache(mid, recipe, m, named)
    base_ex = q.exclusions(recipe, m)
    x, split, names = q.crops(mid)
    idx = np.where(split == "calib")[0]
    xs, nm = x[idx], names[idx]
    ref = ort_outputs(named, xs)
    full = ort_outputs(quantise_with(mid, recipe, named, m, cache, method, base_ex), xs)
    r0 = evaluate(mid, e, ref, full, nm)
    print(f"all quantised (except {len(base_ex)} head nodes): {r0['metric']} {r0['value']} score {score(r0):.5f}", flush=True)
    ops = set(recipe.get("ops") or QUANTISABLE)
    cands = [n.name for n in m.graph.node if n.op_type in ops and n.name not in base_ex]
    # only nodes that actually get Q/DQ matter: rank each alone
    ranking = []
    for k in cands:
        got = ort_outputs(quantise_with(mid, recipe, named, m, cache, method, base_ex, only=[k]), xs)
        r = evaluate(mid, e, ref, got, nm)
        ranking.append((score(r), k))
    ranking.sort(reverse=True)
    print("worst nodes alone:", json.dumps([(k, round(s, 5)) for s, k in ranking[:15]]), flush=True)
    order = [k for s, k in ranking if s > 0]
    chosen = []
    limit = max(1, len(cands) // 3)
    for k in order[:limit]:
        chosen.append(k)
        got = ort_outputs(quantise_with(mid, recipe, named, m, cache, method, base_ex + chosen), xs)
        r = evaluate(mid, e, ref, got, nm)
        print(f"float +{k}: {len(chosen)} nodes, {r['metric']} {r['value']} score {score(r):.5f}", flush=True)
        if good(r):
            break
    print("exclude=" + ",".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
