"""Early warning before the Rust test: loads each written ONNX in tract (PyPI `tract`, the Python
bindings of the same tract version the crate uses), fixes the input fact from the manifest entry,
runs every parity fixture normalised as the entry says, and prints max |tract - fixture|.

usage: tract_check.py [ID ...]   (exit 1 if an output's shape differs or the diff exceeds 1e-5 of
the output range plus 1e-4)
"""

import json
import pathlib
import sys
import tomllib

import numpy as np
import tract
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[3]
IDS = ["blazeface_short", "blazeface_full", "face_mesh", "face_mesh_attention", "iris"]


def main() -> int:
    bad = 0
    for mid in sys.argv[1:] or IDS:
        entry = tomllib.loads((REPO / f"models/tools/entries/{mid}.toml").read_text())["model"][0]
        inp = entry["input"]
        model = tract.onnx().load(str(REPO / "models" / entry["file"]))
        model.set_input_fact(0, ",".join(map(str, inp["shape"])) + ",f32")
        run = model.into_model().into_runnable()
        worst, cases = 0.0, 0
        for js in sorted((REPO / entry["parity"]["fixtures"]).glob("*.json")):
            doc = json.loads(js.read_text())
            px = np.asarray(Image.open(js.with_suffix(".png")).convert("RGB"), dtype=np.float32)
            x = (px - np.array(inp["mean"], np.float32)) / np.array(inp["std"], np.float32)
            x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
            for out, ref in zip(run.run([x]), doc["outputs"]):
                got = out.to_numpy()
                want = np.array(ref["data"], np.float32).reshape(ref["shape"])
                if list(got.shape) != ref["shape"]:
                    print(f"{mid}/{js.stem}: {ref['name']} shape {list(got.shape)} != {ref['shape']}")
                    bad += 1
                    continue
                worst = max(worst, float(np.abs(got - want).max()))
            cases += 1
        limit = 1e-5 * entry["parity"]["output_range"] + 1e-4
        ok = worst <= limit
        bad += not ok
        print(
            f"{mid}: tract {tract.version()}, {cases} cases, max |tract - fixture| "
            f"{worst:.3g} (limit {limit:.3g}) {'ok' if ok else 'TOO LARGE'}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
