#!/usr/bin/env python3
"""Scores tests/fixtures/mediapipe/face_detection.json (stdlib only).

- recall / precision of each variant against the 43 dlib boxes (tests/images/dlib/boxes.json) at
  IoU >= 0.5, one-to-one greedy matching by IoU (all pairs sorted by IoU, descending); precision
  counts every detection on the 9 labelled images;
- number of faces each variant reports on the photos without a face;
- number of faces per image, for every image.

Usage: score_dlib.py [--fixture PATH] [--json OUT]
"""
import argparse
import json
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VARIANTS = ("short", "full_sparse", "full_dense")
NO_FACE = ["dlib/dogs.jpg", "facedetect/640px-IceBlockNearJoekullsarlon.jpg", "insightface/mask_black.jpg",
           "insightface/mask_blue.jpg", "insightface/mask_green.jpg", "insightface/mask_white.jpg",
           "pyfeat/free-mountain-vector-01.jpg"]
IOU_MIN = 0.5


def iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def greedy_matches(truth, dets):
    pairs = sorted(((iou(t, d), i, j) for i, t in enumerate(truth) for j, d in enumerate(dets)), reverse=True)
    used_t, used_d, matches = set(), set(), []
    for v, i, j in pairs:
        if v < IOU_MIN:
            break
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        matches.append((i, j, v))
    return matches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default=os.path.join(REPO, "tests", "fixtures", "mediapipe", "face_detection.json"))
    ap.add_argument("--boxes", default=os.path.join(REPO, "tests", "images", "dlib", "boxes.json"))
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    fx = json.load(open(a.fixture))
    truth = json.load(open(a.boxes))["boxes"]
    n_truth = sum(len(v) for v in truth.values())
    out = {"iou_min": IOU_MIN, "truth_boxes": n_truth, "variants": {}}
    print(f"dlib labelled set: {n_truth} boxes in {len(truth)} images, IoU >= {IOU_MIN}, greedy one-to-one")
    print(f"{'variant':12} {'TP':>3} {'dets':>4} {'recall':>7} {'precision':>9} {'mean IoU':>8}   no-face photos")
    for v in VARIANTS:
        tp = dets = 0
        ious = []
        for name, boxes in truth.items():
            d = [f["box"] for f in fx["images"]["dlib/" + name][v]]
            m = greedy_matches(boxes, d)
            tp += len(m)
            dets += len(d)
            ious += [x[2] for x in m]
        recall = tp / n_truth
        precision = tp / dets if dets else float("nan")
        noface = {k: len(fx["images"][k][v]) for k in NO_FACE}
        out["variants"][v] = {"tp": tp, "detections": dets, "recall": round(recall, 4),
                              "precision": round(precision, 4),
                              "mean_iou_of_matches": round(sum(ious) / len(ious), 4) if ious else None,
                              "no_face_detections": noface}
        nf = ", ".join(f"{os.path.basename(k)}={n}" for k, n in noface.items())
        print(f"{v:12} {tp:3d} {dets:4d} {recall:7.3f} {precision:9.3f} {out['variants'][v]['mean_iou_of_matches'] or 0:8.3f}   {nf}")
    print("\nfaces per image (short / full_sparse / full_dense):")
    out["faces_per_image"] = {}
    for k, e in fx["images"].items():
        c = [len(e[v]) for v in VARIANTS]
        out["faces_per_image"][k] = dict(zip(VARIANTS, c))
        print(f"  {k:48} {c[0]:3d} {c[1]:3d} {c[2]:3d}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
