"""What an evaluation found: top-1/top-5 hits, per-class accuracy and the confusion matrix of each
protocol, counted as ``protocols.top_k_hits`` counts them (Keras' accuracy metrics); each
image's top 5; the table in the shape of the paper's Tables 3–7; and the files ``vgg-evaluate``
writes (``results.json``, ``results.csv``, ``per_class_accuracy.csv``, ``predictions.csv``,
``confusion_matrix.csv`` and ``confusion_matrix.png``), classes by name.
"""

import csv
import io
import json
import os

import numpy as np

from pipelines import input_config
from pipelines.foundation import storage
from vgg_keras import protocols

TOP = 5  # the classes of each image in predictions.csv


class Scores:
    """Running top-1/top-5 counts, per-class accuracy and confusion of one protocol."""

    def __init__(self, num_classes):
        self.top1 = self.top5 = self.count = 0
        self.top_k = min(TOP, num_classes)  # top-5 of fewer than 5 classes: every class
        # confusion[true, predicted]: the images of each class by their top-1 class.
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def add(self, probabilities, labels):
        """Counts a batch: ``probabilities [n, classes]`` of images whose classes are
        ``labels [n]``."""
        labels = np.asarray(labels, np.int64)
        hits1, hits5 = (np.asarray(hits).astype(bool) for hits in protocols.top_k_hits(
            labels, probabilities, self.top_k))
        self.count += len(labels)
        self.top1 += int(hits1.sum())
        self.top5 += int(hits5.sum())
        # The top-1 class as the metric took it: the true class where it hit (ties included).
        predicted = np.where(hits1, labels, np.argmax(probabilities, axis=1))
        np.add.at(self.confusion, (labels, predicted), 1)

    @property
    def class_total(self):
        return self.confusion.sum(axis=1)

    @property
    def class_correct(self):
        return np.diagonal(self.confusion)

    def to_vector(self):
        """The counts as one vector (to sum those of several workers)."""
        return np.concatenate([[self.top1, self.top5, self.count],
                               self.confusion.ravel()]).astype(np.float64)

    def from_vector(self, vector):
        counts = np.rint(vector).astype(np.int64)
        self.top1, self.top5, self.count = (int(c) for c in counts[:3])
        self.confusion = counts[3:].reshape(self.confusion.shape)

    def result(self):
        return {"top1_error": 1.0 - self.top1 / self.count,
                "top5_error": 1.0 - self.top5 / self.count, "num_images": self.count}


def prediction_rows(protocol, names, labels, probabilities, classes):
    """The rows of ``predictions.csv`` for a batch of images of one protocol: its file (or
    record) name, its true class and its top 5 with their probabilities."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP]
    rows = []
    for name, label, row, best in zip(names, labels, probabilities, order, strict=True):
        rows.append([name, protocol, classes[label]] + [
            value for index in best for value in (classes[index], f"{row[index]:.6f}")])
    return rows


def format_table(results):
    """The results in the shape of the paper's Tables 3–7."""
    settings = results["settings"]
    models = " + ".join(storage.basename(m) for m in settings["models"])
    scales = settings.get("train_scales", [settings["train_scale"]])
    crops = settings.get("train_crops", ["scale"] * len(scales))
    train = "+".join(dict.fromkeys(  # RRC: trained on RandomResizedCrop, at no scale S
        "RRC" if crop == "random_resized_crop" else input_config.scale_text(s) if s else "-"
        for s, crop in zip(scales, crops, strict=True)))
    test = ",".join(str(q) for q in settings["scales"])
    lines = [f"{'model':<24} {'train S':>10} {'test Q':>12} {'protocol':>16} "
             f"{'top-1 err (%)':>14} {'top-5 err (%)':>14} {'images':>7}", "-" * 104]
    for protocol in protocols.PROTOCOLS:
        if protocol in results:
            row = results[protocol]
            lines.append(f"{models[:24]:<24} {train:>10} {test:>12} {protocol:>16} "
                         f"{100 * row['top1_error']:>14.2f} {100 * row['top5_error']:>14.2f} "
                         f"{row['num_images']:>7}")
    return "\n".join(lines)


def _csv(rows):
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def write_predictions(output_dir, rows, part=None):
    """``predictions.csv`` (or, from one of several workers, its ``part``: each worker writes
    the images it evaluated)."""
    storage.makedirs(output_dir)
    header = ["image", "protocol", "true_class"] + [
        column for rank in range(1, TOP + 1) for column in (f"top{rank}", f"probability{rank}")]
    name = "predictions.csv" if part is None else f"predictions-{part}.csv"
    storage.write_atomic(os.path.join(output_dir, name), _csv([header, *rows]))


def write_results(output_dir, results, scores, classes):
    """``results.json``, ``results.csv``, ``per_class_accuracy.csv``, ``confusion_matrix.csv``
    (one row per cell that holds images) and ``confusion_matrix.png`` (the first protocol's) in
    ``output_dir``; ``classes``: the name of each class."""
    storage.makedirs(output_dir)
    table = [["protocol", "top1_error", "top5_error", "num_images"]]
    per_class = [["class", "protocol", "images", "top1_accuracy"]]
    confusion = [["protocol", "true_class", "predicted_class", "images"]]
    for protocol, score in scores.items():
        row = score.result()
        table.append([protocol, row["top1_error"], row["top5_error"], row["num_images"]])
        for label in np.flatnonzero(score.class_total):
            per_class.append([classes[label], protocol, score.class_total[label],
                              score.class_correct[label] / score.class_total[label]])
        for true, predicted in zip(*np.nonzero(score.confusion), strict=True):
            confusion.append([protocol, classes[true], classes[predicted],
                              score.confusion[true, predicted]])
    # The tables first, results.json last: it marks a finished evaluation.
    storage.write_atomic(os.path.join(output_dir, "results.csv"), _csv(table))
    storage.write_atomic(os.path.join(output_dir, "per_class_accuracy.csv"), _csv(per_class))
    storage.write_atomic(os.path.join(output_dir, "confusion_matrix.csv"), _csv(confusion))
    first = next(iter(scores))
    storage.write_atomic(os.path.join(output_dir, "confusion_matrix.png"),
                         confusion_png(scores[first].confusion, classes, first))
    storage.write_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=1))


def confusion_png(confusion, classes, protocol):
    """The confusion matrix (``confusion_figure``) as PNG bytes."""
    data = io.BytesIO()
    confusion_figure(confusion, classes, protocol).savefig(data, format="png")
    return data.getvalue()


def confusion_figure(confusion, classes, protocol):
    """The confusion matrix drawn (rows: true classes, columns: predicted; each row's shares in
    colour, with the colour bar that reads them), classes named and each cell's count written
    where there are few enough to read (matplotlib's figure alone: no pyplot)."""
    from matplotlib.figure import Figure

    size = len(classes)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(min(5 + 0.4 * size, 13), min(4 + 0.4 * size, 12)), dpi=100)
    axes = figure.subplots()
    shown = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(shown, ax=axes, label="share of the true class's images")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"confusion ({protocol}): images, and each row's share")
    if size <= 40:
        axes.set_xticks(range(size), [str(c)[:18] for c in classes], rotation=90, fontsize=7)
        axes.set_yticks(range(size), [str(c)[:18] for c in classes], fontsize=7)
    if size <= 25:  # the counts, where a cell has room for them
        for (true, predicted), count in np.ndenumerate(confusion):
            if count:
                axes.text(predicted, true, f"{int(count)}", ha="center", va="center",
                          fontsize=7, color="white" if shares[true, predicted] > 0.5 else "black")
    figure.tight_layout()
    return figure
