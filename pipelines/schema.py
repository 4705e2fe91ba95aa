"""The ImageNet TFRecord schema: one definition that the converter, the input pipeline and the
export import.

Compatible with the shards that slim's ``build_imagenet_data.py``, tf_cnn_benchmarks and Model
Garden read: the same feature keys, labels 1..N with 0 reserved (``label_offset`` 1), and
``train-%05d-of-%05d`` / ``validation-%05d-of-%05d`` shard names.

TensorFlow (whose ``tf.train.Example`` the records are) is imported when a record is first made:
the names and keys are read by programs that have not started it yet.
"""

import functools

ENCODED = "image/encoded"
FORMAT = "image/format"
FILENAME = "image/filename"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMAX = "image/object/bbox/ymax"
BBOX_LABEL = "image/object/bbox/label"

LABEL_OFFSET = 1  # slim convention: label 0 is reserved ("background"), classes are 1..N
SPLITS = ("train", "validation")
MANIFEST = "dataset_info.json"
# ImageNet defaults of slim's build_imagenet_data.py.
DEFAULT_SHARDS = {"train": 1024, "validation": 128}


def shard_name(split, index, num_shards):
    """Returns ``train-00003-of-01024``-style shard file names."""
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def shard_pattern(split):
    """Returns the glob pattern of a split's shards."""
    return f"{split}-?????-of-?????"


def _train():
    import tensorflow as tf

    return tf.train


def _bytes(values):
    return _train().Feature(bytes_list=_train().BytesList(value=values))


def _ints(values):
    return _train().Feature(int64_list=_train().Int64List(value=values))


def _floats(values):
    return _train().Feature(float_list=_train().FloatList(value=values))


@functools.cache
def _constant_features():
    # Built once: most features are the same for every image (and the boxes are usually
    # absent), and protobuf construction is a visible share of the converter's time.
    empty_floats, empty_ints = _floats([]), _ints([])
    return {
        FORMAT: _bytes([b"JPEG"]),
        CHANNELS: _ints([3]),
        COLORSPACE: _bytes([b"RGB"]),
        BBOX_XMIN: empty_floats,
        BBOX_YMIN: empty_floats,
        BBOX_XMAX: empty_floats,
        BBOX_YMAX: empty_floats,
        BBOX_LABEL: empty_ints,
    }


def make_example(*, jpeg, filename, height, width, label, synset, text, boxes=()):
    """Returns the serialized ``tf.train.Example`` of one image.

    Args:
        jpeg: RGB JPEG bytes.
        filename: the image's file name (as given, without folders).
        height, width: size of the image in ``jpeg``.
        label: class index, 1-based (0 is reserved).
        synset: class identifier (WordNet synset for ImageNet, folder name otherwise).
        text: human-readable class name.
        boxes: ``[(xmin, ymin, xmax, ymax)]`` relative to the image size, in [0, 1].

    Serialization is deterministic (``deterministic=True``): the feature map would otherwise be
    written in a different order from one process to the next, and shards would differ.
    """
    features = dict(_constant_features())
    features.update({
        ENCODED: _bytes([jpeg]),
        FILENAME: _bytes([filename.encode()]),
        HEIGHT: _ints([height]),
        WIDTH: _ints([width]),
        LABEL: _ints([label]),
        SYNSET: _bytes([synset.encode()]),
        TEXT: _bytes([text.encode()]),
    })
    if boxes:
        xmin, ymin, xmax, ymax = (list(column) for column in zip(*boxes, strict=True))
        features.update({BBOX_XMIN: _floats(xmin), BBOX_YMIN: _floats(ymin),
                         BBOX_XMAX: _floats(xmax), BBOX_YMAX: _floats(ymax),
                         BBOX_LABEL: _ints([label] * len(boxes))})
    example = _train().Example(features=_train().Features(feature=features))
    return example.SerializeToString(deterministic=True)
