"""``--auto_augment``: torchvision's TrivialAugmentWide (``ta_wide``: one op per image, a random
magnitude from its wide range) and RandAugment (``rand_augment``: two ops per image at
magnitude 9 of 31), on batches of uint8 images ``[B, H, W, 3]`` with an explicit stateless
seed, in the ``tf.data`` graph: each image its own op, the batch split by op; the point ops
fused by XLA into one pass over the images that drew one, the warps into another, each other op
run once on the images that drew it.

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


WARPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
SHARE_STEP = 8  # a share of a batch compiled by XLA is padded to a multiple of this many


def _padded(function, images, *per_image):
    """``function(images, *per_image)`` of a share of a batch, the share padded (with copies
    of its last image) to a multiple of ``SHARE_STEP`` images and the padding dropped: XLA
    compiles a function once per shape, and a share's size varies batch to batch."""
    count = tf.shape(images)[0]
    size = (count + SHARE_STEP - 1) // SHARE_STEP * SHARE_STEP
    index = tf.minimum(tf.range(size), tf.maximum(count - 1, 0))
    result = function(tf.gather(images, index), *[tf.gather(v, index) for v in per_image])
    return result[:count]


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gather_warp(images, matrices):
    """``ImageProjectiveTransformV3``'s nearest-neighbour warp, constant fill 0, written as one
    gather that XLA compiles: the same pixels (its ``std::round`` of each output pixel's source
    coordinate) in a third of its time."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    ys = tf.cast(tf.range(height), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(width), tf.float32)[None, None, :]
    m = [matrices[:, k, None, None] for k in range(8)]
    projection = m[6] * xs + m[7] * ys + 1.0

    def source(coordinate, size):  # std::round: half away from zero
        rounded = tf.sign(coordinate) * tf.floor(tf.abs(coordinate) + 0.5)
        rounded = tf.cast(tf.clip_by_value(rounded, -1.0, tf.cast(size, tf.float32)), tf.int32)
        return rounded, (rounded >= 0) & (rounded < size)

    x, x_inside = source((m[0] * xs + m[1] * ys + m[2]) / projection, width)
    y, y_inside = source((m[3] * xs + m[4] * ys + m[5]) / projection, height)
    rows = tf.range(shape[0])[:, None, None] * height + tf.clip_by_value(y, 0, height - 1)
    index = rows * width + tf.clip_by_value(x, 0, width - 1)
    pixels = tf.reshape(tf.gather(tf.reshape(images, [-1, 3]), tf.reshape(index, [-1])), shape)
    return tf.where((x_inside & y_inside)[..., None], pixels, tf.zeros_like(pixels))


def _warp(images, matrices):
    """``images`` ``[n, H, W, 3]`` each under its projective matrix ``[n, 8]`` (output → input
    pixel), nearest neighbour, black outside: torchvision's ``F.affine`` with
    ``InterpolationMode.NEAREST``, fill 0."""
    return _padded(_gather_warp, images, tf.cast(matrices, tf.float32))


def _whole(value):
    """``value`` truncated toward zero (Python's ``int``)."""
    return tf.math.sign(value) * tf.floor(tf.abs(value))


def _matrix(name, values, height, width):
    """The projective matrices ``[n, 8]`` of warp ``name`` at each of ``values``."""
    zero, one = tf.zeros_like(values), tf.ones_like(values)
    if name == "shear_x":  # about the corner (0, 0), as torchvision's center=[0, 0]
        rows = [one, values, zero, zero, one, zero, zero, zero]
    elif name == "shear_y":
        rows = [one, zero, zero, values, one, zero, zero, zero]
    elif name == "translate_x":  # whole pixels: torchvision's int(magnitude)
        rows = [one, zero, -_whole(values), zero, one, zero, zero, zero]
    elif name == "translate_y":
        rows = [one, zero, zero, zero, one, -_whole(values), zero, zero]
    else:  # rotate about the centre
        angle = values * math.pi / 180.0
        cos, sin = tf.cos(angle), tf.sin(angle)
        cy, cx = (height - 1) / 2, (width - 1) / 2
        rows = [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zero,
                zero]
    return tf.stack(rows, axis=1)


def _matrices(ops, values, height, width):
    """Each image's matrix ``[B, 8]`` for its op (the identity's where the op is no warp)."""
    out = _matrix("translate_x", tf.zeros_like(values), height, width)
    for name in WARPS:
        out = tf.where((ops == OPS.index(name))[:, None], _matrix(name, values, height, width),
                       out)
    return out


def _grayscale(images):
    """torchvision's ``rgb_to_grayscale`` of uint8: the weighted sum, truncated."""
    weights = tf.constant([0.2989, 0.587, 0.114])
    return tf.floor(tf.reduce_sum(tf.cast(images, tf.float32) * weights, -1, keepdims=True))


def _blend(images, other, ratios):
    """torchvision's ``_blend``: ``ratio·image + (1−ratio)·other``, clamped, truncated; a
    ratio per image."""
    ratios = ratios[:, None, None, None]
    mixed = ratios * tf.cast(images, tf.float32) + (1.0 - ratios) * other
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def _sharpness_degenerate(images):
    """Each image smoothed by ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` and rounded, its
    border pixels kept."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    pixels = tf.cast(images, tf.float32)
    # SAME, then the border put back: shapes that hold for an empty share of a batch too.
    smooth = tf.round(tf.nn.depthwise_conv2d(pixels, kernel, [1, 1, 1, 1], "SAME"))
    shape = tf.shape(images)
    rows, cols = tf.range(shape[1]), tf.range(shape[2])
    inner = (((rows > 0) & (rows < shape[1] - 1))[:, None]
             & ((cols > 0) & (cols < shape[2] - 1))[None, :])
    return tf.where(inner[None, :, :, None], smooth, pixels)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _auto_contrast(images):
    """torchvision's ``autocontrast``: each channel stretched to 0–255, compiled by XLA (its
    statistics and arithmetic in two passes over the images, where TensorFlow's kernels take
    seven: less than half the time)."""
    pixels = tf.cast(images, tf.float32)
    low = tf.reduce_min(pixels, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(pixels, axis=[1, 2], keepdims=True)
    flat = tf.equal(low, high)
    low, high = tf.where(flat, 0.0, low), tf.where(flat, 255.0, high)
    return tf.cast(tf.clip_by_value((pixels - low) * (255.0 / (high - low)), 0.0, 255.0),
                   tf.uint8)


def _equalize(images):
    """PIL's equalisation of every channel of every image, as torchvision's
    ``_scale_channel``: one histogram per channel, all counted by one ``bincount`` of
    ``256 · channel + value`` (TensorFlow's batched ``bincount(axis=-1)`` takes 5 times as
    long), each channel's table looked up alike."""
    shape = tf.shape(images)
    channels = shape[0] * 3
    offsets = tf.reshape(tf.range(channels) * 256, [-1, 1, 1, 3])
    keys = tf.cast(images, tf.int32) + offsets  # [n, H, W, 3]: a channel's values its own
    histogram = tf.reshape(tf.math.bincount(tf.reshape(keys, [-1]), minlength=channels * 256,
                                            maxlength=channels * 256), [channels, 256])
    top = tf.reshape(tf.reduce_max(images, axis=[1, 2]), [channels])
    last = tf.gather(histogram, tf.cast(top, tf.int32), batch_dims=1)  # the top value's count
    step = (tf.reduce_sum(histogram, axis=1) - last) // 255
    safe = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(histogram, axis=1) + safe // 2) // safe
    lut = tf.clip_by_value(tf.pad(lut[:, :-1], [[0, 0], [1, 0]]), 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None, :])  # a flat channel: as it is
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), keys), tf.uint8)


