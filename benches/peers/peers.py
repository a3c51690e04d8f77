"""Times facecast's peers on the same inputs as `facecast bench`, one peer per process, and writes
one JSON file (the schema benches/report.py reads):

    onnxruntime               every ONNX file of models/manifest.toml (fp32 and int8) on a real
                              input: the first parity fixture crop of the model (an int8 copy
                              uses its fp32 original's), normalised as the manifest says
    paired                    the same, model by model, onnxruntime and facecast (`bench
                              --serve`, one or more binaries) taking turns in blocks of runs:
                              the ratios compare blocks run one after the other
    mediapipe_face_detection  mediapipe legacy face_detection, model_selection=1 (full range)
    mediapipe_face_mesh_iris  mediapipe legacy face_mesh, refine_landmarks=True (irises),
                              static_image_mode=False (tracking between frames): its graph
                              runs face_landmark_with_attention.tflite, one model whose
                              attention heads refine eyes, lips and irises
    mediapipe_face_mesh       the same with refine_landmarks=False: face_landmark.tflite,
                              the 468-point model facecast runs (no irises)
    face_recognition          face_locations (HOG, upsample 1) + face_encodings per frame

usage (from the peer's venv; benches/run.sh does all of this):
    peers.py onnxruntime --out F [--runs 200] [--warmup 20]
    peers.py paired --facecast BIN [--facecast BIN2] --out F [--models a,b] [--rounds 12]
                    [--block-ms 250]
    peers.py mediapipe_face_detection --clip C.y4m --out F
    peers.py mediapipe_face_mesh_iris --clip C.y4m --max-faces N --out F
    peers.py mediapipe_face_mesh --clip C.y4m --max-faces N --out F
    peers.py face_recognition --clip C.y4m --out F [--frames 30]

Single-threaded: the BLAS/OpenMP thread counts are set to 1 below before numpy loads, and
onnxruntime gets intra_op_num_threads = inter_op_num_threads = 1. mediapipe has no such knob in
its legacy API (its graphs leave XNNPACK's num_threads unset, and the default is 1 except on
Android, iOS and threaded wasm: mediapipe/calculators/tensor/inference_calculator_utils.cc,
GetXnnpackDefaultNumThreads; the graph scheduler has a few threads of its own): "cpu_per_wall" in the JSON (process CPU time /
wall time over the timed loop) and "os_threads" show what each peer really used.

Frames are decoded from the Y4M exactly as facecast decodes them (y4m.py), one at a time and
outside the timed region: the decode is not in frame_ms, fps or startup_ms, and the process holds
one decoded frame, not the clip (so peak RSS is the peer's, not 150 frames').
The first frame is the end of start-up (startup_ms: from the process's start, as the kernel
records it, through imports and model loading to the first result; 10 ms granularity) and is not
in frame_ms or fps.
"""

from __future__ import annotations

import os

# Before numpy (and through it any BLAS) is imported: one thread everywhere.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import importlib.metadata
import json
import pathlib
import resource
import sys
import time
import tomllib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import y4m  # noqa: E402


def process_start_boottime() -> float:
    """When this process started, in CLOCK_BOOTTIME seconds (/proc/self/stat field 22, in clock
    ticks since boot): start-up then includes the interpreter's own start."""
    stat = pathlib.Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def os_threads() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentiles(ms: list[float]) -> dict:
    """p50 and p99 (numpy's default linear interpolation between order statistics)."""
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def base_record(peer: str, version: str) -> dict:
    return {"peer": peer, "version": version, "threads": 1,
            "load1": round(os.getloadavg()[0], 2)}


