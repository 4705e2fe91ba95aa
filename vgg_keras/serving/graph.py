"""The serving graph of an export: encoded images in, top-k classes out (§3.2 at test time).

The graph carries the whole test-time path, so that clients send image bytes: checks of each
image's bytes and declared size, decoding, the isotropic rescaling of the shorter side to the
test scale Q, then the protocol the export serves (``protocols``: centre crop, or the dense net
over the whole image and its mirror), and the net itself with its mean subtraction.

Signatures (one per input type, as Model Garden's exports):

* ``serving_default(images)``: ``tf.string [batch]``, encoded JPEG, PNG, GIF or BMP (REST
  clients send ``{"b64": ...}``).
* ``predict_images(images)``: ``tf.uint8 [batch, height, width, 3]``, RGB of any size.
* ``tf_example(examples)``: ``tf.string [batch]``, serialized ``tf.train.Example`` in our
  schema (``image/encoded``).

Each returns ``classes`` (int64 ``[batch, k]``, 0-based output indices), ``synsets`` and
``labels`` (string ``[batch, k]``), ``scores`` (float32 ``[batch, k]``) and, if exported with
``full_probabilities``, ``probabilities`` (float32 ``[batch, num_classes]``).

A bad image fails its request with ``InvalidArgument`` naming the image and the problem (not an
image, empty, more pixels than ``max_pixels`` declared by its header, shorter side below
``min_side``), checked before anything is decoded; the model keeps serving other requests.
"""

import json

import tensorflow as tf

from pipelines import image_header
from pipelines import preprocessing
from pipelines import schema
from pipelines.foundation import errors
from pipelines.foundation import storage
from vgg_keras import protocols
from vgg_keras.nets import heads

SIGNATURES = ("serving_default", "predict_images", "tf_example")


class ServingModule(tf.Module):
    """The exported object: the three signatures, ``classify_crops`` (the net on uint8 crops,
    for ``vgg-evaluate``) and ``metadata`` (the settings, as JSON)."""

    def __init__(self, model, metadata):
        super().__init__(name="vgg_serving")
        self._settings = metadata
        self._q = metadata["test_scale"]
        self._crop_size = metadata["crop_size"]
        self._k = metadata["top_k"]
        self._num_classes = metadata["num_classes"]
        self._protocol = protocols.protocol_name(metadata["eval_mode"])
        # Dense: the fully convolutional twin serves both the whole images and (for
        # vgg-evaluate) crops, on which it equals the net.
        net = heads.to_conv_head(model) if self._protocol == protocols.DENSE else model
        # The Keras objects stay untracked (closures): only their variables are saved, as
        # keras' own ExportArchive does, so the SavedModel holds no Keras internals.
        self._net = protocols.as_probabilities(net)
        self._variables = [variable.value for variable in net.variables]
        self._synsets = tf.constant(metadata["synsets"])
        self._labels = tf.constant(metadata["labels"])
        text = json.dumps(metadata, indent=1, ensure_ascii=False)
        # A Python default argument: `saved_model_cli show --all` prints it, and
        # `tf.saved_model.load(path).metadata()` returns it.
        self.metadata = tf.function(lambda metadata=text: tf.constant(metadata), autograph=False)
        self.metadata.get_concrete_function()
        self.serving_default = tf.function(self._serve_encoded, autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name="images")])
        self.predict_images = tf.function(self._serve_images, autograph=False, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        self.tf_example = tf.function(self._serve_examples, autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name="examples")])
        self.classify_crops = tf.function(
            lambda crops: protocols.single_probabilities(self._net, crops), autograph=False,
            input_signature=[
                tf.TensorSpec([None, self._crop_size, self._crop_size, 3], tf.uint8,
                              name="images")])

    def signatures(self):
        return {name: getattr(self, name) for name in SIGNATURES}

    def _serve_encoded(self, images):
        return self._predict(images, self._encoded_image)

    def _serve_images(self, images):
        return self._predict(images, self._checked_image)

    def _serve_examples(self, examples):
        features = tf.io.parse_example(
            examples, {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)})
        return self._predict(features[schema.ENCODED], self._encoded_image)

    def _predict(self, images, to_image):
        """Per image: checks and rescaling to Q; then the protocol: the net on the whole batch
        of centre crops, or the dense net image by image (sizes differ)."""
        count = tf.shape(images)[0]
        nonempty = tf.debugging.Assert(count > 0, ["the request holds no images"])
        with tf.control_dependencies([nonempty]):
            indices = tf.range(count)

        def rescaled(item):
            return preprocessing.rescale_shorter_side(to_image(*item), self._q)

        if self._protocol == protocols.SINGLE:
            crops = tf.map_fn(
                lambda item: preprocessing.center_crop(rescaled(item), self._crop_size),
                (images, indices),
                fn_output_signature=tf.TensorSpec([self._crop_size, self._crop_size, 3], tf.uint8))
            probabilities = protocols.single_probabilities(self._net, crops)
        else:  # image by image: their sizes differ
            probabilities = tf.map_fn(
                lambda item: protocols.dense_probabilities(self._net, rescaled(item)[None])[0],
                (images, indices),
                fn_output_signature=tf.TensorSpec([self._num_classes], tf.float32))
        return self._top_k(probabilities)

    def _top_k(self, probabilities):
        scores, classes = tf.math.top_k(probabilities, self._k)
        outputs = {"classes": tf.cast(classes, tf.int64), "scores": scores,
                   "synsets": tf.gather(self._synsets, classes),
                   "labels": tf.gather(self._labels, classes)}
        if self._settings["full_probabilities"]:
            outputs["probabilities"] = probabilities
        return outputs

    def _encoded_image(self, encoded, index):
        return encoded_image(encoded, index, self._settings)

    def _checked_image(self, image, index):
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies(size_checks(shape[0], shape[1], index, self._settings)):
            return tf.identity(image)


