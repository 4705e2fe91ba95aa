"""ImageNet's label space as tensorflow-datasets ships it: the 1,000 synsets in label order, their
human-readable names and the validation label list (synset of ILSVRC2012_val_%08d, in file order).

The files are read straight from the installed tensorflow-datasets package, without importing it
(importing tfds imports TensorFlow): nothing here is typed by hand, and nothing is downloaded.
"""

import ast
import functools
import importlib.util
import pathlib

from pipelines import errors
from pipelines import storage

NUM_IMAGENET_CLASSES = 1000
NUM_VALIDATION_IMAGES = 50_000


@functools.lru_cache(maxsize=1)
def _tfds_root():
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tensorflow-datasets is not installed; it ships ImageNet's label files")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _read_lines(relative_path):
    path = _tfds_root() / relative_path
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def synsets():
    """Returns the 1,000 ILSVRC2012 synsets in label order (tfds label 0 first)."""
    result = _read_lines("datasets/imagenet2012/labels.txt")
    if len(result) != NUM_IMAGENET_CLASSES:
        raise RuntimeError(f"tensorflow-datasets' labels.txt has {len(result)} synsets, not 1000")
    return tuple(result)


@functools.lru_cache(maxsize=1)
def synset_names():
    """Returns the human-readable names of the 1,000 classes, in label order."""
    source = (_tfds_root() / "datasets/siscore/labels.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "IMAGENET_LABELS_LIST" for target in node.targets
        ):
            names = tuple(ast.literal_eval(node.value))
            if len(names) != NUM_IMAGENET_CLASSES:
                break
            return names
    raise RuntimeError("tensorflow-datasets does not ship the 1000 ImageNet class names where "
                       "expected (datasets/siscore/labels.py: IMAGENET_LABELS_LIST)")


@functools.lru_cache(maxsize=1)
def validation_synsets():
    """Returns the synset of each validation image, in file-number order (50,000 entries)."""
    result = _read_lines("datasets/imagenet2012/validation_labels.txt")
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
