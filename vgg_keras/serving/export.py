"""``vgg-export``: a trained net as a SavedModel that TF Serving loads as it is, image bytes in,
top-k classes out (the graph is ``serving``'s), and as the tensor formats of ``formats`` (ONNX,
LiteRT, OpenVINO), written as a new version that no reader ever sees half-written.

Layout, as ``tensorflow_model_server --model_base_path=EXPORT_DIR/<model_name>``, Triton and
OpenVINO Model Server expect (the file names are ``artifacts``')::

    EXPORT_DIR/<model_name>/<version>/vgg_metadata.json
        saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests,
        assets.extra/vgg_metadata.json, model.onnx, model.tflite, model.xml, model.bin
    EXPORT_DIR/<model_name>/config.pbtxt, labels.txt      (Triton's, with onnx)

Versions are integers; an export is written beside them under a hidden name and renamed into
the next free version at the end, so a server watching the folder never sees half an export and
no existing version is ever overwritten. The warm-up file holds real requests for each
signature, which the server runs before its first client.

A SavedModel is a program (TensorFlow's security model): load only exports you trust.
"""

import dataclasses
import datetime
import os

import keras
import numpy as np
import tensorflow as tf

from pipelines import dataset_info
from pipelines import imagenet_labels
from pipelines import preprocessing
from pipelines import schema
from pipelines.foundation import errors
from pipelines.foundation import storage
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import published
from vgg_keras.serving import formats
from vgg_keras.serving import graph
from vgg_keras.serving import reference_client
from vgg_keras.serving import triton
from vgg_keras.serving import versions
from vgg_keras.serving.config import ServingSettings

MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warm-up file with more records


def export_saved_model(model_path, export_dir, settings=None, *, before_commit=None):
    """Exports a trained net as ``export_dir/<model_name>/<next version>``.

    Args:
        model_path: a ``vgg-train`` model dir, a Keras file, or a checkpoint of a model dir.
        export_dir: the base folder of the exports.
        settings: a ``ServingSettings``: the model's name (the sub-folder, and its name in the
            warm-up requests), the protocol served (``"single"``, the centre crop, or
            ``"dense"``), Q (default: from the training scale in ``summary.json``, §4.1: S, or
            (Smin + Smax) / 2 for jitter; or ``protocols.fallback_test_scale`` of the crop
            without one), the classes returned, the limits of a request's images, and the data
            whose metadata names the classes (default: those recorded in ``summary.json`` by
            ``vgg-train``, or ImageNet's for 1,000 outputs).

        before_commit: called once the version is whole, just before it takes its number
            (``versions.write_new_version``).

    Returns:
        The path of the new version.

    Raises:
        ValueError: for inconsistent settings, or classes that cannot be named.
        FileNotFoundError: if there is no model at ``model_path``.
    """
    settings = settings or ServingSettings()
    settings.check()
    if storage.isdir(model_path) and layout.find_export(model_path) == model_path:
        raise errors.UserError(f"{model_path} is a SavedModel already; export a Keras file, a "
                               "vgg-train model dir or a checkpoint")
    model, source = loading.load_model_and_source(model_path)
    return export_model(model, export_dir, settings, summary=layout.read_summary(model_path),
                        source=source, before_commit=before_commit)


def export_published(weights, config, export_dir, settings=None, *, crop_size=None,
                     before_commit=None):
    """Exports net ``config`` with published ``weights`` (a ``published.Weights``, or its text:
    ``"timm"``, ``"paper=PATH"``), no training run, as ``export_saved_model`` does: built and
    loaded as the weights need (``loading.load_published``; ``crop_size``: another crop than
    theirs), serving their classes (ImageNet's) at the test scale their publisher measured
    them at (unless ``settings`` give another). Returns the path of the new version."""
    model, weights, _ = loading.load_published(weights, config, crop_size=crop_size)
    settings = settings or ServingSettings()
    needs = weights.needs
    if not settings.test_scale:
        settings = dataclasses.replace(
            settings, test_scale=needs.test_scale_at(builder.crop_size_of(model)))
    synsets, names = loading.imagenet_classes()
    summary = {"config": configs.variant_name(config), "class_synsets": list(synsets),
               "class_names": list(names)}
    return export_model(model, export_dir, settings, summary=summary,
                        source=weights if weights.fetched else str(weights),
                        before_commit=before_commit)


