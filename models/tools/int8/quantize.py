"""Static QDQ per-channel int8 variants of the fp32 models, validated in tract 0.23.9.

usage:
  quantize.py build [ID ...]      quantise with the recipe in RECIPES, validate in tract against
                                  the fp32 model in tract, time both; ship models/<id>.int8.onnx
                                  + models/tools/entries/<id>_int8.toml if it passes, else remove
                                  them; write models/tools/int8/results/<id>.json
  quantize.py try ID KEY=VALUE... quantise with a modified recipe into the work folder and print
                                  its figures (exploration; nothing is shipped)

Needs models/tools/cache/int8/crops/<id>.npz (crops.py). Every figure is computed in tract (the
Python bindings of the tract version the crate uses) on the fp32 and the int8 file with the input
fact fixed to the manifest's shape.

Recipe keys (RECIPES / CANDIDATES; `try` takes them as KEY=VALUE): act (QUInt8 | QInt8
activations; weights are always QInt8, symmetric, per channel), method (MinMax | Percentile
[percentile=99.99] | Entropy | MSE: own per-tensor range minimising the 8-bit error), ops (op types
to quantise, e.g. Conv,Gemm,MatMul; default: all onnxruntime quantises), noout (no QuantizeLinear
on those ops' outputs), cle (equalise depthwise -> conv pairs first), heads (keep the output heads
in float: the Conv / Gemm / MatMul nodes that feed a graph output through shape-only ops, those
ops, and every Softmax; default on), first (keep the first Conv in float), exclude (more node
names kept in float), float_from (that node and all after it in float), sym (symmetric
activations), flip (also calibrate on the mirrored calibration inputs).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from common import (CROPS, ENTRIES, HERE, IDS, MODELS, WORK, decode, dump, entry, iou, sha256,
                    tract_run, tract_runnable)

import tract

RESULTS = HERE / "results"
SPEED_RUNS = 30

DEFAULT = dict(act="QUInt8", method="MinMax", heads=True, first=False, exclude=(), sym=False,
               flip=False, cle=False, ops=(), noout=False)
# Candidate recipes (choose.py tries each on every model and picks by the calibration inputs).
CONV_ONLY = dict(ops=("Conv", "Gemm", "MatMul"), noout=True)
CANDIDATES = {
    "qdq-all-minmax": dict(),
    "qdq-all-p99.99": dict(method="Percentile", percentile=99.99),
    "conv-in-minmax": dict(**CONV_ONLY),
    "conv-in-p99.99": dict(**CONV_ONLY, method="Percentile", percentile=99.99),
    "conv-in-p99.99-cle": dict(**CONV_ONLY, method="Percentile", percentile=99.99, cle=True),
    "conv-in-mse-cle": dict(**CONV_ONLY, method="MSE", cle=True),
}
# The recipe per model: choose.py's choice (selection/<id>.json), by the calibration inputs only.
CHOSEN = {
    "blazeface_short": "conv-in-mse-cle",
    "blazeface_full": "conv-in-minmax",
    "face_mesh": "conv-in-p99.99-cle",
    "iris": "conv-in-p99.99",
    "dlib_resnet": "conv-in-minmax",
    "age_v1": "conv-in-minmax",
    "gender_v1": "qdq-all-p99.99",
    "fer_mini_xception": "conv-in-mse-cle",
    "faceapi_age_gender": "conv-in-p99.99-cle",
    "faceapi_expression": "conv-in-p99.99-cle",
}
RECIPES: dict[str, dict] = {mid: {**DEFAULT, **CANDIDATES[CHOSEN[mid]], "name": CHOSEN[mid]}
                            for mid in IDS}

# Pass criteria (the brief): embedding cosine >= 0.99 on every face; landmark / keypoint drift
# <= 1% of the inter-ocular (eye-corner) distance; classifier top-1 agreement >= 95%.
MIN_COSINE = 0.99
MAX_DRIFT_IOD = 0.01
MIN_TOP1 = 0.95


# --- quantisation ------------------------------------------------------------------------

class Reader(CalibrationDataReader):
    def __init__(self, name: str, xs: np.ndarray):
        self.name, self.xs, self.i = name, xs, 0

    def get_next(self):
        if self.i >= len(self.xs):
            return None
        self.i += 1
        return {self.name: self.xs[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def crops(mid: str):
    d = np.load(CROPS / f"{mid}.npz")
    return d["x"], d["split"], d["name"]


def preprocessed(mid: str) -> pathlib.Path:
    """onnxruntime's quant_pre_process (onnx shape inference + onnxruntime's basic graph
    optimisations, e.g. Conv+Mul+Add and Conv+BatchNormalization folding) of the fp32 file."""
    out = WORK / f"{mid}.pre.onnx"
    src = MODELS / f"{mid}.onnx"
    stamp = WORK / f"{mid}.pre.sha256"
    if out.exists() and stamp.exists() and stamp.read_text().strip() == sha256(src):
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    quant_pre_process(str(src), str(out), skip_symbolic_shape=True, skip_optimization=False,
                      skip_onnx_shape=False)
    m = onnx.load(str(out))
    # deterministic: no producer noise, no doc strings from the optimiser
    m.producer_name, m.producer_version = "facecast-int8", "1"
    onnx.save(m, str(out))
    stamp.write_text(sha256(src) + "\n")
    return out


SHAPE_OPS = {"Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Softmax",
             "GlobalAveragePool", "Sigmoid", "Identity"}
COMPUTE_OPS = {"Conv", "Gemm", "MatMul"}


def head_nodes(m: onnx.ModelProto) -> list[str]:
    """Nodes between the last compute layer(s) and each graph output (inclusive), and Softmax."""
    producer = {o: n for n in m.graph.node for o in n.output}
    keep, stack, seen = [], [o.name for o in m.graph.output], set()
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in COMPUTE_OPS:
            keep.append(n.name)
        elif n.op_type in SHAPE_OPS:
            keep.append(n.name)
            stack.extend(i for i in n.input if i in producer)
    keep += [n.name for n in m.graph.node if n.op_type == "Softmax" and n.name not in keep]
    return sorted(set(keep))


def unclash(m: onnx.ModelProto) -> None:
    """The quantiser names its new tensors <tensor>_scale, <tensor>_zero_point, ... and silently
    reuses an existing tensor of that name (age_v1 has a Mul output 'layer_43_affine_scale' next
    to the Add output 'layer_43_affine': the QuantizeLinear of the latter then took the Mul's
    activations as its scale, and tract refused the graph). Every tensor except the graph's inputs
    and outputs gets a ':<n>' suffix, so no generated name can equal an existing one."""
    keep = {v.name for v in m.graph.input} | {v.name for v in m.graph.output}
    names = []
    for init in m.graph.initializer:
        names.append(init.name)
    for n in m.graph.node:
        names += list(n.output)
    ren = {}
    for t in names:
        if t and t not in keep and t not in ren:
            ren[t] = f"{t}:{len(ren)}"
    for init in m.graph.initializer:
        init.name = ren.get(init.name, init.name)
    for n in m.graph.node:
        n.input[:] = [ren.get(t, t) for t in n.input]
        n.output[:] = [ren.get(t, t) for t in n.output]
    for vi in m.graph.value_info:
        vi.name = ren.get(vi.name, vi.name)


def named_model(mid: str, recipe: dict | None = None) -> tuple[pathlib.Path, onnx.ModelProto]:
    pre = preprocessed(mid)
    m = onnx.load(str(pre))
    for i, n in enumerate(m.graph.node):  # every node needs a name for nodes_to_exclude
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    unclash(m)
    named = WORK / f"{mid}.named.onnx"
    if recipe and recipe.get("cle"):
        equalise(m, calibration_inputs(mid, recipe))
        named = WORK / f"{mid}.named.cle{'-flip' if recipe['flip'] else ''}.onnx"
    data = m.SerializeToString()
    if not named.exists() or named.read_bytes() != data:
        named.write_bytes(data)
    return named, m


def depthwise_pairs(m: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """(depthwise Conv D, Conv P) where D's output feeds P only, with nothing in between."""
    inits = {i.name for i in m.graph.initializer}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in m.graph.output}
    pairs = []
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group == 1 or n.input[1] not in inits or n.output[0] in outputs:
            continue
        c = consumers.get(n.output[0], [])
        if len(c) == 1 and c[0].op_type == "Conv" and c[0].input[0] == n.output[0] \
                and next((a.i for a in c[0].attribute if a.name == "group"), 1) == 1 \
                and c[0].input[1] in inits:
            pairs.append((n, c[0]))
    return pairs


