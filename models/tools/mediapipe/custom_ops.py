"""Replaces MediaPipe's custom TFLite ops, which tf2onnx leaves as `TFL_*` nodes, by standard
ONNX opset-13 ops, so that the converted file runs in onnxruntime and in tract without custom
operators.

face_landmark_with_attention.tflite crops three 16x16 patches (lips, each eye) out of an early
48x48 feature map around landmarks the model itself predicted, runs small heads on them and
maps their points back. It does so with three ops registered by MediaPipe's
TfLiteCustomOpResolverCalculator (custom code and version in the flatbuffer, CPU kernels in
mediapipe/util/tflite/operations/*.cc). tf2onnx 1.16.1 converts every builtin op and keeps each
custom node, its flexbuffer options copied to ONNX attributes; nothing can run those nodes.
`replace_custom_ops` swaps each for the same computation in standard ops (all tensors batch 1,
matrices row-major 4x4, as the kernels read them):

- Landmarks2TransformMatrix v2, landmarks [1, N, 3] -> matrix [1, 4, 4]: rotation
  r = target_rotation_radians - atan2(right - left) of the two rotation landmarks; the subset's
  points rotated by r give an axis-aligned box (w, h, centre); the matrix maps output-patch
  coordinates to landmark coordinates:
  Shift(centre rotated back) . Rot(-r) . Scale(scale_x * w / output_width,
  scale_y * h / output_height) . Shift(-output_width / 2, -output_height / 2).
  ONNX has no Atan2: cos r and sin r come from the normalised rotation vector. When the two
  rotation landmarks coincide the vector is zero; the kernel's atan2(0, 0) = 0 is kept by taking
  the vector (1, 0) there, so the output stays finite (`check_coincident_rotation_points`).
- TransformTensorBilinear v2, features [1, H, W, C] (NHWC) and matrix -> [1, oh, ow, C]: the
  matrix is first shifted so that pixel centres map to pixel centres (v2's align-corners
  correction), each output pixel is sampled bilinearly at the mapped point from its four floor
  corners, and a sample whose point lies outside [0, W-1] x [0, H-1] is 0 in every channel (the
  kernel's rule; GridSample's zero padding blends the corners instead, so it is not used). The
  samples are gathered from the channel-first map (the converter transposes it to channel-last
  for the node, and the node's output back: both transpositions go).
- TransformLandmarks v2, points [1, N, 2] and matrix -> [1, N, 2]: x' = m00 x + m01 y + m03,
  y' = m10 x + m11 y + m13.

usage: custom_ops.py   (runs `check_coincident_rotation_points` in onnxruntime and tract)
"""

import pathlib
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32 = np.float32
I64 = np.int64


class NodeBuilder:
    """Appends nodes and constants standing in for one custom node; names are prefixed with
    that node's name and numbered, so a rebuild writes the same graph."""

    def __init__(self, prefix: str, initializers: list):
        self.prefix, self.initializers, self.nodes, self.count = prefix, initializers, [], 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value, dtype) -> str:
        name = self.name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list, output: str = None, **attrs) -> str:
        output = output or self.name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.name(f"node_{op_type}"), **attrs))
        return output

    def slice(self, x: str, start, end, axis) -> str:
        """x[start:end] along the given axes (lists for several)."""
        ints = lambda v: self.const(np.atleast_1d(v), I64)
        return self.op("Slice", [x, ints(start), ints(end), ints(axis)])


