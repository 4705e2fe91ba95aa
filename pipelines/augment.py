"""The augmentations of torchvision's recipes (``vgg-train --recipe``), each a function of an
image (or a batch) and an explicit stateless ``seed`` of shape [2]:

- ``resized_crop``: RandomResizedCrop (a window of random area and aspect ratio, resized to the
  crop), decoding only that window as §3.1's crop does, and the horizontal flip;
- ``random_erase_batch``: RandomErasing, the rectangle filled with the mean colour (torchvision
  erases to 0 after normalising, which is the mean);
- ``mix_batch``: mixup or cutmix of a batch with itself rolled by one, labels mixed alike.

Each follows ``torchvision.transforms`` (v1, as ``references/classification`` uses them) draw
for draw: 10 attempts, then the fallback. Keras 3 has ``RandomErasing``, ``MixUp`` and ``CutMix``
layers, but their random state is a ``SeedGenerator`` variable: a per-element seed cannot reach
it (a deterministic pipeline, processed in parallel, would draw in a varying order) and no
checkpoint holds it, so a resumed run could not continue its input exactly; and Keras' ``MixUp``
draws a λ per image and a permutation, not torchvision's one λ per batch and roll.
"""

import math

import tensorflow as tf

from pipelines import preprocessing

ATTEMPTS = 10  # torchvision's RandomResizedCrop and RandomErasing: tries before the fallback
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision RandomErasing's defaults


