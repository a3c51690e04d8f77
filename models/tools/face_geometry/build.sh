#!/usr/bin/env bash
# Face-geometry data: src/analyse/canonical_mesh.rs (MediaPipe's canonical face mesh), from npm
# @mediapipe/face_mesh@0.4.1657299874 fetched by exact version with `npm pack`; the script checks
# the package's sha256. Standard-library Python only. Idempotent; safe to re-run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache="$(dirname "$here")/cache/face_geometry"
package="mediapipe-face_mesh-0.4.1657299874.tgz"
mkdir -p "$cache"
if [ ! -f "$cache/$package" ]; then
    (cd "$cache" && npm pack --silent @mediapipe/face_mesh@0.4.1657299874 >/dev/null)
fi
python3 "$here/canonical_mesh.py" "$cache/$package"
