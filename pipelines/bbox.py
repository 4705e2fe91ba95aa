"""ILSVRC bounding-box annotations (PASCAL VOC XML, one file per image) for
``image/object/bbox/*``: boxes relative to the image size, clamped to [0, 1]."""

import os
import xml.etree.ElementTree as ElementTree

from pipelines.foundation import storage


def read_boxes(bbox_dir):
    """Returns ``({image stem: [(xmin, ymin, xmax, ymax)]}, [problems])`` for the XMLs under
    ``bbox_dir`` (any depth); an unreadable file is a problem, not a failure."""
    boxes, problems = {}, []
    for directory, subdirs, files in storage.walk(bbox_dir):
        subdirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(".xml"):
                continue
            path = os.path.join(directory, name)
            try:
                found = parse_annotation(path)
            except (ElementTree.ParseError, ValueError, OSError) as error:
                problems.append({"path": os.path.relpath(path, bbox_dir),
                                 "reason": f"unreadable bounding-box file: {error}"})
                continue
            if found:
                boxes[os.path.splitext(name)[0]] = found
    return boxes, problems


def parse_annotation(path):
    """Returns the relative boxes of one ILSVRC annotation file."""
    root = ElementTree.fromstring(storage.read_bytes(path))
    width = float(root.findtext("size/width") or 0)
    height = float(root.findtext("size/height") or 0)
    if width <= 0 or height <= 0:
        raise ValueError("missing or zero <size>")
    boxes = []
    for box in root.iter("bndbox"):
        xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        xmin, xmax = sorted((_clamp(xmin / width), _clamp(xmax / width)))
        ymin, ymax = sorted((_clamp(ymin / height), _clamp(ymax / height)))
        boxes.append((xmin, ymin, xmax, ymax))
    return boxes


def _clamp(value):
    return min(1.0, max(0.0, value))
