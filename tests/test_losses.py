"""Perceptual losses on the taps, against NumPy: the Gram matrix (Gatys et al.), the content and
style losses per image with their layer weights, and the loss through a net's taps."""

import keras
import numpy as np
import pytest

import vgg_keras
from tests.conftest import build_tiny
from vgg_keras.nets import losses


def _taps(seed, shapes):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype("float32") for name, shape in shapes.items()}


SHAPES = {"block1_conv2": (2, 8, 6, 4), "block3_conv1": (2, 4, 3, 16)}


def _numpy_gram(features):
    b, h, w, c = features.shape
    flat = features.reshape(b, h * w, c)
    return np.einsum("bnc,bnd->bcd", flat, flat) / (h * w)


def test_gram_matrix_equals_numpy():
    features = _taps(0, {"x": (3, 5, 7, 6)})["x"]
    gram = keras.ops.convert_to_numpy(losses.gram_matrix(features))
    np.testing.assert_allclose(gram, _numpy_gram(features), rtol=1e-5, atol=1e-6)
    assert np.allclose(gram, gram.transpose(0, 2, 1))  # symmetric


def test_content_and_style_losses_per_image_with_layer_weights():
    target, generated = _taps(1, SHAPES), _taps(2, SHAPES)
    weights = {"block1_conv2": 0.25, "block3_conv1": 2.0}
    content = sum(weights[n] * ((target[n] - generated[n]) ** 2).mean(axis=(1, 2, 3))
                  for n in SHAPES)
    style = sum(weights[n] * ((_numpy_gram(target[n]) - _numpy_gram(generated[n])) ** 2).mean(
        axis=(1, 2)) for n in SHAPES)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(
        losses.content_loss(target, generated, weights)), content, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(
        losses.style_loss(target, generated, weights)), style, rtol=1e-5)
    assert keras.ops.convert_to_numpy(losses.content_loss(target, target)).max() == 0


def test_perceptual_loss_through_the_taps_of_a_net():
    net = build_tiny("A", input_shape=(32, 32, 3))
    extractor = vgg_keras.feature_model(net, ["block1_conv1", "block3_conv2"])
    loss = losses.PerceptualLoss(extractor, content_layers=["block3_conv2"],
                                 style_layers=["block1_conv1", "block3_conv2"],
                                 content_weight=1.0, style_weight=10.0)
    rng = np.random.default_rng(3)
    target = rng.integers(0, 256, (2, 32, 32, 3)).astype("float32")
    generated = rng.integers(0, 256, (2, 32, 32, 3)).astype("float32")
    taps_t, taps_g = extractor(target), extractor(generated)
    expected = np.mean(
        keras.ops.convert_to_numpy(losses.content_loss({"block3_conv2": taps_t["block3_conv2"]},
                                                       taps_g))
        + 10.0 * keras.ops.convert_to_numpy(losses.style_loss(taps_t, taps_g)))
    assert float(loss(target, generated)) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss(target, target)) == 0.0


def test_the_taps_differentiate_with_respect_to_the_images_of_a_uint8_net():
    """build_vgg's default net takes uint8 images, whose cast has no gradient; its taps take
    float images in the same range, and a loss on them has a gradient for every pixel."""
    import tensorflow as tf

    net = build_tiny("A", input_shape=(32, 32, 3))
    assert net.inputs[0].dtype == "uint8"
    extractor = vgg_keras.feature_model(net, ["block1_conv1", "block3_conv2"], relu=False)
    loss = losses.PerceptualLoss(extractor, content_layers=["block3_conv2"],
                                 style_layers=["block1_conv1"])
    rng = np.random.default_rng(4)
    target = tf.constant(rng.uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    generated = tf.Variable(rng.uniform(0, 255, (2, 32, 32, 3)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = loss(target, generated)
    gradient = tape.gradient(value, generated)
    assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    taps = extractor(images.astype("float32"))  # the same activations as the net's own
    direct = keras.Model(net.input, net.get_layer("block3_conv2").output)(images)
    linear = keras.ops.convert_to_numpy(taps["block3_conv2"])
    np.testing.assert_allclose(np.maximum(linear, 0), keras.ops.convert_to_numpy(direct),
                               rtol=1e-4, atol=1e-4)


def test_a_generator_trains_through_the_perceptual_loss_with_fit():
    """A tiny image generator (noise → 32×32 RGB in 0..255) fitted a few steps with Keras'
    own fit, the loss taking a frozen uint8 net's taps: the loss falls."""
    net = build_tiny("A", input_shape=(32, 32, 3))
    extractor = vgg_keras.feature_model(net, ["block1_conv1", "block2_conv1"])
    extractor.trainable = False
    generator = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(32 * 32 * 3, activation="sigmoid"),
        keras.layers.Rescaling(255.0), keras.layers.Reshape((32, 32, 3))])
    generator.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.PerceptualLoss(
        extractor, content_layers=["block2_conv1"], style_layers=["block1_conv1"]))
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(8, 8)).astype("float32")
    targets = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    history = generator.fit(noise, targets, epochs=6, batch_size=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0], history


def test_style_transfer_loss_is_its_terms_on_keras_ios_layers():
    """keras-io's layers (content block5_conv2; style block1..5_conv1), the terms weighted as
    documented: each equal to its formula."""
    rng = np.random.default_rng(0)
    names = (*losses.STYLE_LAYERS, *losses.CONTENT_LAYERS)
    assert losses.STYLE_LAYERS == ("block1_conv1", "block2_conv1", "block3_conv1",
                                   "block4_conv1", "block5_conv1")
    taps = {role: {n: rng.normal(size=(2, 4, 4, 3)).astype("float32") for n in names}
            for role in ("generated", "content", "style")}
    images = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    total = keras.ops.convert_to_numpy(losses.style_transfer_loss(
        taps["generated"], taps["content"], taps["style"], images, content_weight=2.0,
        style_weight=3.0, variation_weight=0.5))

    def gram(x):
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return np.einsum("bnc,bnd->bcd", flat, flat) / flat.shape[1]

    content = ((taps["content"]["block5_conv2"] - taps["generated"]["block5_conv2"]) ** 2
               ).mean(axis=(1, 2, 3))
    style = sum(((gram(taps["style"][n]) - gram(taps["generated"][n])) ** 2).mean(axis=(1, 2))
                for n in losses.STYLE_LAYERS) / 5
    variation = ((images[:, 1:, :-1] - images[:, :-1, :-1]) ** 2
                 + (images[:, :-1, 1:] - images[:, :-1, :-1]) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(total, 2.0 * content + 3.0 * style + 0.5 * variation, rtol=1e-5)
