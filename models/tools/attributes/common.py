"""Shared helpers for the attribute models (age, gender, emotion): paths, the parity cases,
fixture JSON and manifest-entry writing. Standard library + numpy only, so every venv of this
group can import it."""

from __future__ import annotations

import hashlib
import json
import math
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
TOOLS = HERE.parent
MODELS = TOOLS.parent
REPO = MODELS.parent
CACHE = TOOLS / "cache" / "attributes"
IMAGES = REPO / "tests" / "images"
FIXTURES = REPO / "tests" / "fixtures" / "parity"
ENTRIES = TOOLS / "entries"

# The parity cases: real photos committed under tests/images/ (see tests/images/PROVENANCE.md).
# case name -> path relative to tests/images/. One (the largest) face per photo is used.
CASES = {
    "obama": "face_recognition/obama.jpg",
    "biden": "face_recognition/biden.jpg",
    "astronaut": "skimage/astronaut.png",
    "grace_hopper": "facedetect/grace_hopper_512x512.jpg",
    "pyfeat_f1_su": "pyfeat/0-f1-su-ph.jpg",
    "pyfeat_f15_hao": "pyfeat/0-f15-hao-ph.jpg",
    "pyfeat_f13_anc": "pyfeat/15-f13-anc-ph.jpg",
    "pyfeat_m7_di": "pyfeat/45-m7-di-ph.jpg",
}

EMOTIONS_FER2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def sig7(x: float) -> float:
    """Round to 7 significant digits (as the fixtures store floats)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.7g}")


def output_record(name: str, array: np.ndarray) -> dict:
    a = np.asarray(array, dtype=np.float32)
    return {"name": name, "shape": list(a.shape), "data": [sig7(v) for v in a.reshape(-1)]}


def write_fixture(model_id: str, case: str, image_rel: str, source: str, reference: str,
                  outputs: list[dict]) -> pathlib.Path:
    folder = FIXTURES / model_id
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"model": model_id, "image": pathlib.Path(image_rel).name, "source": source,
           "reference": reference, "outputs": outputs}
    path = folder / f"{case}.json"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return path


def fixture_arrays(model_id: str, case: str) -> dict[str, np.ndarray]:
    doc = json.loads((FIXTURES / model_id / f"{case}.json").read_text())
    return {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
            for o in doc["outputs"]}


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(sig7(v)))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_entry(model: dict, comments: list[str]) -> pathlib.Path:
    """Writes entries/<id>.toml: one [[model]] table with [model.parity], [model.input] and
    [[model.output]] sub-tables, in the layout of models/README.md."""
    lines = [f"# Written by models/tools/attributes/{model['_writer']} "
             "(models/tools/attributes/build.sh); do not edit by hand."]
    lines += [f"# {c}" for c in comments]
    lines.append("[[model]]")
    for key in ("id", "task", "file", "sha256", "precision", "licence", "origin", "upstream",
                "converter"):
        lines.append(f"{key} = {toml_value(model[key])}")
    lines.append("")
    lines.append("[model.parity]")
    for k, v in model["parity"].items():
        lines.append(f"{k} = {toml_value(v)}")
    lines.append("")
    lines.append("[model.input]")
    for k, v in model["input"].items():
        lines.append(f"{k} = {toml_value(v)}")
    for out in model["outputs"]:
        lines.append("")
        lines.append("[[model.output]]")
        for k, v in out.items():
            lines.append(f"{k} = {toml_value(v)}")
    ENTRIES.mkdir(parents=True, exist_ok=True)
    path = ENTRIES / f"{model['id']}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
