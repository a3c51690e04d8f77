"""YUV4MPEG2 4:2:0 writing and reading, bit-exact with facecast's own code, so the peers see the
very RGB pixels facecast sees:

- encode_i420 is src/pixel.rs `rgb_to_i420` (BT.601 limited range, fixed point x 2^16, chroma
  = integer mean of each 2x2 block, rounded by +32768 >> 16);
- decode_rgb is src/pixel.rs `to_rgb` for `Planar { 1, 1 }` (nearest chroma sample, no
  interpolation; limited range unless the header says XCOLORRANGE=FULL).

numpy only (used from both bench venvs: numpy 1.26 for mediapipe, 2.x for the others; integer
arithmetic, so the results are the same).
"""

from __future__ import annotations

import numpy as np

# src/pixel.rs `LIMITED` and `FULL` coefficients (y_offset, y_gain, v_to_r, u_to_g, v_to_g, u_to_b).
_COEFFICIENTS = {
    "limited": (16, 76309, 104597, 25675, 53279, 132201),
    "full": (0, 65536, 91881, 22554, 46802, 116130),
}


def header(width: int, height: int, fps: int) -> bytes:
    """src/capture/y4m.rs `Y4mHeader::write_420`."""
    return f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode()


def encode_i420(rgb: np.ndarray) -> bytes:
    """H x W x 3 uint8 RGB -> Y, U, V planes (4:2:0, BT.601 limited range)."""
    h, w, _ = rgb.shape
    px = rgb.astype(np.int64)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    y = 16 + ((16829 * r + 33039 * g + 6416 * b + 32768) >> 16)
    # 2x2 block means; an odd last row/column averages the pixels it has, like the Rust loop.
    ch, cw = (h + 1) // 2, (w + 1) // 2
    pad = np.pad(px, ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)))
    count = np.pad(np.ones((h, w), np.int64), ((0, 2 * ch - h), (0, 2 * cw - w)))
    sums = pad.reshape(ch, 2, cw, 2, 3).sum(axis=(1, 3))
    n = count.reshape(ch, 2, cw, 2).sum(axis=(1, 3))[..., None]
    mean = sums // n  # all non-negative: floor == Rust's truncating division
    r, g, b = mean[..., 0], mean[..., 1], mean[..., 2]
    u = 128 + ((-9714 * r - 19070 * g + 28784 * b + 32768) >> 16)
    v = 128 + ((28784 * r - 24103 * g - 4681 * b + 32768) >> 16)
    # Rust casts with `as u8` (wrapping); these values stay in 16..=240, so the cast is exact.
    return b"".join(p.astype(np.uint8).tobytes() for p in (y, u, v))


def decode_rgb(planes: bytes, width: int, height: int, colour_range: str = "limited") -> np.ndarray:
    """Y, U, V planes of one 4:2:0 frame -> H x W x 3 uint8 RGB, as facecast decodes it."""
    y_off, y_gain, v_r, u_g, v_g, u_b = _COEFFICIENTS[colour_range]
    cw, ch = (width + 1) // 2, (height + 1) // 2
    buf = np.frombuffer(planes, np.uint8)
    luma = buf[: width * height].reshape(height, width).astype(np.int32)
    u = buf[width * height:][: cw * ch].reshape(ch, cw).astype(np.int32) - 128
    v = buf[width * height + cw * ch:][: cw * ch].reshape(ch, cw).astype(np.int32) - 128
    # Nearest chroma: pixel (row, col) takes chroma sample (row >> 1, col >> 1).
    u = u.repeat(2, 0).repeat(2, 1)[:height, :width]
    v = v.repeat(2, 0).repeat(2, 1)[:height, :width]
    yy = (luma - y_off) * y_gain + (1 << 15)
    out = np.empty((height, width, 3), np.uint8)
    out[..., 0] = np.clip((yy + v_r * v) >> 16, 0, 255)
    out[..., 1] = np.clip((yy - u_g * u - v_g * v) >> 16, 0, 255)
    out[..., 2] = np.clip((yy + u_b * u) >> 16, 0, 255)
    return out


class Reader:
    """Frames of an 8-bit 4:2:0 Y4M file, one at a time (only one frame in memory)."""

    def __init__(self, path):
        self._f = open(path, "rb")
        line = self._f.readline().decode("ascii", "replace").split()
        if not line or line[0] != "YUV4MPEG2":
            raise ValueError(f"{path}: not a YUV4MPEG2 file")
        self.width = self.height = 0
        self.fps = (0, 1)
        self.colour_range = "limited"  # facecast's default for Y4M (src/capture/y4m.rs)
        colour = "420"
        for word in line[1:]:
            tag, value = word[0], word[1:]
            if tag == "W":
                self.width = int(value)
            elif tag == "H":
                self.height = int(value)
            elif tag == "F":
                n, _, d = value.partition(":")
                self.fps = (int(n), int(d or 1))
            elif tag == "C":
                colour = value
            elif tag == "X" and value == "COLORRANGE=FULL":
                self.colour_range = "full"
        if colour not in ("420jpeg", "420paldv", "420mpeg2", "420"):
            raise ValueError(f"{path}: C{colour}: only 8-bit 4:2:0 is read here")
        cw, ch = (self.width + 1) // 2, (self.height + 1) // 2
        self.frame_bytes = self.width * self.height + 2 * cw * ch

    def planes(self):
        """Yields each frame's raw Y, U, V bytes."""
        while True:
            tag = self._f.readline()
            if not tag:
                return
            if not tag.startswith(b"FRAME"):
                raise ValueError(f"bad frame header {tag[:20]!r}")
            data = self._f.read(self.frame_bytes)
            if len(data) < self.frame_bytes:
                raise ValueError("truncated frame")
            yield data

    def rgb(self, planes: bytes) -> np.ndarray:
        return decode_rgb(planes, self.width, self.height, self.colour_range)

    def close(self):
        self._f.close()
