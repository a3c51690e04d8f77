#!/usr/bin/env python3
"""Empirical check of mediapipe's pre-processing: letterbox (centred, black padding) vs stretch.

Pads each image by hand to a centred square with black pixels, runs the full-range detector on it,
maps the boxes back and compares them with tests/fixtures/mediapipe/face_detection.json. If mediapipe
letterboxes with zero padding, the two agree to numerical noise (up to half a pixel of padding
rounding when the size difference is odd).
"""
import json
import os

import cv2
import mediapipe as mp
import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
fx = json.load(open(os.path.join(REPO, "tests", "fixtures", "mediapipe", "face_detection.json")))
for key in ["dlib/2008_002470.jpg", "face_recognition/biden.jpg", "insightface/t1.jpg", "pyfeat/multi_face.jpg"]:
    bgr = cv2.imread(os.path.join(REPO, "tests", "images", key), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    s = max(h, w)
    oy, ox = (s - h) // 2, (s - w) // 2
    sq = np.zeros((s, s, 3), np.uint8)
    sq[oy:oy + h, ox:ox + w] = bgr
    with mp.solutions.face_detection.FaceDetection(min_detection_confidence=0.5, model_selection=1) as det:
        r = det.process(cv2.cvtColor(sq, cv2.COLOR_BGR2RGB))
    mine = sorted([b.xmin * s - ox, b.ymin * s - oy, b.width * s, b.height * s]
                  for b in (d.location_data.relative_bounding_box for d in r.detections or []))
    ref = sorted(f["box"] for f in fx["images"][key]["full_sparse"])
    diff = (max(abs(a - b) for m, q in zip(mine, ref) for a, b in zip(m, q))
            if len(mine) == len(ref) and mine else None)
    print(f"{key} {w}x{h}: padded by hand to {s}x{s} (offset {ox},{oy}): {len(mine)} faces vs {len(ref)} in the "
          f"fixture, max box difference {diff if diff is None else round(diff, 4)} px")
