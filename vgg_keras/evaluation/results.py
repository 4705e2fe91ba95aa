"""What an evaluation found: top-1/top-5 hits and per-class accuracy of each protocol, counted as
``protocols.top_k_hits`` counts them (Keras' accuracy metrics); the table in the shape of the
paper's Tables 3–7; and the files ``vgg-evaluate`` writes (``results.json``, ``results.csv``,
``per_class_accuracy.csv``).
"""

import json
import os

import numpy as np

from pipelines import input_config
from pipelines import storage
from vgg_keras import protocols


class Scores:
    """Running top-1/top-5 counts and per-class accuracy of one protocol."""

    def __init__(self, num_classes):
        self.top1 = self.top5 = self.count = 0
        self.top_k = min(5, num_classes)  # top-5 of fewer than 5 classes: every class
        self.class_total = np.zeros(num_classes, np.int64)
        self.class_correct = np.zeros(num_classes, np.int64)

    def add(self, probabilities, labels):
        """Counts a batch: ``probabilities [n, classes]`` of images whose classes are
        ``labels [n]``."""
        labels = np.asarray(labels, np.int64)
        hits1, hits5 = (np.asarray(hits).astype(bool) for hits in protocols.top_k_hits(
            labels, probabilities, self.top_k))
        self.count += len(labels)
        self.top1 += int(hits1.sum())
        self.top5 += int(hits5.sum())
        self.class_total += np.bincount(labels, minlength=self.class_total.size)
        self.class_correct += np.bincount(labels[hits1], minlength=self.class_total.size)

    def to_vector(self):
        """The counts as one vector (to sum those of several workers)."""
        return np.concatenate([[self.top1, self.top5, self.count], self.class_total,
                               self.class_correct]).astype(np.float64)

    def from_vector(self, vector):
        counts = np.rint(vector).astype(np.int64)
        self.top1, self.top5, self.count = (int(c) for c in counts[:3])
        classes = self.class_total.size
        self.class_total, self.class_correct = counts[3:3 + classes], counts[3 + classes:]

    def result(self):
        return {"top1_error": 1.0 - self.top1 / self.count,
                "top5_error": 1.0 - self.top5 / self.count, "num_images": self.count}


def format_table(results):
    """The results in the shape of the paper's Tables 3–7."""
    settings = results["settings"]
    models = " + ".join(storage.basename(m) for m in settings["models"])
    train = "+".join(input_config.scale_text(s) if s else "-" for s in dict.fromkeys(
        tuple(s) if s else None for s in settings.get("train_scales", [settings["train_scale"]])))
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


def write_results(output_dir, results, scores):
    """``results.json``, ``results.csv`` and ``per_class_accuracy.csv`` in ``output_dir``."""
    storage.makedirs(output_dir)
    table = ["protocol,top1_error,top5_error,num_images"]
    for protocol, score in scores.items():
        row = score.result()
        table.append(f"{protocol},{row['top1_error']},{row['top5_error']},{row['num_images']}")
    per_class = ["class,protocol,images,top1_accuracy"]
    for protocol, score in scores.items():
        for label in np.flatnonzero(score.class_total):
            accuracy = score.class_correct[label] / score.class_total[label]
            per_class.append(f"{label},{protocol},{score.class_total[label]},{accuracy}")
    # The tables first, results.json last: it marks a finished evaluation.
    storage.write_atomic(os.path.join(output_dir, "results.csv"), "\n".join(table) + "\n")
    storage.write_atomic(os.path.join(output_dir, "per_class_accuracy.csv"),
                         "\n".join(per_class) + "\n")
    storage.write_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=1))
