#!/usr/bin/env bash
# Creates the peers' pinned venvs, outside the clone (idempotent: a venv is left alone while its
# requirement files are unchanged, and rebuilt from scratch when they change):
#   $BENCH_DIR/venv-peers      onnxruntime, face_recognition (dlib-bin), numpy 2
#   $BENCH_DIR/venv-mediapipe  mediapipe==0.10.21, which needs numpy < 2: its own venv, from the
#                              same pinned file as the MediaPipe reference (models/tools/mediapipe_ref)
# usage: benches/peers/setup.sh   (BENCH_DIR defaults to /var/tmp/facecast-bench)
# Needs python 3.11 (mediapipe 0.10.21's newest wheel is cp311) and PyPI. pip honours
# PIP_FIND_LINKS, e.g. a directory already holding face_recognition_models-0.3.0.tar.gz (100 MB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bench=${BENCH_DIR:-/var/tmp/facecast-bench}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup.sh: needs python 3.11 (set PYTHON)" >&2; exit 1; }

# make_venv NAME REQUIREMENTS [NODEPS_REQUIREMENTS]
make_venv() {
    local venv="$bench/$1" req=$2 nodeps=${3:-}
    local stamp="$venv/requirements.stamp"
    local want
    want=$(cat "$req" ${nodeps:+"$nodeps"})
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "setup.sh: $venv is up to date"
        return
    fi
    echo "setup.sh: building $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    nice -n 5 "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    if [ -n "$nodeps" ]; then
        nice -n 5 "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$nodeps"
    fi
    # Written last: an interrupted install leaves no stamp and is redone next time.
    printf '%s' "$want" > "$stamp"
}

mkdir -p "$bench"
make_venv venv-peers "$here/requirements.txt" "$here/requirements-nodeps.txt"
make_venv venv-mediapipe "$repo/models/tools/mediapipe_ref/requirements.txt"
