"""Reader for dlib's DNN serialization format (the `*.dat` files written by `dlib::serialize(net)`).

Written for facecast from the format as dlib's public source describes it (serialize.h, dnn/core.h,
dnn/layers.h, dnn/input.h, dnn/loss.h, dnn/tensor.h); no dlib code is used.

Primitive encodings:
  integer  one control byte (bit 7 = negative, low 4 bits = byte count n), then |value| in n bytes,
           little-endian.
  float    two integers: mantissa (int64) then exponent (int16); value = mantissa * 2**exponent.
  bool     one ASCII byte, '1' or '0'.
  string   integer length, then the bytes.
  tensor   (resizable_tensor) integer version (2), num_samples, k, nr, nc, then
           num_samples*k*nr*nc little-endian IEEE float32 values, row-major (n, k, r, c).
  alias_tensor  integer version (1), num_samples, k, nr, nc (no data: a view into `params`).

Network nesting (each wrapper writes itself, then the thing it wraps):
  add_loss_layer   version (1), loss details, subnetwork
  add_layer        version (1 or 2), subnetwork, layer details, 3 bools (setup called,
                   gradient stale, output getters disabled), x_grad, cached_output, params_grad
                   (params_grad only when version >= 2)
  add_layer over the input layer
                   version (2 or 3), input layer, layer details, 3 bools, x_grad, cached_output,
                   grad_final, sample_expansion_factor (version 3 only)
  add_tag_layer / add_skip_layer
                   version (1), subnetwork
Because every wrapper writes its subnetwork before its own details, a file starts with the chain of
version numbers from the top of the network down to the input, and the layer details then follow
from the input layer upwards. Tag and skip layers carry no data (and not their tag id), so the tag
ids come from the network definition the caller supplies.
"""

from __future__ import annotations

import dataclasses

import numpy as np


class FormatError(ValueError):
    pass