def equalise(m: onnx.ModelProto, cal: np.ndarray) -> dict:
    """Cross-layer equalisation of every depthwise -> conv pair (no activation in between, so it
    is exact in real arithmetic): output channel c of the depthwise conv D is divided by s_c
    (weights and bias) and input channel c of the next conv P multiplied by s_c. The depthwise
    outputs are quantised per tensor, and in these MediaPipe / face-api nets a few of their
    channels are 10-100x wider than the rest, so one 8-bit grid cannot serve them all; after
    scaling, the activation range of channel c is a_c / s_c and P's weight column range
    w_c * s_c, with s_c = sqrt(a_c / w_c) both are sqrt(a_c * w_c) (a_c: max |activation| of
    channel c over the calibration inputs, w_c: max |P[:, c]|). Returns per-pair statistics."""
    from onnx import numpy_helper
    pairs = depthwise_pairs(m)
    if not pairs:
        return {}
    sess = float_session(m, [d.output[0] for d, _ in pairs])
    feed = sess.get_inputs()[0].name
    amax = [None] * len(pairs)
    for i in range(len(cal)):
        for k, v in enumerate(sess.run(None, {feed: cal[i:i + 1]})):
            a = np.abs(v).max(axis=(0, 2, 3))
            amax[k] = a if amax[k] is None else np.maximum(amax[k], a)
    inits = {i.name: i for i in m.graph.initializer}
    stats = {}
    for (d, p), a in zip(pairs, amax):
        wd = numpy_helper.to_array(inits[d.input[1]]).astype(np.float64)
        wp = numpy_helper.to_array(inits[p.input[1]]).astype(np.float64)
        w = np.abs(wp).max(axis=(0, 2, 3))
        ok = (a > 1e-8) & (w > 1e-8)
        sc = np.ones_like(a, dtype=np.float64)
        sc[ok] = np.sqrt(a[ok] / w[ok])
        sc[ok] /= np.exp(np.log(sc[ok]).mean())  # overall scale unchanged (geometric mean 1)
        wd = wd / sc[:, None, None, None]
        inits[d.input[1]].CopyFrom(numpy_helper.from_array(wd.astype(np.float32), d.input[1]))
        if len(d.input) > 2 and d.input[2]:
            bd = numpy_helper.to_array(inits[d.input[2]]).astype(np.float64) / sc
            inits[d.input[2]].CopyFrom(numpy_helper.from_array(bd.astype(np.float32), d.input[2]))
        wp = wp * sc[None, :, None, None]
        inits[p.input[1]].CopyFrom(numpy_helper.from_array(wp.astype(np.float32), p.input[1]))
        spread_before = float(a.max() / max(np.median(a), 1e-12))
        a2 = a / sc
        stats[d.name] = {"range_spread_before": round(spread_before, 2),
                         "range_spread_after": round(float(a2.max() / max(np.median(a2), 1e-12)), 2)}
    return stats


