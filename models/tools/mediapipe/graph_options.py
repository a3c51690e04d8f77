"""Prints the MediaPipe graphs that fix each model's pre- and post-processing.

MediaPipe 0.10.21 compiles its registered subgraphs (FaceDetection, FaceDetectionShortRange,
FaceDetectionFullRange, FaceLandmarkCpu, IrisLandmarkCpu, ...) into
`mediapipe/python/_framework_bindings*.so` as serialized `CalculatorGraphConfig` protos; only the
top-level `*.binarypb` files ship as files. This script finds each embedded graph by its `type`
field (the last field written), walks back to the longest prefix that parses and re-serializes to
the very same bytes, and prints it as text with the wheel's own `*_pb2.py` descriptors, so the
ImageToTensorCalculator float range, SsdAnchorsCalculator and TensorsToDetectionsCalculator options
quoted in the manifest entries can be read from the package itself.

usage: graph_options.py <unpacked wheel root with .so> <dir holding mediapipe/**/_pb2.py> TYPE...
"""

import importlib
import pathlib
import sys


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def main() -> int:
    so_root, pb_root, *types = sys.argv[1:]
    sys.path.insert(0, pb_root)
    # Import every generated module so that options extensions resolve in text output.
    for path in sorted(pathlib.Path(pb_root).rglob("*_pb2.py")):
        mod = ".".join(path.relative_to(pb_root).with_suffix("").parts)
        try:
            importlib.import_module(mod)
        except Exception:  # noqa: BLE001 - a few modules need packages we do not install
            pass
    from google.protobuf import text_format
    from mediapipe.framework import calculator_options_pb2, calculator_pb2

    # The pure-python protobuf runtime (as pinned for tf2onnx) does not register extensions that
    # are nested in generated messages (`ImageToTensorCalculatorOptions.ext`): do it by hand.
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").endswith("_pb2") and hasattr(mod, "DESCRIPTOR"):
            for msg in mod.DESCRIPTOR.message_types_by_name.values():
                for ext in msg.extensions:
                    if ext.containing_type.full_name == "mediapipe.CalculatorOptions":
                        try:
                            calculator_options_pb2.CalculatorOptions.RegisterExtension(ext)
                        except Exception:  # noqa: BLE001 - already registered
                            pass

    so = next(pathlib.Path(so_root).rglob("_framework_bindings*.so")).read_bytes()
    for name in types:
        marker = b"\xa2\x01" + varint(len(name)) + name.encode()
        pos = so.find(marker)
        found = False
        while pos >= 0:
            end = pos + len(marker)
            best = None
            for start in range(pos - 1, max(0, pos - 30000), -1):
                if so[start] != 0x0A:
                    continue
                blob = so[start:end]
                try:
                    graph = calculator_pb2.CalculatorGraphConfig.FromString(blob)
                except Exception:  # noqa: BLE001
                    continue
                if graph.type == name and graph.SerializeToString() == blob and graph.node:
                    best = graph
            if best is not None:
                print(f"# ===== {name} (embedded at offset {pos}) =====")
                print(text_format.MessageToString(best))
                found = True
            pos = so.find(marker, pos + 1)
        if not found:
            print(f"# ===== {name}: not found =====")
    return 0


if __name__ == "__main__":
    sys.exit(main())