def export_model(model, export_dir, settings=None, *, summary=None, source=None,
                 before_commit=None):
    """Exports an in-memory net (one with published weights, say, and no training run) as
    ``export_saved_model`` does, with ``summary`` what a run's ``summary.json`` would say of it
    (its classes, training scale; ``{}``: ImageNet's classes for 1,000 outputs, Q by
    ``protocols.fallback_test_scale``) and ``source`` where it came from (a description, an
    ``loading.ModelSource`` or published weights' ``published.Weights``: the metadata
    says)."""
    settings = settings or ServingSettings()
    base = os.path.join(export_dir, settings.model_name)
    versions.check_base(base, settings.format)  # before anything heavy
    metadata = serving_metadata(model, settings, summary=summary, source=source)
    tensor_formats = [name for name in settings.format if name in formats.TENSOR_FORMATS]
    formats.check_packages(tensor_formats)  # before anything is written
    calibration = None
    if settings.precision == "int8":
        calibration = formats.calibration_crops(settings.calibration_data,
                                                settings.calibration_images,
                                                metadata["test_scale"], metadata["crop_size"])
        metadata["calibration"] = {"data_dir": storage.absolute(settings.calibration_data),
                                   "split": "train", "images": len(calibration),
                                   "test_scale": metadata["test_scale"]}
    module = (graph.ServingModule(model, metadata) if formats.SAVED_MODEL in settings.format
              else None)
    writer = _Formats(model, tensor_formats, settings.precision, calibration)
    version = versions.write_new_version(
        base, lambda folder: writer.write(module, folder, settings.model_name, metadata),
        before_commit)
    if triton.backend_of(settings.format):
        triton.write_repository(base, metadata, settings, warmup_crops(metadata))
    return version


class _Formats:
    """What an export writes besides its metadata: the SavedModel (``module``, if any) and each
    of ``tensor_formats`` of ``model`` at ``precision``."""

    def __init__(self, model, tensor_formats, precision, calibration):
        self.model, self.tensor_formats = model, tensor_formats
        self.precision, self.calibration = precision, calibration

    def write(self, module, folder, model_name, metadata):
        if self.tensor_formats:  # the names their runtimes give the tensors: into the metadata
            metadata["formats"].update(formats.write_formats(
                self.model, folder, self.tensor_formats, self.precision, self.calibration))
        if module is not None:
            tf.saved_model.save(module, folder, signatures=module.signatures())
            storage.makedirs(os.path.join(folder, layout.ASSETS_EXTRA))
            write_warmup_requests(os.path.join(folder, layout.WARMUP_FILE), model_name,
                                  metadata)
            layout.write_metadata(folder, metadata, saved_model=True)
        layout.write_metadata(folder, metadata)  # the version's marker: written last


def serving_module(model, settings=None, *, summary=None, source=None):
    """``(graph.ServingModule, metadata)``: the serving graph of ``model`` as an export holds it
    (``export_model``'s arguments), in memory (``vgg-predict`` on a model that is no export)."""
    metadata = serving_metadata(model, settings, summary=summary, source=source)
    return graph.ServingModule(model, metadata), metadata


