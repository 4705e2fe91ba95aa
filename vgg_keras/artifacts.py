"""What a model dir and an export look like on disk, and how they are read back: the one module
that knows their file names.

A model dir, as ``vgg-train`` writes it::

    MODEL_DIR/model.keras, best.keras        the final and the best net (Keras files)
             summary.json                    the run: settings, results, classes
             training_log.csv, training_curve.png, logs/ (TensorBoard)
             train_examples.json             the counted epoch size of shards without metadata
             init.json                       where the first weights came from, layer by layer
             run.json                        the settings and data that define the run
             lease.json                      the running chief's lease: one run at a time
             checkpoints/latest/, checkpoints/best/, backup/   tf.train checkpoints
             .worker_<i>/                    scratch of the non-chief workers of a multi-worker run

An export, as ``vgg-export`` writes it (TF Serving's layout)::

    EXPORT_DIR/<model_name>/<version>/saved_model.pb, variables/,
        assets.extra/tf_serving_warmup_requests, assets.extra/vgg_metadata.json

Reading summaries, metadata and version folders needs no TensorFlow; loading a model does, and
imports it then, so that tools which only look at the files (the demo) start fast.
"""

import os

from pipelines import errors
from pipelines import storage

MODEL_FILE = "model.keras"
BEST_MODEL_FILE = "best.keras"
SUMMARY_FILE = "summary.json"
TRAINING_LOG = "training_log.csv"
CURVE_FILE = "training_curve.png"
TRAIN_EXAMPLES_FILE = "train_examples.json"
INIT_FILE = "init.json"
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
    """The ``summary.json`` of the model dir of ``path`` (see ``model_dir_of``), or ``{}``."""
    return storage.read_json(os.path.join(model_dir_of(path), SUMMARY_FILE), {})


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


def find_export(path):
    """The SavedModel at ``path``, or the newest numbered version under it that holds one, or
    None."""
    path = os.fspath(path)
    if storage.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    for version in reversed(versions(path)):
        candidate = os.path.join(path, str(version))
        if storage.exists(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    return None


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
    """The export's settings and class names (``assets.extra/vgg_metadata.json``), or None."""
    return storage.read_json(os.path.join(resolve_export(export_path), METADATA_FILE))


def write_metadata(export_path, metadata):
    """Writes an export's ``assets.extra/vgg_metadata.json``."""
    storage.makedirs(os.path.join(export_path, ASSETS_EXTRA))
    storage.write_json(os.path.join(export_path, METADATA_FILE), metadata)


def train_scale_of(model_path):
    """The training scale (Smin, Smax) recorded beside a model (``summary.json``) or in an
    export's metadata, or None."""
    if storage.isdir(model_path) and find_export(model_path):
        scale = (read_metadata(model_path) or {}).get("train_scale")
    else:
        scale = read_summary(model_path).get("scale")
    return tuple(scale) if scale else None


def served_test_scale(path):
    """The Q an export serves at (its metadata), or None for what is not an export."""
    if storage.isdir(path) and find_export(path):
        return (read_metadata(path) or {}).get("test_scale")
    return None


def load_model(path):
    """Loads a Keras file, a ``vgg-train`` model dir (its ``model.keras``), a checkpoint of such
    a dir (``MODEL_DIR/checkpoints/best/ckpt-N``) into the dir's architecture, or a
    SavedModel: a ``vgg-export`` export (its version folder or base folder) or any SavedModel
    whose ``serving_default`` maps a batch of images to class probabilities.

    Raises:
        FileNotFoundError: if there is no model at ``path``.
        ValueError: for a SavedModel that returns more than class probabilities.
    """

    path = os.fspath(path)
    saved_model = find_export(path) if storage.isdir(path) else None
    if saved_model:
        return _wrap_saved_model(saved_model)
    if storage.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if path.endswith(".keras"):
        if not storage.isfile(path):
            raise FileNotFoundError(
                f"no Keras model at {path}: give a vgg-train model dir whose run has finished "
                "(or one of its checkpoints, MODEL_DIR/checkpoints/latest/ckpt-N), or a .keras "
                "file")
        return _load_keras_file(path)
    if is_checkpoint(path):
        import tensorflow as tf

        model = _load_keras_file(os.path.join(model_dir_of(path), MODEL_FILE))
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        return model
    raise FileNotFoundError(f"{path} is neither a .keras file, a vgg-train model dir, a "
                            "checkpoint of one nor an export: give one of these")


def _load_keras_file(path):
    """A ``.keras`` file loaded by Keras (read through a local copy when it lies at a URL)."""
    import keras

    with errors.user_input(), storage.local_copy(path) as local:  # Keras judges the file
        return keras.models.load_model(local, compile=False)


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


