"""Image headers: the TensorFlow ops read the size PIL reads, for every format, eagerly and inside
tf.data, without decoding; cut-short headers are recognised."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import image_header
from pipelines import synthetic

PIXELS = synthetic.draw_scene(2, np.random.default_rng(0), 37, 53)
KINDS = {"rgb": "JPEG", "progressive": "JPEG", "grayscale": "JPEG", "cmyk": "JPEG",
         "png": "PNG", "gif": "GIF", "bmp": "BMP"}


def _ops(data):
    """(kind name or None, [height, width] or None, header bytes) from the TensorFlow ops, eagerly
    and inside tf.data.map."""
    def read(encoded):
        kind = image_header.kind_op(encoded)
        shape = tf.cond(kind >= 0, lambda: image_header.shape_op(encoded, kind),
                        lambda: tf.constant([-1, -1], tf.int64))
        return kind, shape, image_header.header_bytes_op(kind)

    results = [read(tf.constant(data)),
               next(iter(tf.data.Dataset.from_tensors(data).map(read)))]
    converted = []
    for kind, shape, needed in results:
        kind = int(kind)
        converted.append((image_header.KINDS[kind] if kind >= 0 else None,
                          None if kind < 0 else tuple(shape.numpy()), int(needed)))
    assert converted[0] == converted[1]  # eager and graph agree
    return converted[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tensorflow_reads_the_size_pil_decodes(kind):
    data = synthetic.encode(PIXELS, kind)
    width, height = Image.open(io.BytesIO(data)).size
    assert _ops(data) == (KINDS[kind], (height, width), image_header.HEADER_BYTES.get(
        KINDS[kind], 0))


def _bmp(core=False, top_down=False):
    """A BMP with a BITMAPCOREHEADER (OS/2), or a BITMAPINFOHEADER with a negative height."""
    data = bytearray(synthetic.encode(PIXELS, "bmp"))
    if top_down:
        data[22:26] = (-37).to_bytes(4, "little", signed=True)
    if core:
        data[14:18] = (12).to_bytes(4, "little")
        data[18:20], data[20:22] = (53).to_bytes(2, "little"), (37).to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("variant", ["core", "top_down"])
def test_bmp_header_variants(variant):
    data = _bmp(core=variant == "core", top_down=variant == "top_down")
    assert _ops(data)[:2] == ("BMP", (37, 53))


def test_unknown_and_cut_short_headers():
    page = synthetic.encode(PIXELS, "not_image")
    assert image_header.kind_of(page) is None
    assert _ops(page) == (None, None, 0)
    png = synthetic.encode(PIXELS, "png")
    assert _ops(png[:20])[0] == "PNG" and _ops(png[:20])[2] == 24  # callers check the length
    assert image_header.jpeg_frame(b"\xff\xd8\xff") is None


def test_jpeg_frame_of_the_jpeg_kinds():
    baseline = image_header.jpeg_frame(synthetic.encode(PIXELS))
    assert (baseline.marker, baseline.precision, baseline.height, baseline.width) == (
        0xC0, 8, 37, 53)
    assert baseline.baseline
    progressive = image_header.jpeg_frame(synthetic.encode(PIXELS, "progressive"))
    assert progressive.marker == 0xC2 and not progressive.baseline


def test_a_declared_bomb_is_read_without_decoding():
    bomb = synthetic.encode(PIXELS, "bomb_jpeg")
    assert _ops(bomb)[1] == (20_000, 20_000)
    assert _ops(synthetic.encode(PIXELS, "bomb_png"))[:2] == ("PNG", (12_000, 12_000))
