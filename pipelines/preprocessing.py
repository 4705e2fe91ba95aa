"""Per-image operations of the paper's training and test inputs (§3.1, §3.2), as small TensorFlow
functions on one image that work eagerly and inside ``tf.data.Dataset.map``.

Training (§3.1): the image is rescaled isotropically so that its shorter side is S (fixed, or
uniform in [Smin, Smax] per image: "scale jitter"), a crop of 224×224 is taken at a uniformly
random position, and flipped horizontally at random. Done crop-before-decode: the crop is the
window of side ``224·m/S`` (m = the original shorter side) of the original image, so only that
window is decoded (``tf.image.decode_and_crop_jpeg``) and resized to 224×224.

The random choices of one image are drawn together (``sample_augmentation``), from an explicit
``seed`` of shape [2] (stateless ops, so that a pipeline is deterministic per element whatever
the order in which elements are processed) or, without one, from the op's own random stream.

All outputs are uint8 RGB: mean subtraction and the colour shift are layers of the model.
"""

import numpy as np
import tensorflow as tf

from pipelines import image_header

RESIZE_METHOD = "bilinear"  # slim's vgg_preprocessing and the paper's Caffe code resize bilinearly
# The test-time JPEG decode: libjpeg's accurate integer DCT, what Pillow, OpenCV and browsers
# decode with, so that a client's crop is the served one (TensorFlow's default, the fast DCT,
# differs from them by up to 4 grey levels). Training keeps the fast one: a window of noise
# under its augmentation, and cheaper on the hot path.
TEST_DCT_METHOD = "INTEGER_ACCURATE"
TRAIN_DCT_METHOD = ""  # TensorFlow's default, the fast DCT: decode_and_crop_jpeg's too


def image_shape(encoded):
    """Returns ``[height, width]`` (int32) of an encoded image, read from its header (JPEG, PNG,
    GIF, BMP); another format is decoded to learn it."""
    def other_header():
        kind = image_header.kind_op(encoded)
        return tf.cond(kind >= 0,
                       lambda: tf.cast(image_header.shape_op(encoded, kind), tf.int32),
                       lambda: tf.shape(_decode_any(encoded))[:2])

    # JPEG first, on its own: nearly every training image is one, and the general header op
    # costs a tenth of the pipeline's time per image (tools/bench_pipeline.py).
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int32),
                   other_header)


def _decode_any(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def sample_augmentation(shape, scale, crop_size, seed=None):
    """Samples the §3.1 augmentation of one image: its crop window of the *original* image,
    the training scale S, and whether to mirror it.

    Args:
        shape: ``[height, width]`` of the original image.
        scale: ``(Smin, Smax)``; S is uniform in it (``Smin == Smax`` for a fixed S).
        crop_size: side of the crop in the rescaled image (224).
        seed: int tensor of shape [2] (stateless: reproducible); None draws from the op's own
            random stream (faster in a pipeline that need not be reproducible).

    Returns:
        ``(window, s, flip)``: ``[offset_y, offset_x, side, side]`` (int32) of a square window,
        ``side = round(crop_size · m / S)`` with ``m = min(height, width)``, at a uniformly
        random position; S (float32); a boolean, true with probability 1/2.
    """
    # One draw of four numbers instead of an op per number: per-image op overhead is a
    # visible share of the pipeline's time.
    if seed is None:
        uniforms = tf.random.uniform([4])
    else:
        uniforms = tf.random.stateless_uniform([4], tf.cast(seed, tf.int64))
    height, width = shape[0], shape[1]
    shorter = tf.minimum(height, width)
    s = float(scale[0]) + uniforms[0] * float(scale[1] - scale[0])
    side = tf.cast(tf.round(crop_size * tf.cast(shorter, tf.float32) / s), tf.int32)
    side = tf.clip_by_value(side, 1, shorter)
    offset_y = tf.cast(uniforms[1] * tf.cast(height - side + 1, tf.float32), tf.int32)
    offset_x = tf.cast(uniforms[2] * tf.cast(width - side + 1, tf.float32), tf.int32)
    window = tf.stack([tf.minimum(offset_y, height - side), tf.minimum(offset_x, width - side),
                       side, side])
    return window, s, uniforms[3] < 0.5


def decode_window(encoded, window):
    """Decodes only ``window`` = ``[y, x, height, width]`` of an image (JPEG: without decoding
    the rest; other formats: decoded whole, then cropped)."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
        lambda: tf.image.crop_to_bounding_box(_decode_any(encoded), window[0], window[1],
                                              window[2], window[3]),
    )


def resize_to_uint8(image, size):
    """Resizes a uint8 image to ``size`` = [height, width] and rounds back to uint8.

    Bilinear interpolation is a convex combination of pixels, so the result stays in [0, 255]:
    no clipping is needed, and adding 1/2 before the cast rounds (2 element-wise passes
    instead of 4, on the hot path of the training input).
    """
    # TensorFlow's bilinear kernel is ~25% slower on uint8 input than on float32 (measured
    # with tools/bench_pipeline.py): cast first.
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method=RESIZE_METHOD)
    return tf.cast(resized + 0.5, tf.uint8)


def flip_if(image, flip):
    """Mirrors the image left-right if ``flip``."""
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def train_crop(encoded, scale, crop_size, seed=None):
    """§3.1: a random ``crop_size`` crop of the image rescaled to shorter side S, maybe mirrored.

    Args:
        encoded: encoded image bytes (JPEG: only the crop window is decoded).
        scale: ``(Smin, Smax)`` in pixels of the rescaled image.
        crop_size: output side.
        seed: as for ``sample_augmentation``.

    Returns:
        A uint8 tensor ``[crop_size, crop_size, 3]``.
    """
    window, _, flip = sample_augmentation(image_shape(encoded), scale, crop_size, seed)
    return window_crop(encoded, window, flip, crop_size)


def window_crop(encoded, window, flip, crop_size):
    """``window`` of an encoded image (only it decoded), resized to ``crop_size`` square and
    mirrored if ``flip``: uint8 ``[crop_size, crop_size, 3]``."""
    crop = flip_if(resize_to_uint8(decode_window(encoded, window), [crop_size, crop_size]), flip)
    crop.set_shape([crop_size, crop_size, 3])
    return crop


def window_crops(encoded, draws, crop_size):
    """The crops of ``window_crop`` for each ``(window, flip)`` of ``draws``, the image decoded
    once, whole: uint8 ``[len(draws), crop_size, crop_size, 3]``. Repeated augmentation's
    copies of an image: a JPEG's entropy decoding, most of an input's time, is paid once for
    them all, where decoding each copy's window would pay it for each. The pixels are the whole
    image's (the same decoder and DCT as ``decode_window``, whose crop of a JPEG with subsampled
    colour may differ in its first column, upsampled there without its left neighbour)."""
    image = decode(encoded, TRAIN_DCT_METHOD)
    crops = []
    for window, flip in draws:
        part = tf.slice(image, tf.stack([window[0], window[1], 0]),
                        tf.stack([window[2], window[3], 3]))
        crops.append(flip_if(resize_to_uint8(part, [crop_size, crop_size]), flip))
    crops = tf.stack(crops)
    crops.set_shape([len(draws), crop_size, crop_size, 3])
    return crops


def rescale_shorter_side(image, size):
    """Rescales isotropically so that the shorter side is ``size`` (uint8 out)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_shape = tf.cast(tf.round(shape * tf.cast(size, tf.float32) / tf.reduce_min(shape)),
                        tf.int32)
    return resize_to_uint8(image, new_shape)