def serving_metadata(model, settings=None, *, summary=None, source=None):
    """An export's metadata (``vgg_metadata.json``): its settings, source, classes, the
    client's preprocessing and, per format asked for, its files, tensors and precision."""
    settings = settings or ServingSettings()
    settings.check()
    eval_mode = protocols.protocol_name(settings.eval_mode)
    summary = summary or {}
    if isinstance(source, loading.ModelSource):
        origin = {"source_model": storage.absolute(source.path), "source_file": source.file,
                  "source_step": source.step, "source_averaged": source.averaged}
    elif isinstance(source, published.Weights):  # published weights, by name
        origin = {"source_model": source.describe(), "source_weights": source.to_json()}
    else:
        origin = {"source_model": source or model.name}
    crop_size = builder.crop_size_of(model)
    num_classes = int(model.output.shape[-1])
    test_scale = settings.test_scale or _default_test_scale(summary, crop_size)
    if test_scale < crop_size:
        raise errors.UserError(f"test scale Q={test_scale} is smaller than the crop {crop_size}")
    if test_scale * test_scale > settings.max_pixels:
        raise errors.UserError(f"max_pixels={settings.max_pixels} is below Q²={test_scale ** 2}")
    synsets, labels = _class_names(summary, settings.data_dir, num_classes,
                                   origin["source_model"])
    metadata = {
        "format": "vgg_keras.export/1",
        "config": summary.get("config", model.name),
        **origin,
        "normalization": builder.normalization_of(model),
        "train_scale": summary.get("scale"),
        "random_resized_crop": summary.get("random_resized_crop"),
        "eval_mode": eval_mode,
        "test_scale": int(test_scale),
        "crop_size": crop_size,
        "top_k": min(int(settings.top_k), num_classes),
        "max_pixels": int(settings.max_pixels),
        "min_side": int(settings.min_side),
        "full_probabilities": bool(settings.full_probabilities),
        "num_classes": num_classes,
        "signatures": list(graph.SIGNATURES),
        "client_preprocessing": {"function": "vgg_keras.preprocess_image",
                                 **reference_client.describe(test_scale, crop_size)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "synsets": list(synsets),
        "labels": list(labels),
        "precision": settings.precision,
        "formats": formats.entries(settings.format, crop_size, num_classes, settings.precision),
    }
    return metadata


def serving_signature(path):
    """The ``serving_default`` of what ``path`` holds: an export's own (its SavedModel loaded;
    for a version of tensor formats only, or one of their files, the same inputs and outputs
    around the format's runtime: ``tensor_signature``), or, for a model that is no export (a
    ``vgg-train`` model dir, a checkpoint, a ``.keras`` file), the same serving graph built in
    memory as ``vgg-export`` would write it.

    Raises:
        UserError: for a SavedModel whose ``serving_default`` is not an export's, or a tensor
            format's file without its export's metadata.
    """
    version = layout.export_of(path)
    if version is None and layout.is_tensor_file(path):
        raise errors.UserError(f"{path} has no {layout.EXPORT_METADATA_FILE} beside it (its "
                               "test scale and classes): give the file in its vgg-export "
                               "version folder")
    if version is None:
        model, source = loading.load_model_and_source(path)
        module, _ = serving_module(model, summary=layout.read_summary(path), source=source)
        return module.serving_default
    file = path if layout.is_tensor_file(path) else layout.model_file_of_export(version)
    if layout.is_tensor_file(file):
        return tensor_signature(file, layout.read_metadata(version))
    signature = tf.saved_model.load(file).signatures["serving_default"]
    missing = {"classes", "synsets", "labels", "scores"} - set(signature.structured_outputs)
    if missing:
        raise errors.UserError(f"{file} is not a vgg-export export (its serving_default "
                               f"returns no {', '.join(sorted(missing))})")
    return signature


def tensor_signature(path, metadata):
    """A function as an export's ``serving_default`` (``images``: encoded images → ``classes``,
    ``synsets``, ``labels``, ``scores``) around a tensor format's runtime: each image checked
    and cut as the serving graph checks and cuts it (its size limits, Q and crop), as a client
    of that format does; the model's outputs checked against the classes ``metadata`` names.

    Raises:
        UserError: for a model whose outputs are not the metadata's classes' probabilities.
    """
    from vgg_keras.artifacts import runtimes

    runtime = runtimes.Runtime(path)
    q, crop, k = metadata["test_scale"], metadata["crop_size"], metadata["top_k"]
    synsets, labels = np.array(metadata["synsets"]), np.array(metadata["labels"])
    if runtime.num_classes != len(labels) or runtime.crop_size != crop:
        raise errors.UserError(
            f"{path} takes {runtime.crop_size}×{runtime.crop_size} crops and gives "
            f"{runtime.num_classes} outputs; its {layout.EXPORT_METADATA_FILE} says {crop} and "
            f"{len(labels)} classes: they are not of one export (export the model again)")

    def crop_of(index, data):
        image = graph.encoded_image(tf.constant(data), tf.constant(index, tf.int64), metadata)
        return np.asarray(preprocessing.center_crop(preprocessing.rescale_shorter_side(image, q),
                                                    crop))

    def signature(images):
        crops = np.stack([crop_of(i, data) for i, data in enumerate(images.numpy())])
        probabilities = runtime(crops)
        sums = probabilities.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-2):
            raise errors.UserError(
                f"{path} gives no class probabilities (a row sums to {sums[0]:.4g}): it is not a "
                f"model that vgg-export wrote beside its {layout.EXPORT_METADATA_FILE}")
        classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return {"classes": tf.constant(classes, tf.int64),
                "scores": tf.constant(np.take_along_axis(probabilities, classes, axis=1)),
                "synsets": tf.constant(synsets[classes]), "labels": tf.constant(labels[classes])}

    return signature


