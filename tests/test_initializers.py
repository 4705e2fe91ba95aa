"""§3.1 initialisation: N(0, σ²) or Glorot with zero biases, and deeper nets from net A."""

import keras
import numpy as np
import pytest

import vgg_keras
from tests.conftest import build_tiny


def _weights(model, name):
    return [keras.ops.convert_to_numpy(w) for w in model.get_layer(name).weights]


def test_paper_gaussian_default_sigma_is_0_01():
    assert vgg_keras.PAPER_INIT_STDDEV == 0.01
    model = build_tiny("A", width=1.0, head=vgg_keras.Head(fc_units=256),
                       weight_init=vgg_keras.WeightInit("gaussian", seed=1))
    kernel, bias = _weights(model, "block4_conv1")
    assert kernel.std() == pytest.approx(0.01, rel=0.02)
    assert abs(kernel.mean()) < 2e-4
    assert not bias.any()


def test_gaussian_sigma_is_a_parameter():
    model = build_tiny("A", width=0.5, weight_init=vgg_keras.WeightInit("gaussian", stddev=0.1,
                                                                        seed=1))
    assert _weights(model, "block3_conv1")[0].std() == pytest.approx(0.1, rel=0.03)


def test_glorot_uniform_bounds_and_zero_biases():
    model = build_tiny("D", width=0.5, weight_init=vgg_keras.WeightInit("glorot", seed=1))
    kernel, bias = _weights(model, "block3_conv2")
    fan_in, fan_out = 9 * kernel.shape[2], 9 * kernel.shape[3]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert not bias.any()


@pytest.mark.parametrize("config", ["B", "C", "D", "E", "D-BN"])
def test_from_a_copies_exactly_the_papers_layers(config):
    source = build_tiny("A-BN" if config.endswith("BN") else "A",
                        weight_init=vgg_keras.WeightInit(seed=1))
    target = build_tiny(config, weight_init=vgg_keras.WeightInit(seed=2))
    fresh = {layer.name: [w.copy() for w in layer.get_weights()] for layer in target.layers}
    copied = vgg_keras.initialize_from_a(target, source)
    first_four = ["block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2"]
    expected = first_four + ["fc1", "fc2", "predictions"]
    if config.endswith("BN"):
        expected = [n for name in first_four for n in (name, name + "_bn")] + expected[4:]
    assert copied == expected
    for layer in target.layers:
        after = layer.get_weights()
        if not after:
            continue
        if layer.name in copied:
            for a, b in zip(after, source.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
        elif layer.name != "color_shift":
            for a, b in zip(after, fresh[layer.name], strict=True):
                np.testing.assert_array_equal(a, b)  # the rest keeps its fresh weights


def test_from_a_reads_a_keras_file(tmp_path):
    source = build_tiny("A", weight_init=vgg_keras.WeightInit(seed=1))
    path = str(tmp_path / "a.keras")
    source.save(path)
    target = build_tiny("E", weight_init=vgg_keras.WeightInit(seed=2))
    vgg_keras.initialize_from_a(target, path)
    np.testing.assert_array_equal(target.get_layer("fc2").get_weights()[0],
                                  source.get_layer("fc2").get_weights()[0])


def test_from_a_refuses_other_widths():
    with pytest.raises(ValueError, match=r"layer 'block1_conv1': source weights have shapes"):
        vgg_keras.initialize_from_a(build_tiny("D", width=0.25), build_tiny("A"))


def test_from_a_refuses_a_net_without_those_layers():
    custom = vgg_keras.build_vgg(["conv3-4", "maxpool"], 10, input_shape=(8, 8, 3),
                                 head=vgg_keras.Head(fc_units=16))
    with pytest.raises(ValueError, match="'block2_conv1' is missing in vgg_custom"):
        vgg_keras.initialize_from_a(custom, build_tiny("A"))
