"""Any model as a Keras model, whatever wrote it: a ``.keras`` file, a ``vgg-train`` model dir (a
finished run, or one still training: its newest checkpoint), any checkpoint by path (into the
run's recorded architecture), an export (its SavedModel, or a tensor format run by its runtime:
``runtimes``), or a net with published weights (``load_published``: the one route training,
evaluation and export take to them). Where each lies on disk is ``layout``'s.

Importing this module registers our layers with Keras (``vgg_keras.nets.layers``), so that every
model it reads finds them, in any Python session.
"""

import dataclasses
import os

from pipelines.foundation import errors
from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import runtimes
from vgg_keras.nets import layers  # noqa: F401 - registers our layers with Keras, for loading
from vgg_keras.nets import pretrained
from vgg_keras.nets import published


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a loaded model came from: the ``path`` given, its ``kind`` ("keras", "checkpoint",
    "export", or "published": weights its publisher's), the ``file`` read (a Keras file, a
    checkpoint prefix, a SavedModel folder, published weights' description) and a checkpoint's
    ``step``."""

    path: str
    kind: str
    file: str
    step: int | None = None
    averaged: bool = False  # a checkpoint's moving average of the weights (--model_ema)

    def describe(self):
        if self.kind == "checkpoint":
            averaged = ", its EMA weights" if self.averaged else ""
            return f"{self.file} (the checkpoint of step {self.step:,}{averaged})"
        return f"{self.file} (EMA weights)" if self.averaged else self.file


def load_model(path):
    """Loads a Keras file, a ``vgg-train`` model dir (its ``model.keras``; for a run that has
    not finished, its newest checkpoint that restores), a checkpoint of such a dir (``backup/
    ckpt-N``, ``checkpoints/latest/ckpt-N``, ``checkpoints/best/ckpt-N``) into the run's
    architecture, or a SavedModel: a ``vgg-export`` export (its version folder or base
    folder) or any SavedModel whose ``serving_default`` maps a batch of images to class
    probabilities. ``load_model_and_source`` says which file (and step) it read.

    Raises:
        FileNotFoundError: if there is no model at ``path``.
        UserError: for a damaged file, or a SavedModel that returns more than probabilities.
    """
    return load_model_and_source(path)[0]


def load_model_and_source(path):
    """``(model, ModelSource)`` of ``path``, as ``load_model`` reads it."""
    path = os.fspath(path)
    if not layout.exists(path):
        raise FileNotFoundError(f"{path} does not exist: give a vgg-train model dir, one of its "
                                "checkpoints, a .keras file or an export of vgg-export")
    if layout.is_tensor_file(path):
        return _wrap_tensor_file(path), ModelSource(path, "export", path)
    version = layout.find_export(path) if storage.isdir(path) else None
    if version:
        file = layout.model_file_of_export(version)
        if layout.is_tensor_file(file):
            return _wrap_tensor_file(file), ModelSource(path, "export", file)
        return _wrap_saved_model(file), ModelSource(path, "export", file)
    if storage.isdir(path) and not storage.isfile(os.path.join(path, layout.MODEL_FILE)):
        return _newest_checkpoint_model(path)
    file = os.path.join(path, layout.MODEL_FILE) if storage.isdir(path) else path
    if file.endswith(".keras"):
        if not storage.isfile(file):
            raise FileNotFoundError(f"no Keras model at {file}: give a vgg-train model dir, one "
                                    "of its checkpoints (MODEL_DIR/checkpoints/latest/ckpt-N), "
                                    "a .keras file or an export")
        averaged = layout.averaged_weights(layout.model_dir_of(file))  # a run's, with EMA
        return _load_keras_file(file), ModelSource(path, "keras", file, averaged=averaged)
    if layout.is_checkpoint(path):
        model, averaged = _restore(path)
        return model, ModelSource(path, "checkpoint", path, layout.checkpoint_step(path),
                                  averaged)
    raise FileNotFoundError(f"{path} is neither a .keras file, a vgg-train model dir, a "
                            "checkpoint of one nor an export: give one of these")


def _newest_checkpoint_model(model_dir):
    """The model of a run that has not finished: its newest checkpoint that restores."""
    failed = []
    for prefix in layout.checkpoints_of(model_dir):
        try:
            model, averaged = _restore(prefix)
        except errors.UserError as error:
            failed.append(str(error))
            continue
        return model, ModelSource(model_dir, "checkpoint", prefix, layout.checkpoint_step(prefix),
                                  averaged)
    if failed:
        raise errors.UserError(f"no checkpoint of {model_dir} restores: {'; '.join(failed)}")
    raise FileNotFoundError(f"no model in {model_dir}: neither {layout.MODEL_FILE} (a finished "
                            "run) nor a checkpoint (a run that has saved one): give a vgg-train "
                            "model dir, a .keras file or an export")


def _architecture(model_dir, prefix):
    """A fresh net of the run in ``model_dir``: from its ``architecture.json``, or from its
    ``model.keras`` (runs from before architecture.json was written)."""
    import keras

    path = os.path.join(model_dir, layout.ARCHITECTURE_FILE)
    if storage.exists(path):
        with errors.user_input():
            try:
                return keras.models.model_from_json(storage.read_text(path))
            except (KeyError, TypeError) as error:
                raise ValueError(f"{path} is damaged, written by vgg-train ({error}): restore "
                                 "it from a copy") from None
    if storage.isfile(os.path.join(model_dir, layout.MODEL_FILE)):
        return _load_keras_file(os.path.join(model_dir, layout.MODEL_FILE))
    raise errors.UserError(f"{prefix}: its model dir {model_dir} records no architecture (no "
                           f"{layout.ARCHITECTURE_FILE}, no {layout.MODEL_FILE}): it is a "
                           "checkpoint of a run from before vgg-train wrote architecture.json; "
                           "resume that run once to write it, or give its model.keras")


def _restore(prefix):
    """``(the net of the run a checkpoint belongs to, with the checkpoint's weights, whether
    they are the moving average)``: a run with ``--model_ema`` is represented by its average,
    as its validation and its ``model.keras`` are."""
    import tensorflow as tf

    model = _architecture(layout.model_dir_of(prefix), prefix)
    try:
        averaged = any(name.startswith("ema_model/")
                       for name, _ in tf.train.list_variables(prefix))
        tf.train.Checkpoint(**{"ema_model" if averaged else "model": model}).restore(prefix) \
            .expect_partial().assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (IndexError)
        reason = errors.one_line(error) if isinstance(error, tf.errors.OpError) else (
            f"{type(error).__name__}: {error}")
        raise errors.UserError(f"checkpoint {prefix} does not restore into its run's net "
                               f"({str(reason).splitlines()[0]}): it is damaged or of another "
                               "run") from None
    return model, averaged


def _load_keras_file(path):
    """A ``.keras`` file loaded by Keras (read through a local copy when it lies at a URL)."""
    import zipfile

    import keras

    with storage.local_copy(path) as local:
        try:
            return keras.models.load_model(local, compile=False)
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise errors.UserError(f"{path} is not a Keras file that loads ({reason}): it is "
                                   "damaged or cut short; write it again, or give the run's "
                                   "checkpoint instead") from None


def _wrap_tensor_file(path):
    """An ONNX, LiteRT or OpenVINO model run by its runtime, wrapped as a Keras model on uint8
    crops (single-crop and multi-crop work; dense needs the Keras model)."""
    return runtimes.as_keras_model(runtimes.Runtime(path))


def _wrap_saved_model(path):
    """A SavedModel wrapped as a Keras model (no layers of its own: single-crop and multi-crop
    work, dense evaluation needs the Keras model). ``vgg-export``'s exports are read through
    their ``classify_crops`` function (uint8 crops to probabilities); other SavedModels through
    a ``serving_default`` that returns class probabilities only."""
    import keras
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if hasattr(loaded, "classify_crops"):
        spec = loaded.classify_crops.concrete_functions[0].structured_input_signature[0][0]
        endpoint = "classify_crops"
    else:
        signature = loaded.signatures["serving_default"]
        spec = list(signature.structured_input_signature[1].values())[0]
        if len(signature.structured_outputs) != 1:
            raise errors.UserError(f"{path}: serving_default returns "
                                   f"{sorted(signature.structured_outputs)}; evaluation needs a "
                                   "signature returning class probabilities only")
        endpoint = "serving_default"
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
    probabilities = keras.layers.TFSMLayer(path, call_endpoint=endpoint)(inputs)
    if isinstance(probabilities, dict):
        probabilities = list(probabilities.values())[0]
    return keras.Model(inputs, probabilities, name=os.path.basename(os.path.normpath(path)))




def decode_predictions(probabilities, top=5, classes=None):
    """The ``top`` classes of each image, best first, as keras.applications' function of that
    name gives them: per image a list of ``(synset, name, probability)``.

    Args:
        probabilities: ``[images, classes]`` (a model's output).
        top: classes per image.
        classes: ``(synsets, names)``; a ``vgg-train`` model dir, Keras file, checkpoint or
            export whose classes are recorded (``layout.read_classes``); or None, ImageNet's
            1,000 (in the order of our shards, slim's and tfds's).

    Raises:
        UserError: if the classes are unknown or not as many as the outputs.
    """
    import numpy as np

    probabilities = np.asarray(probabilities)
    if classes is None:
        classes = imagenet_classes()
    elif isinstance(classes, (str, os.PathLike)):
        found = layout.read_classes(os.fspath(classes))
        if found is None:
            raise errors.UserError(f"{classes} records no classes (no summary.json, "
                                   f"{layout.CLASSES_FILE} or export metadata naming them)")
        classes = found
    synsets, names = classes
    if probabilities.ndim != 2 or probabilities.shape[1] != len(synsets):
        raise errors.UserError(f"probabilities of shape {probabilities.shape}: expected "
                               f"[images, {len(synsets)}] for these classes")
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [[(synsets[i], names[i], float(row[i])) for i in order]
            for row, order in zip(probabilities, best, strict=True)]


def load_published(weights, config, *, model=None, crop_size=None):
    """Published weights loaded, by the one route that training, evaluation and export take:
    ``weights`` (a ``published.Weights``, or its text) located (named alone: the published file
    from its library's cache, or downloaded into it; else the file given, a local path or a
    URL), then read into ``model`` where given (a run's own net: every layer that fits, the
    others left as they are and reported) or into ``config`` built as the weights need it
    (``published.Needs``: their normalisation, batch norm's ε, their crop or ``crop_size``;
    every layer must fit).

    Returns:
        ``(model, weights, report)``: the net, the weights located (what they are and where they
        came from), and ``{"loaded", "skipped", "problems"}`` of the layers.

    Raises:
        UserError: one line naming what is wrong (no such weights, offline without them, a file
            that does not fit or whose hash differs).
        TemporaryError: the download broke off; a rerun fetches it anew.
    """
    with errors.user_input(), errors.temporary(published.DownloadInterrupted):
        weights = pretrained.locate(weights, config)
    with storage.local_copy(weights.path) as local, errors.user_input():
        given = model is not None
        if not given:
            needs = weights.needs
            model = pretrained.build_for(config, dataclasses.replace(
                needs, crop_size=crop_size or needs.crop_size))
        report = pretrained.load_weights(model, dataclasses.replace(weights, path=local),
                                         skip_mismatch=given)
    return model, weights, report


def imagenet_classes():
    """``(synsets, names)`` of ImageNet's 1,000 classes, in the order of our shards, slim's and
    tfds's (the classes of every published net: ``published.Needs.classes``)."""
    from pipelines import imagenet_labels

    return imagenet_labels.synsets(), imagenet_labels.synset_names()
