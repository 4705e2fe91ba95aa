"""VGG as a backbone: the convolutional part alone (pooled or not, any input size, uint8 or float
input), and taps of named layers equal to keras.applications' own intermediate outputs with the
same weights; before or after the ReLU; sharing the net's weights."""

import keras
import numpy as np
import pytest

import vgg_keras

SIZE = 64
TAPS = ["block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"]


@pytest.fixture(scope="module")
def nets():
    """keras.applications VGG19 without its top (random weights, nothing downloaded) and our E
    feature extractor with its weights."""
    reference = keras.applications.VGG19(include_top=False, weights=None,
                                         input_shape=(SIZE, SIZE, 3))
    ours = vgg_keras.build_vgg("E", head=None, input_shape=(SIZE, SIZE, 3))
    report = vgg_keras.load_keras_applications_weights(ours, reference)
    assert len(report["loaded"]) == 16 and not report["skipped"]
    images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), np.uint8)
    return reference, ours, images


def _close(ours, theirs):
    """Equal but for float rounding and the first layer's border (the 0.001 between the two
    mean vectors, weights.py): relative to the activations' scale."""
    scale = np.abs(theirs).max()
    assert scale > 0
    np.testing.assert_allclose(ours, theirs, atol=2e-4 * scale, rtol=0)


def test_taps_equal_keras_applications_intermediate_outputs(nets):
    reference, ours, images = nets
    taps = vgg_keras.feature_model(ours, TAPS)(images)
    expected = keras.Model(reference.input, [reference.get_layer(n).output for n in TAPS])(
        keras.applications.vgg19.preprocess_input(images.astype("float32")))
    assert list(taps) == TAPS
    for name, theirs in zip(TAPS, expected, strict=True):
        _close(keras.ops.convert_to_numpy(taps[name]), keras.ops.convert_to_numpy(theirs))


def test_taps_before_the_relu(nets):
    _, ours, images = nets
    after = vgg_keras.feature_model(ours, ["block3_conv4"])(images)["block3_conv4"]
    before = vgg_keras.feature_model(ours, ["block3_conv3", "block3_conv4", "block3_pool"],
                                     relu=False)(images)
    pre = keras.ops.convert_to_numpy(before["block3_conv4"])
    assert pre.min() < 0  # really before the ReLU
    np.testing.assert_array_equal(np.maximum(pre, 0), keras.ops.convert_to_numpy(after))
    # The linear part from the tapped input (block3_conv3 after its ReLU), by hand.
    conv = ours.get_layer("block3_conv4")
    inputs = np.maximum(keras.ops.convert_to_numpy(before["block3_conv3"]), 0)
    by_hand = keras.ops.conv(inputs, conv.kernel, padding="same") + conv.bias
    np.testing.assert_allclose(pre, keras.ops.convert_to_numpy(by_hand), rtol=1e-5,
                               atol=1e-4)
    assert before["block3_pool"].shape == (2, SIZE // 8, SIZE // 8, 256)


def test_batch_norm_taps_and_shared_weights():
    net = vgg_keras.build_vgg("D-BN", 5, input_shape=(32, 32, 3), width=1 / 16,
                              head=vgg_keras.Head(fc_units=8),
                              weight_init=vgg_keras.WeightInit(seed=2))
    features = vgg_keras.feature_model(net, ["block2_conv2", "fc1"], relu=False)
    assert {id(v) for v in features.weights} <= {id(v) for v in net.weights}  # shared
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), np.uint8)
    before = features(images)
    bn = keras.Model(net.input, net.get_layer("block2_conv2_bn").output)(images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(before["block2_conv2"]),
                                  keras.ops.convert_to_numpy(bn))
    net.get_layer("block1_conv1").kernel.assign(net.get_layer("block1_conv1").kernel * 2)
    changed = features(images)["block2_conv2"]  # the net's new weights, seen by the taps
    assert not np.allclose(keras.ops.convert_to_numpy(changed),
                           keras.ops.convert_to_numpy(before["block2_conv2"]))


@pytest.mark.parametrize("pooling, shape", [(None, (None, 2, 2, 32)), ("avg", (None, 32)),
                                            ("max", (None, 32))])
def test_feature_extractor_shapes(pooling, shape):
    net = vgg_keras.build_vgg("A", input_shape=(64, 64, 3), width=1 / 16,
                              head=vgg_keras.Head(None, pooling=pooling))
    assert net.output.shape == shape
    assert all(layer.name not in ("fc1", "flatten", "predictions") for layer in net.layers)
    anywhere = vgg_keras.build_vgg("A", width=1 / 16, head=vgg_keras.Head(None, pooling=pooling),
                                   preprocessing=vgg_keras.Preprocessing(dtype="float32"))
    assert anywhere.input.shape == (None, None, None, 3) and anywhere.input.dtype == "float32"
    out = anywhere(np.full((1, 96, 160, 3), 127.5, np.float32))
    assert out.shape == ((1, 3, 5, 32) if pooling is None else (1, 32))
    assert vgg_keras.build_vgg("D", head=None).output.shape == (None, None, None, 512)


def test_clear_errors():
    net = vgg_keras.build_vgg("A", head=None, input_shape=(32, 32, 3), width=1 / 16)
    with pytest.raises(ValueError, match="has no layer \\['block9_conv1'\\]; its layers: "):
        vgg_keras.feature_model(net, ["block9_conv1"])
    with pytest.raises(ValueError, match="pooling must be one of .* head=None only"):
        vgg_keras.build_vgg("A", head=vgg_keras.Head(pooling="avg"))
