"""What a model dir and an export look like on disk, and how they are read back: the one module
that knows their file names.

A model dir, as ``vgg-train`` writes it::

    MODEL_DIR/model.keras, best.keras        the final and the best net (Keras files)
             summary.json                    the run: settings, results, classes
             training_log.csv, training_curve.png, logs/ (TensorBoard)
             train_examples.json             the counted epoch size of shards without metadata
             init.json                       where the first weights came from, layer by layer
             architecture.json               the net's Keras configuration: checkpoints as models
             classes.json                    the data and the class of each output
             run.json                        the settings and data that define the run
             lease.json                      the running chief's lease: one run at a time
             checkpoints/latest/, checkpoints/best/, backup/   tf.train checkpoints
             .worker_<i>/                    scratch of the non-chief workers of a multi-worker run

An export, as ``vgg-export`` writes it (the layout TF Serving, Triton, OpenVINO Model Server
read; each format's files only if asked for)::

    EXPORT_DIR/<model_name>/<version>/vgg_metadata.json       every format, the classes, the
                                                                client's preprocessing
        saved_model.pb, variables/, assets.extra/             TF Serving (warm-up, metadata)
        model.onnx, model.tflite, model.xml + model.bin       ONNX Runtime, LiteRT, OpenVINO
    EXPORT_DIR/<model_name>/config.pbtxt, labels.txt          Triton's, with onnx

Reading summaries, metadata and version folders needs no TensorFlow; loading a model does, and
imports it then, so that tools which only look at the files (the demo) start fast.
"""

import dataclasses
import os

from pipelines import errors
from pipelines import storage
from vgg_keras.serving import runtimes

MODEL_FILE = "model.keras"
BEST_MODEL_FILE = "best.keras"
SUMMARY_FILE = "summary.json"
TRAINING_LOG = "training_log.csv"
CURVE_FILE = "training_curve.png"
TRAIN_EXAMPLES_FILE = "train_examples.json"
INIT_FILE = "init.json"
ARCHITECTURE_FILE = "architecture.json"
CLASSES_FILE = "classes.json"
RUN_FILE = "run.json"
LEASE_FILE = "lease.json"
LOGS_DIR = "logs"
BACKUP_DIR = "backup"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAMES = ("backup", "latest", "best")

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = os.path.join(ASSETS_EXTRA, "tf_serving_warmup_requests")
METADATA_FILE = os.path.join(ASSETS_EXTRA, "vgg_metadata.json")
EXPORT_METADATA_FILE = "vgg_metadata.json"  # at the version's root: written last, its marker
TRITON_CONFIG = "config.pbtxt"
# The tensor formats' files, in ``runtimes.TENSOR_FORMATS``' order (ONNX, LiteRT, OpenVINO).
TENSOR_FILES = ("model.onnx", "model.tflite", "model.xml")


def checkpoint_dir(model_dir, name):
    """The folder of the ``backup``, ``latest`` or ``best`` checkpoints of a model dir."""
    if name == "backup":
        return os.path.join(model_dir, BACKUP_DIR)
    return os.path.join(model_dir, CHECKPOINTS_DIR, name)


def worker_dir(model_dir, task_id):
    """The scratch folder of a non-chief worker (removed when its run ends)."""
    return os.path.join(model_dir, f".worker_{task_id}")


def checkpoint_step(path):
    """The step in a checkpoint's name (``ckpt-<step>``: ``vgg-train`` numbers them by step),
    read without opening it (it may be damaged), or None for another name."""
    number = os.fspath(path).rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else None


def is_checkpoint(path):
    """Whether ``path`` is a ``tf.train`` checkpoint prefix (``.../ckpt-N``)."""
    return storage.exists(os.fspath(path) + ".index")


def exists(path):
    """Whether there is anything a model can be read from at ``path``: a file or folder, or a
    checkpoint prefix."""
    return storage.exists(path) or is_checkpoint(path)


def model_dir_of(path):
    """The model dir of a model dir, of a Keras file in it, or of one of its checkpoints."""
    path = os.fspath(path)
    if storage.isdir(path):
        return path
    if is_checkpoint(path):
        folder = storage.dirname(storage.absolute(path))
        for candidate in _ancestors(folder, 2):
            if any(storage.same(folder, checkpoint_dir(candidate, name))
                   for name in CHECKPOINT_NAMES
                   if storage.isdir(checkpoint_dir(candidate, name))):
                return candidate
        return folder
    return storage.dirname(path)


def _ancestors(folder, count):
    for _ in range(count):
        folder = storage.dirname(folder)
        yield folder


