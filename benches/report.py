"""Prints the markdown tables of docs/performance.md from one benches/run.sh run: every *.json
in the directory given (facecast's `bench --json` files and benches/peers/peers.py's; the schema
is in peers.py and the issue). Stdlib only. A missing side prints "—".

    python3 benches/report.py WORK_DIR/results/<run>
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys

DASH = "—"


def fmt(v, digits=2):
    if v is None:
        return DASH
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else DASH


def get(record, *keys):
    for k in keys:
        if not isinstance(record, dict) or k not in record:
            return None
        record = record[k]
    return record


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def attention_mesh(r: dict) -> bool:
    """A facecast run whose mesh model found the eyes: its landmark models are the mesh alone
    (records from before `landmark_models` ran the mesh and the iris model)."""
    return len(r.get("landmark_models", ["mesh", "iris"])) == 1


def label(r: dict) -> str:
    if r["peer"] != "facecast":
        return r["peer"] + (f" {r['clip']}" if "clip" in r else "")
    scope = ", landmarks only" if r.get("scope") == "landmarks" else ""
    if attention_mesh(r):
        scope += ", attention mesh"
    return (f"facecast {r['clip']} ({r['threads']} thr{', overlap' if r.get('overlap') else ''}"
            f"{scope})")


def ms_a_frame(r):
    """Mean time a frame, from the throughput."""
    fps = get(r, "fps")
    return 1e3 / fps if fps else None


def frames_per_second(r):
    return get(r, "fps")


def frame_p50(r):
    return get(r, "frame_ms", "p50")


def follow_p50(r):
    """facecast's detection-or-tracking + mesh stage: mediapipe face_mesh's scope."""
    return get(r, "stages", "follow", "p50")


# The alternating rounds (run.sh's rounds/): each comparison's peer file and facecast's, one
# pair per round, and the value compared on each side; the ratio is facecast's value over the
# peer's (the title says whether that is of times, lower is better, or of frames per second).
ROUND_COMPARISONS = [
    ("one face, landmarks alone / mediapipe face_mesh_iris (ms a frame, 1000/fps)",
     "mediapipe_face_mesh_iris_one_face", ms_a_frame, "facecast_one_face_landmarks_t{}",
     ms_a_frame),
    ("one face, landmarks alone with mediapipe's attention mesh / mediapipe face_mesh_iris "
     "(ms a frame, 1000/fps)",
     "mediapipe_face_mesh_iris_one_face", ms_a_frame,
     "facecast_one_face_landmarks_attention_t{}", ms_a_frame),
    ("one face, the same mesh model: detection-or-tracking + mesh (facecast's follow stage) / "
     "mediapipe face_mesh without iris (ms, p50)",
     "mediapipe_face_mesh_one_face", frame_p50, "facecast_one_face_landmarks_t{}", follow_p50),
    ("six faces, full pipeline / face_recognition (frames per second)",
     "face_recognition_six_faces", frames_per_second, "facecast_six_faces_full_t{}",
     frames_per_second),
]


def rounds_table(rounds_dir: pathlib.Path) -> str | None:
    """The median and range of each comparison's round ratios, and every round's."""
    by_round: dict[int, dict[str, dict]] = {}
    for p in rounds_dir.glob("*.json"):
        number, _, name = p.stem.partition("_")
        by_round.setdefault(int(number), {})[name] = json.loads(p.read_text())
    rows = []
    for title, peer_name, peer_value, facecast_name, facecast_value in ROUND_COMPARISONS:
        for threads in (1, 2):
            ratios = []
            for number in sorted(by_round):
                peer = peer_value(by_round[number].get(peer_name))
                own = facecast_value(by_round[number].get(facecast_name.format(threads)))
                if peer and own:
                    ratios.append(own / peer)
            if ratios:
                rows.append([title, threads, len(ratios), statistics.median(ratios),
                             f"{fmt(min(ratios))}-{fmt(max(ratios))}",
                             " / ".join(fmt(r) for r in ratios)])
    if not rows:
        return None
    return table(["comparison", "facecast threads", "rounds", "median", "range",
                  "rounds in order"], rows)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run = pathlib.Path(sys.argv[1])
    files = sorted(run.glob("*.json"))
    if not files:
        print(f"report.py: no JSON files in {run}", file=sys.stderr)
        return 1
    # Each model alone: benches/peers/peers.py paired (onnxruntime and `facecast bench --serve`
    # taking turns) for the times and ratios; facecast_models.json (`facecast bench
    # --model-runs`) for where tract spends them.
    every = [json.loads(p.read_text()) for p in files]
    paired = next((r for r in every if r["peer"] == "paired"), {})
    models_run = next((r for r in every if r["peer"] == "facecast" and r.get("models")), {})
    # onnxruntime alone: its start-up and memory.
    ort_alone = [r for r in every if r["peer"] == "onnxruntime"][:1]
    # The pipeline runs and the per-frame peers (the models run's pipeline is not one of them).
    records = [r for r in every if r["peer"] not in ("paired", "onnxruntime")
               and not r.get("models")]
    facecast = [r for r in records if r["peer"] == "facecast"]
    by_peer_clip = {(r["peer"], r.get("clip")): r for r in records if r["peer"] != "facecast"}

    def fc(clip, threads, overlap=False, scope="full", attention=False):
        return next((r for r in facecast if r.get("clip") == clip and r.get("threads") == threads
                     and bool(r.get("overlap")) == overlap and r.get("scope", "full") == scope
                     and attention_mesh(r) == attention), None)

    out = [f"Run `{run.name}`; load average (1 min) at each measurement's start: " + ", ".join(
        f"{label(r)} {fmt(r.get('load1'))}" for r in records + ([paired] if paired else [])) + "."]
    if not facecast:
        out.append("\n(no facecast results in this run: only the peers' columns are filled)")

    # 1. per model: tract (facecast, 1 thread) vs onnxruntime, taking turns in blocks; the
    # ratio is the median of the rounds' (a facecast block's median over the onnxruntime block's
    # beside it)
    rows = []
    for i, m in (paired.get("models") or {}).items():
        t, o = m.get("facecast", {}), m.get("onnxruntime", {})
        r = t.get("ratio_to_onnxruntime", {})
        rows.append([i, m.get("precision"), t.get("p50"), t.get("p99"), o.get("p50"), o.get("p99"),
                     r.get("median"), f"{fmt(r.get('q25'))}-{fmt(r.get('q75'))}",
                     f"{fmt(r.get('min'))}-{fmt(r.get('max'))}", m.get("rounds"),
                     m.get("runs_per_block"), t.get("load_ms")])
    settings = paired.get("settings", {})
    out.append(f"\n### Per model, one thread: tract (facecast {fmt(models_run.get('version'))}) vs "
               f"onnxruntime {fmt(paired.get('version'))} (ms per run; the two taking turns in "
               f"blocks of about {fmt(settings.get('block_ms'))} ms)\n")
    out.append(table(["model", "precision", "tract p50", "tract p99", "ort p50", "ort p99",
                      "tract/ort (median of rounds)", "rounds' quartiles", "rounds' range",
                      "rounds", "runs per block", "tract load ms"], rows))

    # 1b. where tract spends each model's time (facecast bench's per-operator profile)
    profiled = [(i, get(models_run, "models", i, "ops")) for i in (models_run.get("models") or {})]
    rows = [[i, "; ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in ops[:4])]
            for i, ops in profiled if ops]
    if rows:
        out.append("\n### tract per operator: the four costliest, share of the model's time\n")
        out.append(table(["model", "operators (nodes of each kind summed)"], rows))

    # 2. per frame: facecast vs mediapipe; the ratio is of the ms per frame (throughput) to
    # mediapipe face_mesh with iris's
    for clip in ("one_face", "six_faces"):
        mesh = by_peer_clip.get(("mediapipe_face_mesh_iris", clip))
        rows = []
        runs = [fc(clip, threads, overlap, scope, attention)
                for scope, attention in (("landmarks", False), ("landmarks", True), ("full", False))
                for threads, overlap in ((1, False), (2, False), (2, True))]
        for r in runs + [mesh, by_peer_clip.get(("mediapipe_face_mesh", clip)),
                         by_peer_clip.get(("mediapipe_face_detection", clip))]:
            if r:
                fps = r.get("fps")
                rows.append([label(r), r.get("frames"), get(r, "frame_ms", "p50"),
                             get(r, "frame_ms", "p99"), fps, round(1000 / fps, 2) if fps else None,
                             ratio((mesh or {}).get("fps"), fps), get(r, "faces_per_frame", "mean")])
        out.append(f"\n### Per frame, {clip}: facecast vs mediapipe (ms)\n")
        out.append(table(["", "frames", "latency p50", "latency p99", "fps", "ms per frame (1000/fps)",
                          "/ mediapipe face_mesh_iris", "faces/frame"], rows))

    # 3. full pipeline fps vs face_recognition
    rows = []
    for clip in ("one_face", "six_faces"):
        fr = by_peer_clip.get(("face_recognition", clip), {})
        for threads, overlap in ((1, False), (2, False), (2, True)):
            f = fc(clip, threads, overlap) or {}
            rows.append([clip, f"{threads}{' overlap' if overlap else ''}", f.get("fps"), fr.get("fps"),
                         ratio(f.get("fps"), fr.get("fps")), fr.get("frames")])
    out.append("\n### Full pipeline vs face_recognition (HOG + ResNet; frames/s)\n")
    out.append(table(["clip", "facecast threads", "facecast fps", "face_recognition fps",
                      "ratio", "face_recognition frames"], rows))

    # 4. memory and start-up
    rows = [[label(r), r.get("version"), round(r["peak_rss_kib"] / 1024, 1) if "peak_rss_kib" in r else None,
             r.get("startup_ms")] for r in records + ort_alone]
    out.append("\n### Peak RSS and start-up (process start to first result)\n")
    out.append(table(["process", "version", "peak RSS MiB", "start-up ms"], rows))

    # 5. facecast's stages
    if facecast:
        stages = list(dict.fromkeys(s for r in facecast for s in (r.get("stages") or {})))
        cols = sorted(facecast, key=lambda r: (r.get("clip", ""), r.get("scope", "full"), attention_mesh(r),
                                             r.get("threads", 0), bool(r.get("overlap"))))
        rows = [[s] + [fmt(get(r, "stages", s, "p50")) + " / " + fmt(get(r, "stages", s, "p99"))
                       + f" ({fmt(get(r, 'stages', s, 'n'))})" for r in cols] for s in stages]
        out.append("\n### facecast per stage: p50 / p99 ms (count)\n")
        out.append(table(["stage"] + [label(r) for r in cols], rows))
    # 6. the per-frame comparisons in alternating rounds
    alternating = rounds_table(run / "rounds")
    if alternating:
        out.append("\n### Per frame, alternating rounds: each round the peer, then facecast\n")
        out.append(alternating)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
