"""keras.applications VGG16/VGG19 weights (random here: nothing is downloaded) into D/E.

The nets are built at a 64×64 input: every weight moves by name and shape as at 224 (fc1 reads a
2×2×512 map instead of 7×7×512, so the flatten order still matters), at a tenth of the cost of
the full-size fc1. The full-size layer names and shapes are held to keras.applications' in
test_builder.
"""

import h5py
import keras
import numpy as np
import pytest

import vgg_keras
from tests.conftest import write_applications_h5
from vgg_keras.nets import keras_weights as vgg_weights

pytestmark = pytest.mark.slow
SIDE = 64  # the input side of every net here


def _reference(name, seed):
    """A keras.applications net with random weights (nothing is downloaded).

    Its own Glorot init with zero biases gives a net whose output barely depends on the input
    (every image lands on one class at p ≈ 1), which would make any comparison pass. He-normal
    kernels keep the signal alive through 16–19 layers, a random bias on the first conv
    exercises its conversion (the other biases stay zero: random ones drown the input's signal
    in a net this small), and a scaled-down classifier keeps the softmax off saturation.
    """
    model = getattr(keras.applications, name)(weights=None, input_shape=(SIDE, SIDE, 3))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if len(layer.weights) == 2:
            kernel, bias = layer.get_weights()
            std = np.sqrt(2.0 / np.prod(kernel.shape[:-1])) / (50 if layer.name == "predictions"
                                                               else 1)
            bias = (rng.normal(0, 0.01, bias.shape) if layer.name == "block1_conv1" else
                    np.zeros(bias.shape))
            layer.set_weights([rng.normal(0, std, kernel.shape).astype("float32"),
                               bias.astype("float32")])
    return model


def _ours(config, num_classes=1000, **overrides):
    return vgg_keras.build_vgg(config, num_classes, **{"input_shape": (SIDE, SIDE, 3),
                                                       **overrides})


def _images(seed=0):
    """Four unlike images: noise, a colour gradient, a reddish ramp and a checkerboard."""
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    noise = np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3))
    gradient = np.stack([cols * 4, rows * 4, 255 - cols * 4], axis=-1)
    reddish = np.stack([np.full_like(rows, 220), rows * 2, np.full_like(rows, 30)], axis=-1)
    checker = np.repeat((((rows // 8) + (cols // 8)) % 2 * 255)[..., None], 3, axis=-1)
    return np.stack([noise, gradient, reddish, checker]).astype(np.uint8)


def _reference_probabilities(reference, images):
    inputs = keras.applications.vgg16.preprocess_input(images.astype("float32"))
    return reference.predict(inputs, verbose=0)


@pytest.mark.parametrize("config, name, seed", [("D", "VGG16", 1), ("E", "VGG19", 2)])
def test_same_probabilities_as_keras_applications(config, name, seed):
    reference = _reference(name, seed)
    images = _images()
    expected = _reference_probabilities(reference, images)
    # Far from uniform (1e-3), not saturated, and not the same answer for every image.
    assert 0.05 < expected.max() < 0.999 and len(set(expected.argmax(axis=1))) > 1
    model = _ours(config)
    report = vgg_keras.load_keras_applications_weights(model, reference)
    assert report["skipped"] == [] and len(report["loaded"]) == vgg_keras.count_weight_layers(
        model)
    assert np.abs(model.predict(images, verbose=0) - expected).max() < 1e-4
    # The same weights through the fully convolutional head.
    conv = _ours(config, head="conv", input_shape=(None, None, 3),
                 fc1_kernel_size=SIDE // 32)
    vgg_keras.load_keras_applications_weights(conv, reference)
    assert np.abs(conv.predict(images, verbose=0) - expected).max() < 1e-4


def test_first_conv_conversion_is_what_makes_it_match():
    reference = _reference("VGG16", seed=2)
    images = _images(1)
    expected = _reference_probabilities(reference, images)
    model = _ours("D")
    vgg_keras.load_keras_applications_weights(model, reference)
    kernel, bias = reference.get_layer("block1_conv1").get_weights()
    model.get_layer("block1_conv1").set_weights([kernel, bias])  # BGR weights on RGB input
    assert np.abs(model.predict(images, verbose=0) - expected).max() > 1e-3


def test_reads_keras_applications_h5_files(tmp_path):
    reference = _reference("VGG16", seed=3)
    images = _images(2)
    expected = _reference_probabilities(reference, images)
    weights_file = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    write_applications_h5(reference, weights_file)
    whole_model_file = tmp_path / "vgg16_model.h5"
    reference.save(whole_model_file)
    for path in (weights_file, str(whole_model_file)):
        model = _ours("D")
        vgg_keras.load_keras_applications_weights(model, path)
        assert np.abs(model.predict(images, verbose=0) - expected).max() < 1e-4


def test_notop_file_loads_the_convolutions_only_when_asked(tmp_path):
    reference = _reference("VGG16", seed=4)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_applications_h5(reference, path, include_top=False)
    model = _ours("D", num_classes=10, fc_units=64)
    with pytest.raises(ValueError, match="fc1: not in the source"):
        vgg_keras.load_keras_applications_weights(model, path)
    report = vgg_keras.load_keras_applications_weights(model, path, skip_mismatch=True)
    assert report["skipped"] == ["fc1", "fc2", "predictions"]
    assert len(report["loaded"]) == 13
    np.testing.assert_array_equal(model.get_layer("block5_conv3").get_weights()[0],
                                  reference.get_layer("block5_conv3").get_weights()[0])


def test_mismatched_nets_and_files_get_clear_errors(tmp_path):
    reference = _reference("VGG16", seed=5)
    with pytest.raises(ValueError, match="block3_conv4: not in the source"):
        vgg_keras.load_keras_applications_weights(_ours("E"), reference)
    with pytest.raises(ValueError, match=r"predictions: source kernel \(4096, 1000\), model "
                                         r"\(4096, 10\)"):
        vgg_keras.load_keras_applications_weights(_ours("D", 10), reference)
    with pytest.raises(FileNotFoundError, match="no keras.applications weights file"):
        vgg_keras.load_keras_applications_weights(_ours("D"), tmp_path / "x.h5")
    not_keras = tmp_path / "other.h5"
    with h5py.File(not_keras, "w") as h5:
        h5.create_dataset("data", data=np.zeros(3))
    with pytest.raises(ValueError, match="is not a Keras HDF5 weights file"):
        vgg_keras.load_keras_applications_weights(_ours("D"), not_keras)


def test_bias_absorbs_the_mean_difference():
    kernel = np.ones((3, 3, 3, 2), np.float32)
    rgb_kernel, rgb_bias = vgg_weights.bgr_to_rgb_first_conv(kernel, np.zeros(2, np.float32))
    # Σ over 3×3 window of (m_ours − m_keras) in BGR order = 9 · (0.001 + 0.001 + 0).
    np.testing.assert_allclose(rgb_bias, [0.018, 0.018], rtol=1e-3)
    kernel[:, :, 0, :] = 5.0  # the B input channel
    assert (vgg_weights.bgr_to_rgb_first_conv(kernel, np.zeros(2))[0][:, :, 2, :] == 5.0).all()
