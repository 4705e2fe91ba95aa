"""The paper's test protocols (§3.2, §4), as the one place that says what each computes: default
test scales, the multi-crop grid, and the class probabilities of an image under the centre-crop,
dense and multi-crop protocols. ``vgg-evaluate`` and the export's serving graph both call these,
so a served prediction is an evaluated one.

Every function takes ``net``, a callable from a batch of uint8 images to class probabilities
(``as_probabilities`` makes one of a Keras model), and images already rescaled so that their
shorter side is the test scale Q (``pipelines.preprocessing.rescale_shorter_side``).
"""

import tensorflow as tf

from pipelines import inputs
from pipelines import preprocessing

# The protocols: single (one centre crop), dense (§3.2: the fully convolutional net on the whole
# image), multi-crop (§3.2: a grid of crops), and dense + multi-crop (§4.3).
SINGLE, DENSE, MULTICROP, DENSE_MULTICROP = "single", "dense", "multicrop", "dense+multicrop"
PROTOCOLS = (SINGLE, DENSE, MULTICROP, DENSE_MULTICROP)
# Other names a command line or an earlier file may use for a protocol: "center", the name
# vgg-export's --eval_mode has always taken for the single centre crop.
ALIASES = {"center": SINGLE}
# The protocols an export can serve (vgg-export --eval_mode).
SERVED = (SINGLE, DENSE)
# The input each protocol reads from pipelines.inputs.make_eval_dataset: centre crops, or the
# whole image at Q (the conv net and the multi-crop grid take their own views of it).
INPUT_MODES = {SINGLE: inputs.CENTER_CROPS, DENSE: inputs.WHOLE_IMAGES,
               MULTICROP: inputs.WHOLE_IMAGES, DENSE_MULTICROP: inputs.WHOLE_IMAGES}
GRID = 5  # §3.2: "5 × 5 regular grid with 2 flips"
# Q of a model trained without a recorded S: slim's and Keras' habit (resize to 256, crop 224).
RESIZE_RATIO_WITHOUT_SCALE = 256 / 224


def protocol_name(name):
    """The protocol a name given on a command line or read from a file stands for
    (``ALIASES``)."""
    return ALIASES.get(name, name)


def default_test_scale(train_scale):
    """§4.1: Q = S for a fixed S, Q = (Smin + Smax) / 2 for scale jitter."""
    return int(round((train_scale[0] + train_scale[1]) / 2))


def default_scales(train_scale):
    """§4.2: Q ∈ {S − 32, S, S + 32} for a fixed S, {Smin, (Smin + Smax)/2, Smax} for jitter."""
    low, high = train_scale
    if low == high:
        return [low - 32, low, low + 32]
    return [low, (low + high) // 2, high]


def fallback_test_scale(crop_size):
    """Q for a model that recorded no training scale."""
    return int(round(crop_size * RESIZE_RATIO_WITHOUT_SCALE))


def protocol_parts(protocols):
    """The protocols whose probabilities must be computed for ``protocols`` (dense+multicrop
    needs dense and multicrop)."""
    parts = {p for p in protocols if p != DENSE_MULTICROP}
    if DENSE_MULTICROP in protocols:
        parts |= {DENSE, MULTICROP}
    return [p for p in PROTOCOLS if p in parts]


def as_probabilities(model):
    """``model`` as a ``net``: float32 class probabilities (a softmax added to a model built
    with logits, ``classifier_activation=None``), inference mode."""
    softmax = model.layers[-1].name == "logits"

    def net(images):
        outputs = tf.cast(model(images, training=False), tf.float32)
        return tf.nn.softmax(outputs) if softmax else outputs

    return net


def crop_probabilities(net, crops):
    """The net on a batch of crops ``[b, crop, crop, 3]``: ``[b, classes]``."""
    return net(crops)


def center_probabilities(net, image, crop_size):
    """Single-crop protocol: the central ``crop_size`` crop of one image at Q: ``[classes]``."""
    return crop_probabilities(net, preprocessing.center_crop(image, crop_size)[None])[0]


def dense_probabilities(conv_net, image):
    """§3.2 dense protocol: the fully convolutional net (``builder.to_conv_head``) on the whole
    image and on its mirror, spatially averaged class scores averaged: ``[classes]``."""
    pair = tf.stack([image, tf.reverse(image, axis=[1])])
    return tf.reduce_mean(conv_net(pair), axis=0)


def multicrop_probabilities(net, image, crop_size, grid=GRID):
    """§3.2 multi-crop protocol: the mean over a ``grid``×``grid`` regular grid of crops and
    their mirrors (50 crops for the paper's 5×5): ``[classes]``."""
    crops = preprocessing.multi_crops(image, crop_size, grid)
    return tf.reduce_mean(crop_probabilities(net, crops), axis=0)


def combine(parts):
    """The probabilities of every protocol from its parts (``{protocol: probabilities}``):
    dense+multicrop is the mean of the two (§4.3)."""
    result = dict(parts)
    if DENSE in parts and MULTICROP in parts:
        result[DENSE_MULTICROP] = (parts[DENSE] + parts[MULTICROP]) / 2.0
    return result
