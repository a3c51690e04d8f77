#!/usr/bin/env bash
# Issue 9: facecast and its peers timed in one run on the same frames.
#   1. the peers' venvs (benches/peers/setup.sh; idempotent)
#   2. the two clips (benches/peers/make_clips.py), remade only when their maker changed
#   3. every model alone, onnxruntime and tract taking turns in blocks of runs, MODEL_ROUNDS
#      blocks each (benches/peers/peers.py paired, `facecast bench --serve`); onnxruntime alone
#      and `facecast bench --model-runs` once for start-up, memory and the per-operator profile
#   4. the per-frame peers, one process each (benches/peers/peers.py), single-threaded;
#      mediapipe's face_mesh with iris (its attention model) and without (the mesh model alone)
#   5. `facecast bench` on both clips with 1 and 2 analysis threads, and 2 with --overlap: the
#      full pipeline, and the landmarks alone with the default models (benches/landmarks.toml)
#      and with mediapipe's attention mesh (benches/landmarks_attention.toml)
#   6. the per-frame targets' comparisons again in alternating rounds, each peer then facecast
#      back to back: landmarks alone (both mesh models) vs mediapipe face_mesh with iris (one
#      face), full pipeline vs face_recognition (six faces); and facecast's detection-or-tracking
#      + mesh stage (`follow`) vs mediapipe's face_mesh without iris, the same mesh model on both
#      sides
#   7. benches/report.py: the markdown tables for docs/performance.md
# usage: benches/run.sh [WORK_DIR]     (default $BENCH_DIR, else /var/tmp/facecast-bench)
# Results: WORK_DIR/results/<UTC time>/*.json, and report.md beside them.
# Knobs: FACECAST_BIN (default $CARGO_TARGET_DIR/release/facecast, CARGO_TARGET_DIR defaulting
# to /var/tmp/facecast-target as in the Makefile), ORT_RUNS (200), MODEL_ROUNDS (12),
# FR_FRAMES (30: dlib's HOG detector takes about a second a frame here), FRAME_ROUNDS (6).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-${BENCH_DIR:-/var/tmp/facecast-bench}}
peers="$repo/benches/peers"
facecast=${FACECAST_BIN:-${CARGO_TARGET_DIR:-/var/tmp/facecast-target}/release/facecast}
ort_runs=${ORT_RUNS:-200}
model_rounds=${MODEL_ROUNDS:-12}
fr_frames=${FR_FRAMES:-30}
frame_rounds=${FRAME_ROUNDS:-6}
clips=(one_face six_faces)
# How many faces a clip holds (its name says it): mediapipe's max_num_faces, facecast's
# [detector] max_faces.
faces_in() { case $1 in one_face) echo 1 ;; six_faces) echo 6 ;; esac; }

BENCH_DIR="$work" "$peers/setup.sh"
py_peers="$work/venv-peers/bin/python"
py_mediapipe="$work/venv-mediapipe/bin/python"

