"""``--auto_augment``: torchvision's TrivialAugmentWide (``ta_wide``: one op per image, a random
magnitude from its wide range) and RandAugment (``rand_augment``: two ops per image at
magnitude 9 of 31), on uint8 images ``[H, W, 3]`` with an explicit stateless seed, in the
``tf.data`` graph.

The 14 ops, their magnitude ranges, the signs, nearest-neighbour affine warps filled with black,
and the arithmetic of each colour op (blends truncated to uint8, PIL's equalisation, the 3×3
smoothing of sharpness) follow ``torchvision.transforms.autoaugment`` and its functional
tensor ops, so that a net trained here sees what the recipe's nets saw.

Written here rather than with Keras' ``RandAugment`` layer: that layer computes every one of
its 11 ops on every image and keeps one with ``where`` (11 times the work, in the input's
hottest loop), chooses its ops per batch rather than per image, and draws from a
``SeedGenerator`` variable that per-element seeds cannot reach (see ``augment``).
"""

import math

import tensorflow as tf

NUM_BINS = 31
OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
       "color", "contrast", "sharpness", "posterize", "solarize", "auto_contrast", "equalize")
_SIGNED = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
           "contrast", "sharpness")
RAND_AUGMENT_OPS, RAND_AUGMENT_MAGNITUDE = 2, 9  # torchvision's RandAugment defaults


def _top(policy, name, height, width):
    """The magnitude at the top bin (bin 30) of op ``name`` under ``policy``."""
    wide = policy == "ta_wide"
    if name in ("shear_x", "shear_y"):
        return 0.99 if wide else 0.3
    if name == "translate_x":
        return 32.0 if wide else 150.0 / 331.0 * width
    if name == "translate_y":
        return 32.0 if wide else 150.0 / 331.0 * height
    if name == "rotate":
        return 135.0 if wide else 30.0
    return 0.99 if wide else 0.9  # brightness, color, contrast, sharpness


def magnitude(policy, name, index, height, width):
    """torchvision's magnitude of bin ``index`` (0–30) of op ``name``: ``linspace(0, top, 31)``,
    posterize's bits, solarize's threshold; 0 for the ops without one."""
    index = tf.cast(index, tf.float32)
    if name == "posterize":  # 8 - round(b / (30 / k)): down to 2 bits (wide) or 4
        return 8.0 - tf.round(index / ((NUM_BINS - 1) / (6.0 if policy == "ta_wide" else 4.0)))
    if name == "solarize":
        return 255.0 - 255.0 * index / (NUM_BINS - 1)
    if name in ("identity", "auto_contrast", "equalize"):
        return tf.constant(0.0)
    return _top(policy, name, height, width) * index / (NUM_BINS - 1)


def _warp(image, matrix):
    """``image`` under the projective ``matrix`` (output → input pixel), nearest neighbour,
    black outside: torchvision's ``F.affine`` with ``InterpolationMode.NEAREST``, fill 0."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(matrix, tf.float32)[None],
        output_shape=tf.shape(image)[:2], fill_value=0.0, interpolation="NEAREST",
        fill_mode="CONSTANT")[0]


def _whole(value):
    """``value`` truncated toward zero (Python's ``int``)."""
    return tf.math.sign(value) * tf.floor(tf.abs(value))


def _affine(name, image, value):
    shape = tf.cast(tf.shape(image), tf.float32)
    zero, one = tf.constant(0.0), tf.constant(1.0)
    if name == "shear_x":  # about the corner (0, 0), as torchvision's center=[0, 0]
        return _warp(image, [one, value, zero, zero, one, zero, zero, zero])
    if name == "shear_y":
        return _warp(image, [one, zero, zero, value, one, zero, zero, zero])
    if name == "translate_x":  # whole pixels: torchvision's int(magnitude)
        return _warp(image, [one, zero, -_whole(value), zero, one, zero, zero, zero])
    if name == "translate_y":
        return _warp(image, [one, zero, zero, zero, one, -_whole(value), zero, zero])
    angle = value * math.pi / 180.0  # rotate about the centre
    cos, sin = tf.cos(angle), tf.sin(angle)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return _warp(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos,
                         cy - sin * cx - cos * cy, zero, zero])