def decode(encoded, dct_method=TEST_DCT_METHOD):
    """Decodes any supported image to uint8 RGB ``[height, width, 3]`` (a JPEG with the
    accurate DCT by default, as clients decode it: ``TEST_DCT_METHOD``)."""
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method=dct_method),
                   lambda: _decode_any(encoded))


def test_image(encoded, test_scale):
    """§3.2's test-time image: decoded, its shorter side rescaled to Q (``test_scale``); what
    every protocol starts from, in ``vgg-evaluate`` and in a client of an export alike."""
    return rescale_shorter_side(decode(encoded), test_scale)


def center_crop(images, crop_size):
    """The central ``crop_size`` square of an image ``[H, W, 3]``, or of each image of a batch of
    one shape ``[n, H, W, 3]``, at least that large. NumPy arrays are cut by NumPy (the same
    window): the evaluation crops its chunks on the host, where an op per image costs more than
    the slicing."""
    if isinstance(images, np.ndarray):
        top = (images.shape[-3] - crop_size) // 2
        left = (images.shape[-2] - crop_size) // 2
        return images[..., top : top + crop_size, left : left + crop_size, :]
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    top = (shape[-3] - crop_size) // 2
    left = (shape[-2] - crop_size) // 2
    crop = images[..., top : top + crop_size, left : left + crop_size, :]
    crop.set_shape(images.shape[:-3].concatenate([crop_size, crop_size, 3]))
    return crop


def grid_offsets(length, crop_size, count):
    """``count`` evenly spaced offsets of a ``crop_size`` window along ``length`` pixels."""
    positions = tf.linspace(0.0, tf.cast(length - crop_size, tf.float32), count)
    return tf.cast(tf.round(positions), tf.int32)


def multi_crops(images, crop_size, grid=5):
    """§3.2 multi-crop: a ``grid``×``grid`` regular grid of crops and their mirrors, of an image
    ``[H, W, 3]`` or of each image of a batch of one shape ``[n, H, W, 3]``.

    Returns:
        uint8 ``[2·grid², crop_size, crop_size, 3]`` (a batch: ``[n, 2·grid², ...]``): the grid
        crops row by row, then the same crops mirrored, in the same order.
    """
    images = tf.convert_to_tensor(images)
    batch = images[None] if images.shape.rank == 3 else images
    shape = tf.shape(batch)
    rows, cols = grid_offsets(shape[1], crop_size, grid), grid_offsets(shape[2], crop_size, grid)
    offsets = tf.stack([tf.repeat(rows, grid), tf.tile(cols, [grid])], axis=1)
    crops = tf.map_fn(  # [grid², n, c, c, 3]
        lambda offset: batch[:, offset[0] : offset[0] + crop_size,
                             offset[1] : offset[1] + crop_size],
        offsets, fn_output_signature=tf.TensorSpec([None, crop_size, crop_size, 3], batch.dtype))
    crops = tf.transpose(crops, [1, 0, 2, 3, 4])
    crops = tf.concat([crops, tf.reverse(crops, axis=[3])], axis=1)
    return crops[0] if images.shape.rank == 3 else crops
