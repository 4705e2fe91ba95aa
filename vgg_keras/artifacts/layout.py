"""What a model dir, a checkpoint and an export look like on disk: their file names, how each is
found from any path into it, and the files that describe them (summary, classes, metadata,
versions). The one module that knows these names; reading and writing them needs neither Keras
nor TensorFlow. How each is loaded as a model: ``loading``.

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
"""

import os

from pipelines.foundation import errors
from pipelines.foundation import lease
from pipelines.foundation import storage

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
LEASE_FILE = lease.FILE  # the running chief's, as the foundation's lease names it
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
# The tensor formats, each a file of a version folder that its runtime (``runtimes``) runs.
ONNX, LITERT, OPENVINO = "onnx", "litert", "openvino"
TENSOR_FORMATS = (ONNX, LITERT, OPENVINO)
TENSOR_FILES = ("model.onnx", "model.tflite", "model.xml")  # in TENSOR_FORMATS' order
EXTENSIONS = {".onnx": ONNX, ".tflite": LITERT, ".xml": OPENVINO}


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
    scale or RandomResizedCrop, crop, validation Q and classes); or ``{}``."""
    model_dir = model_dir_of(path)
    summary = storage.read_json(os.path.join(model_dir, SUMMARY_FILE), None,
                                written_by="vgg-train", fix="restore it from a copy; its model "
                                f"is still readable as a Keras file ({MODEL_FILE}) or checkpoint")
    if summary is not None:
        return summary
    settings = storage.read_json(os.path.join(model_dir, RUN_FILE), {},
                                 damaged={}).get("settings", {})
    recorded = {key: settings[key] for key in ("config", "scale", "crop_size",
                                               "random_resized_crop", "val_resize_size")
                if key in settings}
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


def format_of(path):
    """The tensor format of a file, by its extension, or None."""
    return EXTENSIONS.get(os.path.splitext(str(path))[1].lower())


def is_tensor_file(path):
    """Whether ``path`` names an ONNX, LiteRT or OpenVINO model file (by its extension)."""
    return format_of(os.fspath(path)) is not None


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


def train_scale_of(model_path):
    """The training scale (Smin, Smax) recorded beside a model (``summary.json``) or in an
    export's metadata, or None."""
    if export_of(model_path):
        scale = (read_metadata(model_path) or {}).get("train_scale")
    else:
        scale = read_summary(model_path).get("scale")
    return tuple(scale) if scale else None


def trained_with_resized_crops(model_path):
    """Whether the run behind a model (``summary.json``, or an export's metadata) trained on
    RandomResizedCrop (``--random_resized_crop``, the torchvision recipes), where its recorded
    training scale was unused."""
    if export_of(model_path):
        return bool((read_metadata(model_path) or {}).get("random_resized_crop"))
    return bool(read_summary(model_path).get("random_resized_crop"))


def recorded_test_scale(model_path):
    """The Q a run's validation used where it was set (``--val_resize_size``, a recipe's), or
    None (then §4.1's Q of its training scale)."""
    if export_of(model_path):
        return None
    return read_summary(model_path).get("val_resize_size")


def averaged_weights(model_dir):
    """Whether the run in ``model_dir`` keeps a moving average of its weights
    (``--model_ema``): its ``model.keras``, ``best_model.keras`` and checkpoints' nets are the
    average."""
    run = storage.read_json(os.path.join(model_dir, RUN_FILE), {}, damaged={})
    return bool(run.get("settings", {}).get("model_ema"))


def served_test_scale(path):
    """The Q an export serves at (its metadata), or None for what is not an export."""
    if export_of(path):
        return (read_metadata(path) or {}).get("test_scale")
    return None


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


def write_architecture(model_dir, model):
    """Writes the net's Keras configuration (``architecture.json``), so that its checkpoints
    can be read as models before the run has written ``model.keras``."""
    storage.write_atomic(os.path.join(model_dir, ARCHITECTURE_FILE), model.to_json())