def landmarks_to_transform_matrix(b: NodeBuilder, landmarks: str, output: str, attrs: dict):
    """Landmarks2TransformMatrix v2: landmarks [1, N, 3] -> output [1, 4, 4]."""
    gather = lambda idx: b.op("Gather", [landmarks, b.const(idx, I64)], axis=1)
    points = gather(list(attrs["subset_idxs"]))  # [1, K, 3]
    delta = b.op("Sub", [gather([attrs["right_rotation_idx"]]), gather([attrs["left_rotation_idx"]])])
    dx, dy = b.slice(delta, 0, 1, 2), b.slice(delta, 1, 2, 2)  # [1, 1, 1]
    norm = b.op("Sqrt", [b.op("Add", [b.op("Mul", [dx, dx]), b.op("Mul", [dy, dy])])])
    # cos and sin of a = atan2(dy, dx); a zero vector stands for (1, 0), as atan2(0, 0) = 0.
    one = b.const(1.0, F32)
    nonzero = b.op("Greater", [norm, b.const(0.0, F32)])
    safe_norm = b.op("Where", [nonzero, norm, one])
    cos_a = b.op("Div", [b.op("Where", [nonzero, dx, one]), safe_norm])
    sin_a = b.op("Div", [dy, safe_norm])
    # r = t - a: cos r = cos t cos a + sin t sin a, sin r = sin t cos a - cos t sin a
    target = float(attrs["target_rotation_radians"])
    cos_t, sin_t = b.const(np.cos(target), F32), b.const(np.sin(target), F32)
    c = b.op("Add", [b.op("Mul", [cos_a, cos_t]), b.op("Mul", [sin_a, sin_t])])
    s = b.op("Sub", [b.op("Mul", [cos_a, sin_t]), b.op("Mul", [sin_a, cos_t])])
    px, py = b.slice(points, 0, 1, 2), b.slice(points, 1, 2, 2)  # [1, K, 1]
    rx = b.op("Sub", [b.op("Mul", [c, px]), b.op("Mul", [s, py])])
    ry = b.op("Add", [b.op("Mul", [s, px]), b.op("Mul", [c, py])])
    x_max, x_min = b.op("ReduceMax", [rx], axes=[1], keepdims=1), b.op("ReduceMin", [rx], axes=[1], keepdims=1)
    y_max, y_min = b.op("ReduceMax", [ry], axes=[1], keepdims=1), b.op("ReduceMin", [ry], axes=[1], keepdims=1)
    width, height = b.op("Sub", [x_max, x_min]), b.op("Sub", [y_max, y_min])
    half = b.const(0.5, F32)
    mid_x = b.op("Mul", [b.op("Add", [x_min, x_max]), half])
    mid_y = b.op("Mul", [b.op("Add", [y_min, y_max]), half])
    # the box centre rotated back by -r: Rot(-r) = [[c, s], [-s, c]]
    centre_x = b.op("Add", [b.op("Mul", [c, mid_x]), b.op("Mul", [s, mid_y])])
    centre_y = b.op("Sub", [b.op("Mul", [c, mid_y]), b.op("Mul", [s, mid_x])])
    out_w, out_h = float(attrs["output_width"]), float(attrs["output_height"])
    scale_x = b.op("Mul", [width, b.const(attrs["scale_x"] / out_w, F32)])
    scale_y = b.op("Mul", [height, b.const(attrs["scale_y"] / out_h, F32)])
    # linear part Rot(-r) . Scale, translation = linear part . (-out_w / 2, -out_h / 2) + centre
    m00, m01 = b.op("Mul", [c, scale_x]), b.op("Mul", [s, scale_y])
    m10, m11 = b.op("Neg", [b.op("Mul", [s, scale_x])]), b.op("Mul", [c, scale_y])
    half_w, half_h = b.const(-out_w / 2, F32), b.const(-out_h / 2, F32)
    m03 = b.op("Add", [b.op("Add", [b.op("Mul", [m00, half_w]), b.op("Mul", [m01, half_h])]), centre_x])
    m13 = b.op("Add", [b.op("Add", [b.op("Mul", [m10, half_w]), b.op("Mul", [m11, half_h])]), centre_y])
    zero = b.const(np.zeros((1, 1, 1)), F32)
    row0 = b.op("Concat", [m00, m01, zero, m03], axis=2)
    row1 = b.op("Concat", [m10, m11, zero, m13], axis=2)
    rows23 = b.const([[[0, 0, 1, 0], [0, 0, 0, 1]]], F32)
    b.op("Concat", [row0, row1, rows23], output=output, axis=1)


