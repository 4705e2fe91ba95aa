"""The paper's test protocols (§3.2, §4), as the one place that says what each computes: default
test scales, the multi-crop grid, and the class probabilities of an image under the centre-crop,
dense and multi-crop protocols. ``vgg-evaluate`` and the export's serving graph both call these,
so a served prediction is an evaluated one.

Every protocol is a function of a batch: it takes ``net``, a callable from a batch of uint8 images
to class probabilities (``as_probabilities`` makes one of a Keras model), and a batch of images
already rescaled so that their shorter side is the test scale Q
(``pipelines.preprocessing.rescale_shorter_side``), and returns a row of probabilities per
image. The crops are ``pipelines.preprocessing``'s.

The names and scales need no TensorFlow (the programs declare their settings with them before
anything heavy starts); the functions import it when first called.
"""

from pipelines import input_config
from vgg_keras.nets import configs

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
INPUT_MODES = {SINGLE: input_config.CENTER_CROPS, DENSE: input_config.WHOLE_IMAGES,
               MULTICROP: input_config.WHOLE_IMAGES, DENSE_MULTICROP: input_config.WHOLE_IMAGES}
GRID = 5  # §3.2: "5 × 5 regular grid with 2 flips"
# Q of a model trained without a recorded S, per pixel of its crop: slim's and Keras' habit of
# resizing to 256 before the 224 crop.
RESIZE_RATIO_WITHOUT_SCALE = input_config.TEST_SCALE / configs.CROP_SIZE


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
    import tensorflow as tf

    softmax = model.layers[-1].name == "logits"

    def net(images):
        outputs = tf.cast(model(images, training=False), tf.float32)
        return tf.nn.softmax(outputs) if softmax else outputs

    return net


def single_probabilities(net, crops):
    """Single-crop protocol: the net on a batch of centre crops ``[n, crop, crop, 3]``
    (``preprocessing.center_crop`` of the images at Q): ``[n, classes]``."""
    return net(crops)


def dense_probabilities(conv_net, images):
    """§3.2 dense protocol: the fully convolutional net (``heads.to_conv_head``) on each whole
    image of a batch of one shape ``[n, H, W, 3]`` and on its mirror, the spatially averaged
    class scores of the two averaged: ``[n, classes]``."""
    import tensorflow as tf

    pair = tf.concat([images, tf.reverse(images, axis=[2])], axis=0)
    probabilities = conv_net(pair)
    return tf.reduce_mean(tf.reshape(probabilities, [2, tf.shape(images)[0], -1]), axis=0)


def multicrop_probabilities(net, images, crop_size, grid=GRID):
    """§3.2 multi-crop protocol: for each image of a batch of one shape ``[n, H, W, 3]``, the
    mean over a ``grid``×``grid`` regular grid of crops and their mirrors (50 crops for the
    paper's 5×5, ``preprocessing.multi_crops``): ``[n, classes]``."""
    import tensorflow as tf

    from pipelines import preprocessing

    crops = preprocessing.multi_crops(images, crop_size, grid)  # [n, 2·grid², c, c, 3]
    flat = tf.reshape(crops, [-1, crop_size, crop_size, 3])
    probabilities = net(flat)
    return tf.reduce_mean(tf.reshape(probabilities, [tf.shape(images)[0], 2 * grid * grid, -1]),
                          axis=1)


def top_k_hits(labels, probabilities, k=5):
    """Per image, whether its class is the top-1 and among the top-``k`` classes, as Keras'
    accuracy metrics count them (the top-1 by argmax: of tied scores, the first class; the
    top-k by ``in_top_k``, which takes float32); used by training's validation and by
    evaluation alike."""
    import keras
    import tensorflow as tf

    probabilities = tf.cast(probabilities, tf.float32)
    return (keras.metrics.sparse_categorical_accuracy(labels, probabilities),
            keras.metrics.sparse_top_k_categorical_accuracy(labels, probabilities, k=k))


def combine(parts):
    """The probabilities of every protocol from its parts (``{protocol: probabilities}``):
    dense+multicrop is the mean of the two (§4.3)."""
    result = dict(parts)
    if DENSE in parts and MULTICROP in parts:
        result[DENSE_MULTICROP] = (parts[DENSE] + parts[MULTICROP]) / 2.0
    return result
