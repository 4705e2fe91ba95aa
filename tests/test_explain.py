"""``vgg_keras.explain``: numbers, not pictures. Integrated gradients are complete; Grad-CAM is
the keras-io recipe's; the class map of the fully convolutional net at the crop is the FC net's
answer; every map comes for uint8 and float nets, plain and batch-norm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from tests.conftest import build_tiny
from vgg_keras import explain


def _images(count=3, side=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3)).astype(np.uint8)


def _net(config="A", **overrides):
    return build_tiny(config, num_classes=5, **overrides)


def make_gradcam_heatmap(img_array, model, last_conv_layer_name, pred_index=None):
    """keras-io's "Grad-CAM class activation visualization" (fchollet), written out: the
    model's softmax removed (its logits: our nets' ``predictions`` layer)."""
    grad_model = keras.models.Model(
        model.inputs, [model.get_layer(last_conv_layer_name).output,
                       model.get_layer("predictions").output])
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


@pytest.mark.parametrize("layer", ["block5_conv2", "block4_conv2"])
def test_grad_cam_equals_the_keras_io_recipe(layer):
    model, images = _net(), _images()
    ours = explain.grad_cam(model, images, layer=layer)
    for image, cam in zip(images, ours, strict=True):
        theirs = make_gradcam_heatmap(image[None], model, layer)
        upsampled = tf.image.resize(theirs[None, :, :, None], image.shape[:2])[0, :, :, 0]
        np.testing.assert_allclose(cam, upsampled, atol=1e-5)
    assert ours.shape == (3, 32, 32) and 0.9 < ours.max() <= 1.0  # scaled to 1, then upsampled
    given = explain.grad_cam(model, images[:1], layer=layer, class_index=3)[0]
    theirs = make_gradcam_heatmap(images[:1], model, layer, pred_index=3)
    np.testing.assert_allclose(
        given, tf.image.resize(theirs[None, :, :, None], (32, 32))[0, :, :, 0], atol=1e-5)


@pytest.mark.parametrize("config, dtype", [("A", "uint8"), ("A-BN", "uint8"),
                                           ("A", "float32")])
def test_integrated_gradients_are_complete_within_one_percent(config, dtype):
    model = _net(config, preprocessing=vgg_keras.Preprocessing(dtype=dtype))
    images = _images()
    attributions = explain.integrated_gradients(model, images)
    probabilities = model.predict(images, verbose=0)
    baseline = model.predict(np.zeros_like(images), verbose=0)
    top = probabilities.argmax(axis=1)
    for index, cls in enumerate(top):
        change = probabilities[index, cls] - baseline[index, cls]
        assert attributions[index].sum() == pytest.approx(change, rel=0.01, abs=1e-6)
    assert attributions.shape == images.shape


def test_the_class_map_at_the_crop_is_the_fc_nets_answer():
    model, images = _net(), _images()
    for image, expected in zip(images, model.predict(images, verbose=0), strict=True):
        grid = explain.class_scores(model, image)
        assert grid.shape == (1, 1, 5)
        np.testing.assert_allclose(grid[0, 0], expected, rtol=1e-5, atol=1e-6)
    large = _images(1, side=96, seed=3)[0]
    grid = explain.class_scores(model, large)
    assert grid.shape == (3, 3, 5)  # (96 − 32) / 32 + 1 places of the 32-pixel net
    np.testing.assert_allclose(grid.sum(axis=-1), 1.0, rtol=1e-5)  # posteriors at each place
    heat = explain.class_map(model, large)
    assert heat.shape == (96, 96) and 0 <= heat.min() <= heat.max() <= 1
    # The conv-head net itself gives the same map.
    conv = vgg_keras.to_conv_head(model)
    np.testing.assert_allclose(explain.class_scores(conv, large), grid, rtol=1e-5, atol=1e-6)


def test_every_map_for_plain_and_batch_norm_nets():
    for model in (_net("A"), _net("A-BN")):
        images = _images(2)
        assert explain.grad_cam_plus_plus(model, images).shape == (2, 32, 32)
        saliency = explain.smoothgrad(model, images, samples=3)
        assert saliency.shape == (2, 32, 32) and (saliency >= 0).all()
        drop = explain.occlusion(model, images[0], patch=8, stride=4)
        assert drop.shape == (32, 32) and np.isfinite(drop).all()


def test_occlusion_is_the_drop_of_the_probability_under_the_patch():
    model, image = _net(), _images(1)[0]
    drop = explain.occlusion(model, image, patch=32, stride=32)  # one patch: the whole image
    probability = model.predict(image[None], verbose=0)[0]
    cls = probability.argmax()
    covered = np.full_like(image, 0)
    covered[:] = np.round(explain.maps.MEAN_COLOUR).astype(np.uint8)
    expected = probability[cls] - model.predict(covered[None], verbose=0)[0, cls]
    np.testing.assert_allclose(drop, expected, rtol=1e-5, atol=1e-6)