def transform_tensor_bilinear(b: NodeBuilder, features: str, matrix: str, output: str, attrs: dict, shape):
    """TransformTensorBilinear v2: features [1, C, H, W] (the channel-first map the converter's
    transposition to channel-last read), matrix [1, 4, 4] -> output [1, output_height,
    output_width, C] (channel-last, as the node's consumers expect: the transposition back to
    channel-first that tf2onnx put after it then cancels this one's). Gathering from the
    channel-first map spares both transpositions of the whole map."""
    _, channels, height, width = shape
    out_h, out_w = attrs["output_height"], attrs["output_width"]
    flat_matrix = b.op("Reshape", [matrix, b.const([16], I64)])
    element = lambda i: b.op("Gather", [flat_matrix, b.const(i, I64)], axis=0)  # scalar
    m00, m01, m03, m10, m11, m13 = (element(i) for i in (0, 1, 3, 4, 5, 7))
    half = b.const(0.5, F32)
    # align corners: m03 += 0.5 m00 + 0.5 m01 - 0.5 (and row 1), so that output pixel centres
    # map to input pixel centres
    m03 = b.op("Add", [m03, b.op("Sub", [b.op("Add", [b.op("Mul", [m00, half]), b.op("Mul", [m01, half])]), half])])
    m13 = b.op("Add", [m13, b.op("Sub", [b.op("Add", [b.op("Mul", [m10, half]), b.op("Mul", [m11, half])]), half])])
    grid_y, grid_x = np.meshgrid(np.arange(out_h, dtype=F32), np.arange(out_w, dtype=F32), indexing="ij")
    out_x, out_y = b.const(grid_x.ravel(), F32), b.const(grid_y.ravel(), F32)
    sx = b.op("Add", [b.op("Add", [b.op("Mul", [m00, out_x]), b.op("Mul", [m01, out_y])]), m03])  # [oh*ow]
    sy = b.op("Add", [b.op("Add", [b.op("Mul", [m10, out_x]), b.op("Mul", [m11, out_y])]), m13])
    zero, one = b.const(0.0, F32), b.const(1.0, F32)
    last_x, last_y = b.const(width - 1.0, F32), b.const(height - 1.0, F32)
    inside = b.op("And", [
        b.op("And", [b.op("GreaterOrEqual", [sx, zero]), b.op("LessOrEqual", [sx, last_x])]),
        b.op("And", [b.op("GreaterOrEqual", [sy, zero]), b.op("LessOrEqual", [sy, last_y])]),
    ])
    floor_x, floor_y = b.op("Floor", [sx]), b.op("Floor", [sy])
    frac_x, frac_y = b.op("Sub", [sx, floor_x]), b.op("Sub", [sy, floor_y])  # [oh*ow]
    # the corner at x = W (only reached with weight 0, at x = W - 1) reads any in-range pixel
    clip_x = lambda v: b.op("Clip", [v, zero, last_x])
    clip_y = lambda v: b.op("Clip", [v, zero, last_y])
    x0, x1 = clip_x(floor_x), clip_x(b.op("Add", [floor_x, one]))
    y0, y1 = clip_y(floor_y), clip_y(b.op("Add", [floor_y, one]))
    planes = b.op("Reshape", [features, b.const([channels, height * width], I64)])
    row_stride = b.const(float(width), F32)

    def corner(y, x):  # [C, oh*ow]
        index = b.op("Cast", [b.op("Add", [b.op("Mul", [y, row_stride]), x])], to=TensorProto.INT64)
        return b.op("Gather", [planes, index], axis=1)

    # the kernel's order: upper and lower rows along x, then along y; a sample outside the map
    # is 0 (its y weights times 0: the same values as the kernel's zero)
    rest_x = b.op("Sub", [one, frac_x])
    inside = b.op("Cast", [inside], to=TensorProto.FLOAT)
    frac_y, rest_y = b.op("Mul", [frac_y, inside]), b.op("Mul", [b.op("Sub", [one, frac_y]), inside])
    upper = b.op("Add", [b.op("Mul", [rest_x, corner(y0, x0)]), b.op("Mul", [frac_x, corner(y0, x1)])])
    lower = b.op("Add", [b.op("Mul", [rest_x, corner(y1, x0)]), b.op("Mul", [frac_x, corner(y1, x1)])])
    blended = b.op("Add", [b.op("Mul", [frac_y, lower]), b.op("Mul", [rest_y, upper])])
    patch = b.op("Reshape", [blended, b.const([1, channels, out_h, out_w], I64)])
    b.op("Transpose", [patch], output=output, perm=[0, 2, 3, 1])


def transform_landmarks(b: NodeBuilder, points: str, matrix: str, output: str):
    """TransformLandmarks v2 on 2-D points: points [1, N, 2], matrix [1, 4, 4] -> [1, N, 2]."""
    linear = b.slice(matrix, [0, 0], [2, 2], [1, 2])  # [1, 2, 2]
    translation = b.slice(matrix, [0, 3], [2, 4], [1, 2])  # [1, 2, 1]
    moved = b.op("MatMul", [points, b.op("Transpose", [linear], perm=[0, 2, 1])])
    b.op("Add", [moved, b.op("Transpose", [translation], perm=[0, 2, 1])], output=output)


