#!/usr/bin/env bash
# Creates or updates the pinned mediapipe environment models/tools/.venv-mediapipe_ref from
# requirements.txt here. Used by build.sh here and by models/tools/mediapipe/build.sh, whose
# face_mesh_attention reference runs in MediaPipe's own runtime (run_landmark_model.py).
# Needs python3.11 (or PYTHON=...) and network access to PyPI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(dirname "$HERE")/.venv-mediapipe_ref"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