def _grayscale(image):
    """torchvision's ``rgb_to_grayscale`` of uint8: the weighted sum, truncated."""
    weights = tf.constant([0.2989, 0.587, 0.114])
    return tf.floor(tf.reduce_sum(tf.cast(image, tf.float32) * weights, -1, keepdims=True))


def _blend(image, other, ratio):
    """torchvision's ``_blend``: ``ratio·image + (1−ratio)·other``, clamped, truncated."""
    mixed = ratio * tf.cast(image, tf.float32) + (1.0 - ratio) * other
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def _sharpness_degenerate(image):
    """The image smoothed by ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` and rounded, its
    border pixels kept."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    pixels = tf.cast(image, tf.float32)
    smooth = tf.round(tf.nn.depthwise_conv2d(pixels[None], kernel, [1, 1, 1, 1], "VALID")[0])
    return tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]) + pixels - tf.pad(
        pixels[1:-1, 1:-1], [[1, 1], [1, 1], [0, 0]])


def _auto_contrast(image):
    pixels = tf.cast(image, tf.float32)
    low = tf.reduce_min(pixels, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(pixels, axis=[0, 1], keepdims=True)
    flat = tf.equal(low, high)
    low, high = tf.where(flat, 0.0, low), tf.where(flat, 255.0, high)
    return tf.cast(tf.clip_by_value((pixels - low) * (255.0 / (high - low)), 0.0, 255.0),
                   tf.uint8)


def _equalize_channel(channel):
    """PIL's equalisation of one uint8 channel, as torchvision's ``_scale_channel``."""
    values = tf.reshape(tf.cast(channel, tf.int32), [-1])
    histogram = tf.math.bincount(values, minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(values))  # the highest value's count
    step = (tf.reduce_sum(histogram) - last) // 255
    safe = tf.maximum(step, 1)
    lut = (tf.cumsum(histogram) + safe // 2) // safe
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, tf.cast(channel, tf.int32)), tf.uint8),
                    channel)


def _apply(name, image, value):
    """Op ``name`` at magnitude ``value`` on a uint8 image."""
    if name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
        return _affine(name, image, value)
    if name == "brightness":
        return _blend(image, 0.0, 1.0 + value)
    if name == "color":
        return _blend(image, _grayscale(image), 1.0 + value)
    if name == "contrast":
        return _blend(image, tf.reduce_mean(_grayscale(image)), 1.0 + value)
    if name == "sharpness":
        return _blend(image, _sharpness_degenerate(image), 1.0 + value)
    if name == "posterize":
        mask = tf.cast(256 - tf.bitwise.left_shift(1, 8 - tf.cast(value, tf.int32)), tf.uint8)
        return tf.bitwise.bitwise_and(image, mask)
    if name == "solarize":
        return tf.where(tf.cast(image, tf.float32) >= value, 255 - image, image)
    if name == "auto_contrast":
        return _auto_contrast(image)
    if name == "equalize":
        return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)
    return image


def apply_op(policy, op, index, negate, image):
    """Op number ``op`` of ``OPS`` at magnitude bin ``index``, negated where ``negate`` and the
    op is signed; only the chosen op runs (``tf.switch_case``)."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)

    def branch(name):
        def run():
            value = magnitude(policy, name, index, height, width)
            if name in _SIGNED:
                value = tf.where(negate, -value, value)
            result = _apply(name, image, value)
            return tf.ensure_shape(result, image.shape)
        return run

    return tf.switch_case(tf.cast(op, tf.int32), [branch(name) for name in OPS])


def augment(image, policy, seed):
    """``policy`` (``ta_wide`` or ``rand_augment``) on a uint8 image ``[H, W, 3]``."""
    seed = tf.cast(seed, tf.int64)
    if policy == "ta_wide":  # one op, a uniform bin of 31, a random sign
        draws = tf.random.stateless_uniform([3], seed)
        op = tf.cast(draws[0] * len(OPS), tf.int32)
        index = tf.cast(draws[1] * NUM_BINS, tf.int32)
        return apply_op(policy, op, index, draws[2] < 0.5, image)
    draws = tf.random.stateless_uniform([RAND_AUGMENT_OPS, 2], seed)
    for number in range(RAND_AUGMENT_OPS):  # two ops in turn, each at bin 9
        op = tf.cast(draws[number, 0] * len(OPS), tf.int32)
        image = apply_op(policy, op, RAND_AUGMENT_MAGNITUDE, draws[number, 1] < 0.5, image)
    return image
