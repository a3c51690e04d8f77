"""A from-scratch numpy model of dlib.get_face_chip(img, shape5, size=150, padding=0.25).

Written from reading dlib's interpolation.h / image_pyramid.h / drectangle.h (see
chip_geometry.md) so that the Rust alignment has an executable specification. `--check` compares
it with dlib-bin's own get_face_chip on the parity fixtures' photos, using the five points saved
in each fixture JSON.

usage: chip_reference.py --check FIXTURE_DIR REPO_ROOT PHOTO_PREFIX
"""

from __future__ import annotations

import math

import numpy as np

# dlib's mean positions of the 5 landmarks in a unit face square (get_face_chip_details)
REF5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],  # 0: outer corner of the eye on the image's right
        [0.6460604764104, 0.2289674387677],  # 1: inner corner of that eye
        [0.1205750620789, 0.2137274526848],  # 2: outer corner of the eye on the image's left
        [0.3340850613712, 0.2290642403242],  # 3: inner corner of that eye
        [0.4901123135679, 0.6277975316475],  # 4: bottom of the nose
    ]
)


def chip_points(size=150, padding=0.25):
    return (padding + REF5) / (2 * padding + 1) * size


def similarity(src, dst):
    """Umeyama least-squares similarity transform: dst ~= c*R @ src + t (dlib find_similarity_transform)."""
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    ms, md = src.mean(0), dst.mean(0)
    sigma_from = ((src - ms) ** 2).sum(1).mean()
    cov = ((dst - md)[:, :, None] * (src - ms)[:, None, :]).mean(0)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        if d[1] < d[0]:
            s[1, 1] = -1
        else:
            s[0, 0] = -1
    r = u @ s @ vt
    c = 1.0 if sigma_from == 0 else (d * np.diag(s)).sum() / sigma_from
    t = md - c * r @ ms
    return c * r, t


def chip_details(points5, size=150, padding=0.25):
    """(rect l,t,r,b as floats, angle) exactly as dlib's chip_details(from, to, dims) builds them."""
    m, t = similarity(chip_points(size, padding), points5)
    p = m @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    centre = m @ np.array([size / 2.0, size / 2.0]) + t
    w = size * scale - 1  # centered_drect(c, w, h) decrements w and h first
    return (centre[0] - w / 2, centre[1] - w / 2, centre[0] + w / 2, centre[1] + w / 2), angle


def _area(rect):
    l, t, r, b = rect
    if l > r or t > b:
        return 0.0
    return (r - l + 1) * (b - t + 1)


def _rect_down(rect):
    # pyramid_down<2>::point_down(p) = p/2 - (1.25, 0.75), applied to both corners
    l, t, r, b = rect
    return (l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75)


def _rotate(centre, p, angle):
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = p[0] - centre[0], p[1] - centre[1]
    return (ca * x - sa * y + centre[0], sa * x + ca * y + centre[1])


def _round_half_up(v):
    return int(math.floor(v + 0.5))