def _apply(name, images, values):
    """Op ``name`` on uint8 images ``[n, H, W, 3]``, each at its magnitude of ``values``
    ``[n]``."""
    values = tf.cast(values, tf.float32)
    if name in WARPS:
        shape = tf.cast(tf.shape(images), tf.float32)
        return _warp(images, _matrix(name, values, shape[1], shape[2]))
    if name == "brightness":
        return _blend(images, 0.0, 1.0 + values)
    if name == "color":
        return _blend(images, _grayscale(images), 1.0 + values)
    if name == "contrast":
        means = tf.reduce_mean(_grayscale(images), axis=[1, 2, 3], keepdims=True)
        return _blend(images, means, 1.0 + values)
    if name == "sharpness":
        return _blend(images, _sharpness_degenerate(images), 1.0 + values)
    if name == "posterize":
        bits = tf.cast(values, tf.int32)[:, None, None, None]
        mask = tf.cast(256 - tf.bitwise.left_shift(1, 8 - bits), tf.uint8)
        return tf.bitwise.bitwise_and(images, mask)
    if name == "solarize":  # pixel >= t exactly when pixel >= ceil(t): compared in uint8
        thresholds = tf.math.ceil(values)[:, None, None, None]
        above = (images >= tf.cast(tf.minimum(thresholds, 255.0), tf.uint8)) & (
            thresholds <= 255.0)
        return tf.where(above, 255 - images, images)
    if name == "auto_contrast":
        return _padded(_auto_contrast, images)
    if name == "equalize":
        return _equalize(images)
    return images


