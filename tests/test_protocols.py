"""Each test protocol against numbers computed independently here, with NumPy crops and the
Keras model itself."""

import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from pipelines import inputs
from pipelines import preprocessing
from tests.conftest import write_shards
from vgg_keras import protocols

CROP = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    data, _ = write_shards(root, train_per_class=1, val_per_class=2, size_range=(36, 60),
                           train_shards=1)
    model = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                head=vgg_keras.Head(fc_units=16, dropout=0.0),
                                weight_init=vgg_keras.WeightInit(seed=3))
    return data, model


def _image(data, q):
    image, _, _ = next(iter(inputs.make_eval_dataset(data, mode=inputs.WHOLE_IMAGES, test_scale=q,
                                                     label_offset=1, num_classes=4)))
    return image[0]


def test_centre_and_multicrop_equal_numpy_crops(setup):
    data, model = setup
    image = _image(data, 44)
    pixels = image.numpy()
    height, width = pixels.shape[:2]
    crops = []
    for top in np.round(np.linspace(0, height - CROP, 5)).astype(int):
        for left in np.round(np.linspace(0, width - CROP, 5)).astype(int):
            crops.append(pixels[top : top + CROP, left : left + CROP])
    crops += [crop[:, ::-1] for crop in crops]
    expected = np.mean([model.predict(crop[None], verbose=0)[0] for crop in crops], axis=0)
    net = protocols.as_probabilities(model)
    np.testing.assert_allclose(protocols.multicrop_probabilities(net, image[None], CROP)[0],
                               expected, atol=1e-6)
    top, left = (height - CROP) // 2, (width - CROP) // 2
    centre = preprocessing.center_crop(image, CROP)[None]
    np.testing.assert_allclose(protocols.single_probabilities(net, centre)[0], model.predict(
        pixels[None, top : top + CROP, left : left + CROP], verbose=0)[0], atol=1e-6)


def test_a_batch_of_one_shape_is_each_image_alone(setup):
    """The protocols take batches: each row is what the image alone gives."""
    data, model = setup
    image = _image(data, 44)
    batch = tf.stack([image, tf.reverse(image, axis=[0]), 255 - image])
    net = protocols.as_probabilities(model)
    conv = protocols.as_probabilities(vgg_keras.to_conv_head(model))
    for function in (lambda images: protocols.multicrop_probabilities(net, images, CROP),
                     lambda images: protocols.dense_probabilities(conv, images)):
        together = function(batch)
        for index in range(3):
            np.testing.assert_allclose(together[index], function(batch[index:index + 1])[0],
                                       atol=1e-6)


def test_dense_on_a_crop_sized_image_is_single_crop_and_averages_the_flip(setup):
    _, model = setup
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (CROP, CROP, 3), np.uint8))
    conv = vgg_keras.to_conv_head(model)
    single = model.predict(image[None], verbose=0)[0]
    np.testing.assert_allclose(conv.predict(image[None], verbose=0)[0], single, atol=1e-6)
    mirrored = model.predict(image[None, :, ::-1], verbose=0)[0]
    dense = protocols.dense_probabilities(protocols.as_probabilities(conv), image[None])[0]
    np.testing.assert_allclose(dense, (single + mirrored) / 2, atol=1e-6)


def test_a_logits_model_gets_its_softmax(setup):
    _, model = setup
    logits = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                 head=vgg_keras.Head(fc_units=16, dropout=0.0, activation=None),
                                 weight_init=vgg_keras.WeightInit(seed=3))
    image = np.random.default_rng(1).integers(0, 256, (1, CROP, CROP, 3), np.uint8)
    np.testing.assert_allclose(protocols.as_probabilities(logits)(image),
                               protocols.as_probabilities(model)(image), atol=1e-6)


def test_combine_averages_dense_and_multicrop():
    dense, multicrop = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    combined = protocols.combine({protocols.DENSE: dense, protocols.MULTICROP: multicrop})
    np.testing.assert_allclose(combined[protocols.DENSE_MULTICROP], [0.4, 0.6])
    assert protocols.protocol_parts([protocols.DENSE_MULTICROP]) == [protocols.DENSE,
                                                                     protocols.MULTICROP]


def test_default_scales_follow_the_paper():
    assert protocols.default_scales((256, 256)) == [224, 256, 288]
    assert protocols.default_scales((384, 384)) == [352, 384, 416]
    assert protocols.default_scales((256, 512)) == [256, 384, 512]
    assert protocols.default_test_scale((256, 256)) == 256
    assert protocols.default_test_scale((256, 512)) == 384
    assert protocols.fallback_test_scale(224) == 256


def test_protocol_names_map_to_the_inputs_and_the_served_protocols():
    assert set(protocols.INPUT_MODES) == set(protocols.PROTOCOLS)
    assert set(protocols.INPUT_MODES.values()) == set(inputs.INPUT_MODES)
    assert set(protocols.SERVED) < set(protocols.PROTOCOLS)
    assert protocols.protocol_name("center") == protocols.SINGLE  # vgg-export's old name
    assert [protocols.protocol_name(p) for p in protocols.PROTOCOLS] == list(protocols.PROTOCOLS)
