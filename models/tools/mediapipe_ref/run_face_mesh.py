#!/usr/bin/env python3
"""MediaPipe's own FaceMesh (legacy mp.solutions.face_mesh) on the single-face photos in tests/images.

static_image_mode=True, max_num_faces=10, min_detection_confidence=0.5, min_tracking_confidence=0.5,
refine_landmarks=False (face_landmark.tflite, 468 points) and, separately, True
(face_landmark_with_attention.tflite, 478 points). Writes tests/fixtures/mediapipe/face_mesh.json.

Besides the landmarks, the graph's own intermediate outputs are recorded (same graph as the
FaceMesh class, opened through SolutionBase with more output streams): the short-range face
detections that seeded the mesh and the ROIs (rotated squares) the landmark model was run on.
"""
import hashlib
import json
import os
import re

import cv2
import mediapipe as mp
from mediapipe.python.solution_base import SolutionBase

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
IMAGES = os.path.join(REPO, "tests", "images")
OUT = os.path.join(REPO, "tests", "fixtures", "mediapipe", "face_mesh.json")
BINARYPB = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
MIN_DET, MIN_TRACK, MAX_FACES = 0.5, 0.5, 10

SINGLE_FACE = sorted(
    [os.path.join("face_recognition", f) for f in os.listdir(os.path.join(IMAGES, "face_recognition"))
     if f.endswith((".jpg", ".png"))]
    + ["skimage/astronaut.png", "facedetect/grace_hopper_512x512.jpg", "pyfeat/single_face.jpg",
       "pyfeat/0-f1-su-ph.jpg", "pyfeat/0-f15-hao-ph.jpg", "pyfeat/15-f13-anc-ph.jpg", "pyfeat/45-m7-di-ph.jpg"])

