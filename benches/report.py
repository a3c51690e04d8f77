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


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def label(r: dict) -> str:
    if r["peer"] != "facecast":
        return r["peer"] + (f" {r['clip']}" if "clip" in r else "")
    scope = ", landmarks only" if r.get("scope") == "landmarks" else ""
    return (f"facecast {r['clip']} ({r['threads']} thr{', overlap' if r.get('overlap') else ''}"
            f"{scope})")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run = pathlib.Path(sys.argv[1])
    files = sorted(run.glob("*.json"))
    if not files:
        print(f"report.py: no JSON files in {run}", file=sys.stderr)
        return 1
    # Each model alone, timed in rounds: onnxruntime_rNN.json and facecast_models_rNN.json,
    # paired by round (the file names sort them). A run before the rounds has one
    # onnxruntime.json and the models in its one-face, one-thread pipeline record.
    model_files = [p for p in files if p.name.startswith("facecast_models_")]
    tract_rounds = [json.loads(p.read_text()) for p in model_files]
    records = [json.loads(p.read_text()) for p in files if p not in model_files]
    ort_rounds = [r for r in records if r["peer"] == "onnxruntime"]
    facecast = [r for r in records if r["peer"] == "facecast"]
    if not tract_rounds:
        tract_rounds = [r for r in facecast if r.get("models")][:1]
    # The pipeline runs and the per-frame peers, with one onnxruntime record for the memory table.
    records = [r for r in records if r["peer"] != "onnxruntime"] + ort_rounds[:1]
    by_peer_clip = {(r["peer"], r.get("clip")): r for r in records if r["peer"] != "facecast"}

    def fc(clip, threads, overlap=False, scope="full"):
        return next((r for r in facecast if r.get("clip") == clip and r.get("threads") == threads
                     and bool(r.get("overlap")) == overlap and r.get("scope", "full") == scope),
                    None)

    out = [f"Run `{run.name}`; load average (1 min) at each measurement's start: " + ", ".join(
        f"{label(r)} {fmt(r.get('load1'))}" for r in records) + "."]
    if not facecast:
        out.append("\n(no facecast results in this run: only the peers' columns are filled)")

    # 1. per model: tract (facecast, 1 thread) vs onnxruntime, round by round: each figure is
    # the median of the rounds', each ratio the median of the rounds' ratios
    rounds = list(zip(tract_rounds, ort_rounds))
    tract = tract_rounds[0] if tract_rounds else {}
    ort = ort_rounds[0] if ort_rounds else {}
    ids = list(dict.fromkeys(list(get(tract, "models") or {}) + list(get(ort, "models") or {})))
    rows = []
    for i in ids:
        per_round = [(get(t, "models", i) or {}, get(o, "models", i) or {}) for t, o in rounds]

        def figure(side, key):
            return median([m[side].get(key) for m in per_round])

        def ratios(key):
            return [t[key] / o[key] for t, o in per_round if t.get(key) and o.get(key)]

        p50_ratios = ratios("p50")
        spread = (f"{min(p50_ratios):.2f}-{max(p50_ratios):.2f}" if p50_ratios else DASH)
        precision = (get(ort, "models", i) or {}).get("precision", DASH)
        rows.append([i, precision, figure(0, "p50"), figure(0, "p99"), figure(1, "p50"),
                     figure(1, "p99"), median(p50_ratios), spread, median(ratios("p99")),
                     (get(tract, "models", i) or {}).get("load_ms")])
    out.append(f"\n### Per model, one thread: tract (facecast {fmt(tract.get('version'))}) vs "
               f"onnxruntime {fmt(ort.get('version'))} (ms per run; {len(rounds)} round(s) taken in "
               "turn, medians)\n")
    out.append(table(["model", "precision", "tract p50", "tract p99", "ort p50", "ort p99",
                      "tract/ort p50", "rounds' p50 ratios", "tract/ort p99", "tract load ms"], rows))

    # 1b. where tract spends each model's time (facecast bench's per-operator profile)
    profiled = [(i, get(tract, "models", i, "ops")) for i in ids]
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
        runs = [fc(clip, threads, overlap, scope) for scope in ("landmarks", "full")
                for threads, overlap in ((1, False), (2, False), (2, True))]
        for r in runs + [mesh, by_peer_clip.get(("mediapipe_face_detection", clip))]:
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
             r.get("startup_ms")] for r in records]
    out.append("\n### Peak RSS and start-up (process start to first result)\n")
    out.append(table(["process", "version", "peak RSS MiB", "start-up ms"], rows))

    # 5. facecast's stages
    if facecast:
        stages = list(dict.fromkeys(s for r in facecast for s in (r.get("stages") or {})))
        cols = sorted(facecast, key=lambda r: (r.get("clip", ""), r.get("scope", "full"), r.get("threads", 0),
                                             bool(r.get("overlap"))))
        rows = [[s] + [fmt(get(r, "stages", s, "p50")) + " / " + fmt(get(r, "stages", s, "p99"))
                       + f" ({fmt(get(r, 'stages', s, 'n'))})" for r in cols] for s in stages]
        out.append("\n### facecast per stage: p50 / p99 ms (count)\n")
        out.append(table(["stage"] + [label(r) for r in cols], rows))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