def calibration_inputs(mid: str, recipe: dict) -> np.ndarray:
    x, split, _ = crops(mid)
    cal = x[split == "calib"]
    if recipe["flip"]:
        cal = np.concatenate([cal, cal[..., ::-1]])
    return np.ascontiguousarray(cal)


def float_session(m: onnx.ModelProto, outputs: list[str]) -> onnxruntime.InferenceSession:
    m = onnx.ModelProto.FromString(m.SerializeToString())
    del m.graph.output[:]
    for t in outputs:
        m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(m.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])


def activation_tensors(m: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in m.graph.initializer}
    out = [v.name for v in m.graph.input if v.name not in inits]
    for n in m.graph.node:
        out += [o for o in n.output if o]
    return out


def mse_ranges(m: onnx.ModelProto, cal: np.ndarray, act: str, bins: int = 2048) -> dict:
    """Per activation tensor, the [rmin, rmax] (0 included) whose 8-bit affine grid
    (256 levels for QUInt8 / QInt8 alike) minimises the expected squared error over the fp32
    activations of the calibration inputs: histogram of `bins` bins, every candidate range
    rmin = a * min, rmax = b * max over a 48 x 48 grid of fractions a, b in [0.02, 1], the error
    of each bin centre rounded (and clipped) on that grid."""
    names = activation_tensors(m)
    sess = float_session(m, names)
    feed = sess.get_inputs()[0].name
    lo = {t: np.inf for t in names}
    hi = {t: -np.inf for t in names}
    for i in range(len(cal)):
        for t, v in zip(names, sess.run(None, {feed: cal[i:i + 1]})):
            lo[t] = min(lo[t], float(v.min()))
            hi[t] = max(hi[t], float(v.max()))
    hist = {t: np.zeros(bins) for t in names}
    for i in range(len(cal)):
        for t, v in zip(names, sess.run(None, {feed: cal[i:i + 1]})):
            if hi[t] > lo[t]:
                hist[t] += np.histogram(v, bins=bins, range=(lo[t], hi[t]))[0]
    fr = np.concatenate([np.linspace(0.02, 0.2, 10), np.linspace(0.22, 1.0, 38)])
    ranges = {}
    for t in names:
        mn, mx = min(lo[t], 0.0), max(hi[t], 0.0)
        if not hi[t] > lo[t]:
            ranges[t] = (mn, mx)
            continue
        edges = np.linspace(lo[t], hi[t], bins + 1)
        c = (edges[:-1] + edges[1:]) / 2
        w = hist[t]
        keep = w > 0
        c, w = c[keep], w[keep]
        As = mn * fr if mn < 0 else np.zeros(1)
        Bs = mx * fr if mx > 0 else np.zeros(1)
        best, arg = np.inf, (mn, mx)
        for a in As:
            b = Bs[:, None]
            scale = np.maximum(b - a, 1e-12) / 255.0
            zp = np.round(-a / scale)
            q = np.clip(np.round(c[None, :] / scale) + zp, 0, 255)
            err = ((q - zp) * scale - c[None, :]) ** 2 @ w
            j = int(np.argmin(err))
            if err[j] < best:
                best, arg = float(err[j]), (float(a), float(Bs[j]))
        ranges[t] = arg
    return ranges


