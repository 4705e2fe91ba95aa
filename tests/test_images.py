"""Keep, repair or skip: decided from an image's bytes, whatever its file name says."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import image_header
from pipelines import images
from pipelines import synthetic

PIXELS = synthetic.draw_scene(4, np.random.default_rng(0), 150, 210, texture=20.0)


def _decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def test_good_jpeg_is_stored_byte_for_byte():
    data = synthetic.encode(PIXELS)
    prepared = images.prepare_image(data)
    assert prepared.jpeg is data and prepared.repair is None
    assert (prepared.height, prepared.width) == (150, 210)


@pytest.mark.parametrize("kind, reason", [
    ("grayscale", "grayscale JPEG converted to RGB"),
    ("cmyk", "CMYK JPEG converted to RGB"),
    ("png_as_jpeg", "PNG (RGB) data re-encoded as RGB JPEG"),
    ("progressive", "progressive JPEG re-encoded as baseline"),
    ("bmp", "BMP (RGB) data re-encoded as RGB JPEG"),
    ("gif", "GIF (P) data re-encoded as RGB JPEG"),
])
def test_repaired_images_are_baseline_rgb_jpegs_tensorflow_reads(kind, reason):
    data = synthetic.encode(PIXELS, kind)
    prepared = images.prepare_image(data)
    assert prepared.repair == reason
    assert _frame(prepared.jpeg) == (0xC0, 8)
    decoded = tf.io.decode_jpeg(prepared.jpeg, channels=3)
    assert decoded.shape == (150, 210, 3)
    window = tf.image.decode_and_crop_jpeg(prepared.jpeg, [10, 20, 100, 120], channels=3)
    np.testing.assert_array_equal(window.numpy(), decoded.numpy()[10:110, 20:140])
    # Re-encoding is not a visible loss: under 2 grey levels on average on grainy pixels.
    reference = _decode(data)
    assert np.abs(decoded.numpy() - reference).mean() < 2.0


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty file"),
    ("not_image", "not an image (unrecognised data"),
    ("truncated", "truncated or corrupt JPEG data: image file is truncated"),
    ("bomb_jpeg", "decompression bomb: header declares 20000x20000 = 400,000,000 pixels > "
                  "max_pixels 89,478,485"),
    ("bomb_png", "decompression bomb: header declares 12000x12000"),
])
def test_bad_inputs_are_refused_with_their_reason(kind, reason):
    with pytest.raises(images.BadImage) as error:
        images.prepare_image(synthetic.encode(PIXELS, kind))
    assert str(error.value).startswith(reason)


def test_pixel_limit_is_checked_from_the_header_against_the_flag():
    data = synthetic.encode(PIXELS)
    with pytest.raises(images.BadImage, match="31,500 pixels > max_pixels 30,000"):
        images.prepare_image(data, max_pixels=30_000)
    assert images.prepare_image(data, max_pixels=31_500).jpeg is data


def test_alpha_is_composited_on_white_and_16_bit_scaled():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[:10, :, 3] = 200, 255  # red top half, transparent bottom half
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    decoded = _decode(images.prepare_image(buffer.getvalue()).jpeg)
    assert np.abs(decoded[:8].mean(axis=(0, 1)) - [200, 0, 0]).max() < 3
    assert np.abs(decoded[12:] - 255).max() < 3
    deep = Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    buffer = io.BytesIO()
    deep.save(buffer, "PNG")
    gray = _decode(images.prepare_image(buffer.getvalue()).jpeg)[..., 0]
    assert gray.max() > 200 and abs(gray[0, 0]) < 3  # scaled, not clipped at 255


def test_max_shorter_side_downscales_larger_images_only():
    data = synthetic.encode(PIXELS)
    prepared = images.prepare_image(data, max_shorter_side=100)
    assert (prepared.height, prepared.width) == (100, 140)
    assert prepared.resized_from == (150, 210)
    assert _frame(prepared.jpeg) == (0xC0, 8)
    assert images.prepare_image(data, max_shorter_side=150).jpeg is data


def _frame(data):
    frame = image_header.jpeg_frame(data)
    return frame.marker, frame.precision
