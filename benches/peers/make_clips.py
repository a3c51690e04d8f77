"""Makes the two benchmark clips from committed photos (tests/images/), deterministically:

    one_face.y4m   face_recognition/obama.jpg, a 4:3 window zooming in and out and panning
                   slowly around the face
    six_faces.y4m  a 3x2 collage of six single-face photos (Obama appears twice: obama.jpg
                   and obama3.jpg are different photos; the committed photos hold only five
                   distinct people whose face fits a tile), the window panning and zooming
                   over it, all six faces always fully in view

Both: 640x480, 30 fps, 150 frames, YUV4MPEG2 C420jpeg (BT.601 limited range, encoded exactly as
facecast's own src/pixel.rs `rgb_to_i420`: benches/peers/y4m.py). About 69 MB each: written to
the directory given, never committed.

Where the faces are comes from tests/fixtures/mediapipe/face_detection.json (MediaPipe's
full-range detections on these photos), so no coordinate is typed in here.

    venv-peers/bin/python benches/peers/make_clips.py OUT_DIR

Same bytes on every run with the pinned Pillow/numpy (benches/peers/requirements.txt): JPEG
decoding and resampling are Pillow's, fixed by version; the motion is a function of the frame
index only.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import sys

import numpy as np
from PIL import Image

import y4m

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "images"
DETECTIONS = REPO / "tests" / "fixtures" / "mediapipe" / "face_detection.json"

WIDTH, HEIGHT, FPS, FRAMES = 640, 480, 30, 150
ASPECT = WIDTH / HEIGHT

ONE_FACE = "face_recognition/obama.jpg"
SIX_FACES = ["face_recognition/obama.jpg", "face_recognition/biden.jpg", "skimage/astronaut.png",
             "facedetect/grace_hopper_512x512.jpg", "pyfeat/single_face.jpg",
             "face_recognition/obama3.jpg"]
# Collage tile (3 x 2 tiles = 960 x 720, already 4:3) and the face width wanted in a tile: about
# 120 px, a face a metre or two from a webcam. A photo too small for that crop gives a larger face.
TILE_W, TILE_H, FACE_IN_TILE = 320, 360, 0.38


def face_boxes(rel: str) -> list[list[float]]:
    """[x, y, w, h] of each face MediaPipe's dense full-range detector found in the photo."""
    return [d["box"] for d in json.loads(DETECTIONS.read_text())["images"][rel]["full_dense"]]


def load(rel: str) -> Image.Image:
    return Image.open(IMAGES / rel).convert("RGB")


def collage() -> tuple[Image.Image, list[list[float]]]:
    """The six photos, each cropped around its face to TILE_W x TILE_H, in a 3 x 2 grid; returns
    the canvas and each face's box on it."""
    canvas = Image.new("RGB", (3 * TILE_W, 2 * TILE_H))
    boxes = []
    for i, rel in enumerate(SIX_FACES):
        photo = load(rel)
        (bx, by, bw, bh), = face_boxes(rel)
        # Crop of the tile's aspect, FACE_IN_TILE face width if it fits in the photo, else the
        # largest that does; centred on the face, then shifted (not cut) to stay inside.
        cw = min(bw / FACE_IN_TILE, photo.width, photo.height * TILE_W / TILE_H)
        ch = cw * TILE_H / TILE_W
        x0 = min(max(bx + bw / 2 - cw / 2, 0), photo.width - cw)
        y0 = min(max(by + bh / 2 - ch / 2, 0), photo.height - ch)
        tile = photo.resize((TILE_W, TILE_H), Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
        tx, ty = (i % 3) * TILE_W, (i // 3) * TILE_H
        canvas.paste(tile, (tx, ty))
        s = TILE_W / cw
        boxes.append([tx + (bx - x0) * s, ty + (by - y0) * s, bw * s, bh * s])
    return canvas, boxes


def windows(size: tuple[int, int], keep: list[float], h_max: float, zoom: float):
    """The crop window (x0, y0, x1, y1) of each frame: its height goes from h_max down to
    h_max / zoom and back (one cosine cycle), its centre pans (x one sine cycle, y two) within
    the centres for which the window stays inside the image and contains `keep`
    (x0, y0, x1, y1). Smooth in the frame index, so the face moves a few pixels per frame."""
    W, H = size
    out = []
    for i in range(FRAMES):
        t = i / FRAMES
        h = h_max * (1 - (1 - 1 / zoom) * (1 - math.cos(2 * math.pi * t)) / 2)
        w = h * WIDTH / HEIGHT
        centre = []
        for (lo_img, hi_img, k0, k1, extent, phase) in ((0, W, keep[0], keep[2], w, 1),
                                                        (0, H, keep[1], keep[3], h, 2)):
            lo = max(lo_img + extent / 2, k1 - extent / 2)
            hi = min(hi_img - extent / 2, k0 + extent / 2)
            # At the widest window lo == hi up to rounding: the window is then the whole image.
            assert lo <= hi + 1e-6, "window too small for the faces to keep in view"
            hi = max(hi, lo)
            centre.append((lo + hi) / 2 + 0.9 * (hi - lo) / 2 * math.sin(2 * math.pi * phase * t))
        cx, cy = centre
        out.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def grow(box, margin):
    x, y, w, h = box
    return [x - margin * w, y - margin * h, x + (1 + margin) * w, y + (1 + margin) * h]


def write_clip(path: pathlib.Path, image: Image.Image, wins, faces) -> None:
    digest = hashlib.sha256()
    fastest = 0.0  # largest per-frame move of a face centre, output pixels
    prev = None
    with open(path, "wb") as f:
        for part in (y4m.header(WIDTH, HEIGHT, FPS),):
            f.write(part)
            digest.update(part)
        for win in wins:
            rgb = np.asarray(image.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC, box=win))
            frame = b"FRAME\n" + y4m.encode_i420(rgb)
            f.write(frame)
            digest.update(frame)
            sx = WIDTH / (win[2] - win[0])
            centres = [((x + w / 2 - win[0]) * sx, (y + h / 2 - win[1]) * sx) for x, y, w, h in faces]
            if prev:
                fastest = max(fastest, *(math.dist(a, b) for a, b in zip(centres, prev)))
            prev = centres
    w0, w1 = wins[0], min(wins, key=lambda w: w[2] - w[0])
    print(f"{path}: {len(wins)} frames, {path.stat().st_size} bytes, sha256 {digest.hexdigest()}; "
          f"face width {faces[0][2] * WIDTH / (w0[2] - w0[0]):.0f}-"
          f"{faces[0][2] * WIDTH / (w1[2] - w1[0]):.0f} px (first face), "
          f"fastest face motion {fastest:.1f} px/frame")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)

    photo = load(ONE_FACE)
    (box,) = face_boxes(ONE_FACE)
    # Window 2.6 face heights tall at most (a face about 180 px high in 480, zooming to 1.25x),
    # capped at 95% of the photo so the window can pan.
    h_max = min(2.6 * box[3], 0.95 * photo.height, 0.95 * photo.width / ASPECT)
    write_clip(out / "one_face.y4m", photo, windows(photo.size, grow(box, 0.3), h_max, 1.25), [box])

    canvas, boxes = collage()
    # Every face with a tenth of its size around it stays in view.
    grown = [grow(b, 0.1) for b in boxes]
    keep = [min(g[0] for g in grown), min(g[1] for g in grown),
            max(g[2] for g in grown), max(g[3] for g in grown)]
    # The whole canvas at most; zooming in to 1.15x still shows every face whole.
    write_clip(out / "six_faces.y4m", canvas, windows(canvas.size, keep, canvas.height, 1.15), boxes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
