"""SavedModel export for TF Serving: encoded images in, top-k classes out (§3.2 at test time).

The export carries the whole test-time path, so that clients send image bytes: decoding, the
isotropic rescaling of the shorter side to the test scale Q, then either the centre crop
(``eval_mode="center"``, the single-scale protocol) or the fully convolutional net over the
whole image and its mirror, class scores averaged (``eval_mode="dense"``, §3.2), and the net
itself with its mean subtraction. The preprocessing ops are ``pipelines.preprocessing``'s, the
ones ``vgg-evaluate`` runs, so a served prediction equals an evaluated one.

Layout, as ``tensorflow_model_server --model_base_path=EXPORT_DIR/<model_name>`` expects::

    EXPORT_DIR/<model_name>/<version>/saved_model.pb, variables/,
        assets.extra/tf_serving_warmup_requests, assets.extra/vgg_metadata.json

Versions are integers; an export is written beside them under a hidden name and renamed into
the next free version at the end, so a server watching the folder never sees half an export and
no existing version is ever overwritten.

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

A SavedModel is a program (TensorFlow's security model): load only exports you trust.
"""

import datetime
import errno
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from pipelines import inputs
from pipelines import preprocessing
from pipelines import schema
from vgg_keras import builder
from vgg_keras import evaluation
from vgg_keras import training

EVAL_MODES = ("center", "dense")
SIGNATURES = ("serving_default", "predict_images", "tf_example")
DEFAULT_MAX_PIXELS = 40_000_000  # above the largest ImageNet image (~ 33 MP); ~120 MB decoded
DEFAULT_MIN_SIDE = 32
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warm-up file with more records
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
METADATA_FILE = os.path.join("assets.extra", "vgg_metadata.json")
SLIM_RESIZE_RATIO = 256 / 224  # slim's and keras' habit (resize to 256, crop 224) without S

# Leading bytes of the formats decode_image reads; GIF has two versions.
_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n", "gif87": b"GIF87a",
          "gif89": b"GIF89a", "bmp": b"BM"}
_HEADER_BYTES = 32  # enough for the size fields of every format above


