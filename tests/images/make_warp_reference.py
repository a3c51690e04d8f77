#!/usr/bin/env python3
"""Writes tests/images/derived/warp_*.png and warp_reference.json: OpenCV's own samples of
skimage/astronaut.png through three maps (the PNGs; the JSON lists the maps), for tests/preprocess.rs to hold facecast's crop sampler
(src/model/preprocess.rs) against.

MediaPipe's ImageToTensorCalculator (OpenCV back end) builds every model input with
cv2.warpPerspective(..., INTER_LINEAR, border) on 8-bit RGB. Each case here gives the map from
tensor pixels to image pixels (facecast's Affine a b c d e f), so OpenCV is called with
WARP_INVERSE_MAP and that matrix. Run with a Python that has OpenCV and numpy, e.g. MediaPipe's
reference venv (`pip install opencv-python-headless==4.11.0.86 numpy==1.26.4`):
    python3 tests/images/make_warp_reference.py
"""
import json
import math
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "skimage" / "astronaut.png"
OUT = HERE / "derived" / "warp_reference.json"


def rotated_crop(cx, cy, side, size, degrees, mirrored=False):
    """A square crop of `side` image pixels centred on (cx, cy), rotated, into size x size."""
    s = side / size
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b, d, e = s * cos, -s * sin, s * sin, s * cos
    if mirrored:
        a, d = -a, -d
    half = size / 2
    c = cx - (a * half + b * half)
    f = cy - (d * half + e * half)
    return [a, b, c, d, e, f]


CASES = [
    # FaceMesh-like: a rotated face crop that runs off the image's top edge, edge replicated.
    ("mesh_rotated_replicate", rotated_crop(250, 60, 260, 192, 17.0), 192, "replicate"),
    # Iris-like: a small zoomed-in mirrored eye crop.
    ("eye_mirrored_replicate", rotated_crop(226, 130, 46.3, 64, -8.5, mirrored=True), 64, "replicate"),
    # Detector-like: the whole image shrunk into 128x128 with black padding on the left and top.
    ("letterbox_black", [4.6, 0.0, -40.3, 0.0, 4.6, -20.7], 128, "black"),
]


def main():
    rgb = cv2.cvtColor(cv2.imread(str(SOURCE), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    cases = []
    for name, (a, b, c, d, e, f), size, border in CASES:
        matrix = np.array([[a, b, c], [d, e, f], [0, 0, 1]], dtype=np.float64)
        mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
        out = cv2.warpPerspective(
            rgb, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=mode, borderValue=(0, 0, 0))
        png = f"warp_{name}.png"
        cv2.imwrite(str(OUT.parent / png), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        cases.append({"png": png, "map": [a, b, c, d, e, f], "size": size, "border": border})
    meta = {"source": "skimage/astronaut.png", "opencv": cv2.__version__,
            "call": "cv2.warpPerspective(rgb, [[a,b,c],[d,e,f],[0,0,1]], (size, size), "
                    "INTER_LINEAR | WARP_INVERSE_MAP, border)", "cases": cases}
    OUT.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{OUT.name}: {len(cases)} cases, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
