"""ImageNet's label space as tensorflow-datasets ships it: the 1,000 synsets in label order, their
human-readable names and the validation label list (synset of ILSVRC2012_val_%08d, in file order).

Read through tensorflow-datasets itself (its ``imagenet2012`` files, found by ``tfds_path``, and
the names list it carries): nothing here is typed by hand, and nothing is downloaded. Importing
``tensorflow_datasets`` does not import TensorFlow.
"""

import functools

from pipelines.foundation import errors
from pipelines.foundation import storage

NUM_IMAGENET_CLASSES = 1000
NUM_VALIDATION_IMAGES = 50_000
_LABELS = "datasets/imagenet2012/labels.txt"
_VALIDATION_LABELS = "datasets/imagenet2012/validation_labels.txt"


def _read_lines(relative_path):
    import tensorflow_datasets as tfds

    text = tfds.core.tfds_path(relative_path).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def synsets():
    """Returns the 1,000 ILSVRC2012 synsets in label order (tfds label 0 first)."""
    result = _read_lines(_LABELS)
    if len(result) != NUM_IMAGENET_CLASSES:
        raise RuntimeError(f"tensorflow-datasets' labels.txt has {len(result)} synsets, not 1000")
    return tuple(result)


@functools.lru_cache(maxsize=1)
def synset_names():
    """Returns the human-readable names of the 1,000 classes, in label order (tensorflow-datasets
    carries them as ``IMAGENET_LABELS_LIST``, the list its SI-Score dataset labels with)."""
    from tensorflow_datasets.datasets.siscore import labels

    names = tuple(labels.IMAGENET_LABELS_LIST)
    if len(names) != NUM_IMAGENET_CLASSES:
        raise RuntimeError(f"tensorflow-datasets names {len(names)} ImageNet classes, not 1000")
    return names


@functools.lru_cache(maxsize=1)
def validation_synsets():
    """Returns the synset of each validation image, in file-number order (50,000 entries)."""
    result = _read_lines(_VALIDATION_LABELS)
    if len(result) != NUM_VALIDATION_IMAGES:
        raise RuntimeError(f"tensorflow-datasets' validation_labels.txt has {len(result)} lines, "
                           f"not {NUM_VALIDATION_IMAGES}")
    return tuple(result)


def read_label_file(path):
    """Reads a user's validation label file: one synset per line, in file-number order."""
    lines = [line.strip() for line in storage.read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise errors.UserError(f"validation label file {path} is empty")
    return tuple(lines)