def finish(record: dict) -> dict:
    record["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    record["load1_end"] = round(os.getloadavg()[0], 2)
    return record


# --- per-frame peers --------------------------------------------------------------------------

def run_clip(record: dict, clip: pathlib.Path, limit: int | None, process, count_faces) -> dict:
    """Feeds the clip's frames to `process(rgb)` (created by the caller after the process
    started); times each call; frame 0 ends start-up."""
    start = process_start_boottime()
    reader = y4m.Reader(clip)
    decode_s = 0.0
    times: list[float] = []
    faces: list[int] = []
    threads = 0
    cpu_busy = 0.0  # process CPU time (all threads) inside process(), frames after the first
    for i, planes in enumerate(reader.planes()):
        if limit is not None and i >= limit:
            break
        d0 = time.perf_counter()
        rgb = reader.rgb(planes)
        decode_s += time.perf_counter() - d0
        c0, t0 = time.process_time(), time.perf_counter()
        result = process(rgb)
        t1, c1 = time.perf_counter(), time.process_time()
        faces.append(count_faces(result))
        threads = max(threads, os_threads())
        if i == 0:
            # Only the first frame's decode happened before the first result.
            record["startup_ms"] = round(
                (time.clock_gettime(time.CLOCK_BOOTTIME) - start - decode_s) * 1e3, 1)
        else:
            times.append((t1 - t0) * 1e3)
            cpu_busy += c1 - c0
    reader.close()
    record.update({
        "clip": clip.stem,
        "frames": len(times),
        "fps": round(1e3 * len(times) / sum(times), 2),
        "frame_ms": percentiles(times),
        "faces_per_frame": {"min": min(faces), "mean": round(sum(faces) / len(faces), 2),
                            "max": max(faces)},
        "cpu_per_wall": round(cpu_busy / (sum(times) / 1e3), 2),
        "os_threads": threads,
    })
    return record


def mediapipe_peer(args, what: str) -> dict:
    import mediapipe as mp
    record = base_record(f"mediapipe_{what}", mp.__version__)
    if what == "face_detection":
        settings = {"model_selection": 1, "min_detection_confidence": 0.5}
        solution = mp.solutions.face_detection.FaceDetection(**settings)
        count = lambda r: len(r.detections or [])  # noqa: E731
    else:
        settings = {"static_image_mode": False, "max_num_faces": args.max_faces,
                    "refine_landmarks": what == "face_mesh_iris",
                    "min_detection_confidence": 0.5,
                    "min_tracking_confidence": 0.5}
        solution = mp.solutions.face_mesh.FaceMesh(**settings)
        count = lambda r: len(r.multi_face_landmarks or [])  # noqa: E731
    record["settings"] = settings
    with solution:
        run_clip(record, args.clip, args.frames, solution.process, count)
    return finish(record)


def face_recognition_peer(args) -> dict:
    import face_recognition
    version = (f"{importlib.metadata.version('face_recognition')} "
               f"(dlib-bin {importlib.metadata.version('dlib-bin')}, "
               f"face_recognition_models {importlib.metadata.version('face_recognition_models')})")
    record = base_record("face_recognition", version)
    # The package's defaults, written out: HOG detector upsampling once, the 5-point
    # ("small") predictor for the chips, one jitter.
    settings = {"model": "hog", "number_of_times_to_upsample": 1,
                "encodings_model": "small", "num_jitters": 1, "frames_limit": args.frames}
    record["settings"] = settings

    def process(rgb):
        boxes = face_recognition.face_locations(rgb, settings["number_of_times_to_upsample"],
                                                settings["model"])
        return face_recognition.face_encodings(rgb, boxes, settings["num_jitters"],
                                               settings["encodings_model"])

    run_clip(record, args.clip, args.frames, process, len)
    return finish(record)


# --- onnxruntime on the manifest's models ---------------------------------------------------

def onnxruntime_setup():
    """onnxruntime, its single-threaded session options and their record, the manifest's
    entries by id, and the manifest's normalisation (implemented once, for the int8 tools;
    reused here rather than copied)."""
    import onnxruntime as ort
    sys.path.insert(0, str(REPO / "models" / "tools" / "int8"))
    from common import normalise

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # graph_optimization_level stays at onnxruntime's default (ORT_ENABLE_ALL): how it is used.
    settings = {"provider": "CPUExecutionProvider", "intra_op_num_threads": 1,
                "inter_op_num_threads": 1, "execution_mode": "sequential",
                "graph_optimization_level": str(options.graph_optimization_level)}
    manifest = tomllib.loads((REPO / "models" / "manifest.toml").read_text())
    entries = {m["id"]: m for m in manifest["model"]}

    def session(model_id):
        """A session on the model's file and the feed of its input: the first parity fixture
        crop of the model (an int8 copy uses its fp32 original's), normalised as the manifest
        says, as `facecast bench` feeds it."""
        import cv2
        m = entries[model_id]
        fp32 = entries[m.get("variant_of", model_id)]
        case = sorted((REPO / fp32["parity"]["fixtures"]).glob("*.png"))[0]
        pixels = cv2.imread(str(case), cv2.IMREAD_UNCHANGED)
        if pixels.ndim == 3:
            pixels = np.ascontiguousarray(pixels[:, :, 2::-1])  # BGR(A) -> RGB
        sess = ort.InferenceSession(str(REPO / "models" / m["file"]), options,
                                    providers=["CPUExecutionProvider"])
        return sess, {m["input"]["name"]: normalise(pixels, m["input"])}, case

    return ort, settings, entries, session


def onnxruntime_peer(args) -> dict:
    start = process_start_boottime()
    ort, settings, entries, session_of = onnxruntime_setup()
    record = base_record("onnxruntime", ort.__version__)
    record["settings"] = {**settings, "warmup": args.warmup}
    models = {}
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    threads = 0
    for model_id, m in entries.items():
        t0 = time.perf_counter()
        session, feed, case = session_of(model_id)
        session.run(None, feed)
        load_ms = (time.perf_counter() - t0) * 1e3
        if "startup_ms" not in record:
            record["startup_ms"] = round((time.clock_gettime(time.CLOCK_BOOTTIME) - start) * 1e3, 1)
            record["startup_model"] = model_id
        for _ in range(args.warmup):
            session.run(None, feed)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        threads = max(threads, os_threads())
        models[model_id] = {**percentiles(times), "runs": len(times),
                            "load_ms": round(load_ms, 1), "precision": m["precision"],
                            "input": str(case.relative_to(REPO))}
        print(f"onnxruntime {model_id:<26} p50 {models[model_id]['p50']:8.3f} ms  "
              f"p99 {models[model_id]['p99']:8.3f} ms", file=sys.stderr)
        del session
    record["cpu_per_wall"] = round((cpu_seconds() - cpu0) / (time.perf_counter() - wall0), 2)
    record["os_threads"] = threads
    record["models"] = models
    return finish(record)


# --- onnxruntime and facecast taking turns, model by model ---------------------------------

class FacecastServer:
    """`facecast bench --serve` in a process of its own, run from the repository (its models/
    and parity crops): `time(id, runs)` gives the runs' milliseconds."""

    def __init__(self, binary: str):
        import subprocess
        self.binary = binary
        self.process = subprocess.Popen([binary, "bench", "--serve"], cwd=REPO, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env={**os.environ, "RUST_LOG": "warn"})
        self.load_ms: dict[str, float] = {}

    def time(self, model_id: str, runs: int) -> list[float]:
        self.process.stdin.write(f"{model_id} {runs}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.binary} bench --serve ended (exit {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.binary}: {answer['error']}")
        self.load_ms[model_id] = answer["load_ms"]
        return answer["ms"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def paired_peer(args) -> dict:
    """Each model in onnxruntime (in this process) and in each facecast binary (`bench
    --serve`), taking turns in blocks of runs (about --block-ms each), --rounds times; the order
    of the sides rotates from one round to the next. The machine's speed moves within seconds
    (docs/performance.md): a ratio is taken between the medians of two blocks run one after the
    other, and the rounds' ratios are summarised. Both runtimes hold their model loaded; each
    block starts with what the other side left in the caches, as in a pipeline of several
    models. Both sides run on one CPU (--cpu; the facecast processes inherit this process's
    affinity): this machine's two vCPUs are fast or slow independently of each other (ratios
    between processes on different vCPUs swung by 1.5x either way; docs/performance.md, round
    18), and taking turns on one vCPU puts both runtimes in the same state."""
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    ort, settings, entries, session_of = onnxruntime_setup()
    record = base_record("paired", ort.__version__)
    servers = {("facecast" if len(args.facecast) == 1 else f"facecast{i + 1}"): FacecastServer(b)
               for i, b in enumerate(args.facecast)}
    record["settings"] = {**settings, "block_ms": args.block_ms, "rounds": args.rounds,
                          "warmup": args.warmup, "cpu": cpu,
                          "facecast": {side: s.binary for side, s in servers.items()}}
    ids = args.models.split(",") if args.models else list(entries)
    models = {}
    for model_id in ids:
        session, feed, case = session_of(model_id)

        def run_ort(runs, session=session, feed=feed):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                session.run(None, feed)
                times.append((time.perf_counter() - t0) * 1e3)
            return times

        runners = {"onnxruntime": run_ort}
        runners.update({side: (lambda runs, s=s, m=model_id: s.time(m, runs))
                        for side, s in servers.items()})
        # Warm-up, which also loads facecast's model; the slowest side sets the block's runs.
        slowest = max(float(np.median(run(args.warmup))) for run in runners.values())
        runs = max(3, round(args.block_ms / slowest))
        sides = list(runners)
        blocks = {side: [] for side in sides}
        for r in range(args.rounds):
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                blocks[side].append(runners[side](runs))
        entry = {"precision": entries[model_id]["precision"], "input": str(case.relative_to(REPO)),
                 "runs_per_block": runs, "rounds": args.rounds}
        for side, side_blocks in blocks.items():
            entry[side] = {**percentiles([t for b in side_blocks for t in b]),
                           "runs": runs * args.rounds}
            if side in servers:
                entry[side]["load_ms"] = servers[side].load_ms[model_id]
                ort_medians = [float(np.median(b)) for b in blocks["onnxruntime"]]
                ratios = [float(np.median(b)) / o for b, o in zip(side_blocks, ort_medians)]
                entry[side]["ratio_to_onnxruntime"] = {
                    "median": round(float(np.median(ratios)), 3),
                    "q25": round(float(np.percentile(ratios, 25)), 3),
                    "q75": round(float(np.percentile(ratios, 75)), 3),
                    "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
        models[model_id] = entry
        print(f"{model_id:<26} ort p50 {entry['onnxruntime']['p50']:7.3f}  " + "  ".join(
            f"{side} {entry[side]['p50']:7.3f} ({entry[side]['ratio_to_onnxruntime']['median']:.2f}x, "
            f"{entry[side]['ratio_to_onnxruntime']['q25']:.2f}-{entry[side]['ratio_to_onnxruntime']['q75']:.2f})"
            for side in servers), file=sys.stderr)
        del session
    for s in servers.values():
        s.close()
    record["models"] = models
    return finish(record)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("peer", choices=["onnxruntime", "paired", "mediapipe_face_detection",
                                    "mediapipe_face_mesh_iris", "mediapipe_face_mesh",
                                    "face_recognition"])
    p.add_argument("--clip", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--frames", type=int, help="only the first N frames of the clip")
    p.add_argument("--max-faces", type=int, default=1, help="face_mesh max_num_faces")
    p.add_argument("--runs", type=int, default=200, help="onnxruntime: timed runs per model")
    p.add_argument("--warmup", type=int, default=20, help="onnxruntime, paired: untimed runs first")
    p.add_argument("--facecast", action="append", default=[],
                   help="paired: a facecast binary (repeat for several: facecast1, facecast2, ...)")
    p.add_argument("--models", help="paired: model ids, comma-separated (default: all)")
    p.add_argument("--block-ms", type=float, default=250, help="paired: about this long a block")
    p.add_argument("--rounds", type=int, default=12, help="paired: blocks per side and model")
    p.add_argument("--cpu", type=int,
                   help="paired: the one CPU both sides run on (default: the last one allowed)")
    args = p.parse_args()
    if args.peer == "paired" and not args.facecast:
        p.error("paired needs --facecast BINARY")
    if args.peer not in ("onnxruntime", "paired") and args.clip is None:
        p.error(f"{args.peer} needs --clip")
    if args.peer == "onnxruntime":
        record = onnxruntime_peer(args)
    elif args.peer == "paired":
        record = paired_peer(args)
    elif args.peer == "face_recognition":
        record = face_recognition_peer(args)
    else:
        record = mediapipe_peer(args, args.peer.removeprefix("mediapipe_"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    summary = {k: record[k] for k in ("peer", "clip", "frames", "fps", "frame_ms", "startup_ms",
                                      "peak_rss_kib", "load1") if k in record}
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