def read_summary(path):
    """The ``summary.json`` of the model dir of ``path`` (see ``model_dir_of``); for a run that
    has not finished, what its ``run.json`` and ``classes.json`` say of it (its config, training
    scale, crop and classes); or ``{}``."""
    model_dir = model_dir_of(path)
    summary = storage.read_json(os.path.join(model_dir, SUMMARY_FILE), None,
                                written_by="vgg-train", fix="restore it from a copy; its model "
                                f"is still readable as a Keras file ({MODEL_FILE}) or checkpoint")
    if summary is not None:
        return summary
    settings = storage.read_json(os.path.join(model_dir, RUN_FILE), {},
                                 damaged={}).get("settings", {})
    recorded = {key: settings[key] for key in ("config", "scale", "crop_size") if key in settings}
    recorded.update(storage.read_json(os.path.join(model_dir, CLASSES_FILE), {}, damaged={}))
    return recorded


def write_summary(model_dir, summary):
    """Writes ``summary.json`` whole (a temporary file renamed over it)."""
    storage.write_json(os.path.join(model_dir, SUMMARY_FILE), summary)


def versions(base):
    """The integer version folders of an export base, ascending."""
    if not storage.isdir(base):
        return []
    return sorted(int(name) for name in storage.listdir(base)
                  if name.isdigit() and storage.isdir(os.path.join(base, name)))


def next_version(base):
    return max(versions(base), default=0) + 1


def is_export_version(folder):
    """Whether ``folder`` is a whole export: a SavedModel, or a version of ``vgg-export`` (its
    metadata, written last, is there)."""
    return (storage.exists(os.path.join(folder, SAVED_MODEL_FILE))
            or storage.exists(os.path.join(folder, EXPORT_METADATA_FILE)))


def find_export(path):
    """The export at ``path`` (``is_export_version``), or the newest numbered version under it
    that is one, or None."""
    path = os.fspath(path)
    if is_export_version(path):
        return path
    for version in reversed(versions(path)):
        candidate = os.path.join(path, str(version))
        if is_export_version(candidate):
            return candidate
    return None


def is_tensor_file(path):
    """Whether ``path`` names an ONNX, LiteRT or OpenVINO model file (by its extension)."""
    return runtimes.format_of(os.fspath(path)) is not None


def export_of(path):
    """The export version holding ``path`` (a version or base folder, or a tensor format's file
    in a version folder), or None."""
    path = os.fspath(path)
    if storage.isdir(path):
        return find_export(path)
    if is_tensor_file(path) and storage.exists(
            os.path.join(storage.dirname(path), EXPORT_METADATA_FILE)):
        return storage.dirname(path)
    return None


def model_file_of_export(version):
    """What runs an export version: its SavedModel folder, else its one tensor-format file.

    Raises:
        UserError: for a version of several tensor formats and no SavedModel (name the file).
    """
    if storage.exists(os.path.join(version, SAVED_MODEL_FILE)):
        return version
    found = [os.path.join(version, name) for name in TENSOR_FILES
             if storage.exists(os.path.join(version, name))]
    if len(found) != 1:
        what = "holds no model file" if not found else (
            f"holds {len(found)} formats ({', '.join(storage.basename(f) for f in found)})")
        raise errors.UserError(f"{version} {what}: give --model one of its files (for "
                               f"example {storage.join(version, 'model.onnx')})")
    return found[0]


def resolve_export(path):
    """A version folder, or the newest version of an export base (``EXPORT_DIR/<name>``).

    Raises:
        FileNotFoundError: if neither.
    """
    found = find_export(path)
    if found is None:
        what = "does not exist" if not storage.exists(path) else (
            "is neither a SavedModel nor a folder of numbered versions")
        raise FileNotFoundError(f"{path} {what}: give an export of vgg-export, "
                                "EXPORT_DIR/<model_name> or one of its version folders")
    return found


def read_metadata(export_path):
    """The export's settings, formats and class names (the version's ``vgg_metadata.json``, or,
    in exports of earlier versions, ``assets.extra/vgg_metadata.json``), or None.
    ``export_path``: a version or base folder, or a tensor format's file in a version."""
    version = export_of(export_path) or resolve_export(export_path)
    for name in (EXPORT_METADATA_FILE, METADATA_FILE):
        if storage.exists(os.path.join(version, name)):
            return storage.read_json(os.path.join(version, name), written_by="vgg-export",
                                     fix="export the model again")
    return None