PIPELINE = (
    "face_landmark_front_cpu.binarypb expanded (models/tools/mediapipe_ref/graphs/face_landmark_front_cpu.expanded.pbtxt): "
    "static_image_mode=True runs the SHORT-RANGE BlazeFace detector on every image (letterbox 128x128, same "
    "options as the short variant of face_detection.json, min_score_thresh 0.5, weighted NMS IoU 0.3), keeps at "
    "most max_num_faces detections; ROI from each detection (DetectionsToRectsCalculator: box centre and size, "
    "rotation so that keypoint 0 -> keypoint 1 (right eye -> left eye) is horizontal; RectTransformationCalculator: "
    "scale 1.5 x 1.5, square_long: side = 1.5 * the longer box side in pixels). The rotated square ROI is warped "
    "to 192x192 (ImageToTensorCalculator, no keep_aspect_ratio, border_mode not set in the options, range [0, 1], "
    "OpenCV INTER_LINEAR), the landmark model is run, landmarks whose face-presence score is below "
    "min_tracking_confidence (ThresholdingCalculator, 0.5) are dropped, and the 192x192 tensor coordinates are "
    "projected back through the ROI to the image (LandmarkProjectionCalculator). refine_landmarks=True swaps in "
    "face_landmark_with_attention.tflite, whose eye/lip/iris sub-meshes are merged by LandmarksRefinementCalculator "
    "(478 = 468 + 10 iris points). Images read with cv2.imread(IMREAD_COLOR) (alpha dropped), BGR->RGB."
)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(refine):
    sb = SolutionBase(
        binary_graph_path=BINARYPB,
        side_inputs={"num_faces": MAX_FACES, "with_attention": refine, "use_prev_landmarks": False},
        calculator_params={
            "facedetectionshortrangecpu__facedetectionshortrange__facedetection__TensorsToDetectionsCalculator.min_score_thresh": MIN_DET,
            "facelandmarkcpu__ThresholdingCalculator.threshold": MIN_TRACK,
        },
        outputs=["multi_face_landmarks", "face_detections", "face_rects_from_detections"])
    res = {}
    try:
        for key in SINGLE_FACE:
            bgr = cv2.imread(os.path.join(IMAGES, key), cv2.IMREAD_COLOR)
            assert bgr is not None, key
            h, w = bgr.shape[:2]
            out = sb.process({"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)})
            faces = []
            for lm in out.multi_face_landmarks or []:
                faces.append([[round(p.x * w, 3), round(p.y * h, 3), round(p.z, 5)] for p in lm.landmark])
            dets = []
            for d in out.face_detections or []:
                bb = d.location_data.relative_bounding_box
                dets.append({"score": round(d.score[0], 4),
                             "box": [round(bb.xmin * w, 4), round(bb.ymin * h, 4), round(bb.width * w, 4), round(bb.height * h, 4)],
                             "keypoints": [[round(k.x * w, 4), round(k.y * h, 4)] for k in d.location_data.relative_keypoints]})
            rois = [{"center": [round(r.x_center * w, 4), round(r.y_center * h, 4)],
                     "size": [round(r.width * w, 4), round(r.height * h, 4)],
                     "rotation": round(r.rotation, 6)} for r in out.face_rects_from_detections or []]
            res[key] = {"width": w, "height": h, "landmarks": faces, "detections": dets, "rois": rois}
    finally:
        sb.close()
    return res


def compact(text):
    # one innermost numeric list per line ([x, y, z] landmarks stay on one line)
    return re.sub(r"\[\s+([-0-9.e+,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text)


def main():
    pkg = os.path.dirname(mp.__file__)
    plain, refined = run(False), run(True)
    images = {}
    for key in SINGLE_FACE:
        a, b = plain[key], refined[key]
        # the detector and ROIs do not depend on refine_landmarks
        assert a["detections"] == b["detections"] and a["rois"] == b["rois"], key
        assert all(len(f) == 468 for f in a["landmarks"]) and all(len(f) == 478 for f in b["landmarks"]), key
        images[key] = {"width": a["width"], "height": a["height"], "detections": a["detections"], "rois": a["rois"],
                       "refine_false": a["landmarks"], "refine_true": b["landmarks"]}
    models = {}
    for name, rel in [("detector", "modules/face_detection/face_detection_short_range.tflite"),
                      ("refine_false", "modules/face_landmark/face_landmark.tflite"),
                      ("refine_true", "modules/face_landmark/face_landmark_with_attention.tflite")]:
        models[name] = f"pypi:mediapipe==0.10.21 mediapipe/{rel} (sha256 {sha256(os.path.join(pkg, rel))})"
    doc = {
        "reference": (f"mediapipe==0.10.21 solutions.face_mesh, static_image_mode=True, max_num_faces={MAX_FACES}, "
                      f"min_detection_confidence={MIN_DET}, min_tracking_confidence={MIN_TRACK}, "
                      "refine_landmarks=False and True"),
        "models": models,
        "pipeline": PIPELINE,
        "coordinates": ("landmarks: [x, y, z] with x, y in pixels of the original image (rounded to 3 decimals) and z "
                        "as given by mediapipe (relative depth, origin near the head centre, same scale as the "
                        "normalised x: multiply by width for pixels; negative = towards the camera; rounded to 5 "
                        "decimals, since 3 would mean steps of 0.5-2 px here). refine_false: 468 points per face, "
                        "refine_true: 478 (468 + 10 iris: 468-472 the subject's right iris (next to point 33), 473-477 the left iris (next to 263), centre first). "
                        "detections: the short-range detections that seeded the mesh ([xmin, ymin, w, h] px, 6 "
                        "keypoints px); rois: the rotated square the landmark model saw (centre px, size px, "
                        "rotation radians). Lists of faces are in mediapipe's output order; landmarks and "
                        "detections/rois are separate lists (a face whose presence score is below 0.5 would have "
                        "a ROI but no landmarks)."),
        "images": images,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(compact(json.dumps(doc, indent=1)))
        f.write("\n")
    for key, e in images.items():
        print(f"{key:44} {e['width']}x{e['height']} detections {len(e['detections'])} "
              f"meshes {len(e['refine_false'])}/{len(e['refine_true'])}")
    print("wrote", os.path.relpath(OUT, REPO))


if __name__ == "__main__":
    main()
