"""faceapi_age_gender / faceapi_expression: face-api's AgeGenderNet (TinyXception, 2 main blocks)
and FaceExpressionNet (FaceFeatureExtractor: 4 dense blocks), rebuilt as ONNX graphs from npm
`@vladmandic/face-api@1.7.15` `model/*-weights_manifest.json` + `.bin` shards and the network
code in the same package (src/xception/TinyXception.ts, src/ageGenderNet/AgeGenderNet.ts,
src/faceFeatureExtractor/FaceFeatureExtractor.ts + denseBlock.ts, src/faceProcessor/
FaceProcessor.ts, src/faceExpressionNet/FaceExpressionNet.ts, src/common/*.ts).

  * weights: tfjs weight manifests, uint8-quantised: value = float32(q * scale + min) (tfjs
    io.decodeWeights), biases float32;
  * layout: NHWC tfjs ops -> NCHW ONNX; TF 'same' padding written as explicit (possibly
    asymmetric: extra row/column at the end) pads; separableConv2d = depthwise conv (group = C,
    strided) then 1x1 pointwise conv, bias added after;
  * input: (RGB - [122.782, 117.001, 104.298]) / 255, [1, 3, 112, 112] (face-api's normalize +
    div(255) is done by the caller, as the manifest says);
  * crops: face-api's own pipeline in node (faceapi_reference.js crop): SSD MobileNet v1 +
    68-point landmarks -> alignedRect -> extractFaceTensors -> pad to centred square ->
    resizeBilinear(112) -> rounded to bytes = the fixture PNG;
  * reference: face-api's ageGenderNet.forward / faceExpressionNet.forward in node on the bytes
    read back from the PNG (tfjs wasm backend; cpu backend cross-checked).

Run inside models/tools/.venv-attributes (requirements.txt), with node + npm on PATH.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from common import (CACHE, CASES, FIXTURES, HERE, IMAGES, MODELS, fixture_arrays, output_record,
                    sha256, write_entry, write_fixture)

PKG = "@vladmandic/face-api@1.7.15"
NODE_DIR = CACHE / "node"
FACEAPI = NODE_DIR / "node_modules" / "@vladmandic" / "face-api"
WORK = CACHE / "faceapi_work"
MEAN = [122.782, 117.001, 104.298]
EXPRESSIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]


# ----------------------------------------------------------------------------------------------
# weights
def load_weights(name: str) -> dict[str, np.ndarray]:
    manifest = json.loads((FACEAPI / "model" / f"{name}-weights_manifest.json").read_text())
    out = {}
    for group in manifest:
        buf = b"".join((FACEAPI / "model" / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            assert w["dtype"] == "float32"
            if q:
                assert q["dtype"] == "uint8", q
                raw = np.frombuffer(buf, np.uint8, n, off)
                off += n
                # tfjs io.decodeWeights: Float32Array.from(quantized, v => v * scale + min)
                val = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            else:
                val = np.frombuffer(buf, np.float32, n, off).copy()
                off += 4 * n
            out[w["name"]] = val.reshape(w["shape"])
        assert off == len(buf), (name, off, len(buf))
    return out


# ----------------------------------------------------------------------------------------------
# graph builder
class Graph:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = weights
        self.used = set()
        self.nodes, self.inits = [], []
        self.n = 0
        self.size = {}  # tensor name -> (channels, spatial)

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def weight(self, key):
        self.used.add(key)
        return self.w[key]

    @staticmethod
    def same_pads(n, k, s):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2, out

    def conv(self, x, key_w, key_b, stride, tf_name, depthwise=False):
        """tf.conv2d / tf.depthwiseConv2d with 'same' padding (+ bias when key_b)."""
        w = self.weight(key_w)
        c, hw = self.size[x]
        kh, kw = w.shape[:2]
        if depthwise:
            assert w.shape[2] == c and w.shape[3] == 1
            onnx_w = w.transpose(2, 3, 0, 1)  # [C, 1, kh, kw]
            cout, group = c, c
        else:
            assert w.shape[2] == c, (key_w, w.shape, c)
            onnx_w = w.transpose(3, 2, 0, 1)  # [Cout, Cin, kh, kw]
            cout, group = w.shape[3], 1
        b0, b1, out = self.same_pads(hw, kh, stride)
        inputs = [x, self.const(f"{tf_name}/W", onnx_w)]
        if key_b is not None:
            inputs.append(self.const(f"{tf_name}/B", self.weight(key_b)))
        y = self.name(tf_name)
        self.nodes.append(helper.make_node("Conv", inputs, [y], name=y, kernel_shape=[kh, kw],
                                           strides=[stride, stride], pads=[b0, b0, b1, b1],
                                           group=group))
        self.size[y] = (cout, out)
        return y

    def sepconv(self, x, prefix, stride):
        """common/depthwiseSeparableConv.ts: tf.separableConv2d(x, dw, pw, stride, 'same') + bias."""
        d = self.conv(x, f"{prefix}/depthwise_filter", None, stride, f"{prefix}/depthwise", True)
        return self.conv(d, f"{prefix}/pointwise_filter", f"{prefix}/bias", 1, f"{prefix}/pointwise")

    def op(self, op, inputs, base, **attrs):
        y = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [y], name=y, **attrs))
        return y

    def relu(self, x):
        y = self.op("Relu", [x], "relu")
        self.size[y] = self.size[x]
        return y

    def add(self, a, b):
        assert self.size[a] == self.size[b], (self.size[a], self.size[b])
        y = self.op("Add", [a, b], "add")
        self.size[y] = self.size[a]
        return y

    def maxpool_same(self, x, k, s):
        c, hw = self.size[x]
        b0, b1, out = self.same_pads(hw, k, s)
        y = self.op("MaxPool", [x], "maxpool", kernel_shape=[k, k], strides=[s, s],
                    pads=[b0, b0, b1, b1])
        self.size[y] = (c, out)
        return y

    def avgpool_valid(self, x, k, s):
        c, hw = self.size[x]
        out = (hw - k) // s + 1
        y = self.op("AveragePool", [x], "avgpool", kernel_shape=[k, k], strides=[s, s])
        self.size[y] = (c, out)
        return y

    def fc(self, x, prefix, out_name):
        """common/fullyConnectedLayer.ts: matMul(x, weights) + bias, after as2D."""
        c, hw = self.size[x]
        assert hw == 1
        flat = self.op("Flatten", [x], "flatten", axis=1)
        w = self.weight(f"{prefix}/weights")
        assert w.shape[0] == c
        self.nodes.append(helper.make_node(
            "Gemm", [flat, self.const(f"{prefix}/W", w), self.const(f"{prefix}/B", self.weight(f"{prefix}/bias"))],
            [out_name], name=out_name))
        return out_name

    def model(self, inp, outputs, doc):
        assert self.used == set(self.w), f"unused weights: {set(self.w) - self.used}"
        g = helper.make_graph(
            self.nodes, doc, [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [1, 3, 112, 112])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="facecast models/tools/attributes/faceapi.py")
        m.ir_version = 7
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
        return m


def build_age_gender() -> onnx.ModelProto:
    g = Graph(load_weights("age_gender_model"))
    x = "input"
    g.size[x] = (3, 112)

    def reduction_block(x, p, activate=True):  # xception/TinyXception.ts reductionBlock
        out = g.relu(x) if activate else x
        out = g.sepconv(out, f"{p}/separable_conv0", 1)
        out = g.sepconv(g.relu(out), f"{p}/separable_conv1", 1)
        out = g.maxpool_same(out, 3, 2)
        return g.add(out, g.conv(x, f"{p}/expansion_conv/filters", f"{p}/expansion_conv/bias", 2,
                                 f"{p}/expansion_conv"))

    def main_block(x, p):  # mainBlock
        out = g.sepconv(g.relu(x), f"{p}/separable_conv0", 1)
        out = g.sepconv(g.relu(out), f"{p}/separable_conv1", 1)
        out = g.sepconv(g.relu(out), f"{p}/separable_conv2", 1)
        return g.add(out, x)

    out = g.relu(g.conv(x, "entry_flow/conv_in/filters", "entry_flow/conv_in/bias", 2, "entry_flow/conv_in"))
    out = reduction_block(out, "entry_flow/reduction_block_0", False)
    out = reduction_block(out, "entry_flow/reduction_block_1")
    for i in range(2):  # new TinyXception(2)
        out = main_block(out, f"middle_flow/main_block_{i}")
    out = reduction_block(out, "exit_flow/reduction_block")
    out = g.relu(g.sepconv(out, "exit_flow/separable_conv", 1))
    assert g.size[out] == (512, 7), g.size[out]
    pooled = g.avgpool_valid(out, 7, 2)  # AgeGenderNet.runNet: avgPool([7,7],[2,2],'valid')
    g.size[pooled] = (512, 1)
    g.fc(pooled, "fc/age", "age")
    logits = g.fc(pooled, "fc/gender", "gender_logits")
    g.nodes.append(helper.make_node("Softmax", [logits], ["gender"], name="gender", axis=1))
    return g.model(x, [("age", [1, 1]), ("gender", [1, 2])], "faceapi_age_gender")


def build_expression() -> onnx.ModelProto:
    g = Graph(load_weights("face_expression_model"))
    x = "input"
    g.size[x] = (3, 112)

    def dense_block4(x, p, first=False):  # faceFeatureExtractor/denseBlock.ts denseBlock4
        if first:
            out1 = g.relu(g.conv(x, f"{p}/conv0/filters", f"{p}/conv0/bias", 2, f"{p}/conv0"))
        else:
            out1 = g.relu(g.sepconv(x, f"{p}/conv0", 2))
        out2 = g.sepconv(out1, f"{p}/conv1", 1)
        in3 = g.relu(g.add(out1, out2))
        out3 = g.sepconv(in3, f"{p}/conv2", 1)
        in4 = g.relu(g.add(out1, g.add(out2, out3)))
        out4 = g.sepconv(in4, f"{p}/conv3", 1)
        return g.relu(g.add(out1, g.add(out2, g.add(out3, out4))))

    out = dense_block4(x, "dense0", True)
    for i in (1, 2, 3):
        out = dense_block4(out, f"dense{i}")
    assert g.size[out] == (256, 7), g.size[out]
    pooled = g.avgpool_valid(out, 7, 2)  # FaceFeatureExtractor: avgPool([7,7],[2,2],'valid')
    logits = g.fc(pooled, "fc", "logits")  # FaceProcessor.runNet
    g.nodes.append(helper.make_node("Softmax", [logits], ["expressions"], name="expressions", axis=1))
    return g.model(x, [("expressions", [1, 7])], "faceapi_expression")


# ----------------------------------------------------------------------------------------------
def node(mode: str, backend: str):
    env = dict(os.environ, FACEAPI_NODE_DIR=str(NODE_DIR))
    r = subprocess.run(["node", str(HERE / "faceapi_reference.js"), mode, str(WORK), backend],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"faceapi_reference.js {mode} {backend} failed")


def main() -> int:
    models = {"faceapi_age_gender": build_age_gender(), "faceapi_expression": build_expression()}
    for k, m in models.items():
        onnx.save(m, str(MODELS / f"{k}.onnx"))
    sess = {k: ort.InferenceSession((MODELS / f"{k}.onnx").read_bytes(),
                                    providers=["CPUExecutionProvider"]) for k in models}

    # 1. decode the photos for node (no image decoder in pure tfjs)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    for case, rel in CASES.items():
        rgb = np.ascontiguousarray(np.asarray(Image.open(IMAGES / rel).convert("RGB")))
        (WORK / f"{case}.rgb").write_bytes(rgb.tobytes())
        (WORK / f"{case}.json").write_text(json.dumps({"width": rgb.shape[1], "height": rgb.shape[0]}))
    # 2. face-api's own detection + crop
    node("crop", "wasm")
    used = {}
    for case, rel in CASES.items():
        meta = json.loads((WORK / f"{case}.faceapi.json").read_text())
        if meta.get("face", 1) is None:
            print(f"{case}: face-api's SSD found no face; case skipped", file=sys.stderr)
            continue
        crop = np.frombuffer((WORK / f"{case}.crop.rgb").read_bytes(), np.uint8).reshape(112, 112, 3)
        for k in models:
            folder = FIXTURES / k
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop, "RGB").save(folder / f"{case}.png", optimize=True)
        back = np.ascontiguousarray(np.asarray(Image.open(FIXTURES / "faceapi_expression" / f"{case}.png").convert("RGB")))
        assert np.array_equal(back, crop)
        (WORK / f"{case}.input.rgb").write_bytes(back.tobytes())
        used[case] = (rel, meta, back)
    # 3. face-api's nets on the PNG bytes
    node("run", "wasm")
    node("run", "cpu")

    report, preds = {}, {}
    for k in models:
        report[k] = {"diff": [], "fixdiff": [], "wasm_vs_cpu": [], "refs": []}
    for case, (rel, meta, back) in used.items():
        ref = json.loads((WORK / f"{case}.reference.wasm.json").read_text())
        cpu = json.loads((WORK / f"{case}.reference.cpu.json").read_text())
        x = ((back.astype(np.float32) - np.asarray(MEAN, np.float32)) / np.float32(255.0)
             ).transpose(2, 0, 1)[None]
        refname = (f"face-api {PKG} ({{net}}.forward) in node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}, "
                   f"@tensorflow/tfjs@{ref['tfjs']} wasm backend (@tensorflow/tfjs-backend-wasm@4.22.0), on the PNG bytes")
        cx, cy, cw, ch = meta["crop_box"]
        a = meta["alignedRect"]
        source = (f"tests/images/{rel}, face-api's pipeline: SSD MobileNet v1 (score "
                  f"{meta['detection']['score']:.3f}) + 68-point landmarks, alignedRect x,y,w,h="
                  f"{a[0]:.1f},{a[1]:.1f},{a[2]:.1f},{a[3]:.1f}, crop x,y,w,h={cx},{cy},{cw},{ch} "
                  "(clipped, floored), zero-padded to a centred square, tf.image.resizeBilinear to "
                  "112x112 (alignCorners false), rounded to bytes, RGB")
        for k, outs in (("faceapi_age_gender", ("age", "gender")), ("faceapi_expression", ("expressions",))):
            got = sess[k].run(list(outs), {"input": x})
            recs, r = [], report[k]
            for name, g_ in zip(outs, got):
                shape = list(g_.shape)
                refarr = np.asarray(ref[name]["data"], np.float32).reshape(shape)
                cpuarr = np.asarray(cpu[name]["data"], np.float32).reshape(shape)
                r["diff"].append(float(np.abs(g_ - refarr).max()))
                r["wasm_vs_cpu"].append(float(np.abs(cpuarr - refarr).max()))
                r["refs"].append(refarr.reshape(-1))
                recs.append(output_record(name, refarr))
            write_fixture(k, case, rel, source, refname.format(net="ageGenderNet" if k == "faceapi_age_gender" else "faceExpressionNet"), recs)
            stored = fixture_arrays(k, case)
            r["fixdiff"].append(max(float(np.abs(g_ - stored[n]).max()) for n, g_ in zip(outs, got)))
        e = np.asarray(ref["expressions"]["data"])
        preds[case] = {
            "age": ref["age"]["data"][0], "p_male": ref["gender"]["data"][0],
            "gender": "male" if ref["gender"]["data"][0] > 0.5 else "female",
            "top_expression": EXPRESSIONS[int(e.argmax())], "p_top": float(e.max()),
            "faceapi_end_to_end": {"age": meta["age"], "gender": meta["gender"],
                                   "genderProbability": meta["genderProbability"],
                                   "top": max(meta["expressions"], key=meta["expressions"].get)},
        }
    final = {}
    for k, r in report.items():
        allr = np.concatenate(r["refs"])
        final[k] = {"cases": len(used), "max_abs_diff": max(r["diff"]),
                    "max_abs_diff_vs_fixture_json": max(r["fixdiff"]),
                    "tfjs_wasm_vs_cpu": max(r["wasm_vs_cpu"]),
                    "output_range": float(allr.max() - allr.min())}
        if k == "faceapi_age_gender":
            ages = np.asarray([p["age"] for p in preds.values()])
            final[k]["age_output_range"] = float(ages.max() - ages.min())
    common_comments = [
        f"Licence: {PKG} package.json 'license: MIT', LICENSE 'MIT License, Copyright (c) Vladimir "
        "Mandic'; README: 'Forked from face-api.js version 0.22.2', 'Original model weighs: "
        "face-api.js-models' (justadudewhohacks); no separate licence is stated for model/*.",
        "Rebuilt graph: weights from the tfjs weight manifest + .bin shard (uint8 quantised: "
        "q * scale + min), network transcribed from the package's src/ (TypeScript); TF 'same' "
        "padding made explicit (stride 2 pads one extra row/column at the end).",
        "Crop (face-api's own pipeline, faceapi_reference.js): SSD MobileNet v1 + 68 landmarks -> "
        "alignedRect -> extractFaceTensors (clip, floor) -> padToSquare(centred, zeros) -> "
        "tf.image.resizeBilinear(112, 112) (no align corners, no half-pixel centres).",
        "Normalisation (FaceFeatureExtractor.ts / TinyXception.ts): normalize(x, [122.782, "
        "117.001, 104.298]).div(255), RGB, NHWC in tfjs -> NCHW here.",
    ]
    k = "faceapi_age_gender"
    write_entry({
        "_writer": "faceapi.py", "id": k, "task": "age_gender", "file": f"{k}.onnx",
        "sha256": sha256(MODELS / f"{k}.onnx"), "precision": "fp32", "licence": "MIT",
        "origin": f"npm:{PKG} model/age_gender_model-weights_manifest.json + model/age_gender_model.bin; network from src/ageGenderNet, src/xception",
        "upstream": "face-api AgeGenderNet (TinyXception feature extractor with 2 main blocks, age regression + gender softmax), from face-api.js by justadudewhohacks (weights: face-api.js-models), as packaged by Vladimir Mandic",
        "converter": "models/tools/attributes/faceapi.py",
        "parity": {"reference": refname.format(net="ageGenderNet"), "fixtures": f"tests/fixtures/parity/{k}",
                   "cases": len(used),
                   "max_abs_diff": max(final[k]["max_abs_diff"], final[k]["max_abs_diff_vs_fixture_json"]),
                   "output_range": final[k]["output_range"]},
        "input": {"name": "input", "shape": [1, 3, 112, 112], "layout": "nchw", "colour": "rgb",
                  "mean": MEAN, "std": [255.0, 255.0, 255.0]},
        "outputs": [
            {"name": "age", "shape": [1, 1], "role": "age_years",
             "meaning": "age in years, direct regression (AgeGenderNet fc/age, no activation)"},
            {"name": "gender", "shape": [1, 2], "role": "gender_probs",
             "meaning": "softmax (in graph) over [male, female] (AgeGenderNet.predictAgeAndGender: probMale = index 0, male if > 0.5)",
             "labels": ["male", "female"]},
        ],
    }, common_comments + [
        f"Parity: max |onnxruntime - face-api (tfjs wasm)| {final[k]['max_abs_diff']:.3g} over age (years) "
        f"and gender, {final[k]['max_abs_diff_vs_fixture_json']:.3g} against the fixture JSON; tfjs wasm vs cpu "
        f"backend {final[k]['tfjs_wasm_vs_cpu']:.3g}. output_range spans both outputs (ages up to "
        f"{max(p['age'] for p in preds.values()):.1f}).",
    ])
    k = "faceapi_expression"
    write_entry({
        "_writer": "faceapi.py", "id": k, "task": "emotion", "file": f"{k}.onnx",
        "sha256": sha256(MODELS / f"{k}.onnx"), "precision": "fp32", "licence": "MIT",
        "origin": f"npm:{PKG} model/face_expression_model-weights_manifest.json + model/face_expression_model.bin; network from src/faceExpressionNet, src/faceFeatureExtractor, src/faceProcessor",
        "upstream": "face-api FaceExpressionNet (FaceFeatureExtractor: 4 dense blocks of depthwise-separable convs, 7-way softmax), from face-api.js by justadudewhohacks (weights: face-api.js-models), as packaged by Vladimir Mandic",
        "converter": "models/tools/attributes/faceapi.py",
        "parity": {"reference": refname.format(net="faceExpressionNet"), "fixtures": f"tests/fixtures/parity/{k}",
                   "cases": len(used),
                   "max_abs_diff": max(final[k]["max_abs_diff"], final[k]["max_abs_diff_vs_fixture_json"]),
                   "output_range": final[k]["output_range"]},
        "input": {"name": "input", "shape": [1, 3, 112, 112], "layout": "nchw", "colour": "rgb",
                  "mean": MEAN, "std": [255.0, 255.0, 255.0]},
        "outputs": [
            {"name": "expressions", "shape": [1, 7], "role": "emotion_probs",
             "meaning": "softmax (in graph) over face-api's FACE_EXPRESSION_LABELS order (FaceExpressions.ts); map to FER names: angry=angry, disgusted=disgust, fearful=fear, happy, sad, surprised=surprise, neutral",
             "labels": EXPRESSIONS},
        ],
    }, common_comments + [
        f"Parity: max |onnxruntime - face-api (tfjs wasm)| {final[k]['max_abs_diff']:.3g}, "
        f"{final[k]['max_abs_diff_vs_fixture_json']:.3g} against the fixture JSON; tfjs wasm vs cpu backend "
        f"{final[k]['tfjs_wasm_vs_cpu']:.3g}.",
    ])
    print(json.dumps({"parity": final, "predictions": preds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
