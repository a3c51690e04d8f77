#!/usr/bin/env bash
# Two facecast binaries timed alternately on the same clip (an interleaved A/B): the machine's
# drift then touches both alike, which runs minutes apart cannot promise. Stop other work first.
# usage: benches/ab.sh BIN_BEFORE BIN_AFTER [ROUNDS=2] [CLIP=one_face] [THREADS=1]
# The clips are benches/run.sh's ($BENCH_DIR/clips, default /var/tmp/facecast-bench).
# BENCH_ARGS: more `facecast bench` options for both sides (e.g. "--max-faces 1").
# Prints each model's p50 (median over the rounds), the pipeline's stages and fps, and the
# per-operator ms of facecast's own operators and the tract operators they replace.
set -euo pipefail
before=$1 after=$2 rounds=${3:-2} clip=${4:-one_face} threads=${5:-1}
work=${BENCH_DIR:-/var/tmp/facecast-bench}
out="$work/ab/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
    for side in before after; do
        bin=$before; [ "$side" = after ] && bin=$after
        # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
        "$bin" bench --clip "$work/clips/$clip.y4m" --threads "$threads" --model-runs 100 ${BENCH_ARGS:-} \
            --json "$out/${side}_$round.json" 2>/dev/null
    done
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
runs = {side: [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{side}_*.json"))]
        for side in ("before", "after")}
def median(values):
    return round(statistics.median(values), 2) if values else None
print(f"{out}: {len(runs['before'])} rounds")
for side, records in runs.items():
    print(f"  {side}: fps {[r['fps'] for r in records]}, frame p50 "
          f"{[r['frame_ms']['p50'] for r in records]}, start-up {[r['startup_ms'] for r in records]}")
models = sorted(runs["before"][0]["models"])
stages = sorted(runs["before"][0]["stages"])
print("  model / stage          before    after  after/before")
for name, get in [(m, lambda r, m=m: r["models"][m]["p50"]) for m in models] + \
                 [(f"stage {s}", lambda r, s=s: r["stages"][s]["p50"]) for s in stages]:
    b, a = (median([get(r) for r in runs[side]]) for side in ("before", "after"))
    print(f"  {name:22s} {b:8.2f} {a:8.2f}  {a / b if b else float('nan'):.2f}")
ours = ("facecast.", "OptMaxPool", "Resize", "OptBinChain(Min+Mul)", "OptBinChain(Max+Add)")
for m in models:
    for side in ("before", "after"):
        ops = [f"{o['op']} {o['ms']:.2f}" for r in runs[side] for o in r["models"][m]["ops"]
               if o["op"].startswith(ours)]
        if ops:
            print(f"  {m} {side}: {'; '.join(ops)}")
PY
