"""Diagnosis (not part of the build): is a model's int8 error from its weights or its activations?
Quantises with the `conv-in-minmax` recipe, then removes every QuantizeLinear -> DequantizeLinear
pair on an activation (the weights stay int8 + DequantizeLinear), and scores that weights-only
file in tract against the fp32 file with the same held-out metric as quantize.py.

usage: weights_only.py ID [ID ...]
"""

from __future__ import annotations

import sys

import onnx

import quantize as q
from common import MODELS, WORK, entry


def strip_activation_qdq(src, dst) -> int:
    m = onnx.load(str(src))
    inits = {i.name for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    rename, drop = {}, set()
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in producer:
            qn = producer[n.input[0]]
            if qn.op_type == "QuantizeLinear" and qn.input[0] not in inits:
                rename[n.output[0]] = qn.input[0]
                drop.update((id(n), id(qn)))
    keep = [n for n in m.graph.node if id(n) not in drop]
    for n in keep:
        n.input[:] = [rename.get(i, i) for i in n.input]
    assert not any(o.name in rename for o in m.graph.output)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(dst))
    return len(rename)


def main() -> int:
    for mid in sys.argv[1:]:
        recipe = {**q.DEFAULT, **q.CANDIDATES["conv-in-minmax"], "name": "conv-in-minmax"}
        full = WORK / f"{mid}.diag.conv-in-minmax.onnx"
        q.quantise(mid, recipe, full)
        wonly = WORK / f"{mid}.diag.weights-only.onnx"
        n = strip_activation_qdq(full, wonly)
        for label, path in (("int8 weights + activations", full), ("int8 weights only", wonly)):
            r = q.validate(mid, path, timing=False)
            print(f"{mid}: {label} ({n} activation Q/DQ pairs removed for the second): "
                  f"{r['metric']} {r['value']} (mean {r.get('mean_drift_iod', r.get('mean_cosine'))}) "
                  f"over {r['crops']} held-out inputs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