def write_metadata(export_path, metadata, saved_model=False):
    """Writes an export's ``vgg_metadata.json`` (``saved_model``: the copy inside the
    SavedModel's ``assets.extra/``, which travels with it)."""
    if saved_model:
        storage.makedirs(os.path.join(export_path, ASSETS_EXTRA))
    name = METADATA_FILE if saved_model else EXPORT_METADATA_FILE
    storage.write_json(os.path.join(export_path, name), metadata)


def write_classes(model_dir, classes):
    """Writes a run's ``classes.json`` (``{"data_dir", "label_offset", "class_synsets",
    "class_names"}``) at its start: its checkpoints name their classes before it ends."""
    storage.write_json(os.path.join(model_dir, CLASSES_FILE), classes)


def read_classes(path):
    """``(synsets, names)`` of a model's outputs, as its export's metadata, its run's
    ``summary.json`` or ``classes.json`` record them, or None."""
    if export_of(path):
        metadata = read_metadata(path) or {}
        return (metadata["synsets"], metadata["labels"]) if metadata.get("synsets") else None
    recorded = read_summary(path)
    if not recorded.get("class_synsets"):
        recorded = storage.read_json(os.path.join(model_dir_of(path), CLASSES_FILE), {},
                                     damaged={})
    if recorded.get("class_synsets"):
        return recorded["class_synsets"], recorded["class_names"]
    return None


def decode_predictions(probabilities, top=5, classes=None):
    """The ``top`` classes of each image, best first, as keras.applications' function of that
    name gives them: per image a list of ``(synset, name, probability)``.

    Args:
        probabilities: ``[images, classes]`` (a model's output).
        top: classes per image.
        classes: ``(synsets, names)``; a ``vgg-train`` model dir, Keras file, checkpoint or
            export whose classes are recorded (``read_classes``); or None, ImageNet's 1,000 (in
            the order of our shards, slim's and tfds's).

    Raises:
        UserError: if the classes are unknown or not as many as the outputs.
    """
    import numpy as np

    from pipelines import imagenet_labels

    probabilities = np.asarray(probabilities)
    if classes is None:
        classes = imagenet_labels.synsets(), imagenet_labels.synset_names()
    elif isinstance(classes, (str, os.PathLike)):
        found = read_classes(os.fspath(classes))
        if found is None:
            raise errors.UserError(f"{classes} records no classes (no summary.json, "
                                   f"{CLASSES_FILE} or export metadata naming them)")
        classes = found
    synsets, names = classes
    if probabilities.ndim != 2 or probabilities.shape[1] != len(synsets):
        raise errors.UserError(f"probabilities of shape {probabilities.shape}: expected "
                               f"[images, {len(synsets)}] for these classes")
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [[(synsets[i], names[i], float(row[i])) for i in order]
            for row, order in zip(probabilities, best, strict=True)]


def train_scale_of(model_path):
    """The training scale (Smin, Smax) recorded beside a model (``summary.json``) or in an
    export's metadata, or None."""
    if export_of(model_path):
        scale = (read_metadata(model_path) or {}).get("train_scale")
    else:
        scale = read_summary(model_path).get("scale")
    return tuple(scale) if scale else None


def served_test_scale(path):
    """The Q an export serves at (its metadata), or None for what is not an export."""
    if export_of(path):
        return (read_metadata(path) or {}).get("test_scale")
    return None


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

    def describe(self):
        if self.kind == "checkpoint":
            return f"{self.file} (the checkpoint of step {self.step:,})"
        return self.file


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
    if not exists(path):
        raise FileNotFoundError(f"{path} does not exist: give a vgg-train model dir, one of its "
                                "checkpoints, a .keras file or an export of vgg-export")
    if is_tensor_file(path):
        return _wrap_tensor_file(path), ModelSource(path, "export", path)
    version = find_export(path) if storage.isdir(path) else None
    if version:
        file = model_file_of_export(version)
        if is_tensor_file(file):
            return _wrap_tensor_file(file), ModelSource(path, "export", file)
        return _wrap_saved_model(file), ModelSource(path, "export", file)
    if storage.isdir(path) and not storage.isfile(os.path.join(path, MODEL_FILE)):
        return _newest_checkpoint_model(path)
    file = os.path.join(path, MODEL_FILE) if storage.isdir(path) else path
    if file.endswith(".keras"):
        if not storage.isfile(file):
            raise FileNotFoundError(f"no Keras model at {file}: give a vgg-train model dir, one "
                                    "of its checkpoints (MODEL_DIR/checkpoints/latest/ckpt-N), "
                                    "a .keras file or an export")
        return _load_keras_file(file), ModelSource(path, "keras", file)
    if is_checkpoint(path):
        return _restore(path), ModelSource(path, "checkpoint", path, checkpoint_step(path))
    raise FileNotFoundError(f"{path} is neither a .keras file, a vgg-train model dir, a "
                            "checkpoint of one nor an export: give one of these")


