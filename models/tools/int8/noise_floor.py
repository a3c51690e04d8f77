"""Context for the landmark / detector criteria (not part of the build): how far the FP32 model
itself moves, in the same metric, when each input pixel changes by at most one grey level
(uniform integer noise in {-1, 0, +1} on the 8-bit pixels, fixed seed) - about what a different
JPEG decoder or resampler does. Held-out inputs, tract 0.23.9, metric functions of quantize.py.

usage: noise_floor.py [ID ...]   (default: the detectors, face_mesh and iris)
"""

from __future__ import annotations

import sys

import numpy as np

import quantize as q
from common import MODELS, entry


def main() -> int:
    for mid in sys.argv[1:] or ["blazeface_short", "blazeface_full", "face_mesh", "iris"]:
        e = entry(mid)
        x, split, names = q.crops(mid)
        std = np.asarray(e["input"]["std"], np.float32).reshape(1, -1, 1, 1)
        rng = np.random.default_rng(0)
        noisy = (x + rng.integers(-1, 2, size=x.shape).astype(np.float32) / std).astype(np.float32)
        ref = q.run_all(MODELS / f"{mid}.onnx", e["input"]["shape"], x)
        got = q.run_all(MODELS / f"{mid}.onnx", e["input"]["shape"], noisy)
        r = q.metrics(mid, e, ref, got, names, split)
        extra = ""
        if "face_counts_equal" in r:
            extra = f", face counts equal: {r['face_counts_equal']}"
        print(f"{mid}: fp32 vs fp32 with +-1 grey level noise: {r['metric']} {r['value']} "
              f"(mean {r.get('mean_drift_iod')}) over {r['crops']} held-out inputs{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
