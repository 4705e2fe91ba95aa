"""The builder: Table 1/2 counts, layer names, variants, arguments and errors."""

import pathlib

import keras
import numpy as np
import pytest

import vgg_keras
from tests.conftest import build_tiny

# Table 2 (exact counts; the paper rounds them to 133, 133, 133, 134, 138, 144 M).
PAPER_PARAMETERS = {
    "A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848,
    "C": 133_638_952, "D": 138_357_544, "E": 143_667_240,
}
PAPER_WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
# torchvision's vgg*_bn parameter counts (BN γ and β; its running statistics are buffers).
TORCHVISION_BN_PARAMETERS = {"A": 132_868_840, "B": 133_053_736, "D": 138_365_992,
                             "E": 143_678_248}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(PAPER_PARAMETERS))
def test_full_size_counts_equal_the_paper(config):
    model = vgg_keras.build_vgg(config)
    assert vgg_keras.count_parameters(model) == PAPER_PARAMETERS[config]
    assert vgg_keras.count_weight_layers(model) == PAPER_WEIGHT_LAYERS[config]
    assert tuple(model.output.shape) == (None, 1000)
    assert tuple(model.get_layer("block5_pool").output.shape) == (None, 7, 7, 512)


@pytest.mark.slow
@pytest.mark.parametrize("config", list(TORCHVISION_BN_PARAMETERS))
def test_bn_variants_count_as_torchvision(config):
    model = vgg_keras.build_vgg(config + "-BN")
    assert vgg_keras.count_parameters(model, trainable_only=True) == (
        TORCHVISION_BN_PARAMETERS[config])
    assert vgg_keras.count_weight_layers(model) == PAPER_WEIGHT_LAYERS[config]


@pytest.mark.slow
@pytest.mark.parametrize("config, keras_model", [("D", "VGG16"), ("E", "VGG19")])
def test_layer_names_and_shapes_equal_keras_applications(config, keras_model):
    reference = getattr(keras.applications, keras_model)(weights=None)
    ours = vgg_keras.build_vgg(config)
    expected = {layer.name: [tuple(w.shape) for w in layer.weights]
                for layer in reference.layers if layer.weights}
    found = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in ours.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}
    assert found == expected
    pools = [layer.name for layer in ours.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert pools == [f"block{b}_pool" for b in range(1, 6)]


def test_c_names_its_1x1_convs_as_third_of_block(tiny):
    model = tiny("C")
    assert model.get_layer("block3_conv3").kernel.shape[:2] == (1, 1)
    assert model.get_layer("block3_conv2").kernel.shape[:2] == (3, 3)
    assert model.get_layer("block5_conv3").kernel.shape[:2] == (1, 1)


def test_a_lrn_has_lrn_after_first_conv(tiny):
    names = [layer.name for layer in tiny("A-LRN").layers]
    assert names[names.index("block1_conv1") + 1] == "block1_lrn"
    assert isinstance(tiny("A-LRN").get_layer("block1_lrn"), vgg_keras.LocalResponseNormalization)


def test_batch_norm_follows_every_conv(tiny):
    model = tiny("B", batch_norm=True)
    assert model.name == "vgg_b_bn"
    names = [layer.name for layer in model.layers]
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    for conv in convs:
        index = names.index(conv)
        assert names[index + 1 : index + 3] == [conv + "_bn", conv + "_relu"]
        assert model.get_layer(conv).get_config()["activation"] == "linear"
    assert tiny("B-BN").name == "vgg_b_bn"


def test_input_layers_cast_and_subtract_the_mean(tiny):
    model = tiny("A")
    assert model.input.dtype == "uint8"
    mean_rgb = keras.Model(model.input, model.get_layer("mean_rgb").output)
    image = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(mean_rgb.predict(image, verbose=0),
                               image.astype(np.float32) - np.float32(vgg_keras.RGB_MEAN),
                               atol=1e-5)


def test_width_and_fc_units_scale_the_net(tiny):
    model = tiny("D", width=0.25, num_classes=7, head=vgg_keras.Head(fc_units=64))
    assert model.get_layer("block1_conv1").filters == 16
    assert model.get_layer("block5_conv3").filters == 128
    assert model.get_layer("fc1").units == 64 and model.get_layer("fc2").units == 64
    assert tuple(model.output.shape) == (None, 7)


def test_dropout_rate_and_logits(tiny):
    model = tiny("A", head=vgg_keras.Head(fc_units=16, dropout=0.3, activation=None))
    assert model.get_layer("fc1_dropout").rate == 0.3
    assert model.get_layer("fc2_dropout").rate == 0.3
    assert model.layers[-1].name == "logits"
    probabilities = tiny("A").layers[-1]
    assert probabilities.name == "probabilities"
    assert probabilities.dtype_policy.compute_dtype == "float32"


def test_outputs_are_a_distribution(tiny):
    model = tiny("E")
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    probabilities = model.predict(images, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_literal_spec_builds_a_custom_net():
    model = vgg_keras.build_vgg(["conv3-8", "LRN", "maxpool", "conv1-16", "maxpool"], 5,
                                input_shape=(8, 8, 3), head=vgg_keras.Head(fc_units=4))
    assert [layer.name for layer in model.layers if layer.weights and "conv" in layer.name] == [
        "block1_conv1", "block2_conv1"]
    assert model.get_layer("flatten").output.shape[-1] == 2 * 2 * 16
    assert vgg_keras.count_weight_layers(model) == 5


def test_same_seed_same_weights(tiny):
    first, second, other = (tiny("A", weight_init=vgg_keras.WeightInit(seed=seed))
                            for seed in (3, 3, 4))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_layer("fc1").kernel, other.get_layer("fc1").kernel)
    # Each layer draws its own seed: equal shapes do not mean equal weights.
    fc1, fc2 = first.get_layer("block4_conv2").kernel, first.get_layer("block5_conv1").kernel
    assert fc1.shape == fc2.shape and not np.array_equal(fc1, fc2)


def test_weight_decay_is_caffe_convention_on_kernels_only(tiny):
    model = tiny("A", weight_init=vgg_keras.WeightInit(weight_decay=5e-4, seed=1))
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            assert layer.kernel_regularizer.l2 == pytest.approx(2.5e-4)
            assert layer.bias_regularizer is None
    assert tiny("A").get_layer("fc1").kernel_regularizer is None


def test_keras_file_round_trip(tmp_path, tiny):
    model = tiny("A-LRN", batch_norm=True)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.predict(images, verbose=0),
                                  reloaded.predict(images, verbose=0))
    assert isinstance(reloaded.get_layer("block1_lrn"), vgg_keras.LocalResponseNormalization)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(head="fully"), "head must be one of"),
        (dict(input_shape=(None, None, 3)), "FC head needs a fixed input size"),
        (dict(input_shape=(16, 16, 3)), "input size 16 is too small: 5 pooling layers"),
        (dict(input_shape=(32, 32, 1)), r"input_shape must be \(height, width, 3\)"),
        (dict(head="conv", input_shape=(64, 64, 3)), "7×7 fc1 need at least 224 pixels"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(width=0), "width must be > 0"),
        (dict(num_classes=0), "num_classes and fc_units must be >= 1"),
        (dict(init="he"), "init must be one of"),
        (dict(weight_decay=-1.0), "weight_decay must be >= 0"),
    ],
)
def test_bad_arguments_get_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny("A", **overrides)


