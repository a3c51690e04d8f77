"""Diagnosis (not part of the build): fp32 files with denormal weights. Denormal floats make
x86 float arithmetic very slow; this copies each fp32 model with its denormal float32 weights set
to 0 (into the cache), and prints the count, the tract time of both (single thread, median of 30
alternating calls on one held-out crop) and max |output difference| over all crops.

usage: flush_denormals_check.py [ID ...]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

import quantize as q
from common import IDS, MODELS, WORK, entry, tract_runnable


def main() -> int:
    tiny = np.finfo(np.float32).tiny
    for mid in sys.argv[1:] or IDS:
        m = onnx.load(str(MODELS / f"{mid}.onnx"))
        count = 0
        for init in m.graph.initializer:
            a = numpy_helper.to_array(init)
            if a.dtype != np.float32:
                continue
            den = (a != 0) & (np.abs(a) < tiny)
            if den.any():
                count += int(den.sum())
                a = np.where(den, np.float32(0), a)
                init.CopyFrom(numpy_helper.from_array(a, init.name))
        if not count:
            print(f"{mid}: no denormal weights")
            continue
        flushed = WORK / f"{mid}.flushed.onnx"
        onnx.save(m, str(flushed))
        shape = entry(mid)["input"]["shape"]
        x, split, _ = q.crops(mid)
        ref = q.run_all(MODELS / f"{mid}.onnx", shape, x)
        got = q.run_all(flushed, shape, x)
        diff = max(float(np.abs(a - b).max()) for r, g in zip(ref, got) for a, b in zip(r, g))
        runs = [tract_runnable(p, shape) for p in (MODELS / f"{mid}.onnx", flushed)]
        xi = x[int(np.where(split == "eval")[0][0])][None]
        for r in runs:
            r.run([xi])
        t = [[], []]
        for _ in range(30):
            for r, tt in zip(runs, t):
                t0 = time.perf_counter()
                r.run([xi])
                tt.append(time.perf_counter() - t0)
        print(f"{mid}: {count} denormal weights; tract fp32 {statistics.median(t[0]) * 1e3:.2f} ms, "
              f"flushed to zero {statistics.median(t[1]) * 1e3:.2f} ms; max |output diff| {diff:.3g} "
              f"over {len(x)} crops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