def calibration_cache(mid: str, recipe: dict, m: onnx.ModelProto, named: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Calibrates once per (model, method, options) and caches onnxruntime's range table, so
    that recipes differing only in which nodes stay in float reuse it. Returns (cache, method
    name for quantize_static)."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data
    key = [recipe["method"], recipe["act"], f"sym{int(bool(recipe['sym']))}",
           f"flip{int(bool(recipe['flip']))}", f"cle{int(bool(recipe.get('cle')))}"]
    if recipe["method"] == "Percentile":
        key.append(str(recipe.get("percentile", 99.999)))
    path = WORK / f"{mid}.calib.{'-'.join(key)}.json"
    stamp = path.with_suffix(".sha256")
    digest = sha256(named) + " " + sha256(CROPS / f"{mid}.npz")
    if path.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return path, ("MinMax" if recipe["method"] == "MSE" else recipe["method"])
    path.unlink(missing_ok=True)
    cal = calibration_inputs(mid, recipe)
    if recipe["method"] == "MSE":
        r = mse_ranges(m, cal, recipe["act"])
        data = {t: TensorData(lowest=np.float32(a), highest=np.float32(b)) for t, (a, b) in r.items()}
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)
    else:
        # let quantize_static calibrate and write the cache; the model written is thrown away
        extra = {"ActivationSymmetric": bool(recipe["sym"]), "WeightSymmetric": True}
        if recipe["method"] == "Percentile":
            extra["CalibPercentile"] = float(recipe.get("percentile", 99.999))
        quantize_static(str(named), str(WORK / f"{mid}.calibrating.onnx"),
                        Reader(m.graph.input[0].name, cal), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=getattr(QuantType, recipe["act"]),
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, recipe["method"]),
                        extra_options=extra, calibration_cache_path=str(path))
    stamp.write_text(digest + "\n")
    return path, ("MinMax" if recipe["method"] == "MSE" else recipe["method"])


def exclusions(recipe: dict, m: onnx.ModelProto) -> list[str]:
    exclude = list(recipe.get("exclude", ()))
    if recipe["heads"]:
        exclude += head_nodes(m)
    if recipe["first"]:
        exclude.append(next(n.name for n in m.graph.node if n.op_type == "Conv"))
    if recipe.get("float_from"):
        names = [n.name for n in m.graph.node]
        exclude += names[names.index(recipe["float_from"]):]
    return sorted(set(exclude))


def quant_options(recipe: dict) -> dict:
    extra = {"ActivationSymmetric": bool(recipe["sym"]), "WeightSymmetric": True}
    if recipe.get("noout"):
        # no QuantizeLinear on the outputs of these op types: the int8 work is in the conv /
        # matmul itself (int8 inputs and weights); its float result feeds the next op
        extra["OpTypesToExcludeOutputQuantization"] = list(recipe.get("ops") or ["Conv", "Gemm", "MatMul"])
    return extra


