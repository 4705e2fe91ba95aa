"""A client of an export's tensor formats without TensorFlow: NumPy and Pillow do to an image what
the serving graph does (``vgg_metadata.json``'s ``client_preprocessing``, which this module is
the reference implementation of), and ONNX Runtime runs the version's ``model.onnx``::

    python -m vgg_keras.serving.reference_client EXPORT_DIR/vgg16/1 cat.jpg dog.png

prints each image's top 5 (probability, synset, name). In code, ``preprocess(image, metadata)``
gives the uint8 crop any runtime takes (``[crop, crop, 3]``; stack several for a batch).

The serving graph's steps, exactly (``describe``): the image decoded to RGB as stored (no EXIF
rotation; a JPEG with libjpeg's accurate integer DCT, as Pillow decodes it; an alpha channel
dropped, not composited); its shorter side rescaled to Q, the new size ``round(size · Q /
shorter side)`` in float32, halves to even; resized bilinearly with half-pixel centres and no
antialiasing (TensorFlow's ``tf.image.resize``), in float32; each value + 0.5 truncated to uint8;
the central ``crop × crop`` square, offsets rounded down. The normalisation is inside the model.
"""

import io
import sys

import numpy as np

# The project's file operations (local paths without TensorFlow; URLs through it, where
# installed), no more of it.
from pipelines.foundation import storage

EXPORT_METADATA_FILE = "vgg_metadata.json"  # as vgg_keras.artifacts.layout names it


def describe(test_scale, crop_size):
    """The preprocessing of an export at Q = ``test_scale`` and ``crop_size``, step by step, as
    its metadata records it (``client_preprocessing``)."""
    return {
        "reference": "vgg_keras.serving.reference_client.preprocess (NumPy and Pillow)",
        "decode": "RGB",
        "decode_details": "as stored: no EXIF rotation; JPEG with libjpeg's accurate integer "
                          "DCT (Pillow's); an alpha channel dropped, not composited; a GIF's "
                          "first frame",
        "resize_shorter_side_to": int(test_scale),
        "resize_size": "round(height * Q / shorter side), round(width * Q / shorter side) in "
                       "float32, halves rounded to even",
        "resize_method": "bilinear",
        "half_pixel_centers": True,
        "antialias": False,
        "resize_compute": "float32",
        "rounding": "floor(value + 0.5) to uint8",
        "center_crop": int(crop_size),
        "center_crop_offsets": "(height - crop) // 2, (width - crop) // 2",
        "dtype": "uint8",
        "layout": "[batch, crop, crop, 3]",
        "normalization": "inside the model",
    }


def decode(image, metadata=None):
    """An image (a path, or its bytes) as uint8 RGB ``[height, width, 3]``, decoded as the
    serving graph decodes it; with ``metadata``, its size checked first, from its header
    (``check_size``)."""
    from PIL import Image

    data = image if isinstance(image, bytes) else storage.read_bytes(image)
    with Image.open(io.BytesIO(data)) as opened:
        if metadata is not None:
            check_size(opened.height, opened.width, metadata)
        return np.asarray(opened.convert("RGB"))


def resize_bilinear(pixels, height, width):
    """``pixels`` (``[h, w, c]``) resized to ``height × width`` as TensorFlow's ``ResizeBilinear``
    with half-pixel centres does, in float32: ``float32 [height, width, c]``."""
    pixels = pixels.astype(np.float32)

    def weights(size, in_size):
        scale = np.float32(in_size) / np.float32(size)
        where = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.floor(where)
        lower = np.maximum(floor, 0).astype(np.int64)
        upper = np.minimum(np.ceil(where), in_size - 1).astype(np.int64)
        return lower, upper, (where - floor).astype(np.float32)

    top, bottom, y_lerp = weights(height, pixels.shape[0])
    left, right, x_lerp = weights(width, pixels.shape[1])
    x_lerp = x_lerp[None, :, None]
    upper_row = pixels[top][:, left] + (pixels[top][:, right] - pixels[top][:, left]) * x_lerp
    lower_row = (pixels[bottom][:, left]
                 + (pixels[bottom][:, right] - pixels[bottom][:, left]) * x_lerp)
    return upper_row + (lower_row - upper_row) * y_lerp[:, None, None]


def preprocess(image, metadata):
    """The crop an export's tensor formats take of ``image`` (a path or bytes), as its serving
    graph makes it (``describe``), from its ``metadata`` (``test_scale``, ``crop_size``; a
    version's ``vgg_metadata.json``, as a dict): uint8 ``[crop, crop, 3]``.

    Raises:
        ValueError: for an image larger or smaller than the export takes (``max_pixels``,
            ``min_side``), or a crop larger than Q.
    """
    q, crop = int(metadata["test_scale"]), int(metadata["crop_size"])
    if crop > q:
        raise ValueError(f"crop {crop} is larger than the test scale Q={q}")
    pixels = decode(image, metadata)
    height, width = pixels.shape[:2]
    shorter = np.float32(min(height, width))
    new_height = int(np.round(np.float32(height) * np.float32(q) / shorter))
    new_width = int(np.round(np.float32(width) * np.float32(q) / shorter))
    resized = resize_bilinear(pixels, new_height, new_width)
    rounded = (resized + np.float32(0.5)).astype(np.uint8)
    top, left = (new_height - crop) // 2, (new_width - crop) // 2
    return rounded[top:top + crop, left:left + crop]


def check_size(height, width, metadata):
    """Refuses an image the export refuses: more pixels than ``max_pixels``, a shorter side
    below ``min_side`` (the limits of its metadata, where it records them).

    Raises:
        ValueError: naming the size and the limit.
    """
    most, least = metadata.get("max_pixels"), metadata.get("min_side")
    if most and height * width > most:
        raise ValueError(f"the image is {width}×{height}, {height * width:,} pixels: more than "
                         f"the {most:,} the export takes")
    if least and min(height, width) < least:
        raise ValueError(f"the image is {width}×{height}: its shorter side is below the "
                         f"{least} pixels the export takes")


def top_classes(version, images, k=5):
    """Per image, ``[(probability, synset, name)]`` of its ``k`` best classes through the
    version's ONNX model, run by ONNX Runtime."""
    import onnxruntime

    metadata = storage.read_json(storage.join(version, EXPORT_METADATA_FILE))
    entry = metadata["formats"]["onnx"]
    with storage.local_copy(storage.join(version, entry["files"][0])) as model:
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    crops = np.stack([preprocess(image, metadata) for image in images])
    probabilities = session.run([entry["output"]["name"]], {entry["input"]["name"]: crops})[0]
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[(float(row[i]), metadata["synsets"][i], metadata["labels"][i]) for i in order]
            for row, order in zip(probabilities, best, strict=True)]


def main(argv):
    if len(argv) < 3:
        print("usage: python -m vgg_keras.serving.reference_client VERSION_DIR IMAGE...",
              file=sys.stderr)
        return 1
    for path, ranked in zip(argv[2:], top_classes(argv[1], argv[2:]), strict=True):
        print(path)
        for rank, (probability, synset, name) in enumerate(ranked, 1):
            print(f"  {rank}. {probability:.4f}  {synset:<10} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