def test_build_vgg_is_the_backbone_and_the_classifier_in_one_call():
    """keras-hub's shape of the family: the same layers, names and weights (one seed) from the
    two builders as from build_vgg, for each head."""
    for head, pooling in (("fc", None), ("conv", None), (None, "avg")):
        tiny_head = vgg_keras.Head(head, fc_units=16, pooling=pooling, fc1_kernel_size=1)
        one_call = build_tiny("D-BN", input_shape=(32, 32, 3), head=tiny_head,
                              weight_init=vgg_keras.WeightInit(weight_decay=5e-4, seed=1))
        init = vgg_keras.WeightInit(seed=1, weight_decay=5e-4)
        backbone = vgg_keras.build_backbone("D", input_shape=(32, 32, 3), width=1 / 16,
                                            batch_norm=vgg_keras.BatchNorm(), weight_init=init)
        two = vgg_keras.build_classifier(backbone, 10, head=tiny_head, weight_init=init)
        assert [layer.name for layer in two.layers] == [layer.name for layer in one_call.layers]
        assert two.name == one_call.name == "vgg_d_bn"
        for mine, theirs in zip(two.weights, one_call.weights, strict=True):
            assert mine.path == theirs.path
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert backbone.output.shape[1:] == (1, 1, 32)
    with pytest.raises(ValueError, match="7×7 fc1 need at least 224 pixels"):
        vgg_keras.build_classifier(backbone, 10, head="conv")  # checked before building


def test_a_keras_file_of_version_0_1_0_still_loads():
    """tests/data/saved_by_0.1.0.keras: an A-LRN-BN net with torchvision's normalisation and
    the colour shift, saved by the package before its nets moved to vgg_keras/nets/; it loads
    (our layers found by their registered names) and predicts what it predicted then."""
    data = pathlib.Path(__file__).parent / "data"
    model = keras.models.load_model(data / "saved_by_0.1.0.keras")
    images = (np.arange(2 * 32 * 32 * 3) % 251).astype(np.uint8).reshape(2, 32, 32, 3)
    np.testing.assert_allclose(model.predict(images, verbose=0),
                               np.load(data / "saved_by_0.1.0_outputs.npy"), atol=1e-6)
    assert isinstance(model.get_layer("block1_lrn"), vgg_keras.LocalResponseNormalization)
    assert isinstance(model.get_layer("color_shift"), vgg_keras.PCAColorShift)
