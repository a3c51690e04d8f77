#!/usr/bin/env python3
"""Writes tests/images/dlib/boxes.json from dlib's training.xml and testing.xml (stdlib only).

{"boxes": {"<file>": [[left, top, width, height], ...]}, "splits": {"<file>": "training"|"testing"},
 "ignored": <count of boxes with ignore='1' that were left out>}
"""
import json
import os
import xml.etree.ElementTree as ET

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dlib")
boxes, splits, ignored = {}, {}, 0
for split in ("training", "testing"):
    root = ET.parse(os.path.join(here, split + ".xml")).getroot()
    for image in root.iter("image"):
        name = image.get("file")
        assert name not in splits, name
        splits[name] = split
        kept = []
        for b in image.iter("box"):
            if b.get("ignore") == "1":
                ignored += 1
                continue
            kept.append([int(b.get(k)) for k in ("left", "top", "width", "height")])
        boxes[name] = kept
total = sum(len(v) for v in boxes.values())
assert total == 43, total
out = {"source": "dlib examples/faces training.xml + testing.xml (Debian source dlib 19.24+dfsg-1)",
       "format": "[left, top, width, height] in pixels",
       "boxes": boxes, "splits": splits, "ignored": ignored}
with open(os.path.join(here, "boxes.json"), "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"boxes.json: {total} boxes in {len(boxes)} images, {ignored} ignored")
