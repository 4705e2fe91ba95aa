"""LRN against AlexNet's formula in NumPy, and the PCA colour shift's invariants."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from vgg_keras.nets import layers


def numpy_lrn(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """AlexNet §3.3 as printed: b_i = a_i / (k + α Σ_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j²)^β."""
    channels = a.shape[-1]
    out = np.empty_like(a, dtype=np.float64)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = np.sum(a[..., lo : hi + 1].astype(np.float64) ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * total) ** beta
    return out


@pytest.fixture
def activations():
    # Large activations, so that the α term really matters (it is ~1e-4 × Σa²).
    return np.random.default_rng(0).normal(0, 60, (2, 5, 6, 11)).astype(np.float32)


def test_lrn_defaults_are_alexnets():
    layer = vgg_keras.LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.75)
    assert layer.effective_alpha == 1e-4


def test_lrn_equals_alexnet_formula(activations):
    expected = numpy_lrn(activations)
    found = keras.ops.convert_to_numpy(vgg_keras.LocalResponseNormalization()(activations))
    np.testing.assert_allclose(found, expected, rtol=1e-5)
    # The normalisation is not negligible on these inputs.
    assert np.max(np.abs(expected - activations / 2.0**0.75)) > 0.1


def test_lrn_caffe_convention_divides_alpha_by_n(activations):
    caffe = vgg_keras.LocalResponseNormalization(alpha_over_n=True)
    assert caffe.effective_alpha == pytest.approx(2e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(caffe(activations)),
                               numpy_lrn(activations, alpha=1e-4 / 5), rtol=1e-5)
    default = keras.ops.convert_to_numpy(vgg_keras.LocalResponseNormalization()(activations))
    assert not np.allclose(default, keras.ops.convert_to_numpy(caffe(activations)), rtol=1e-3)


def test_lrn_equals_tensorflow_lrn_eagerly_and_in_a_graph(activations):
    expected = tf.nn.local_response_normalization(activations, depth_radius=2, bias=2.0,
                                                  alpha=1e-4, beta=0.75).numpy()
    layer = vgg_keras.LocalResponseNormalization()
    np.testing.assert_allclose(layer(activations).numpy(), expected, rtol=1e-5)
    graph = tf.function(layer)
    np.testing.assert_allclose(graph(tf.constant(activations)).numpy(), expected, rtol=1e-5)


def test_lrn_other_window_sizes(activations):
    layer = vgg_keras.LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=1e-3, beta=0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(activations)),
                               numpy_lrn(activations, n=3, k=1.0, alpha=1e-3, beta=0.5),
                               rtol=1e-5)


def test_color_shift_is_exactly_identity_at_inference():
    image = np.random.default_rng(1).normal(0, 50, (4, 8, 8, 3)).astype(np.float32)
    layer = vgg_keras.PCAColorShift(seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(image)), image)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(image, training=False)),
                                  image)


def test_color_shift_in_training_follows_the_pca_model():
    batch = 2000
    image = np.zeros((batch, 4, 5, 3), np.float32)
    layer = vgg_keras.PCAColorShift(seed=0)
    shifted = keras.ops.convert_to_numpy(layer(image, training=True))
    shift = shifted[:, 0, 0, :]
    # One shift per image, the same at every pixel.
    np.testing.assert_allclose(shifted, np.broadcast_to(shift[:, None, None, :], shifted.shape),
                               atol=1e-5)
    # shift = V (α ⊙ 255 λ): recover α; it is N(0, 0.1²) per component.
    vectors = np.asarray(layers.IMAGENET_EIGENVECTORS)
    scaled = 255.0 * np.asarray(layers.IMAGENET_EIGENVALUES)
    alpha = np.linalg.solve(vectors, shift.T).T / scaled
    assert np.allclose(alpha.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(alpha.std(axis=0), 0.1, rtol=0.08)
    # The first principal component dominates: ~ 0.1 · 255 · 0.2175 · 0.57 ≈ 3.2 grey levels.
    assert 2.5 < shift[:, 0].std() < 4.0


def test_color_shift_draws_new_values_each_step_and_can_be_disabled():
    image = np.zeros((3, 2, 2, 3), np.float32)
    layer = vgg_keras.PCAColorShift(seed=5)
    first = keras.ops.convert_to_numpy(layer(image, training=True))
    second = keras.ops.convert_to_numpy(layer(image, training=True))
    assert not np.allclose(first, second)
    off = vgg_keras.PCAColorShift(stddev=0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(off(image, training=True)), image)


def test_model_applies_color_shift_only_when_training(tiny):
    model = tiny("A", head=vgg_keras.Head(fc_units=16, dropout=0.0))
    shifted = keras.Model(model.input, model.get_layer("color_shift").output)
    image = np.full((2, 32, 32, 3), 128, np.uint8)
    expected = 128.0 - np.float32(vgg_keras.RGB_MEAN)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(shifted(image, training=False)),
                               np.broadcast_to(expected, image.shape), atol=1e-5)
    trained = keras.ops.convert_to_numpy(shifted(image, training=True))
    assert np.abs(trained - expected).max() > 0.01