def load_published(config, kind, path=None, crop_size=None):
    """``(model, published.Weights)``: net ``config`` built as published weights of ``kind``
    expect, at ``crop_size`` (default: the 224 they were trained at), with them loaded (every
    layer must fit): from ``path`` (a local path or a URL), or by name, from the cache or
    downloaded into it.

    Raises:
        UserError: one line naming what is wrong (no such weights, offline without them, a file
            that does not fit or whose hash differs).
        TemporaryError: the download broke off; a rerun fetches it anew.
    """
    from vgg_keras.nets import configs
    from vgg_keras.nets import pretrained
    from vgg_keras.nets import published

    crop_size = crop_size or configs.CROP_SIZE
    with errors.user_input(), errors.temporary(published.DownloadInterrupted):
        weights = pretrained.locate(config, kind, path)
    with storage.local_copy(weights.path) as local, errors.user_input():
        model = pretrained.build_pretrained(config, kind, dataclasses.replace(weights, path=local),
                                            input_shape=(crop_size, crop_size, 3))
    return model, weights


def checkpoints_of(model_dir):
    """The checkpoint prefixes of a model dir, the most advanced first (at one step: the
    backup, then the epoch's, then the best), read from their file names alone."""
    found = []
    for rank, name in enumerate(CHECKPOINT_NAMES):
        for index in storage.glob(os.path.join(checkpoint_dir(model_dir, name), "ckpt-*.index")):
            prefix = index[:-len(".index")]
            if checkpoint_step(prefix) is not None:
                found.append((checkpoint_step(prefix), -rank, prefix))
    return [prefix for _, _, prefix in sorted(found, reverse=True)]


def _newest_checkpoint_model(model_dir):
    """The model of a run that has not finished: its newest checkpoint that restores."""
    failed = []
    for prefix in checkpoints_of(model_dir):
        try:
            model = _restore(prefix)
        except errors.UserError as error:
            failed.append(str(error))
            continue
        return model, ModelSource(model_dir, "checkpoint", prefix, checkpoint_step(prefix))
    if failed:
        raise errors.UserError(f"no checkpoint of {model_dir} restores: {'; '.join(failed)}")
    raise FileNotFoundError(f"no model in {model_dir}: neither {MODEL_FILE} (a finished run) nor "
                            "a checkpoint (a run that has saved one): give a vgg-train model "
                            "dir, a .keras file or an export")


def write_architecture(model_dir, model):
    """Writes the net's Keras configuration (``architecture.json``), so that its checkpoints
    can be read as models before the run has written ``model.keras``."""
    storage.write_atomic(os.path.join(model_dir, ARCHITECTURE_FILE), model.to_json())


def _architecture(model_dir, prefix):
    """A fresh net of the run in ``model_dir``: from its ``architecture.json``, or from its
    ``model.keras`` (runs from before architecture.json was written)."""
    import keras

    path = os.path.join(model_dir, ARCHITECTURE_FILE)
    if storage.exists(path):
        with errors.user_input():
            try:
                return keras.models.model_from_json(storage.read_text(path))
            except (KeyError, TypeError) as error:
                raise ValueError(f"{path} is damaged, written by vgg-train ({error}): restore "
                                 "it from a copy") from None
    if storage.isfile(os.path.join(model_dir, MODEL_FILE)):
        return _load_keras_file(os.path.join(model_dir, MODEL_FILE))
    raise errors.UserError(f"{prefix}: its model dir {model_dir} records no architecture (no "
                           f"{ARCHITECTURE_FILE}, no {MODEL_FILE}): it is a checkpoint of a run "
                           "from before vgg-train wrote architecture.json; resume that run once "
                           "to write it, or give its model.keras")


def _restore(prefix):
    """The net of the run a checkpoint belongs to, with the checkpoint's weights."""
    import tensorflow as tf

    model = _architecture(model_dir_of(prefix), prefix)
    try:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (IndexError)
        reason = errors.one_line(error) if isinstance(error, tf.errors.OpError) else (
            f"{type(error).__name__}: {error}")
        raise errors.UserError(f"checkpoint {prefix} does not restore into its run's net "
                               f"({str(reason).splitlines()[0]}): it is damaged or of another "
                               "run") from None
    return model


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