def quantise(mid: str, recipe: dict, out: pathlib.Path) -> dict:
    named, m = named_model(mid, recipe)
    exclude = exclusions(recipe, m)
    cache, method = calibration_cache(mid, recipe, m, named)
    extra = quant_options(recipe)
    quantize_static(str(named), str(out), None,
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                    activation_type=getattr(QuantType, recipe["act"]),
                    weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                    op_types_to_quantize=list(recipe["ops"]) if recipe.get("ops") else None,
                    calibrate_method=getattr(CalibrationMethod, method), extra_options=extra,
                    calibration_cache_path=str(cache))
    q = onnx.load(str(out))
    q.producer_name, q.producer_version = "facecast-int8 (onnxruntime.quantization)", onnxruntime.__version__
    onnx.save(q, str(out))
    return {"excluded": exclude, "calibration_inputs": int(len(calibration_inputs(mid, recipe)))}


# --- validation in tract -----------------------------------------------------------------

def run_all(path: pathlib.Path, shape, xs) -> list[list[np.ndarray]]:
    r = tract_runnable(path, shape)
    return [tract_run(r, xs[i:i + 1]) for i in range(len(xs))]


def speed(fp32: pathlib.Path, int8: pathlib.Path, shape, x, pre: pathlib.Path | None = None) -> dict:
    """Single-thread tract on the same input, the files called in turn (fp32, int8[, the fp32
    file after quant_pre_process]) SPEED_RUNS times after 3 warm-up rounds; medians."""
    paths = [fp32, int8] + ([pre] if pre else [])
    runs = [tract_runnable(p, shape) for p in paths]
    for _ in range(3):
        for r in runs:
            r.run([x])
    times = [[] for _ in runs]
    for _ in range(SPEED_RUNS):
        for r, t in zip(runs, times):
            t0 = time.perf_counter()
            r.run([x])
            t.append(time.perf_counter() - t0)
    med = [statistics.median(t) for t in times]
    out = {"fp32_ms": round(med[0] * 1e3, 3), "int8_ms": round(med[1] * 1e3, 3),
           "ratio": round(med[1] / med[0], 3), "runs": SPEED_RUNS}
    if pre:
        out["fp32_preprocessed_ms"] = round(med[2] * 1e3, 3)
    return out


def eval_detector(mid, e, ref, got, names, split) -> dict:
    rows, worst_face, counts_ok = [], 0.0, True
    drifts, max_point = [], 0.0
    for i in np.where(split == "eval")[0]:
        faces = []
        a = decode(e, ref[i][0], ref[i][1])
        b = decode(e, got[i][0], got[i][1])
        used = set()
        matched = 0
        for sa, ba, ka in a:
            best, bj = 0.5, None
            for j, (sb, bb, kb) in enumerate(b):
                if j not in used and iou(ba, bb) >= best:
                    best, bj = iou(ba, bb), j
            if bj is None:
                continue
            used.add(bj)
            matched += 1
            sb, bb, kb = b[bj]
            iod = float(np.linalg.norm(ka[0] - ka[1]))
            kp = np.linalg.norm(ka - kb, axis=1)
            corners = np.linalg.norm(ba.reshape(2, 2) - bb.reshape(2, 2), axis=1)
            d = float(max(kp.mean(), corners.mean()) / iod)
            drifts.append(d)
            faces.append({"iod_px": round(iod, 2), "drift_iod": round(d, 4),
                          "score": [round(sa, 3), round(sb, 3)]})
            max_point = max(max_point, float(max(kp.max(), corners.max()) / iod))
        ok = len(a) == len(b) == matched
        counts_ok &= ok
        rows.append({"photo": str(names[i]), "fp32_faces": len(a), "int8_faces": len(b),
                     "matched": matched, "faces": faces})
    worst_face = max(drifts) if drifts else 0.0
    passed = counts_ok and worst_face <= MAX_DRIFT_IOD
    return {"metric": "max_drift_iod", "value": round(worst_face, 5),
            "mean_drift_iod": round(float(np.mean(drifts)), 5) if drifts else 0.0,
            "max_point_drift_iod": round(max_point, 5),
            "faces_compared": len(drifts), "photos": int((split == "eval").sum()),
            "face_counts_equal": bool(counts_ok), "crops": len(drifts),
            "per_photo": rows, "pass": bool(passed),
            "rule": "same face count on every held-out photo and, per matched face, max(mean keypoint drift, mean box-corner drift) / |kp0 - kp1| <= 0.01"}


