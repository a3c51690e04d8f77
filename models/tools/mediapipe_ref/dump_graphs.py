#!/usr/bin/env python3
"""Expands the mediapipe==0.10.21 legacy graphs (.binarypb + the subgraphs registered in the binary)
with ValidatedGraphConfig and writes them as text to models/tools/mediapipe_ref/graphs/, so the
pre-processing, decoding and NMS options can be read without mediapipe's source.
face_detection_*: with FaceDetectionOptions.min_score_thresh = 0.5 as the solution API sets it
for min_detection_confidence=0.5.
"""
import importlib
import os

import mediapipe
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.modules.face_detection import face_detection_pb2
from mediapipe.python._framework_bindings import validated_graph_config

base = os.path.dirname(mediapipe.__file__)
# register every options extension so that text_format can print them
for root, _, files in os.walk(base):
    for f in files:
        if f.endswith("_pb2.py"):
            mod = os.path.relpath(os.path.join(root, f[:-3]), os.path.dirname(base)).replace(os.sep, ".")
            try:
                importlib.import_module(mod)
            except Exception:
                pass
out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")
os.makedirs(out_dir, exist_ok=True)
for rel in ["face_detection/face_detection_short_range_cpu", "face_detection/face_detection_full_range_cpu",
            "face_landmark/face_landmark_front_cpu"]:
    cfg = calculator_pb2.CalculatorGraphConfig()
    cfg.ParseFromString(open(os.path.join(base, "modules", rel + ".binarypb"), "rb").read())
    if rel.startswith("face_detection/"):
        cfg.graph_options[0].Pack(face_detection_pb2.FaceDetectionOptions(min_score_thresh=0.5))
    v = validated_graph_config.ValidatedGraphConfig()
    v.initialize(graph_config=cfg)
    exp = calculator_pb2.CalculatorGraphConfig()
    exp.ParseFromString(v.binary_config)
    path = os.path.join(out_dir, os.path.basename(rel) + ".expanded.pbtxt")
    with open(path, "w") as f:
        f.write(f"# mediapipe==0.10.21 mediapipe/modules/{rel}.binarypb, expanded by ValidatedGraphConfig\n")
        f.write(text_format.MessageToString(exp))
    print("wrote", os.path.relpath(path), len(exp.node), "nodes")