def _default_test_scale(summary, crop_size):
    if summary.get("val_resize_size"):  # the Q its validation used (a recipe's, FixRes)
        return summary["val_resize_size"]
    if summary.get("scale"):
        return protocols.default_test_scale(summary["scale"])  # the Q of vgg-train's validation
    return protocols.fallback_test_scale(crop_size)


def _class_names(summary, data_dir, num_classes, model_path):
    """Synsets and human names of the outputs, from --data_dir, summary.json or ImageNet."""
    if data_dir:
        classes = dataset_info.read_info(data_dir).class_names(num_classes,
                                                               summary.get("label_offset"))
        if classes is None:
            raise errors.UserError(f"{data_dir} has no dataset_info.json naming its classes")
        return classes
    if summary.get("class_synsets"):
        if len(summary["class_synsets"]) != num_classes:
            raise errors.UserError(f"summary.json names {len(summary['class_synsets'])} classes; "
                                   f"the model has {num_classes} outputs")
        return summary["class_synsets"], summary["class_names"]
    if summary.get("data_dir") and storage.isdir(summary["data_dir"]):
        classes = dataset_info.read_info(summary["data_dir"]).class_names(
            num_classes, summary["label_offset"])
        if classes:
            return classes
    if num_classes == imagenet_labels.NUM_IMAGENET_CLASSES:
        return imagenet_labels.synsets(), imagenet_labels.synset_names()
    raise errors.UserError(f"cannot name the {num_classes} classes of {model_path}: give "
                           "--data_dir (shards with dataset_info.json)")


def warmup_images():
    """Two small deterministic pictures (a gradient with a disc), 240×320 and 300×200."""
    images = []
    for height, width in ((240, 320), (300, 200)):
        y, x = np.mgrid[0:height, 0:width]
        disc = (y - height / 2) ** 2 + (x - width / 3) ** 2 < (min(height, width) / 4) ** 2
        image = np.stack([x * 255 // width, y * 255 // height, 255 * disc], axis=-1)
        images.append(image.astype(np.uint8))
    return images


def warmup_crops(metadata):
    """The warm-up images as a client of the tensor formats sends them: uint8 crops at the
    export's Q (``client.preprocess_image``), ``[n, crop, crop, 3]``."""
    from vgg_keras.serving import client

    return np.stack([client.preprocess_image(tf.io.encode_png(image).numpy(),
                                             metadata["test_scale"], metadata["crop_size"])
                     for image in warmup_images()])


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
    assert len(requests) <= MAX_WARMUP_RECORDS  # more, and TF Serving refuses the whole file
    with tf.io.TFRecordWriter(path) as writer:
        for signature, key, value in requests:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                name=model_name, signature_name=signature))
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)
