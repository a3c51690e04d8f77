"""dlib's own face descriptors of every face it finds in a set of photos: the reference for
facecast's alignment + embedding (tests/identity.rs).

For each photo: dlib's HOG frontal face detector (upsample 1), the 5-point shape predictor on
each box, and face_recognition_model_v1.compute_face_descriptor(img, shape) (no jitter, which
cuts dlib.get_face_chip(img, shape, 150, 0.25) internally). Written as one JSON file: per photo,
per face, dlib's box (left, top, right, bottom), its five points and the 128 numbers (7
significant digits).

usage: descriptors.py MODELS_DIR OUT_JSON REPO_ROOT relative/photo.jpg ...
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import sys

import dlib
import numpy as np


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def main():
    models = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    root = pathlib.Path(sys.argv[3])
    detector = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    facerec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    doc = {
        "reference": (
            f"dlib-bin=={importlib.metadata.version('dlib-bin')}: get_frontal_face_detector() upsample 1, "
            "shape_predictor_5_face_landmarks, face_recognition_model_v1.compute_face_descriptor(img, shape), "
            "num_jitters=0"
        ),
        "images": {},
    }
    for rel in sys.argv[4:]:
        img = dlib.load_rgb_image(str(root / rel))
        faces = []
        for det in sorted(detector(img, 1), key=lambda r: (r.left(), r.top())):
            shape = sp(img, det)
            desc = np.array(facerec.compute_face_descriptor(img, shape), dtype=np.float32)
            faces.append(
                {
                    "box": [det.left(), det.top(), det.right(), det.bottom()],
                    "points5": [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
                    "descriptor": [sig7(v) for v in desc],
                }
            )
        doc["images"][rel] = faces
        print(f"{rel}: {len(faces)} face(s)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