# The clips are ~70 MB each and take a minute to make: remade only when the scripts that make
# them (or the photos' detections they centre on) change. Their bytes are deterministic.
stamp=$(cat "$peers/make_clips.py" "$peers/y4m.py" "$repo/tests/fixtures/mediapipe/face_detection.json" | sha256sum)
if [ "$(cat "$work/clips/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$work/clips"
    "$py_peers" "$peers/make_clips.py" "$work/clips"
    echo "$stamp" > "$work/clips/stamp"
fi

out="$work/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "run.sh: results in $out ($(uptime))"

# Each model alone. The machine's speed moves within seconds (docs/performance.md), so
# onnxruntime and facecast take turns, model by model, in blocks of about a quarter of a second
# (peers.py paired, facecast as `bench --serve`); the ratios compare neighbouring blocks.
# Before it, onnxruntime alone for its start-up and memory, and `facecast bench --model-runs`
# for where tract spends each model's time (its per-operator profile) and the load times.
"$py_peers" "$peers/peers.py" onnxruntime --runs "$ort_runs" --out "$out/onnxruntime.json"
(cd "$repo" && "$facecast" bench --clip "$work/clips/one_face.y4m" --threads 1 \
    --max-faces 1 --model-runs "$ort_runs" --json "$out/facecast_models.json")
"$py_peers" "$peers/peers.py" paired --facecast "$facecast" --rounds "$model_rounds" \
    --out "$out/paired.json"
for clip in "${clips[@]}"; do
    y4m="$work/clips/$clip.y4m"
    faces=$(faces_in "$clip")
    "$py_mediapipe" "$peers/peers.py" mediapipe_face_detection --clip "$y4m" \
        --out "$out/mediapipe_face_detection_$clip.json"
    for mesh in face_mesh_iris face_mesh; do
        "$py_mediapipe" "$peers/peers.py" "mediapipe_$mesh" --clip "$y4m" --max-faces "$faces" \
            --out "$out/mediapipe_${mesh}_$clip.json"
    done
    "$py_peers" "$peers/peers.py" face_recognition --clip "$y4m" --frames "$fr_frames" \
        --out "$out/face_recognition_$clip.json"
done

# facecast reads models/ and the parity crops relative to the repository, like `make run`.
cd "$repo"
for clip in "${clips[@]}"; do
    faces=$(faces_in "$clip")
    # The full pipeline (the default configuration), then the landmarks alone
    # (benches/landmarks.toml: mediapipe's face_mesh with iris's scope), with the default models
    # and with mediapipe's (benches/landmarks_attention.toml: its attention mesh, no iris model).
    for scope in full landmarks landmarks_attention; do
        config=()
        [ "$scope" != full ] && config=(--config "$repo/benches/$scope.toml")
        # 1 and 2 analysis threads, then 2 with the two stages one frame apart ([pipeline]
        # overlap).
        for run in 1 2 2-overlap; do
            threads=${run%%-*} overlap=()
            [ "$run" = 2-overlap ] && overlap=(--overlap)
            # --max-faces: told how many faces the clip holds, as mediapipe is (max_num_faces).
            "$facecast" "${config[@]}" bench --clip "$work/clips/$clip.y4m" --threads "$threads" \
                "${overlap[@]}" --max-faces "$faces" --model-runs 0 \
                --json "$out/facecast_${clip}_${scope}_t$run.json"
        done
    done
done
# The per-frame rows above are single runs minutes apart, and the machine's speed moves by
# more than some of the differences they show (docs/performance.md): the two per-frame targets'
# comparisons again, FRAME_ROUNDS times, the peer and facecast back to back in each round, so
# that each round's ratio is between neighbours (report.py gives their median and range).
# rounds/<round>_<name>.json, apart from the single runs' files.
rounds="$out/rounds"
mkdir -p "$rounds"
for r in $(seq 1 "$frame_rounds"); do
    for mesh in face_mesh_iris face_mesh; do
        "$py_mediapipe" "$peers/peers.py" "mediapipe_$mesh" --clip "$work/clips/one_face.y4m" \
            --max-faces 1 --out "$rounds/${r}_mediapipe_${mesh}_one_face.json"
    done
    for scope in landmarks landmarks_attention; do
        for threads in 1 2; do
            "$facecast" --config "$repo/benches/$scope.toml" bench \
                --clip "$work/clips/one_face.y4m" --threads "$threads" --max-faces 1 \
                --model-runs 0 --json "$rounds/${r}_facecast_one_face_${scope}_t$threads.json"
        done
    done
    "$py_peers" "$peers/peers.py" face_recognition --clip "$work/clips/six_faces.y4m" \
        --frames "$fr_frames" --out "$rounds/${r}_face_recognition_six_faces.json"
    for threads in 1 2; do
        "$facecast" bench --clip "$work/clips/six_faces.y4m" --threads "$threads" --max-faces 6 \
            --model-runs 0 --json "$rounds/${r}_facecast_six_faces_full_t$threads.json"
    done
done
"$py_peers" "$repo/benches/report.py" "$out" | tee "$out/report.md"
