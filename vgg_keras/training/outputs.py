"""What a run writes as it goes, beside its checkpoints: one CSV row and TensorBoard scalars per
epoch, the training curve as a PNG, the Keras files of the final and best nets, and at the end
its summary. The chief
writes the model dir; every other worker writes only what the collective ops need, to a scratch
folder removed at the end (file names: ``artifacts``)."""

import csv
import io
import os
import sys
import tempfile

import tensorflow as tf

from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.nets import configs
from vgg_keras.training import run_identity

SCALARS = ("loss", "val_top1", "val_top5", "learning_rate", "images_per_second")


class RunOutputs:
    """The outputs of one worker of a run."""

    def __init__(self, model_dir, root):
        self.model_dir, self.root = model_dir, root
        self.chief = storage.absolute(root) == storage.absolute(model_dir)
        storage.makedirs(root)
        self.csv = os.path.join(model_dir, layout.TRAINING_LOG)
        self.writer = tf.summary.create_file_writer(os.path.join(root, layout.LOGS_DIR))

    def checkpoint_dir(self, name):
        return layout.checkpoint_dir(self.root, name)

    def run_path(self, path):
        """A path of this worker's, named as the run's: a worker's scratch checkpoint is the
        twin of the chief's in the model dir, which a rerun resumes from."""
        return os.path.join(self.model_dir, storage.relative(path, self.root))

    def init(self, init, resumed):
        """The run's ``Init``: recorded at its start, read back when it resumes."""
        path = os.path.join(self.model_dir, layout.INIT_FILE)
        recorded = (storage.read_json(path, written_by="vgg-train", fix=run_identity.RECOVER)
                    if resumed else None)
        if recorded is not None:
            return type(init).from_json(recorded)
        if self.chief and not resumed:
            storage.write_json(path, init.to_json())
        return init

    def resume(self, step):
        """Keeps the CSV log's rows up to ``step``, the step the run resumes from: rows of
        epochs a killed run logged but did not checkpoint are redone."""
        if not self.chief or not storage.exists(self.csv):
            return
        rows = read_log(self.csv)
        kept = [row for row in rows if int(row["step"]) <= step]
        if len(kept) == len(rows):
            return
        storage.write_atomic(self.csv, _csv_text(kept, list(rows[0]), header=True))

    def log_epoch(self, row):
        """Writes an epoch's row (``epoch``, ``step`` and ``SCALARS``) to TensorBoard, the CSV
        log and the curve."""
        with self.writer.as_default(step=row["step"]):
            for key in SCALARS:
                tf.summary.scalar(key, row[key])
        self.writer.flush()
        if not self.chief:
            return
        storage.append_text(self.csv, _csv_text([row], list(row),
                                              header=not storage.exists(self.csv)))
        write_training_curve(self.csv, os.path.join(self.model_dir, layout.CURVE_FILE))

    def flush(self):
        """Writes out what TensorBoard's writer holds (a run that stops)."""
        self.writer.flush()

    def save_keras(self, model, name):
        """Writes ``model`` as ``MODEL_DIR/name``, whole (a temporary name, then renamed)."""
        if not self.chief:
            return
        target = os.path.join(self.model_dir, name)
        if storage.is_url(target):  # Keras writes local files: written here, then uploaded
            with tempfile.TemporaryDirectory() as folder:
                model.save(os.path.join(folder, name))
                storage.write_atomic(target, storage.read_bytes(os.path.join(folder, name)))
            return
        temporary = os.path.join(self.model_dir, f".tmp_{name}")  # Keras wants .keras at the end
        model.save(temporary)
        storage.replace(temporary, target)

    def write_summary(self, summary):
        if self.chief:
            layout.write_summary(self.model_dir, summary)

    def finish(self):
        """A finished run needs no backup (as Keras' BackupAndRestore); a worker's scratch
        folder goes."""
        storage.rmtree(self.checkpoint_dir("backup"))
        if not self.chief:
            storage.rmtree(self.root)


def classes(cfg, data):
    """The data and the class of each output, for the export (which names its predictions)."""
    label_offset = cfg.label_offset
    if label_offset is None:
        label_offset = data.info.label_offset
    try:
        classes = data.info.class_names(data.num_classes, label_offset)
    except ValueError as error:  # more outputs than the data has classes: allowed, unnamed
        print(f"note: classes not recorded in summary.json: {error}", file=sys.stderr,
              flush=True)
        classes = None
    synsets, names = classes or (None, None)
    return {"data_dir": storage.absolute(cfg.data_dir), "label_offset": label_offset,
            "class_synsets": synsets, "class_names": names}


def build_summary(cfg, data, replicas, result, init, normalization="paper"):
    """``summary.json``: the run's settings, its results and the classes of its outputs."""
    return {"config": configs.resolve_config(cfg.config)[0], "steps": data.total_steps,
            "epochs": data.total_steps / data.steps_per_epoch, "replicas": replicas,
            "num_classes": data.num_classes, "train_examples": data.num_train,
            "batch_size": cfg.batch_size, "dtype": cfg.dtype, "scale": list(cfg.scale),
            "crop_size": cfg.crop_size, "distribution_strategy": cfg.distribution_strategy,
            "data_service": cfg.data_service, "init": init.to_json(),
            "trainable_from": cfg.trainable_from, "normalization": normalization,
            "recipe": cfg.recipe, "val_resize_size": cfg.val_resize_size,
            "random_resized_crop": (list(cfg.random_resized_crop) if cfg.random_resized_crop
                                    else None),
            "model_ema": cfg.model_ema,
            **result, "model": os.path.join(cfg.model_dir, layout.MODEL_FILE),
            "best_model": os.path.join(cfg.model_dir, layout.BEST_MODEL_FILE),
            **classes(cfg, data)}


def write_training_curve(csv_path, png_path):
    """Draws ``training_log.csv`` (training loss and validation top-1 per epoch) as a PNG, with
    matplotlib's figure alone (no pyplot: no display, no global state, a third faster at every
    epoch)."""
    from matplotlib.figure import Figure

    rows = read_log(csv_path)
    epochs = [int(row["epoch"]) for row in rows]
    figure = Figure(figsize=(10, 4), dpi=100)
    left, right = figure.subplots(1, 2)
    left.plot(epochs, [float(row["loss"]) for row in rows], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    right.plot(epochs, [100 * float(row["val_top1"]) for row in rows], marker="o",
               label="top-1")
    right.plot(epochs, [100 * float(row["val_top5"]) for row in rows], marker=".",
               label="top-5")
    right.set(title="validation accuracy (centre crop)", xlabel="epoch", ylabel="%",
              ylim=(0, 100))
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
    image = io.BytesIO()
    figure.savefig(image, format="png")
    storage.write_atomic(png_path, image.getvalue())


def read_log(csv_path):
    """The rows of ``training_log.csv``, as dicts of text."""
    return list(csv.DictReader(io.StringIO(storage.read_text(csv_path), newline="")))


def _csv_text(rows, fieldnames, header):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