def export_saved_model(model_path, export_dir, *, model_name="vgg", eval_mode="center",
                       test_scale=None, top_k=5, max_pixels=DEFAULT_MAX_PIXELS,
                       min_side=DEFAULT_MIN_SIDE, full_probabilities=False, data_dir=None):
    """Exports a trained net as ``export_dir/model_name/<next version>``.

    Args:
        model_path: a ``vgg-train`` model dir, a Keras file, or a checkpoint of a model dir.
        export_dir: the base folder of the exports.
        model_name: the sub-folder, and the model name in the warm-up requests.
        eval_mode: ``"center"`` or ``"dense"`` (see the module docstring).
        test_scale: Q; default: from the training scale in ``summary.json`` (§4.1: S, or
            (Smin + Smax) / 2 for jitter), or 256/224 of the crop without one.
        top_k: classes returned per image.
        max_pixels: images whose header declares more pixels are refused before decoding.
        min_side: images whose shorter side is smaller are refused.
        full_probabilities: also return every class's probability.
        data_dir: shards whose metadata names the classes (default: the classes recorded in
            ``summary.json`` by ``vgg-train``, or ImageNet's for 1,000 outputs).

    Returns:
        The path of the new version.

    Raises:
        ValueError: for inconsistent settings, or classes that cannot be named.
        FileNotFoundError: if there is no model at ``model_path``.
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
    if top_k < 1 or max_pixels < 1 or min_side < 1:
        raise ValueError("top_k, max_pixels and min_side must be positive")
    if os.path.isdir(model_path) and os.path.exists(os.path.join(model_path, "saved_model.pb")):
        raise ValueError(f"{model_path} is a SavedModel already; export a Keras file, a "
                         "vgg-train model dir or a checkpoint")
    model = evaluation.load_model(model_path)
    summary = _read_summary(model_path)
    crop_size = int(model.input.shape[1])
    num_classes = int(model.output.shape[-1])
    test_scale = test_scale or _default_test_scale(summary, crop_size)
    if test_scale < crop_size:
        raise ValueError(f"test scale Q={test_scale} is smaller than the crop {crop_size}")
    if test_scale * test_scale > max_pixels:
        raise ValueError(f"max_pixels={max_pixels} is below Q²={test_scale ** 2}")
    synsets, labels = _class_names(summary, data_dir, num_classes, model_path)
    metadata = {
        "format": "vgg_keras.export/1",
        "config": summary.get("config", model.name),
        "source_model": os.path.abspath(model_path),
        "train_scale": summary.get("scale"),
        "eval_mode": eval_mode,
        "test_scale": int(test_scale),
        "crop_size": crop_size,
        "top_k": min(int(top_k), num_classes),
        "max_pixels": int(max_pixels),
        "min_side": int(min_side),
        "full_probabilities": bool(full_probabilities),
        "num_classes": num_classes,
        "signatures": list(SIGNATURES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "synsets": list(synsets),
        "labels": list(labels),
    }
    module = ServingModule(model, metadata)
    return _write_new_version(module, os.path.join(export_dir, model_name), model_name, metadata)


class ServingModule(tf.Module):
    """The exported object: the three signatures, ``classify_crops`` (the net on uint8 crops,
    for ``vgg-evaluate``) and ``metadata`` (the settings, as JSON)."""

    def __init__(self, model, metadata):
        super().__init__(name="vgg_serving")
        self._settings = metadata
        self._q = metadata["test_scale"]
        self._crop = metadata["crop_size"]
        self._k = metadata["top_k"]
        self._num_classes = metadata["num_classes"]
        softmax = model.layers[-1].name == "logits"
        net = builder.to_conv_head(model) if metadata["eval_mode"] == "dense" else model
        # The Keras objects stay untracked (a closure): only their variables are saved, as
        # keras' own ExportArchive does, so the SavedModel holds no Keras internals.
        self._net = lambda images: _probabilities(net(images, training=False), softmax)
        self._variables = [variable.value for variable in net.variables]
        self._synsets = tf.constant(metadata["synsets"])
        self._labels = tf.constant(metadata["labels"])
        text = json.dumps(metadata, indent=1, ensure_ascii=False)
        # A Python default argument: `saved_model_cli show --all` prints it, and
        # `tf.saved_model.load(path).metadata()` returns it.
        self.metadata = tf.function(lambda metadata=text: tf.constant(metadata))
        self.metadata.get_concrete_function()
        self.serving_default = tf.function(self._serve_encoded, input_signature=[
            tf.TensorSpec([None], tf.string, name="images")])
        self.predict_images = tf.function(self._serve_images, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        self.tf_example = tf.function(self._serve_examples, input_signature=[
            tf.TensorSpec([None], tf.string, name="examples")])
        self.classify_crops = tf.function(self._net, input_signature=[
            tf.TensorSpec([None, self._crop, self._crop, 3], tf.uint8, name="images")])

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
        """Per image: checks and preprocessing; then the net, on the whole batch of crops in
        the centre mode, image by image (sizes differ) in the dense mode."""
        count = tf.shape(images)[0]
        nonempty = tf.debugging.Assert(count > 0, ["the request holds no images"])
        with tf.control_dependencies([nonempty]):
            indices = tf.range(count)
        if self._settings["eval_mode"] == "center":
            crops = tf.map_fn(
                lambda item: preprocessing.center_crop(self._rescaled(to_image(*item)),
                                                       self._crop),
                (images, indices),
                fn_output_signature=tf.TensorSpec([self._crop, self._crop, 3], tf.uint8))
            probabilities = self._net(crops)
        else:
            probabilities = tf.map_fn(
                lambda item: self._dense(self._rescaled(to_image(*item))), (images, indices),
                fn_output_signature=tf.TensorSpec([self._num_classes], tf.float32))
        return self._top_k(probabilities)

    def _dense(self, image):
        """§3.2: the conv net on the image and its mirror, spatially averaged scores averaged."""
        pair = tf.stack([image, tf.reverse(image, axis=[1])])
        return tf.reduce_mean(self._net(pair), axis=0)

    def _rescaled(self, image):
        return preprocessing.rescale_shorter_side(image, self._q)

    def _top_k(self, probabilities):
        scores, classes = tf.math.top_k(probabilities, self._k)
        outputs = {"classes": tf.cast(classes, tf.int64), "scores": scores,
                   "synsets": tf.gather(self._synsets, classes),
                   "labels": tf.gather(self._labels, classes)}
        if self._settings["full_probabilities"]:
            outputs["probabilities"] = probabilities
        return outputs

    def _encoded_image(self, encoded, index):
        """Decodes one request image after checking its bytes and the size its header
        declares."""
        data = tf.strings.join([encoded, tf.constant(b"\0" * _HEADER_BYTES)])  # safe to slice
        length = tf.strings.length(encoded)
        kind = _image_kind(data)
        empty = _require(length > 0, index, "is an empty string")
        with tf.control_dependencies([empty]):
            known = _require(kind >= 0, index, "is not a JPEG, PNG, GIF or BMP image")
        with tf.control_dependencies([known]):
            height, width = tf.unstack(_header_shape(encoded, data, kind, length, index))
        with tf.control_dependencies(self._size_checks(height, width, index)):
            return preprocessing.decode(encoded)

    def _checked_image(self, image, index):
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies(self._size_checks(shape[0], shape[1], index)):
            return tf.identity(image)

    def _size_checks(self, height, width, index):
        """Refuses too many pixels, a too small shorter side, and an aspect ratio that would
        make the image at scale Q larger than ``max_pixels``."""
        limit, min_side = self._settings["max_pixels"], self._settings["min_side"]
        pixels = height * width
        checks = [_require(pixels <= limit, index, "has {}x{} = {} pixels, more than the "
                           f"limit of {limit}", height, width, pixels)]
        with tf.control_dependencies(checks):
            checks.append(_require(tf.minimum(height, width) >= min_side, index, "is {}x{} "
                                   f"pixels, too small: the shorter side must be at least "
                                   f"{min_side}", height, width))
        shorter = tf.maximum(tf.minimum(height, width), 1)
        rescaled = self._q * self._q * tf.maximum(height, width) // shorter
        with tf.control_dependencies(checks):
            checks.append(_require(rescaled <= limit, index, "is {}x{} pixels: at the test "
                                   f"scale {self._q} it would have more than {limit} pixels",
                                   height, width))
        return checks


def _probabilities(outputs, softmax):
    outputs = tf.cast(outputs, tf.float32)
    return tf.nn.softmax(outputs) if softmax else outputs


def _require(condition, index, message, *values):
    """An op failing with InvalidArgument "image <index> of the request <message>" unless
    ``condition``; ``{}`` in ``message`` are filled with ``values``."""
    text = tf.strings.format("image {} of the request " + message, (index, *values))
    return tf.debugging.Assert(condition, [text])


def _image_kind(data):
    """0 JPEG, 1 PNG, 2 GIF, 3 BMP, -1 anything else, from the leading bytes."""
    kinds = [("jpeg", 0), ("png", 1), ("gif87", 2), ("gif89", 2), ("bmp", 3)]
    kind = tf.constant(-1)
    for name, code in reversed(kinds):
        magic = _MAGIC[name]
        kind = tf.where(tf.strings.substr(data, 0, len(magic)) == magic, code, kind)
    return kind


def _header_shape(encoded, data, kind, length, index):
    """``[height, width]`` (int64) as the header declares them, without decoding pixels."""
    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    def fields(needed, name, read):
        check = _require(length >= needed, index, f"is a truncated {name} image (its header "
                         f"needs {needed} bytes, it has {{}})", length)
        with tf.control_dependencies([check]):
            return tf.stack(read())

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20
        return fields(24, "PNG", lambda: [_uint(data, 20, 4, True), _uint(data, 16, 4, True)])

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8
        return fields(10, "GIF", lambda: [_uint(data, 8, 2), _uint(data, 6, 2)])

    def bmp():  # BITMAPINFOHEADER: int32 at 18 and 22 (height < 0: top-down rows)
        def read():
            core = tf.equal(_uint(data, 14, 4), 12)  # OS/2 BITMAPCOREHEADER: uint16 fields
            height = tf.where(core, _uint(data, 20, 2), _int32(_uint(data, 22, 4)))
            width = tf.where(core, _uint(data, 18, 2), _int32(_uint(data, 18, 4)))
            return [tf.abs(height), width]
        return fields(26, "BMP", read)

    return tf.switch_case(tf.maximum(kind, 0), [jpeg, png, gif, bmp])


def _uint(data, offset, size, big_endian=False):
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int64)
    if big_endian:
        raw = tf.reverse(raw, axis=[0])
    return tf.reduce_sum(raw * tf.constant([256**i for i in range(size)], tf.int64))


def _int32(value):
    return tf.where(value >= 2**31, value - 2**32, value)


def _read_summary(model_path):
    path = os.path.join(evaluation.model_dir_of(model_path), "summary.json")
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def _default_test_scale(summary, crop_size):
    if summary.get("scale"):
        return training.default_test_scale(summary["scale"])  # the Q of vgg-train's validation
    return int(round(crop_size * SLIM_RESIZE_RATIO))


def _class_names(summary, data_dir, num_classes, model_path):
    """Synsets and human names of the outputs, from --data_dir, summary.json or ImageNet."""
    if data_dir:
        classes = inputs.class_names(data_dir, num_classes, summary.get("label_offset"))
        if classes is None:
            raise ValueError(f"{data_dir} has no dataset_info.json naming its classes")
        return classes
    if summary.get("class_synsets"):
        if len(summary["class_synsets"]) != num_classes:
            raise ValueError(f"summary.json names {len(summary['class_synsets'])} classes; "
                             f"the model has {num_classes} outputs")
        return summary["class_synsets"], summary["class_names"]
    if summary.get("data_dir") and os.path.isdir(summary["data_dir"]):
        classes = inputs.class_names(summary["data_dir"], num_classes, summary["label_offset"])
        if classes:
            return classes
    if num_classes == 1000:
        from pipelines import imagenet_labels

        return imagenet_labels.synsets(), imagenet_labels.synset_names()
    raise ValueError(f"cannot name the {num_classes} classes of {model_path}: give --data_dir "
                     "(shards with dataset_info.json)")


def _write_new_version(module, base, model_name, metadata):
    """Saves into a hidden folder beside the versions, then renames it to the next one."""
    os.makedirs(base, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=base)
    try:
        tf.saved_model.save(module, staging, signatures=module.signatures())
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        with open(os.path.join(staging, METADATA_FILE), "w") as file:
            json.dump(metadata, file, indent=1, ensure_ascii=False)
        write_warmup_requests(os.path.join(staging, WARMUP_FILE), model_name, metadata)
        while True:
            version = next_version(base)
            try:
                os.rename(staging, os.path.join(base, str(version)))
                return os.path.join(base, str(version))
            except OSError as error:  # another export took this version meanwhile
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def versions(base):
    """The integer version folders of an export base, ascending."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base)
                  if name.isdigit() and os.path.isdir(os.path.join(base, name)))