def encoded_image(encoded, index, metadata):
    """Decodes one request image after checking its bytes and the size its header declares,
    against the limits of the export's ``metadata`` (``max_pixels``, ``min_side``, Q): what
    the serving graph does, and ``vgg-predict`` before it runs a tensor format."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    kind = image_header.kind_op(encoded)
    empty = _require(length > 0, index, "is an empty string")
    with tf.control_dependencies([empty]):
        known = _require(kind >= 0, index, "is not a JPEG, PNG, GIF or BMP image")
    with tf.control_dependencies([known]):
        needed = image_header.header_bytes_op(kind)
        name = tf.gather(tf.constant(image_header.KINDS), tf.maximum(kind, 0))
        text = tf.strings.join([  # format() would quote the name
            "image ", tf.strings.as_string(index), " of the request is a truncated ", name,
            " image (its header needs ", tf.strings.as_string(needed), " bytes, it has ",
            tf.strings.as_string(length), ")"])
        complete = tf.debugging.Assert(length >= needed, [text])
    is_jpeg = tf.equal(kind, image_header.KINDS.index(image_header.JPEG))
    with tf.control_dependencies([complete]):
        ended = _require(tf.logical_or(tf.logical_not(is_jpeg),
                                       image_header.jpeg_ended_op(encoded)), index,
                         "is a truncated JPEG image (no end marker in its last "
                         f"{image_header.JPEG_TAIL} bytes)")
    with tf.control_dependencies([ended]):
        height, width = tf.unstack(image_header.shape_op(encoded, kind))
    with tf.control_dependencies(size_checks(height, width, index, metadata)):
        return preprocessing.decode(encoded)


def size_checks(height, width, index, metadata):
    """Refuses too many pixels, a too small shorter side, and an aspect ratio that would make
    the image at scale Q larger than ``max_pixels`` (the export's ``metadata``)."""
    limit, min_side, q = metadata["max_pixels"], metadata["min_side"], metadata["test_scale"]
    pixels = height * width
    checks = [_require(pixels <= limit, index, "has {}x{} = {} pixels, more than the "
                       f"limit of {limit}", height, width, pixels)]
    with tf.control_dependencies(checks):
        checks.append(_require(tf.minimum(height, width) >= min_side, index, "is {}x{} "
                               f"pixels, too small: the shorter side must be at least "
                               f"{min_side}", height, width))
    shorter = tf.maximum(tf.minimum(height, width), 1)
    rescaled = q * q * tf.maximum(height, width) // shorter
    with tf.control_dependencies(checks):
        checks.append(_require(rescaled <= limit, index, "is {}x{} pixels: at the test "
                               f"scale {q} it would have more than {limit} pixels",
                               height, width))
    return checks


def _require(condition, index, message, *values):
    """An op failing with InvalidArgument "image <index> of the request <message>" unless
    ``condition``; ``{}`` in ``message`` are filled with ``values``."""
    text = tf.strings.format("image {} of the request " + message, (index, *values))
    return tf.debugging.Assert(condition, [text])


def predict_files(signature, paths):
    """Yields ``(path, predictions or None, error or None)`` per image file (a local path or a
    URL) through an export's ``serving_default`` ``signature``, one request each, so that a bad
    image fails alone. ``predictions``: ``[{"class", "synset", "label", "score"}]``, best
    first."""
    for path in paths:
        try:
            data = storage.read_bytes(path)
        except OSError as error:
            yield path, None, f"cannot read: {error.strerror or error}"
            continue
        try:
            outputs = signature(images=tf.constant([data]))
        except tf.errors.InvalidArgumentError as error:
            yield path, None, errors.one_line(error)
            continue
        yield path, [{"class": int(c), "synset": s.decode(), "label": label.decode(),
                      "score": float(score)}
                     for c, s, label, score in zip(outputs["classes"][0].numpy(),
                                                   outputs["synsets"][0].numpy(),
                                                   outputs["labels"][0].numpy(),
                                                   outputs["scores"][0].numpy(), strict=True)], None