def eval_mesh(ref, got, split) -> dict:
    idx = np.where(split == "eval")[0]
    d, flags = [], 0
    for i in idx:
        a = ref[i][0].reshape(468, 3)[:, :2].astype(np.float64)
        b = got[i][0].reshape(468, 3)[:, :2].astype(np.float64)
        iod = np.linalg.norm(a[33] - a[263])
        d.append(float(np.linalg.norm(a - b, axis=1).mean() / iod))
        flags += (ref[i][1].item() > 0) == (got[i][1].item() > 0)
    worst = max(d)
    return {"metric": "max_drift_iod", "value": round(worst, 5),
            "mean_drift_iod": round(float(np.mean(d)), 5), "crops": len(idx),
            "face_flag_agreement": round(flags / len(idx), 4),
            "pass": bool(worst <= MAX_DRIFT_IOD and flags == len(idx)),
            "rule": "per face: mean 2-D drift of the 468 landmarks / |p33 - p263| (fp32) <= 0.01; face_flag sign equal"}


def eval_iris(ref, got, split) -> dict:
    idx = np.where(split == "eval")[0]
    corner = 64 / 2.3  # eye-corner distance in crop pixels, by construction of the crop
    d, dc = [], []
    for i in idx:
        a = np.concatenate([ref[i][0].reshape(71, 3), ref[i][1].reshape(5, 3)])[:, :2]
        b = np.concatenate([got[i][0].reshape(71, 3), got[i][1].reshape(5, 3)])[:, :2]
        diff = np.linalg.norm(a.astype(np.float64) - b, axis=1)
        d.append(float(diff.mean() / corner))
        dc.append(float(diff[71] / corner))
    worst = max(d)
    return {"metric": "max_drift_iod", "value": round(worst, 5),
            "mean_drift_iod": round(float(np.mean(d)), 5),
            "max_iris_centre_drift": round(max(dc), 5), "crops": len(idx),
            "pass": bool(worst <= MAX_DRIFT_IOD),
            "rule": "per eye: mean 2-D drift of the 71 contour + 5 iris points / eye-corner distance (64/2.3 px) <= 0.01"}


def eval_embed(ref, got, split) -> dict:
    idx = np.where(split == "eval")[0]
    cos = []
    for i in idx:
        a, b = ref[i][0].reshape(-1).astype(np.float64), got[i][0].reshape(-1).astype(np.float64)
        cos.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    cal = np.where(split == "calib")[0]
    cos_all = cos + [float(ref[i][0].reshape(-1) @ got[i][0].reshape(-1)
                           / np.linalg.norm(ref[i][0]) / np.linalg.norm(got[i][0])) for i in cal]
    worst = min(cos)
    return {"metric": "min_cosine", "value": round(worst, 5), "mean_cosine": round(float(np.mean(cos)), 5),
            "min_cosine_all_crops": round(min(cos_all), 5), "crops": len(idx),
            "pass": bool(worst >= MIN_COSINE), "rule": "cosine(fp32, int8) >= 0.99 on every held-out face"}


def expected_age(p, labels):
    return float(np.asarray(p, np.float64).reshape(-1) @ np.asarray([float(v) for v in labels]))


def eval_classifier(mid, e, ref, got, split) -> dict:
    outs = e["output"]
    res = {"metric": "top1_agreement"}
    agree_all, agree_eval, n_all, n_eval = 0, 0, 0, 0
    per_output = {}
    for k, o in enumerate(outs):
        if "labels" in o and o["role"] != "age_probs":
            pass
        if o["role"] in ("age_probs", "gender_probs", "emotion_probs"):
            a = np.array([r[k].reshape(-1).argmax() for r in ref])
            b = np.array([g[k].reshape(-1).argmax() for g in got])
            same = a == b
            per_output[o["name"]] = {"top1_agreement": round(float(same.mean()), 4),
                                     "top1_agreement_heldout": round(float(same[split == "eval"].mean()), 4),
                                     "disagreements": int((~same).sum())}
            agree_all += int(same.sum()); n_all += len(same)
            agree_eval += int(same[split == "eval"].sum()); n_eval += int((split == "eval").sum())
        if o["role"] == "age_probs":
            ya = np.array([expected_age(r[k], o["labels"]) for r in ref])
            yb = np.array([expected_age(g[k], o["labels"]) for g in got])
            res["age_mad_years"] = round(float(np.abs(ya - yb).mean()), 3)
            res["age_max_abs_diff_years"] = round(float(np.abs(ya - yb).max()), 3)
        if o["role"] == "age_years":
            ya = np.array([r[k].item() for r in ref])
            yb = np.array([g[k].item() for g in got])
            res["age_mad_years"] = round(float(np.abs(ya - yb).mean()), 3)
            res["age_max_abs_diff_years"] = round(float(np.abs(ya - yb).max()), 3)
        if o["role"].endswith("_probs"):
            pa = np.stack([r[k].reshape(-1) for r in ref])
            pb = np.stack([g[k].reshape(-1) for g in got])
            per_output[o["name"]]["max_abs_prob_diff"] = round(float(np.abs(pa - pb).max()), 4)
            per_output[o["name"]]["mean_abs_prob_diff"] = round(float(np.abs(pa - pb).max(1).mean()), 5)
    worst = min(v["top1_agreement"] for v in per_output.values())
    res.update({"value": worst, "crops": n_all // max(1, len(per_output)),
                "heldout_crops": n_eval // max(1, len(per_output)), "per_output": per_output,
                "pass": bool(worst >= MIN_TOP1),
                "rule": "top-1 agreement >= 0.95 on all real face crops (calibration + held-out), per output"})
    return res


