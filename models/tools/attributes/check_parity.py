"""Re-checks the committed attribute models the way the Rust side will: for each entry, the
sha256, opset 13, fixed input shape, no initializer among the graph inputs; then every fixture
PNG is normalised exactly as the entry says (colour, mean, std, layout), run in onnxruntime AND
in tract (PyPI `tract`, the Python bindings of the tract version the crate uses, input fact fixed
from the entry) and compared with the reference outputs stored in the fixture JSON. onnxruntime
must stay within the entry's max_abs_diff; tract within 1e-5 of the output range + 1e-4 (the
bound the mediapipe group uses), and its figure is printed.

    models/tools/.venv-attributes/bin/python models/tools/attributes/check_parity.py [ID ...]
"""

from __future__ import annotations

import json
import sys
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
import tract
from PIL import Image

from common import ENTRIES, FIXTURES, MODELS, REPO, sha256

IDS = ["age_v1", "gender_v1", "fer_mini_xception", "faceapi_age_gender", "faceapi_expression"]


def tensor_from_png(path, inp) -> np.ndarray:
    img = Image.open(path)
    colour = inp["colour"]
    if colour == "grey":
        assert img.mode == "L", (path, img.mode)
        px = np.asarray(img, dtype=np.float32)[:, :, None]
    else:
        assert img.mode == "RGB", (path, img.mode)
        px = np.asarray(img, dtype=np.float32)
        if colour == "bgr":
            px = px[:, :, ::-1]
    x = (px - np.asarray(inp["mean"], np.float32)) / np.asarray(inp["std"], np.float32)
    shape = inp["shape"]
    if inp["layout"] == "nchw":
        x = x.transpose(2, 0, 1)[None]
    else:
        x = x[None]
    assert list(x.shape) == shape, (x.shape, shape)
    return np.ascontiguousarray(x, dtype=np.float32)


def main(ids) -> int:
    ok = True
    for mid in ids:
        entry = tomllib.loads((ENTRIES / f"{mid}.toml").read_text())["model"][0]
        path = MODELS / entry["file"]
        assert sha256(path) == entry["sha256"], f"{mid}: sha256 mismatch"
        m = onnx.load(str(path))
        assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [13], mid
        inits = {i.name for i in m.graph.initializer}
        assert [i.name for i in m.graph.input] == [entry["input"]["name"]], mid
        assert not inits & {i.name for i in m.graph.input}, mid
        dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        assert dims == entry["input"]["shape"] and all(d > 0 for d in dims), (mid, dims)
        assert [o.name for o in m.graph.output] == [o["name"] for o in entry["output"]], mid
        sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
        tm = tract.onnx().load(str(path))
        tm.set_input_fact(0, ",".join(map(str, entry["input"]["shape"])) + ",f32")
        trun = tm.into_model().into_runnable()
        tworst = 0.0
        par = entry["parity"]
        folder = REPO / par["fixtures"]
        cases = sorted(folder.glob("*.json"))
        assert len(cases) == par["cases"], (mid, len(cases), par["cases"])
        worst, lo, hi = 0.0, np.inf, -np.inf
        for case in cases:
            assert case.stat().st_size < 600_000, case
            doc = json.loads(case.read_text())
            assert doc["model"] == mid
            x = tensor_from_png(case.with_suffix(".png"), entry["input"])
            got = sess.run(None, {entry["input"]["name"]: x})
            tgot = [t.to_numpy() for t in trun.run([x])]
            for out, o_entry, g, tg in zip(doc["outputs"], entry["output"], got, tgot):
                assert out["name"] == o_entry["name"] and out["shape"] == list(g.shape) == o_entry["shape"]
                assert list(tg.shape) == out["shape"], (mid, tg.shape, out["shape"])
                ref = np.asarray(out["data"], np.float32).reshape(out["shape"])
                worst = max(worst, float(np.abs(g - ref).max()))
                tworst = max(tworst, float(np.abs(tg - ref).max()))
                lo, hi = min(lo, float(ref.min())), max(hi, float(ref.max()))
        tlimit = 1e-5 * par["output_range"] + 1e-4
        passed = worst <= par["max_abs_diff"] * 1.01 + 1e-7 and tworst <= tlimit
        ok &= passed
        print(f"{mid}: {len(cases)} cases, max |onnxruntime - fixture| {worst:.3g} "
              f"(entry: {par['max_abs_diff']:.3g}), max |tract {tract.version()} - fixture| "
              f"{tworst:.3g} (limit {tlimit:.3g}), reference output range {hi - lo:.6g} "
              f"(entry: {par['output_range']:.6g}) {'ok' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or IDS))
