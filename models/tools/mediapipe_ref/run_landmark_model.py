#!/usr/bin/env python3
"""Runs a landmark .tflite on ready-made crops in MediaPipe's own runtime and writes its raw
outputs: the reference for models that use MediaPipe's custom TFLite ops
(face_landmark_with_attention.tflite), which tf.lite.Interpreter cannot load.

usage: run_landmark_model.py RESOURCE_ROOT MODEL OUT.json LANDMARKS FLOATS PNG...
  RESOURCE_ROOT  folder MODEL is relative to (an unpacked mediapipe wheel)
  LANDMARKS      the model's landmark outputs in output order, as count x dimensions: "468x3,80x2"
  FLOATS         how many single-value outputs follow them (the face flag: 1)
  PNG            crops of exactly the model's input size, RGB
Called by models/tools/mediapipe/convert.py with this folder's venv (models/tools/.venv-mediapipe_ref).

The graph is FaceLandmarkCpu's model part, as in graphs/face_landmark_front_cpu.expanded.pbtxt:
ImageToTensorCalculator (the whole crop, range [0, 1]) -> InferenceCalculatorCpu with the XNNPACK
delegate and TfLiteCustomOpResolverCalculator's resolver, which holds MediaPipe's kernels for its
custom ops -> SplitTensorVectorCalculator, one tensor per output -> TensorsToLandmarksCalculator
per landmark output, with input_image_width/height 1 so that its normalisation divides by 1 and
the values are the raw tensor's (2-D outputs come back with z = 0, dropped here), and
TensorsToFloatsCalculator (no activation) for the rest. Writes
{"reference": ..., "cases": [{"image": PNG, "outputs": [[flat values], ...]}]}.
"""
import json
import sys

import mediapipe
import numpy as np
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.framework.formats import landmark_pb2
from mediapipe.python import packet_creator, packet_getter
from mediapipe.python._framework_bindings import calculator_graph, image_frame, resource_util
from PIL import Image

REFERENCE = (
    f"MediaPipe runtime, mediapipe=={mediapipe.__version__} (InferenceCalculatorCpu, XNNPACK, "
    "TfLiteCustomOpResolverCalculator's custom-op kernels)"
)


def graph_config(model: str, size: int, landmarks: list, floats: int):
    """The graph, and its output streams in model output order."""
    outputs = [f"landmarks_{i}" for i in range(len(landmarks))] + [f"float_{i}" for i in range(floats)]
    ranges = " ".join(f"ranges {{ begin: {i} end: {i + 1} }}" for i in range(len(outputs)))
    nodes = [
        'node { calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }',
        f'''node {{ calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image"
          output_stream: "TENSORS:input_tensors"
          options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{
            output_tensor_width: {size} output_tensor_height: {size}
            output_tensor_float_range {{ min: 0.0 max: 1.0 }} }} }} }}''',
        f'''node {{ calculator: "InferenceCalculatorCpu" input_stream: "TENSORS:input_tensors"
          output_stream: "TENSORS:output_tensors" input_side_packet: "OP_RESOLVER:op_resolver"
          options {{ [mediapipe.InferenceCalculatorOptions.ext] {{
            model_path: "{model}" delegate {{ xnnpack {{}} }} }} }} }}''',
        f'''node {{ calculator: "SplitTensorVectorCalculator" input_stream: "output_tensors"
          {" ".join(f'output_stream: "tensor_{o}"' for o in outputs)}
          options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{ {ranges} }} }} }}''',
    ]
    for i, (count, _) in enumerate(landmarks):
        nodes.append(f'''node {{ calculator: "TensorsToLandmarksCalculator"
          input_stream: "TENSORS:tensor_landmarks_{i}" output_stream: "NORM_LANDMARKS:landmarks_{i}"
          options {{ [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {{
            num_landmarks: {count} input_image_width: 1 input_image_height: 1 }} }} }}''')
    for i in range(floats):
        nodes.append(f'node {{ calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:tensor_float_{i}" '
                     f'output_stream: "FLOAT:float_{i}" }}')
    text = 'input_stream: "image"\n' + "".join(f'output_stream: "{o}"\n' for o in outputs) + "\n".join(nodes)
    return text_format.Parse(text, calculator_pb2.CalculatorGraphConfig()), outputs


def main() -> int:
    root, model, out, landmarks_arg, floats_arg, *pngs = sys.argv[1:]
    landmarks = [tuple(int(v) for v in spec.split("x")) for spec in landmarks_arg.split(",")]
    floats = int(floats_arg)
    sizes = {Image.open(p).size for p in pngs}
    assert len(sizes) == 1, f"crops of different sizes: {sizes}"
    width, height = sizes.pop()
    assert width == height, f"crops must be square: {width}x{height}"
    size = width
    resource_util.set_resource_dir(root)
    config, outputs = graph_config(model, size, landmarks, floats)
    graph = calculator_graph.CalculatorGraph(graph_config=config)
    packets = {o: [] for o in outputs}
    for o in outputs:
        graph.observe_output_stream(o, lambda stream, packet: packets[stream].append(packet), True)
    graph.start_run()
    for t, png in enumerate(pngs):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        frame = packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB, data=rgb)
        graph.add_packet_to_input_stream("image", frame.at(t))
    graph.close()
    cases = []
    for t, png in enumerate(pngs):
        values = []
        for i, (_, dims) in enumerate(landmarks):
            points = landmark_pb2.NormalizedLandmarkList()
            points.ParseFromString(packet_getter.get_proto(packets[f"landmarks_{i}"][t]).SerializeToString())
            values.append([v for p in points.landmark for v in (p.x, p.y, p.z)[:dims]])
        values += [[packet_getter.get_float(packets[f"float_{i}"][t])] for i in range(floats)]
        cases.append({"image": png, "outputs": values})
    with open(out, "w") as f:
        json.dump({"reference": REFERENCE, "cases": cases}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