def next_version(base):
    return max(versions(base), default=0) + 1


def find_export(path):
    """The SavedModel at ``path``, or the newest numbered version under it that holds one, or
    None."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    for version in reversed(versions(path)):
        candidate = os.path.join(path, str(version))
        if os.path.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    return None


def resolve_export(path):
    """A version folder, or the newest version of an export base (``EXPORT_DIR/<name>``).

    Raises:
        FileNotFoundError: if neither.
    """
    found = find_export(path)
    if found is None:
        raise FileNotFoundError(f"{path} is neither a SavedModel nor a folder of numbered "
                                "versions")
    return found


def read_metadata(export_path):
    """The export's settings and class names (``assets.extra/vgg_metadata.json``), or None."""
    path = os.path.join(resolve_export(export_path), METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def warmup_images():
    """Two small deterministic pictures (a gradient with a disc), 240×320 and 300×200."""
    images = []
    for height, width in ((240, 320), (300, 200)):
        y, x = np.mgrid[0:height, 0:width]
        disc = (y - height / 2) ** 2 + (x - width / 3) ** 2 < (min(height, width) / 4) ** 2
        image = np.stack([x * 255 // width, y * 255 // height, 255 * disc], axis=-1)
        images.append(image.astype(np.uint8))
    return images


def write_warmup_requests(path, model_name, metadata):
    """TF Serving's warm-up file: real PredictRequests (PredictionLog records) for each
    signature, so that a server's first client does not pay for graph initialisation."""
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    images = warmup_images()
    jpegs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]
    pngs = [tf.io.encode_png(image).numpy() for image in images]
    example = schema.make_example(jpeg=jpegs[0], filename="warmup.jpg", height=240, width=320,
                                  label=1, synset=metadata["synsets"][0], text="warm-up")
    requests = [("serving_default", "images", np.array(jpegs[:1], dtype=object)),
                ("serving_default", "images", np.array([jpegs[0], pngs[1]], dtype=object)),
                ("predict_images", "images", images[0][None]),
                ("predict_images", "images", np.stack([images[1], images[1][:, ::-1]])),
                ("tf_example", "examples", np.array([example], dtype=object))]
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"TF Serving reads at most {MAX_WARMUP_RECORDS} warm-up records")
    with tf.io.TFRecordWriter(path) as writer:
        for signature, key, value in requests:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                name=model_name, signature_name=signature))
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def request_error(error):
    """The readable part of a failed request's error: "image 2 of the request is ..." for the
    export's own checks, the decoder's complaint ("Invalid PNG. ...") otherwise."""
    message = getattr(error, "message", str(error))
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)] or [message]
    text = lines[0]
    if text.startswith("assertion failed: [") and text.endswith("]"):
        text = text[len("assertion failed: ["):-1]
    return text