def replace_custom_ops(model: onnx.ModelProto) -> int:
    """Replaces every TFL_* node of `model` in place; returns how many there were."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in list(inferred.value_info) + list(inferred.input)
    }
    producers = {output: node for node in graph.node for output in node.output}
    nodes, initializers, replaced = [], [], 0
    bypassed = set()  # outputs of the transpositions to channel-last the samplers read past
    for node in graph.node:
        if not node.op_type.startswith("TFL_"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b = NodeBuilder(node.name, initializers)
        if node.op_type == "TFL_Landmarks2TransformMatrix":
            landmarks_to_transform_matrix(b, node.input[0], node.output[0], attrs)
        elif node.op_type == "TFL_TransformTensorBilinear":
            to_channels_last = producers.get(node.input[0])
            assert to_channels_last is not None and to_channels_last.op_type == "Transpose" and list(
                helper.get_attribute_value(to_channels_last.attribute[0])) == [0, 2, 3, 1], node.name
            bypassed.add(node.input[0])
            features = to_channels_last.input[0]
            shape = shapes.get(features)
            assert shape and len(shape) == 4 and all(shape), (node.name, shape)
            transform_tensor_bilinear(b, features, node.input[1], node.output[0], attrs, shape)
        elif node.op_type == "TFL_TransformLandmarks":
            transform_landmarks(b, node.input[0], node.input[1], node.output[0])
        else:
            raise ValueError(f"{node.name}: no standard-op replacement for {node.op_type}")
        nodes.extend(b.nodes)
        replaced += 1
    # A bypassed transposition that only the replaced nodes read is now read by none.
    read = {name for node in nodes for name in node.input} | {o.name for o in graph.output}
    nodes = [node for node in nodes if node.output[0] not in bypassed - read]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    return replaced


def check_coincident_rotation_points() -> int:
    """Runs a lone Landmarks2TransformMatrix, replaced, in onnxruntime and tract on random
    landmarks and on landmarks whose two rotation points coincide, against the kernel's formula
    with a real atan2 (NumPy's, which like C++'s gives atan2(0, 0) = 0). Returns the number of
    failures."""
    import onnxruntime as ort
    import tract

    attrs = dict(subset_idxs=[0, 2, 3, 5], left_rotation_idx=1, right_rotation_idx=4,
                 target_rotation_radians=0.3, output_width=16, output_height=12, scale_x=1.5, scale_y=1.2)
    node = helper.make_node("TFL_Landmarks2TransformMatrix", ["landmarks"], ["matrix"], name="l2tm", **attrs)
    graph = helper.make_graph(
        [node], "l2tm",
        [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [1, 6, 3])],
        [helper.make_tensor_value_info("matrix", TensorProto.FLOAT, [1, 4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    replace_custom_ops(model)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "l2tm.onnx"
        onnx.save(model, str(path))
        tract_model = tract.onnx().load(str(path))
    tract_model.set_input_fact(0, "1,6,3,f32")
    runnable = tract_model.into_model().into_runnable()

    rng = np.random.default_rng(0)
    random = rng.uniform(0, 48, (1, 6, 3)).astype(F32)
    coincident = random.copy()
    coincident[0, 4] = coincident[0, 1]
    failures = 0
    for case, landmarks in [("random", random), ("coincident rotation points", coincident)]:
        want = kernel_matrix(landmarks[0], attrs)
        for runtime, got in [
            ("onnxruntime", session.run(None, {"landmarks": landmarks})[0]),
            ("tract", runnable.run([landmarks])[0].to_numpy()),
        ]:
            diff = float(np.abs(got[0] - want).max()) if np.isfinite(got).all() else np.inf
            ok = diff <= 1e-4
            failures += not ok
            print(f"Landmarks2TransformMatrix, {case}, {runtime}: max |diff| {diff:.2g} {'ok' if ok else 'WRONG'}")
    return failures


def kernel_matrix(landmarks: np.ndarray, attrs: dict) -> np.ndarray:
    """landmarks_to_transform_matrix.cc (v2) in float64, for the check."""
    left, right = landmarks[attrs["left_rotation_idx"]], landmarks[attrs["right_rotation_idx"]]
    r = attrs["target_rotation_radians"] - np.arctan2(right[1] - left[1], right[0] - left[0])
    c, s = np.cos(r), np.sin(r)
    points = landmarks[attrs["subset_idxs"], :2].astype(np.float64)
    rotated = points @ np.array([[c, s], [-s, c]])  # rows (c x - s y, s x + c y)
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    mid = (low + high) / 2
    centre = np.array([[c, s], [-s, c]]) @ mid
    out = np.array([attrs["output_width"], attrs["output_height"]], np.float64)
    linear = np.array([[c, s], [-s, c]]) @ np.diag([attrs["scale_x"], attrs["scale_y"]] * (high - low) / out)
    matrix = np.eye(4)
    matrix[:2, :2] = linear
    matrix[:2, 3] = linear @ (-out / 2) + centre
    return matrix


if __name__ == "__main__":
    sys.exit(1 if check_coincident_rotation_points() else 0)
