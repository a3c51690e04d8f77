"""Writes models/tools/int8/RESULTS.md from results/<id>.json (quantize.py build) and
selection/<id>.json (choose.py). Standard library only."""

from __future__ import annotations

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
IDS = ["blazeface_short", "blazeface_full", "face_mesh", "iris", "dlib_resnet", "age_v1",
       "gender_v1", "fer_mini_xception", "faceapi_age_gender", "faceapi_expression"]
CRITERION = {"max_drift_iod": "<= 0.01", "min_cosine": ">= 0.99", "top1_agreement": ">= 0.95"}


def recipe_text(r: dict) -> str:
    parts = [f"`{r['name']}`:"] if r.get("name") else []
    if r.get("ops"):
        parts.append("int8 at conv/matmul inputs only" + (" (outputs not requantised)" if r.get("noout") else ""))
    else:
        parts.append("QDQ on every quantisable op")
    m = r["method"]
    if m == "Percentile":
        m = f"percentile {r.get('percentile', 99.999)}"
    parts.append(f"{r['act']} act., {m}")
    if r.get("cle"):
        parts.append("depthwise equalisation")
    if r.get("exclude") or r.get("float_from"):
        parts.append("extra float nodes")
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:]) if r.get("name") else "; ".join(parts)


def main() -> int:
    res = {}
    for mid in IDS:
        p = HERE / "results" / f"{mid}.json"
        if p.exists():
            res[mid] = json.loads(p.read_text())
    if not res:
        print("no results", file=sys.stderr)
        return 1
    any_r = next(iter(res.values()))
    L = []
    L.append("# int8 variants: results")
    L.append("")
    L.append("Written by `models/tools/int8/report.py` from `results/<id>.json`; reproduce everything with")
    L.append("`bash models/tools/int8/build.sh` (pinned venv, committed fp32 files, tests/images). "
             f"onnxruntime {any_r['onnxruntime']} `quantize_static` (QDQ, per-channel symmetric QInt8 "
             f"weights), validated in tract {any_r['tract']} (Python bindings) against the fp32 file in "
             "tract, input fact fixed to the manifest's shape.")
    L.append("")
    L.append("Inputs are real: MediaPipe's full-range detections of every photo in `tests/images/`, cut "
             "as each model's manifest input says (`crops.py`); photos are split into calibration and "
             "held-out sets by photo (`common.py`). Landmark, embedding and detector figures are on "
             "held-out photos only; classifier top-1 agreement is on all face crops (calibration + "
             "held-out, as the brief asks), the held-out share is listed too. Speed: tract, one "
             "thread, median of 30 calls on the same held-out input, fp32 and int8 called in turn; "
             "the machine was shared with a Rust build, so ratios move by ~10% between runs.")
    L.append("")
    L.append("| model | metric (criterion) | value | crops | result | tract int8 / fp32 ms | speed ratio (int8/fp32) | fp32 bytes | int8 bytes | recipe |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for mid in IDS:
        r = res.get(mid)
        if r is None:
            L.append(f"| {mid} | not run | | | | | | | | |")
            continue
        sp = r["speed"]
        val = f"{r['value']}"
        if "age_mad_years" in r:
            val += f"; age MAD {r['age_mad_years']} y (max {r['age_max_abs_diff_years']})"
        if r["metric"] == "max_drift_iod":
            val += f" (mean {r['mean_drift_iod']})"
            if r.get("face_counts_equal") is False:
                val += "; face count changed"
        result = "**pass**, shipped" if r["shipped"] else "**FAIL**, not shipped"
        crops = (f"{r['photos']} photos, {r['faces_compared']} matched faces" if "photos" in r
                 else r["crops"])
        L.append(f"| {mid} | {r['metric']} ({CRITERION[r['metric']]}) | {val} | {crops} | {result} | "
                 f"{sp['int8_ms']} / {sp['fp32_ms']} | {sp['ratio']} | {r['fp32_bytes']} | "
                 f"{r['int8_bytes'] if r['shipped'] else str(r['int8_bytes']) + ' (not shipped)'} | "
                 f"{recipe_text(r['recipe'])} |")
    L.append("")
    if "age_v1" in res:
        L.append("age_v1's ratio below 1 is not int8's doing: the fp32 `age_v1.onnx` has denormal "
                 "float weights that make tract's fp32 run slow; with them set to zero it runs as "
                 "fast as the int8 file (Findings, `flush_denormals_check.py`).")
        L.append("")
    L.append("## Details")
    L.append("")
    for mid in IDS:
        r = res.get(mid)
        if r is None:
            continue
        L.append(f"### {mid}")
        L.append("")
        L.append(f"- rule: {r['rule']}")
        L.append(f"- calibration inputs: {r['calibration_inputs']}; kept in float: "
                 f"{', '.join('`' + n + '`' for n in r['excluded']) or 'nothing'}")
        if r["metric"] == "max_drift_iod" and "per_photo" in r:
            counts = ", ".join(f"{p['photo'].split('/')[-1]} fp32 {p['fp32_faces']} / int8 {p['int8_faces']} "
                               f"faces, {p['matched']} matched"
                               for p in r["per_photo"] if p["fp32_faces"] != p["int8_faces"]
                               or p["matched"] != p["fp32_faces"])
            L.append(f"- photos {r['photos']}, matched faces {r['faces_compared']}; face counts "
                     f"equal on every photo: {r['face_counts_equal']}"
                     + (f" (changed: {counts})" if counts else "")
                     + f"; worst single point {r['max_point_drift_iod']} IOD")
            worst = sorted(((f["drift_iod"], p["photo"], f["iod_px"], f["score"]) for p in r["per_photo"]
                            for f in p["faces"]), reverse=True)[:5]
            L.append("- worst faces (drift/IOD, photo, IOD in input px, fp32/int8 score): "
                     + "; ".join(f"{d} {ph} {iod}px {s}" for d, ph, iod, s in worst))
        if "face_flag_agreement" in r:
            L.append(f"- face_flag sign agreement {r['face_flag_agreement']}")
        if "max_iris_centre_drift" in r:
            L.append(f"- worst iris-centre drift {r['max_iris_centre_drift']} of the eye-corner distance")
        if "mean_cosine" in r:
            L.append(f"- mean cosine {r['mean_cosine']}; min over all crops (calibration + held-out) "
                     f"{r['min_cosine_all_crops']}")
        if "per_output" in r:
            for name, o in r["per_output"].items():
                L.append(f"- `{name}`: top-1 agreement {o['top1_agreement']} on {r['crops']} crops "
                         f"({o['disagreements']} disagreements), {o['top1_agreement_heldout']} on the "
                         f"{r['heldout_crops']} held-out ones; largest probability change "
                         f"{o['max_abs_prob_diff']}, mean {o['mean_abs_prob_diff']}")
        sp = r["speed"]
        if "fp32_preprocessed_ms" in sp:
            L.append(f"- tract ms: fp32 {sp['fp32_ms']}, int8 {sp['int8_ms']}, and the fp32 graph "
                     f"after onnxruntime's quant_pre_process (the float graph the int8 file was made "
                     f"from) {sp['fp32_preprocessed_ms']}")
        L.append(f"- int8 sha256 `{r['int8_sha256']}`")
        L.append("")
    sel = {mid: json.loads((HERE / "selection" / f"{mid}.json").read_text())
           for mid in IDS if (HERE / "selection" / f"{mid}.json").exists()}
    if sel:
        L.append("## How each recipe was chosen (`choose.py`)")
        L.append("")
        L.append("Six candidate recipes per model, each quantised and run in tract; the recipe is chosen "
                 "by the task metric on the CALIBRATION inputs (score: drift max + mean, plus face-count "
                 "changes / 1 - cosine / top-1 disagreement + mean probability change + age error / 10), "
                 "so the held-out column played no part in the choice. Figures from the exploration run "
                 "(`.venv-int8/bin/python models/tools/int8/choose.py`), not from the build.")
        L.append("")
        L.append("| model | candidate | calibration score | calibration metric | held-out metric | held-out |")
        L.append("|---|---|---|---|---|---|")
        for mid, s in sel.items():
            for row in s["candidates"]:
                mark = " (chosen)" if row["candidate"] == s["chosen"] else ""
                L.append(f"| {mid} | {row['candidate']}{mark} | {row['calibration_score']} | "
                         f"{row['calibration']} | {row['heldout']} | "
                         f"{'pass' if row['heldout_pass'] else 'fail'} |")
        L.append("")
        L.append("Candidates: `qdq-all-*`: onnxruntime's default placement (Q/DQ around every "
                 "quantisable op: Conv, Add, Mul, PRelu, MaxPool, Pad, Concat, ...), heads and Softmax "
                 "in float; `conv-in-*`: only Conv / Gemm / MatMul quantised, their inputs and weights "
                 "int8 and their outputs not requantised (`OpTypesToExcludeOutputQuantization`), so each "
                 "conv is an int8 x int8 product and the adds / activations / pools between them stay "
                 "float; `minmax` / `p99.99` (percentile) / `mse` (own per-tensor range minimising the "
                 "8-bit rounding + clipping error over the calibration histogram): activation ranges; "
                 "`cle`: cross-layer equalisation of each depthwise -> conv pair before quantising "
                 "(exact in float, checked to 1e-6 relative).")
        L.append("")
    notes = HERE / "NOTES.md"
    if notes.exists():
        L.append(notes.read_text().rstrip())
        L.append("")
    (HERE / "RESULTS.md").write_text("\n".join(L) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