def metrics(mid: str, e: dict, ref, got, names, split) -> dict:
    if e["task"] == "detect":
        return eval_detector(mid, e, ref, got, names, split)
    if e["task"] == "mesh":
        return eval_mesh(ref, got, split)
    if e["task"] == "iris":
        return eval_iris(ref, got, split)
    if e["task"] == "embed":
        return eval_embed(ref, got, split)
    return eval_classifier(mid, e, ref, got, split)


def validate(mid: str, int8: pathlib.Path, timing: bool = True, calib_too: bool = False) -> dict:
    """Held-out figures (classifiers: all crops, held-out reported too) of the int8 file against
    the fp32 file, both in tract; with calib_too also the same metric on the calibration inputs
    only (res["calibration"]), which is what recipes are chosen by (choose.py)."""
    e = entry(mid)
    shape = e["input"]["shape"]
    x, split, names = crops(mid)
    fp32 = MODELS / f"{mid}.onnx"
    ref = run_all(fp32, shape, x)
    got = run_all(int8, shape, x)
    res = metrics(mid, e, ref, got, names, split)
    if calib_too:
        idx = np.where(split == "calib")[0]
        res["calibration"] = metrics(mid, e, [ref[i] for i in idx], [got[i] for i in idx],
                                     names[idx], np.array(["eval"] * len(idx)))
    if timing:
        first_eval = int(np.where(split == "eval")[0][0])
        res["speed"] = speed(fp32, int8, shape, x[first_eval:first_eval + 1],
                             pre=WORK / f"{mid}.pre.onnx")
    res["fp32_bytes"] = fp32.stat().st_size
    res["int8_bytes"] = int8.stat().st_size
    return res


# --- shipping ----------------------------------------------------------------------------

def fmt(v: float) -> str:
    return repr(float(f"{v:.4g}"))


def describe(recipe: dict) -> str:
    d = (f"onnxruntime=={onnxruntime.__version__} quant_pre_process + quantize_static (QDQ), "
         f"per-channel symmetric QInt8 weights, {recipe['act']} activations")
    m = recipe["method"]
    d += {"MinMax": " (min/max ranges)", "MSE": " (ranges minimising the 8-bit error, own calibration)",
          "Percentile": f" (percentile {recipe.get('percentile', 99.999)} ranges)"}.get(m, f" ({m} ranges)")
    if recipe.get("ops"):
        d += (f"; only {'/'.join(recipe['ops'])} quantised (int8 inputs and weights"
              + (", outputs not requantised)" if recipe.get("noout") else ")"))
    else:
        d += "; Q/DQ on every quantisable op"
    if recipe.get("cle"):
        d += "; each depthwise -> conv pair equalised before quantising (exact in float)"
    return d