class Reader:
    def __init__(self, data: bytes):
        self.buf = memoryview(data)
        self.pos = 0

    # -- primitives ---------------------------------------------------------------------------
    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def integer(self) -> int:
        ctrl = self.byte()
        if ctrl & 0x70:
            raise FormatError(f"bad integer control byte 0x{ctrl:02x} at {self.pos - 1}")
        n = ctrl & 0x0F
        if n > 8:
            raise FormatError(f"integer of {n} bytes at {self.pos - 1}")
        value = int.from_bytes(self.buf[self.pos : self.pos + n], "little")
        self.pos += n
        return -value if ctrl & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def boolean(self) -> bool:
        c = self.byte()
        if c not in (ord("0"), ord("1")):
            raise FormatError(f"bad bool byte 0x{c:02x} at {self.pos - 1}")
        return c == ord("1")

    def string(self) -> str:
        n = self.integer()
        s = bytes(self.buf[self.pos : self.pos + n]).decode("ascii")
        self.pos += n
        return s

    def peek_string(self) -> str | None:
        """The string at the cursor if the bytes there look like a short ASCII string."""
        save = self.pos
        try:
            ctrl = self.buf[self.pos]
            if ctrl & 0xF0 or (ctrl & 0x0F) == 0 or (ctrl & 0x0F) > 2:
                return None
            n = self.integer()
            if not 0 < n < 64:
                return None
            raw = bytes(self.buf[self.pos : self.pos + n])
            if not all(0x20 < ch < 0x7F for ch in raw):
                return None
            return raw.decode("ascii")
        finally:
            self.pos = save

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise FormatError(f"tensor version {version} at {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        arr = np.frombuffer(self.buf, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return arr.astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise FormatError(f"alias_tensor version {version} at {self.pos}")
        return tuple(self.integer() for _ in range(4))


@dataclasses.dataclass
class Layer:
    kind: str  # the details' version string, e.g. "con_4", "affine_", "relu_"
    fields: dict


def _flat(t: np.ndarray) -> np.ndarray:
    return t.reshape(-1)


def read_details(r: Reader) -> Layer:
    kind = r.string()
    f: dict = {}
    if kind == "con_4":
        params = _flat(r.tensor())
        f["num_filters"] = r.integer()
        f["nr"] = r.integer()
        f["nc"] = r.integer()
        f["stride_y"] = r.integer()
        f["stride_x"] = r.integer()
        f["padding_y"] = r.integer()
        f["padding_x"] = r.integer()
        filt = r.alias_tensor()
        bias = r.alias_tensor()
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[name] = r.real()
        nfilt = int(np.prod(filt))
        f["weight"] = params[:nfilt].reshape(filt)  # (out, in, kh, kw)
        f["bias"] = params[nfilt : nfilt + int(np.prod(bias))].copy()
        if params.size != nfilt + int(np.prod(bias)):
            raise FormatError(f"con_ params size {params.size} != {nfilt}+{np.prod(bias)}")
    elif kind in ("max_pool_2", "avg_pool_2"):
        for name in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            f[name] = r.integer()
    elif kind == "affine_":
        params = _flat(r.tensor())
        g = r.alias_tensor()
        b = r.alias_tensor()
        f["mode"] = r.integer()  # 0 = CONV_MODE (per channel), 1 = FC_MODE (per element)
        ng = int(np.prod(g))
        f["gamma"] = params[:ng].reshape(g)
        f["beta"] = params[ng : ng + int(np.prod(b))].reshape(b)
    elif kind in ("bn_con2", "bn_fc2"):
        params = _flat(r.tensor())
        g = r.alias_tensor()
        b = r.alias_tensor()
        r.tensor()  # means (batch statistics, unused at inference)
        r.tensor()  # invstds
        running_means = r.tensor()
        running_vars = r.tensor()
        r.integer()  # num_updates
        r.integer()  # running_stats_window_size
        for _ in range(4):
            r.real()  # learning-rate / weight-decay multipliers
        eps = r.real()
        ng = int(np.prod(g))
        gamma = params[:ng].reshape(g)
        beta = params[ng : ng + int(np.prod(b))].reshape(b)
        # what dlib's affine_(const bn_&) constructor computes, in float32
        scale = gamma / np.sqrt(running_vars.reshape(g) + np.float32(eps))
        f["mode"] = 0 if kind == "bn_con2" else 1
        f["gamma"] = scale.astype(np.float32)
        f["beta"] = (beta - scale * running_means.reshape(g)).astype(np.float32)
        kind = "affine_"
    elif kind in ("relu_", "add_prev_"):
        pass
    elif kind == "fc_2":
        f["num_outputs"] = r.integer()
        f["num_inputs"] = r.integer()
        params = _flat(r.tensor())
        w = r.alias_tensor()
        b = r.alias_tensor()
        f["bias_mode"] = r.integer()  # 0 = has bias, 1 = no bias
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[name] = r.real()
        nw = int(np.prod(w))
        f["weight"] = params[:nw].reshape(f["num_inputs"], f["num_outputs"])  # y = x @ W
        f["bias"] = params[nw:].copy() if f["bias_mode"] == 0 else None
    else:
        raise FormatError(f"layer details '{kind}' not supported by this reader")
    return Layer(kind, f)


@dataclasses.dataclass
class Network:
    loss: Layer
    input: Layer
    chain: list  # top-down: "layer" (add_layer) or "tag_or_skip"
    layers: list  # bottom-up Layer list, one per "layer" in chain (input excluded)


def read_network(data: bytes) -> Network:
    r = Reader(data)
    if r.integer() != 1:
        raise FormatError("expected add_loss_layer version 1")
    loss_kind = r.string()
    loss_fields: dict = {}
    if loss_kind == "loss_metric_2":
        loss_fields["margin"] = r.real()
        loss_fields["dist_thresh"] = r.real()
    elif loss_kind == "loss_metric_":
        pass
    else:
        raise FormatError(f"loss '{loss_kind}' not supported")

    # chain of wrapper versions from the top of the network down to the input layer
    chain: list[tuple[str, int]] = []
    while True:
        version = r.integer()
        s = r.peek_string()
        if s is not None and s.startswith("input"):
            input_version = version
            break
        chain.append(("layer" if version == 2 else "tag_or_skip", version))
        if version not in (1, 2):
            raise FormatError(f"unexpected wrapper version {version} at {r.pos}")
    # A version-1 add_layer (older dlib) cannot be told from a tag by its version alone.
    # Files that use version 1 for add_layer are not supported; the check below catches them.

    in_kind = r.string()
    in_fields: dict = {}
    if in_kind in ("input_rgb_image_sized", "input_rgb_image"):
        in_fields["avg_red"] = r.real()
        in_fields["avg_green"] = r.real()
        in_fields["avg_blue"] = r.real()
        if in_kind == "input_rgb_image_sized":
            in_fields["nr"] = r.integer()
            in_fields["nc"] = r.integer()
    else:
        raise FormatError(f"input layer '{in_kind}' not supported")
    input_layer = Layer(in_kind, in_fields)

    layers = []
    first = read_details(r)
    for _ in range(3):
        r.boolean()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    r.tensor()  # grad_final
    if input_version >= 3:
        r.integer()  # sample_expansion_factor
    layers.append(first)

    for kind, version in reversed(chain):
        if kind != "layer":
            continue
        layers.append(read_details(r))
        for _ in range(3):
            r.boolean()
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        if version >= 2:
            r.tensor()  # params_grad
    if r.pos != len(r.buf):
        raise FormatError(f"{len(r.buf) - r.pos} trailing bytes after the network")
    return Network(Layer(loss_kind, loss_fields), input_layer, chain, layers)