def pyramid_down2(img):
    """dlib pyramid_down<2> on an RGB uint8 image: 5-tap [1 4 6 4 1] separable filter, keep every
    other sample, integer sums, final /256 truncating. Output ((rows-3)//2, (cols-3)//2)."""
    img = img.astype(np.int64)
    nr, nc = img.shape[:2]
    if nr <= 8 or nc <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    oc = (nc - 3) // 2
    cols = np.arange(oc) * 2
    tmp = img[:, cols] + 4 * img[:, cols + 1] + 6 * img[:, cols + 2] + 4 * img[:, cols + 3] + img[:, cols + 4]
    orr = (nr - 3) // 2
    rows = 2 + 2 * np.arange(orr)
    out = tmp[rows - 2] + 4 * tmp[rows - 1] + 6 * tmp[rows] + 4 * tmp[rows + 1] + tmp[rows + 2]
    return (out // 256).astype(np.uint8)


def bilinear_sample(img, xs, ys):
    """dlib interpolate_bilinear for rgb pixels; out-of-image samples (needing x+1 or y+1 outside)
    become 0. The double result is converted to uint8 by truncation after clamping."""
    h, w = img.shape[:2]
    left = np.floor(xs).astype(np.int64)
    top = np.floor(ys).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    l = np.clip(left, 0, max(w - 2, 0))
    t = np.clip(top, 0, max(h - 2, 0))
    fx = (xs - left)[..., None]
    fy = (ys - top)[..., None]
    f = img.astype(np.float64)
    tl, tr = f[t, l], f[t, l + 1]
    bl, br = f[t + 1, l], f[t + 1, l + 1]
    v = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    v = np.clip(v, 0, 255)
    out = v.astype(np.uint8)  # truncation, like static_cast<unsigned char>
    out[~ok] = 0
    return out


def face_chip(img, points5, size=150, padding=0.25):
    rect, angle = chip_details(points5, size, padding)
    n_pixels = size * size
    h, w = img.shape[:2]

    # depth of the pyramid
    depth = 0
    grow = 2.0
    r = _rect_down(rect)
    while _area(r) > n_pixels:
        r = _rect_down(r)
        depth += 1
        grow = grow * 2 + 2
    centre = ((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2)
    corners = [(rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3])]
    rot = [_rotate(centre, p, angle) for p in corners]
    xs = [p[0] for p in rot]
    ys = [p[1] for p in rot]
    # grow_rect(rot_rect, grow).intersect(image rect), then converted to an integer rectangle
    gl, gt, gr, gb = min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow
    gl, gt, gr, gb = max(gl, 0), max(gt, 0), min(gr, w - 1), min(gb, h - 1)
    bl, bt, br_, bb = (_round_half_up(v) for v in (gl, gt, gr, gb))

    sub = img[bt : bb + 1, bl : br_ + 1]
    levels = []
    cur = sub
    for _ in range(depth):
        cur = pyramid_down2(cur)
        levels.append(cur)

    # which level to sample from
    level = -1
    r = (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    while _area(_rect_down(r)) > n_pixels:
        level += 1
        r = _rect_down(r)
    src = sub if level == -1 else levels[level]

    c2 = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
    to = [_rotate(c2, (r[0], r[1]), angle), _rotate(c2, (r[2], r[1]), angle), _rotate(c2, (r[0], r[3]), angle)]
    # affine map from chip corners (0,0), (size-1,0), (0,size-1) to `to`
    o = np.array(to[0])
    ex = (np.array(to[1]) - o) / (size - 1)
    ey = (np.array(to[2]) - o) / (size - 1)
    cc, rr = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float))
    px = o[0] + cc * ex[0] + rr * ey[0]
    py = o[1] + cc * ex[1] + rr * ey[1]
    return bilinear_sample(src, px, py), dict(rect=rect, angle=angle, level=level, depth=depth, box=(bl, bt, br_, bb))


def _check(fixtures, root, prefix):
    import json
    import pathlib

    import dlib
    from PIL import Image

    worst = 0
    for js in sorted(pathlib.Path(fixtures).glob("*.json")):
        doc = json.loads(js.read_text())
        rel = doc["source"].split(":", 1)[0]
        img = dlib.load_rgb_image(str(pathlib.Path(root) / rel))
        pts = np.array(doc["dlib"]["points5"], float)
        ours, info = face_chip(img, pts)
        theirs = np.asarray(Image.open(js.with_suffix(".png")).convert("RGB"))
        d = np.abs(ours.astype(int) - theirs.astype(int))
        worst = max(worst, int(d.max()))
        print(
            f"{js.stem}: level {info['level']} of {info['depth']}, angle {math.degrees(info['angle']):.3f} deg, "
            f"rect {tuple(round(float(v), 3) for v in info['rect'])}: max |ours - dlib| = {d.max()} "
            f"({(d > 0).mean() * 100:.2f}% of values differ)"
        )
    print(f"max pixel difference over all chips: {worst}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 4 and sys.argv[1] == "--check":
        _check(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
    else:
        print(__doc__)