def split(seed, count):
    """``count`` independent stateless seeds ``[count, 2]`` from one."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count)


def _uniform(shape, seed, low=0.0, high=1.0):
    return tf.random.stateless_uniform(shape, seed, low, high)


def _first_valid(valid, *candidates):
    """The first candidate whose ``valid`` is true (index 0 when none is: then ``any`` says
    so)."""
    index = tf.argmax(tf.cast(valid, tf.int32))
    return [c[index] for c in candidates], tf.reduce_any(valid)


def resized_crop_window(shape, area, ratio, seed):
    """torchvision's ``RandomResizedCrop.get_params``: ``[y, x, height, width]`` (int32) of a
    window of ``shape`` = ``[H, W]`` with a share of the area uniform in ``area`` and a log-uniform
    aspect ratio in ``ratio``, at a uniform position; after 10 failed attempts, the central
    window of the image clamped to the ratio range."""
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    draws = _uniform([4, ATTEMPTS], seed)
    target = height * width * (area[0] + draws[0] * (area[1] - area[0]))
    aspect = tf.exp(math.log(ratio[0]) + draws[1] * (math.log(ratio[1]) - math.log(ratio[0])))
    w = tf.round(tf.sqrt(target * aspect))
    h = tf.round(tf.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    y = tf.floor(draws[2] * (height - h + 1))
    x = tf.floor(draws[3] * (width - w + 1))
    (y, x, h, w), found = _first_valid(valid, y, x, h, w)
    in_ratio = width / height
    fallback_w = tf.where(in_ratio > ratio[1], tf.round(height * ratio[1]), width)
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    h, w = tf.where(found, h, fallback_h), tf.where(found, w, fallback_w)
    y = tf.where(found, y, tf.floor((height - h) / 2))
    x = tf.where(found, x, tf.floor((width - w) / 2))
    return tf.cast(tf.stack([y, x, h, w]), tf.int32)


def resized_crop_draws(shape, area_ratio, seed):
    """RandomResizedCrop's and the flip's draws for an image of ``shape`` = ``[H, W]``:
    ``(window, flip)``; ``area_ratio``: ``(area low, area high, ratio low, ratio high)``."""
    seeds = split(seed, 2)
    window = resized_crop_window(shape, area_ratio[:2], area_ratio[2:], seeds[0])
    return window, _uniform([], seeds[1]) < 0.5


def resized_crop(encoded, crop_size, area_ratio, seed):
    """RandomResizedCrop to ``crop_size`` and a random horizontal flip of an encoded image, only
    the window decoded (JPEG). uint8 ``[crop_size, crop_size, 3]``."""
    window, flip = resized_crop_draws(preprocessing.image_shape(encoded), area_ratio, seed)
    return preprocessing.window_crop(encoded, window, flip, crop_size)


def random_erase_batch(images, probability, fill, seed):
    """torchvision's ``RandomErasing(p)`` on each image of ``[B, H, W, 3]``: with probability
    ``probability``, a rectangle of 2–33 % of the area, aspect ratio log-uniform in 0.3–3.3, at
    a uniform position, set to ``fill`` (an RGB triple); unchanged when 10 attempts find no
    rectangle that fits. Only the erased images are touched."""
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    draws = _uniform([5, shape[0], ATTEMPTS], seed)
    target = height * width * (ERASE_SCALE[0] + draws[0] * (ERASE_SCALE[1] - ERASE_SCALE[0]))
    low, high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = tf.exp(low + draws[1] * (high - low))
    h = tf.round(tf.sqrt(target * aspect))
    w = tf.round(tf.sqrt(target / aspect))
    valid = (h < height) & (w < width)
    y = tf.floor(draws[2] * (height - h + 1))
    x = tf.floor(draws[3] * (width - w + 1))
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1)  # the first attempt that fits

    def chosen(values):
        return tf.gather(values, first, batch_dims=1)

    erased = tf.where(tf.reduce_any(valid, axis=1) & (draws[4][:, 0] < probability))[:, 0]
    y, x, h, w = (tf.gather(chosen(v), erased)[:, None] for v in (y, x, h, w))
    rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
    inside = (((rows >= y) & (rows < y + h))[:, :, None]
              & ((cols >= x) & (cols < x + w))[:, None, :])
    fill = tf.cast(tf.round(tf.constant(fill, tf.float32)), images.dtype)
    updated = tf.where(inside[..., None], fill, tf.gather(images, erased))
    return tf.tensor_scatter_nd_update(images, erased[:, None], updated)


def random_erase(image, probability, fill, seed):
    """``random_erase_batch`` of one image ``[H, W, 3]``."""
    return random_erase_batch(image[None], probability, fill, seed)[0]


def _beta(alpha, seed):
    """One draw of Beta(α, α), as the ratio of two Gamma(α) draws."""
    gammas = tf.random.stateless_gamma([2], seed, alpha=alpha)
    return gammas[0] / tf.reduce_sum(gammas)


def mixup(images, labels, alpha, seed):
    """torchvision's ``RandomMixup``: the batch blended with itself rolled by one,
    λ ~ Beta(α, α); uint8 images rounded back. Returns ``(images, labels, λ)``."""
    lam = _beta(alpha, seed)
    return (_blend_rolled(images, lam), lam * labels + (1 - lam) * tf.roll(labels, 1, axis=0),
            lam)


# mixup's blend and cutmix's paste of a batch with itself rolled by one, each compiled by XLA
# into one pass over the batch (TensorFlow's kernels: one per arithmetic step and copy).
@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _blend_rolled(images, lam):
    mixed = (lam * tf.cast(images, tf.float32)
             + (1 - lam) * tf.cast(tf.roll(images, 1, axis=0), tf.float32))
    return tf.cast(tf.round(mixed), tf.uint8) if images.dtype == tf.uint8 else mixed


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _paste_rolled(images, box):
    shape = tf.shape(images)
    rows, cols = tf.range(tf.cast(shape[1], tf.float32)), tf.range(tf.cast(shape[2], tf.float32))
    inside = (((rows >= box[0]) & (rows < box[1]))[:, None]
              & ((cols >= box[2]) & (cols < box[3]))[None, :])
    return tf.where(inside[None, :, :, None], tf.roll(images, 1, axis=0), images)


def cutmix(images, labels, alpha, seed):
    """torchvision's ``RandomCutmix``: a box of the batch rolled by one pasted into each image
    (λ ~ Beta(α, α) sets its size, ``0.5·√(1−λ)`` of each side either way of a uniform centre,
    clipped), the labels weighted by the areas. Returns ``(images, labels, λ)``, λ the
    unpasted share."""
    seeds = split(seed, 2)
    lam = _beta(alpha, seeds[0])
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    centre = _uniform([2], seeds[1])
    r_y, r_x = tf.floor(centre[0] * height), tf.floor(centre[1] * width)
    r = 0.5 * tf.sqrt(1.0 - lam)
    half_h, half_w = tf.floor(r * height), tf.floor(r * width)
    y1, y2 = tf.maximum(r_y - half_h, 0.0), tf.minimum(r_y + half_h, height)
    x1, x2 = tf.maximum(r_x - half_w, 0.0), tf.minimum(r_x + half_w, width)
    pasted = _paste_rolled(images, tf.stack([y1, y2, x1, x2]))
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
    return pasted, lam * labels + (1 - lam) * tf.roll(labels, 1, axis=0), lam


def mix_batch(images, labels, num_classes, mixup_alpha, cutmix_alpha, seed):
    """A batch's images and one-hot labels after mixup or cutmix, one of the two chosen at
    random where both are on (torchvision's ``RandomChoice``); one-hot labels where neither
    is."""
    labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
    seeds = split(seed, 2)
    if mixup_alpha and cutmix_alpha:
        use_mixup = _uniform([], seeds[0]) < 0.5
        return tf.cond(use_mixup,
                       lambda: mixup(images, labels, mixup_alpha, seeds[1])[:2],
                       lambda: cutmix(images, labels, cutmix_alpha, seeds[1])[:2])
    if mixup_alpha:
        return mixup(images, labels, mixup_alpha, seeds[1])[:2]
    if cutmix_alpha:
        return cutmix(images, labels, cutmix_alpha, seeds[1])[:2]
    return images, labels