def write_entry(mid: str, int8: pathlib.Path, res: dict, recipe: dict, info: dict) -> pathlib.Path:
    """entries/<id>_int8.toml: the fp32 entry with id/file/sha256/precision/variant_of/converter
    and [model.parity] replaced; input, outputs, detector, licence, origin, upstream copied."""
    src = (ENTRIES / f"{mid}.toml").read_text().splitlines()
    lines = [
        "# Written by models/tools/int8/quantize.py (models/tools/int8/build.sh); do not edit by hand.",
        f"# Static QDQ int8 of {mid}.onnx, recipe {recipe['name']}: {describe(recipe)}; calibrated on "
        f"{info['calibration_inputs']} real inputs from the calibration photos (models/tools/int8/crops.py).",
        f"# Kept in float: {', '.join(info['excluded']) if info['excluded'] else 'nothing'}.",
        f"# Validated in tract {tract.version()} against the fp32 file in tract on held-out photos "
        f"(models/tools/int8/RESULTS.md): {res['rule']}. tract_speed_vs_fp32: int8 / fp32 time, tract "
        f"single thread, median of {res['speed']['runs']} runs on x86, where tract runs QDQ graphs in float.",
    ]
    section = None
    body = []
    for line in src:
        s = line.strip()
        if s.startswith("#") and section is None:
            continue
        if s.startswith("["):
            section = s
        if section == "[model.parity]":
            continue
        if section == "[[model]]" and "=" in s:
            key = s.split("=", 1)[0].strip()
            if key == "id":
                line = f'id = "{mid}_int8"'
            elif key == "file":
                line = f'file = "{mid}.int8.onnx"'
            elif key == "sha256":
                line = f'sha256 = "{sha256(int8)}"'
            elif key == "precision":
                line = 'precision = "int8"\n' + f'variant_of = "{mid}"'
            elif key == "converter":
                line = 'converter = "models/tools/int8/quantize.py"'
        body.append(line)
    parity = ["[model.parity]", f'reference = "fp32 model {mid} in tract {tract.version()}"',
              f"crops = {res['crops']}", f"{res['metric']} = {fmt(res['value'])}"]
    if "age_mad_years" in res:
        parity.append(f"age_mad_years = {fmt(res['age_mad_years'])}")
    ratio = float(f"{res['speed']['ratio']:.2g}")
    parity.append(f"tract_speed_vs_fp32 = {ratio!r}")
    out, inserted = [], False
    for line in body:
        if line.strip() == "[model.input]" and not inserted:
            out += parity + [""]
            inserted = True
        out.append(line)
    # drop a blank line left where [model.parity] was
    text = "\n".join(lines + out) + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    path = ENTRIES / f"{mid}_int8.toml"
    path.write_text(text)
    return path


def build(mid: str) -> dict:
    recipe = RECIPES[mid]
    WORK.mkdir(parents=True, exist_ok=True)
    cand = WORK / f"{mid}.int8.onnx"
    info = quantise(mid, recipe, cand)
    res = validate(mid, cand)
    res.update({"id": mid, "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()},
                **info, "onnxruntime": onnxruntime.__version__, "tract": tract.version(),
                "int8_sha256": sha256(cand)})
    shipped = MODELS / f"{mid}.int8.onnx"
    ent = ENTRIES / f"{mid}_int8.toml"
    if res["pass"]:
        shipped.write_bytes(cand.read_bytes())
        write_entry(mid, shipped, res, recipe, info)
    else:
        shipped.unlink(missing_ok=True)
        ent.unlink(missing_ok=True)
    res["shipped"] = bool(res["pass"])
    dump(RESULTS / f"{mid}.json", res)
    return res


def summary(res: dict) -> str:
    extra = f" age MAD {res['age_mad_years']} y" if "age_mad_years" in res else ""
    return (f"{res.get('id', '?')}: {res['metric']} {res['value']}{extra} over {res['crops']} crops -> "
            f"{'PASS' if res['pass'] else 'FAIL'}; tract int8/fp32 {res['speed']['ratio']} "
            f"({res['speed']['int8_ms']} / {res['speed']['fp32_ms']} ms); "
            f"{res['int8_bytes']} / {res['fp32_bytes']} bytes")


def parse_kv(args):
    r = {}
    for a in args:
        k, v = a.split("=", 1)
        if k in ("heads", "first", "sym", "flip", "cle", "noout"):
            r[k] = v.lower() in ("1", "true", "yes")
        elif k == "ops":
            r[k] = tuple(x for x in v.split(",") if x)
        elif k == "exclude":
            r[k] = tuple(x for x in v.split(",") if x)
        elif k == "float_from":
            r[k] = v
        elif k == "percentile":
            r[k] = float(v)
        else:
            r[k] = v
    return r


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    cmd = sys.argv[1]
    if cmd == "build":
        for mid in sys.argv[2:] or IDS:
            print(summary(build(mid)), flush=True)
        return 0
    if cmd == "try":
        mid = sys.argv[2]
        recipe = dict(RECIPES[mid])
        recipe.update(parse_kv(sys.argv[3:]))
        tag = "-".join(f"{k}={v}" for k, v in sorted(parse_kv(sys.argv[3:]).items())) or "default"
        cand = WORK / f"{mid}.try.{tag.replace('/', '_')[:80]}.onnx"
        WORK.mkdir(parents=True, exist_ok=True)
        info = quantise(mid, recipe, cand)
        res = validate(mid, cand)
        res["id"] = mid
        slim = {k: v for k, v in res.items() if k not in ("per_photo", "rule")}
        print(json.dumps({"recipe": recipe, **slim}, default=str))
        print(summary(res), flush=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
