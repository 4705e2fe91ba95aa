"""Each §3.1/§3.2 image op, tested eagerly and inside tf.data.map, with its invariants."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import preprocessing
from pipelines import synthetic


def _jpeg(height, width, label=3, seed=0, texture=3.0, kind="rgb"):
    pixels = synthetic.draw_scene(label, np.random.default_rng(seed), height, width,
                                        texture=texture)
    return synthetic.encode(pixels, kind, quality=95)


def _both(function, *args):
    """The op's result eagerly and through tf.data.map, which must agree."""
    eager = function(*[tf.constant(a) for a in args])
    mapped = next(iter(tf.data.Dataset.from_tensors(tuple(args)).map(function)))
    return eager, mapped


def _window(encoded, seed, scale=(256, 512), crop=224):
    return preprocessing.sample_augmentation(preprocessing.image_shape(encoded), scale, crop,
                                             seed)[0]


# train_crop draws its augmentation with a seed in deterministic pipelines and from the op's own
# random stream otherwise: every property is checked on both paths.
SEEDED, UNSEEDED = "seeded", "unseeded"


def _draws(shape, scale, crop, path, count):
    """``count`` augmentations of an image of ``shape``, drawn inside tf.data.map as the
    pipeline draws them: (windows [count, 4], S [count], flips [count])."""
    def draw(seed):
        window, s, flip = preprocessing.sample_augmentation(
            tf.constant(shape), scale, crop, None if path == UNSEEDED else tf.stack([seed, 7]))
        return window, s, flip

    dataset = tf.data.Dataset.range(count).map(draw).batch(count)
    return [t.numpy() for t in next(iter(dataset))]


@pytest.mark.parametrize("path", [SEEDED, UNSEEDED])
@pytest.mark.parametrize("height, width", [(300, 400), (500, 333), (256, 256)])
def test_crop_window_invariants(height, width, path):
    encoded = _jpeg(height, width)
    windows = [_window(tf.constant(encoded), None if path == UNSEEDED else tf.constant([s, 1]))
               for s in range(20)]
    windows += list(_draws([height, width], (256, 512), 224, path, 200)[0])
    for window in windows:
        y, x, side_y, side_x = np.asarray(window)
        assert side_y == side_x and 0 <= y and 0 <= x
        assert y + side_y <= height and x + side_x <= width
        # the window is 224 pixels of the image rescaled to shorter side S in [256, 512]
        s = 224 * min(height, width) / side_y
        assert 256 * 0.99 <= s <= 512 * 1.01


@pytest.mark.parametrize("path", [SEEDED, UNSEEDED])
def test_augmentation_distribution(path):
    """S uniform in [Smin, Smax]; the position uniform over the valid offsets; half mirrored."""
    windows, scales, flips = _draws([400, 600], (256, 512), 224, path, 4000)
    sides = windows[:, 2]
    rows, cols = windows[:, 0] / np.maximum(1, 400 - sides), windows[:, 1] / (600 - sides)
    assert 256 <= scales.min() < 262 and 506 < scales.max() <= 512.001
    # Uniform quartiles (± 4% with 4000 draws).
    np.testing.assert_allclose(np.quantile(scales, [0.25, 0.5, 0.75]), [320, 384, 448], rtol=0.04)
    for relative in (rows, cols):
        np.testing.assert_allclose(np.quantile(relative, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75],
                                   atol=0.04)
    assert 0.45 < flips.mean() < 0.55


def _reference_crop(encoded, window, crop):
    """slim's vgg_preprocessing: decode the whole image, resize to shorter side S, crop."""
    image = tf.io.decode_jpeg(encoded, channels=3)
    height, width = image.shape[:2]
    y, x, side, _ = window
    s = crop * min(height, width) / side
    resized = preprocessing.resize_to_uint8(
        image, [round(height * s / min(height, width)), round(width * s / min(height, width))])
    top, left = round(y * s / min(height, width)), round(x * s / min(height, width))
    return resized[top : top + crop, left : left + crop].numpy().astype(np.float64)


# Sampling grids of the two methods differ by under one pixel of the original, so edges of the
# drawn shapes move by a fraction of a pixel: the bound is a few grey levels, not zero.
CROP_BEFORE_DECODE_MAE_BOUND = 3.0


def test_crop_before_decode_matches_decode_resize_crop():
    errors = []
    for seed in range(12):
        encoded = _jpeg(300 + 17 * seed, 420 - 9 * seed, label=seed % 10, seed=seed)
        window = _window(tf.constant(encoded), tf.constant([seed, 3])).numpy()
        ours = preprocessing.resize_to_uint8(
            preprocessing.decode_window(tf.constant(encoded), window), [224, 224])
        errors.append(np.abs(ours.numpy() - _reference_crop(encoded, window, 224)).mean())
    assert max(errors) < CROP_BEFORE_DECODE_MAE_BOUND, errors
    assert np.mean(errors) < 1.5


def test_train_crop_shape_determinism_and_tf_data():
    encoded = _jpeg(240, 330)
    eager, mapped = _both(lambda e, s: preprocessing.train_crop(e, (256, 384), 224, s), encoded,
                          np.array([4, 2]))
    assert eager.shape == (224, 224, 3) and eager.dtype == tf.uint8
    np.testing.assert_array_equal(eager.numpy(), mapped.numpy())
    other = preprocessing.train_crop(tf.constant(encoded), (256, 384), 224, tf.constant([5, 2]))
    assert not np.array_equal(other.numpy(), eager.numpy())


