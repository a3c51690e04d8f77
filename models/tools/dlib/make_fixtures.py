"""Parity fixtures for dlib_resnet, computed by dlib itself (PyPI dlib-bin).

For each photo: dlib's HOG frontal face detector (upsample 1, the largest face), the 5-point
shape predictor, dlib.get_face_chip(img, shape, size=150, padding=0.25) -> <case>.png, and
face_recognition_model_v1.compute_face_descriptor(chip) (the aligned-chip overload, no jitter)
-> <case>.json. The chip is re-read from the written PNG before the descriptor is computed, so
the reference output belongs to exactly the pixels in the fixture. The detector box and the five
points (original-image pixels) go under "dlib" for checking a re-implementation of the alignment.

usage: make_fixtures.py MODELS_DIR OUT_DIR REPO_ROOT case=relative/photo.jpg ...
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import sys

import dlib
import numpy as np
from PIL import Image


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def main():
    models = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    root = pathlib.Path(sys.argv[3])
    cases = [a.split("=", 1) for a in sys.argv[4:]]
    out.mkdir(parents=True, exist_ok=True)

    detector = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    facerec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    reference = f"dlib-bin=={importlib.metadata.version('dlib-bin')} face_recognition_model_v1.compute_face_descriptor(chip), num_jitters=0"

    for case, rel in cases:
        path = root / rel
        img = dlib.load_rgb_image(str(path))
        dets = detector(img, 1)
        if len(dets) == 0:
            raise SystemExit(f"{rel}: dlib found no face")
        det = max(dets, key=lambda r: r.width() * r.height())
        shape = sp(img, det)
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        png = out / f"{case}.png"
        Image.fromarray(chip).save(png, optimize=True)
        chip2 = np.asarray(Image.open(png).convert("RGB"))
        assert np.array_equal(chip, chip2)
        desc = np.array(facerec.compute_face_descriptor(chip2), dtype=np.float32)
        # the full-image overload must agree: it aligns the same way internally
        desc_full = np.array(facerec.compute_face_descriptor(img, shape), dtype=np.float32)
        doc = {
            "model": "dlib_resnet",
            "image": path.name,
            "source": (
                f"{rel}: dlib.get_frontal_face_detector() (upsample 1, largest of {len(dets)}), "
                "shape_predictor_5_face_landmarks, dlib.get_face_chip(img, shape, size=150, padding=0.25)"
            ),
            "reference": reference,
            "outputs": [{"name": "embedding", "shape": [1, 128], "data": [sig7(v) for v in desc]}],
            "dlib": {
                "box": [det.left(), det.top(), det.right(), det.bottom()],
                "points5": [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
            },
        }
        (out / f"{case}.json").write_text(json.dumps(doc) + "\n")
        print(
            f"{case}: {rel} {img.shape[1]}x{img.shape[0]}, {len(dets)} face(s), box {doc['dlib']['box']}, "
            f"|d|={np.linalg.norm(desc):.4f}, chip-vs-full-image overload max diff "
            f"{np.abs(desc - desc_full).max():.3g}"
        )


if __name__ == "__main__":
    main()
