"""§3.2 dense evaluation: the fully convolutional head carries the FC head's weights."""

import keras
import numpy as np
import pytest

import vgg_keras


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _score_map(model, images):
    return keras.Model(model.input, model.get_layer("predictions").output).predict(images,
                                                                                   verbose=0)


@pytest.mark.slow
def test_d_heads_agree_at_224_and_map_is_6x6_at_384():
    """D at a quarter of its widths: the paper's maps at the paper's sizes (the full-size D-BN
    through its conv head: tests/test_torch_weights.py)."""
    dense = vgg_keras.build_vgg("D", width=0.25, head=vgg_keras.Head(fc_units=1024),
                                weight_init=vgg_keras.WeightInit(seed=0))
    conv = vgg_keras.to_conv_head(dense)
    images = _images((2, 224, 224, 3))
    difference = np.abs(dense.predict(images, verbose=0) - conv.predict(images, verbose=0))
    assert difference.max() < 1e-5
    assert conv.get_layer("fc1").kernel.shape == (7, 7, 128, 1024)

    large = _images((1, 384, 384, 3), seed=1)
    score_map = _score_map(conv, large)
    assert score_map.shape == (1, 6, 6, 1000)
    # The output is the spatial average of the per-location class posteriors.
    posteriors = keras.ops.convert_to_numpy(keras.ops.softmax(score_map, axis=-1))
    np.testing.assert_allclose(conv.predict(large, verbose=0), posteriors.mean(axis=(1, 2)),
                               atol=1e-6)


@pytest.mark.parametrize("config", ["A-LRN", "C", "E-BN"])
def test_heads_agree_on_logits_of_tiny_nets(tiny, config):
    dense = tiny(config, input_shape=(64, 64, 3), head=vgg_keras.Head(fc_units=16, activation=None))
    conv = vgg_keras.to_conv_head(dense)
    assert conv.get_layer("fc1").kernel.shape[:2] == (2, 2)
    images = _images((3, 64, 64, 3))
    logits = dense.predict(images, verbose=0)
    np.testing.assert_allclose(conv.predict(images, verbose=0), logits, atol=1e-5 * np.abs(
        logits).max())
    assert conv.layers[-1].name == "logits"
    # On a larger image (pool5 is 3×3) the 2×2 fc1 slides: a 2×2 score map.
    assert _score_map(conv, _images((1, 96, 96, 3))).shape == (1, 2, 2, 10)


def test_conv_head_model_accepts_any_size_and_matches_a_direct_build(tiny):
    dense = tiny("B", input_shape=(64, 64, 3))
    conv = vgg_keras.to_conv_head(dense)
    built = tiny("B", input_shape=(None, None, 3),
                 head=vgg_keras.Head("conv", fc_units=16, fc1_kernel_size=2))
    assert [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in conv.layers] == [
        (layer.name, [tuple(w.shape) for w in layer.weights]) for layer in built.layers]
    for size in (64, 80, 128):
        assert conv.predict(_images((1, size, size, 3)), verbose=0).shape == (1, 10)


def test_conv_head_copies_weights(tiny):
    dense = tiny("A", input_shape=(64, 64, 3))
    conv = vgg_keras.to_conv_head(dense)
    conv.get_layer("block1_conv1").kernel.assign(np.zeros((3, 3, 3, 4), np.float32))
    assert np.abs(keras.ops.convert_to_numpy(dense.get_layer("block1_conv1").kernel)).max() > 0


def test_conv_head_of_a_reloaded_model(tmp_path, tiny):
    dense = tiny("A-LRN", input_shape=(64, 64, 3))
    path = str(tmp_path / "a.keras")
    dense.save(path)
    conv = vgg_keras.to_conv_head(keras.models.load_model(path))
    images = _images((2, 64, 64, 3))
    np.testing.assert_allclose(conv.predict(images, verbose=0), dense.predict(images, verbose=0),
                               atol=1e-6)


def test_to_conv_head_rejects_a_conv_head_model(tiny):
    conv = tiny("A", input_shape=(None, None, 3),
                head=vgg_keras.Head("conv", fc_units=16, fc1_kernel_size=1))
    with pytest.raises(ValueError, match="has no FC head of a VGG net"):
        vgg_keras.to_conv_head(conv)
