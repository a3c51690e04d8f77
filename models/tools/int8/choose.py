"""Exploration (not part of the build): chooses each model's recipe for quantize.py RECIPES.

usage: choose.py [ID ...]  -> one line per (model, candidate recipe) on stdout, and
                              models/tools/int8/selection/<id>.json

Every candidate of CANDIDATES is quantised and run in tract against the fp32 model on all inputs;
the recipe is chosen by the task metric on the CALIBRATION inputs only (search.score: drift
max + mean and face-count changes / 1 - cosine / top-1 disagreement + mean probability change
+ age error), so the held-out figures printed next to it played no part in the choice.
"""

from __future__ import annotations

import json
import sys

import quantize as q
from common import HERE, IDS, WORK, dump
from search import score

CANDIDATES = q.CANDIDATES


def brief(r: dict) -> str:
    s = f"{r['metric']} {r['value']}"
    if "mean_drift_iod" in r:
        s += f" (mean {r['mean_drift_iod']})"
    if "face_counts_equal" in r and not r["face_counts_equal"]:
        s += " face-count-changed"
    if "age_mad_years" in r:
        s += f" age MAD {r['age_mad_years']} y"
    return s


def main() -> int:
    out = {}
    for mid in sys.argv[1:] or IDS:
        rows = []
        for name, over in CANDIDATES.items():
            recipe = dict(q.DEFAULT)
            recipe.update(over)
            path = WORK / f"{mid}.select.{name}.onnx"
            q.quantise(mid, recipe, path)
            res = q.validate(mid, path, timing=False, calib_too=True)
            sc = score(res["calibration"])
            rows.append({"candidate": name, "calibration_score": round(sc, 6),
                         "calibration": brief(res["calibration"]), "heldout": brief(res),
                         "heldout_pass": res["pass"]})
            print(f"{mid:20s} {name:20s} calib score {sc:.5f} [{brief(res['calibration'])}] | "
                  f"held-out [{brief(res)}] {'pass' if res['pass'] else 'fail'}", flush=True)
        best = min(rows, key=lambda r: r["calibration_score"])
        print(f"{mid:20s} CHOSEN {best['candidate']}", flush=True)
        out[mid] = {"chosen": best["candidate"], "candidates": rows}
        dump(HERE / "selection" / f"{mid}.json", out[mid])
    return 0


if __name__ == "__main__":
    sys.exit(main())