# The point ops whose arithmetic XLA fuses into one pass over the images that drew them; the
# others (warps, sharpness's convolution, autocontrast's and equalisation's statistics) apart.
FUSED = ("brightness", "color", "contrast", "posterize", "solarize")


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _fused(images, ops, values):
    """The ``FUSED`` ops on images that drew one of them: every op computed for every image
    and each keeping its own, compiled by XLA into one pass over their pixels (TensorFlow's own
    kernels make a pass per arithmetic step: a quarter of the input's time)."""
    results = {name: _apply(name, images, values) for name in FUSED}
    chosen = ops[:, None, None, None]
    out = images
    for name in FUSED:
        out = tf.where(chosen == OPS.index(name), results[name], out)
    return out


def _magnitudes(policy, ops, bins, negate, height, width):
    """Each image's signed magnitude ``[B]`` for its op."""
    table = []
    for name in OPS:
        values = magnitude(policy, name, bins, height, width) + tf.zeros(tf.shape(bins))
        table.append(tf.where(negate, -values, values) if name in _SIGNED else values)
    return tf.gather(tf.stack(table, axis=1), ops, batch_dims=1)


# The ops run apart, each group on the images that drew one of it: the point ops fused in one
# pass, the warps as one (a matrix per image), then each of the others; each op's group number
# (0: identity, whose images stay as they are).
APART = (FUSED, WARPS, ("sharpness",), ("auto_contrast",), ("equalize",))
_GROUP_OF_OP = tuple(next((number for number, names in enumerate(APART, start=1)
                           if name in names), 0) for name in OPS)


def apply_ops(policy, images, ops, bins, negate):
    """Op ``ops[i]`` of ``OPS`` at magnitude bin ``bins[i]`` (negated where ``negate[i]`` and
    the op is signed) on image ``i`` of a batch, the batch split by op: the ``FUSED`` ops in
    one compiled pass over the images that drew one of them, the warps in another, each other
    op run once on its images; identity's images as they are."""
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    ops = tf.cast(ops, tf.int32)
    values = _magnitudes(policy, ops, bins, negate, height, width)
    groups = tf.gather(_GROUP_OF_OP, ops)
    count = len(APART) + 1
    positions = tf.dynamic_partition(tf.range(shape[0]), groups, count)
    shares = tf.dynamic_partition(images, groups, count)
    magnitudes = tf.dynamic_partition(values, groups, count)
    matrices = tf.dynamic_partition(_matrices(ops, values, height, width), groups, count)
    chosen = tf.dynamic_partition(ops, groups, count)
    results = [shares[0], _padded(_fused, shares[1], chosen[1], magnitudes[1]),
               _warp(shares[2], matrices[2])]
    results += [_apply(names[0], shares[number], magnitudes[number])
                for number, names in enumerate(APART[2:], start=3)]
    return tf.ensure_shape(tf.dynamic_stitch(positions, results), images.shape)


def augment_batch(images, policy, seed):
    """``policy`` (``ta_wide`` or ``rand_augment``) on each uint8 image of ``[B, H, W, 3]``,
    its op, bin and sign drawn from the batch's ``seed``."""
    seed = tf.cast(seed, tf.int64)
    count = tf.shape(images)[0]
    if policy == "ta_wide":  # one op, a uniform bin of 31, a random sign
        draws = tf.random.stateless_uniform([3, count], seed)
        return apply_ops(policy, images, tf.cast(draws[0] * len(OPS), tf.int32),
                         tf.cast(draws[1] * NUM_BINS, tf.int32), draws[2] < 0.5)
    draws = tf.random.stateless_uniform([RAND_AUGMENT_OPS, 2, count], seed)
    for number in range(RAND_AUGMENT_OPS):  # two ops in turn, each at bin 9
        images = apply_ops(policy, images, tf.cast(draws[number, 0] * len(OPS), tf.int32),
                           tf.fill([count], RAND_AUGMENT_MAGNITUDE), draws[number, 1] < 0.5)
    return images


def augment(image, policy, seed):
    """``policy`` on one uint8 image ``[H, W, 3]`` (``augment_batch`` of a batch of one)."""
    return augment_batch(image[None], policy, seed)[0]