def test_train_crop_reads_png_and_grayscale_too():
    for kind in ("png", "grayscale"):
        crop = preprocessing.train_crop(tf.constant(_jpeg(100, 120, kind=kind)), (64, 80), 56,
                                        tf.constant([1, 1]))
        assert crop.shape == (56, 56, 3)


@pytest.mark.parametrize("path", [SEEDED, UNSEEDED])
def test_train_crop_gives_the_image_or_its_mirror(path):
    """A lossless image as large as the crop, at S = its side: the window is the whole image,
    so train_crop returns exactly the image or its mirror, and both happen."""
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    png = synthetic.encode(image, "png")

    def crop(seed):
        return preprocessing.train_crop(png, (24, 24), 24,
                                        None if path == UNSEEDED else tf.stack([seed, 0]))

    crops = [crop(tf.constant(s, tf.int64)).numpy() for s in range(10)]
    crops += list(next(iter(tf.data.Dataset.range(30).map(crop).batch(30))).numpy())
    seen = set()
    for result in crops:
        if np.array_equal(result, image):
            seen.add("same")
        else:
            np.testing.assert_array_equal(result, image[:, ::-1])
            seen.add("mirror")
    assert seen == {"same", "mirror"}


@pytest.mark.parametrize("height, width, q", [(300, 400, 256), (500, 333, 384), (90, 60, 64)])
def test_rescale_shorter_side(height, width, q):
    image = synthetic.draw_scene(1, np.random.default_rng(0), height, width)
    for result in _both(lambda i: preprocessing.rescale_shorter_side(i, q), image):
        new_height, new_width = result.shape[:2]
        assert min(new_height, new_width) == q
        assert abs(new_height / new_width - height / width) < 2 / q


def test_center_crop_and_multi_crops_equal_numpy_crops():
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    for center in _both(lambda i: preprocessing.center_crop(i, 56), image):
        np.testing.assert_array_equal(center.numpy(), image[7:63, 17:73])
    np.testing.assert_array_equal(preprocessing.center_crop(image, 56), image[7:63, 17:73])
    batch = np.stack([image, image[::-1]])  # a batch of one shape, as NumPy and as a tensor
    for cut in (preprocessing.center_crop(batch, 56),
                preprocessing.center_crop(tf.constant(batch), 56).numpy()):
        np.testing.assert_array_equal(cut, batch[:, 7:63, 17:73])
    crops = preprocessing.multi_crops(tf.constant(batch), 56, 5).numpy()
    assert crops.shape == (2, 50, 56, 56, 3)
    np.testing.assert_array_equal(crops[1], preprocessing.multi_crops(image[::-1], 56, 5))
    for crops in _both(lambda i: preprocessing.multi_crops(i, 56, 5), image):
        crops = crops.numpy()
        assert crops.shape == (50, 56, 56, 3)
        tops, lefts = np.round(np.linspace(0, 14, 5)).astype(int), np.round(
            np.linspace(0, 34, 5)).astype(int)
        for index in range(25):
            top, left = tops[index // 5], lefts[index % 5]
            np.testing.assert_array_equal(crops[index], image[top : top + 56, left : left + 56])
            np.testing.assert_array_equal(crops[25 + index], crops[index][:, ::-1])


def test_decode_any_format():
    for kind in ("rgb", "png", "cmyk", "grayscale"):
        data = _jpeg(30, 40, kind=kind)
        decoded = preprocessing.decode(tf.constant(data))
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert decoded.shape == (30, 40, 3)
        if kind in ("png", "rgb"):
            # TensorFlow and PIL decode JPEGs with other IDCT and chroma upsampling settings:
            # ~1.25 grey levels apart; PNG is lossless and identical.
            assert np.abs(decoded.numpy().astype(int) - expected).mean() < (
                2.0 if kind == "rgb" else 1e-9)


@pytest.mark.parametrize("kind", ["rgb", "rgb444", "progressive", "grayscale", "png"])
def test_copies_from_one_decode_equal_each_window_decoded_alone(kind):
    """Repeated augmentation's copies (``window_crops``: the image decoded once) equal
    ``window_crop``'s (each window decoded alone), but where libjpeg upsamples a window's first
    column of subsampled colour without its left neighbour: only output columns 0-1 may differ."""
    pixels = synthetic.draw_scene(2, np.random.default_rng(1), 150, 200, texture=3.0)
    if kind == "rgb444":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90, subsampling=0)
        encoded = tf.constant(buffer.getvalue())
    else:
        encoded = tf.constant(synthetic.encode(pixels, kind))
    shape = preprocessing.image_shape(encoded)
    draws = [preprocessing.sample_augmentation(shape, (40, 90), 32, tf.constant([s, 4]))
             for s in range(6)]
    draws = [(window, flip) for window, _, flip in draws]
    copies = preprocessing.window_crops(encoded, draws, 32).numpy()
    alone = np.stack([preprocessing.window_crop(encoded, w, f, 32).numpy() for w, f in draws])
    assert copies.shape == (6, 32, 32, 3)
    differ = np.abs(copies.astype(int) - alone).max(axis=(0, 3)) > 0
    if kind in ("rgb444", "grayscale", "png"):
        assert not differ.any()
    else:  # flipped copies differ at their last columns instead
        inner = differ[:, 2:-2] if any(bool(f) for _, f in draws) else differ[:, 2:]
        assert not inner.any(), np.nonzero(differ)
