"""What a run writes as it goes, beside its checkpoints: one CSV row and TensorBoard scalars per
epoch, the training curve as a PNG, the Keras files of the final and best nets, and at the end
its summary. The chief
writes the model dir; every other worker writes only what the collective ops need, to a scratch
folder removed at the end (file names: ``artifacts``)."""

import csv
import json
import os
import shutil

import tensorflow as tf
from absl import logging

from vgg_keras import artifacts
from vgg_keras import configs

SCALARS = ("loss", "val_top1", "val_top5", "learning_rate", "images_per_second")


class RunOutputs:
    """The outputs of one worker of a run."""

    def __init__(self, model_dir, root):
        self.model_dir, self.root = model_dir, root
        self.chief = os.path.abspath(root) == os.path.abspath(model_dir)
        os.makedirs(root, exist_ok=True)
        self.csv = os.path.join(model_dir, artifacts.TRAINING_LOG)
        self.writer = tf.summary.create_file_writer(os.path.join(root, artifacts.LOGS_DIR))

    def checkpoint_dir(self, name):
        return artifacts.checkpoint_dir(self.root, name)

    def init(self, init, resumed):
        """The run's ``Init``: recorded at its start, read back when it resumes."""
        path = os.path.join(self.model_dir, artifacts.INIT_FILE)
        if resumed and os.path.exists(path):
            with open(path) as file:
                return type(init).from_json(json.load(file))
        if self.chief and not resumed:
            with open(path + ".tmp", "w") as file:
                json.dump(init.to_json(), file, indent=1)
            os.replace(path + ".tmp", path)
        return init

    def resume(self, step):
        """Keeps the CSV log's rows up to ``step``, the step the run resumes from: rows of
        epochs a killed run logged but did not checkpoint are redone."""
        if not self.chief or not os.path.exists(self.csv):
            return
        with open(self.csv, newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [row for row in rows if int(row["step"]) <= step]
        if len(kept) == len(rows):
            return
        temporary = self.csv + ".tmp"
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        os.replace(temporary, self.csv)

    def log_epoch(self, row):
        """Writes an epoch's row (``epoch``, ``step`` and ``SCALARS``) to TensorBoard, the CSV
        log and the curve."""
        with self.writer.as_default(step=row["step"]):
            for key in SCALARS:
                tf.summary.scalar(key, row[key])
        self.writer.flush()
        if not self.chief:
            return
        new = not os.path.exists(self.csv)
        with open(self.csv, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        write_training_curve(self.csv, os.path.join(self.model_dir, artifacts.CURVE_FILE))

    def flush(self):
        """Writes out what TensorBoard's writer holds (a run that stops)."""
        self.writer.flush()

    def save_keras(self, model, name):
        """Writes ``model`` as ``MODEL_DIR/name``, whole (a temporary name, then renamed)."""
        if self.chief:
            temporary = os.path.join(self.model_dir, f".tmp_{name}")
            model.save(temporary)
            os.replace(temporary, os.path.join(self.model_dir, name))

    def write_summary(self, summary):
        if self.chief:
            artifacts.write_summary(self.model_dir, summary)

    def finish(self):
        """A finished run needs no backup (as Keras' BackupAndRestore); a worker's scratch
        folder goes."""
        shutil.rmtree(self.checkpoint_dir("backup"), ignore_errors=True)
        if not self.chief:
            shutil.rmtree(self.root, ignore_errors=True)


def _classes(cfg, data):
    """The data and the class of each output, for the export (which names its predictions)."""
    label_offset = cfg.label_offset
    if label_offset is None:
        label_offset = data.info.label_offset
    try:
        classes = data.info.class_names(data.num_classes, label_offset)
    except ValueError as error:  # more outputs than the data has classes: allowed, unnamed
        logging.warning("classes not recorded in summary.json: %s", error)
        classes = None
    synsets, names = classes or (None, None)
    return {"data_dir": os.path.abspath(cfg.data_dir), "label_offset": label_offset,
            "class_synsets": synsets, "class_names": names}


def build_summary(cfg, data, replicas, result, init):
    """``summary.json``: the run's settings, its results and the classes of its outputs."""
    return {"config": configs.resolve_config(cfg.config)[0], "steps": data.total_steps,
            "epochs": data.total_steps / data.steps_per_epoch, "replicas": replicas,
            "num_classes": data.num_classes, "train_examples": data.num_train,
            "batch_size": cfg.batch_size, "dtype": cfg.dtype, "scale": list(cfg.scale),
            "crop_size": cfg.crop_size, "distribution_strategy": cfg.distribution_strategy,
            "data_service": cfg.data_service, "init": init.to_json(),
            "trainable_from": cfg.trainable_from,
            **result, "model": os.path.join(cfg.model_dir, artifacts.MODEL_FILE),
            "best_model": os.path.join(cfg.model_dir, artifacts.BEST_MODEL_FILE),
            **_classes(cfg, data)}


def write_training_curve(csv_path, png_path):
    """Draws ``training_log.csv`` (training loss and validation top-1 per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot

    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    epochs = [int(row["epoch"]) for row in rows]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
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
    figure.tight_layout()
    temporary = png_path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    pyplot.close(figure)
    os.replace(temporary, png_path)
