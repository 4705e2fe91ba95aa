"""Writes a small ImageNet-layout dataset of generated, learnable scenes with the problem files
real ImageNet has among them (``pipelines.synthetic``): for the demo, tests and trying the tools.

    python -m tools.generate_images --output_dir=/tmp/fake_imagenet --layout=archives
"""

import collections
import os

from absl import app
from absl import flags

from pipelines import synthetic

from . import program

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder to write the dataset into.")
_LAYOUT = flags.DEFINE_enum("layout", "archives", synthetic.LAYOUTS, "Layout of the dataset.")
_TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 20, "Good training images per class.")
_VAL_PER_CLASS = flags.DEFINE_integer("val_per_class", 5, "Good validation images per class.")
_PROBLEMS = flags.DEFINE_bool("problems", True, "Plant grayscale, CMYK, PNG, broken files.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_CLASSES = flags.DEFINE_list("classes", None, "Class names (default: ten real ImageNet "
                             "synsets; other names for --layout=image_folder).")
_SCENE_OFFSET = flags.DEFINE_integer("scene_offset", 0, "Draw class i as scene i + N: other "
                                     "classes than the default ones, with the same shapes.")
_VAL_LABEL_FILE = flags.DEFINE_string(
    "val_label_file", None, "Number the validation files 1..N and write their synsets to this "
    "file in --output_dir (default: numbers whose labels in tensorflow-datasets' list match).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _OUTPUT_DIR.value:
        raise app.UsageError("--output_dir is required")
    files = synthetic.write_dataset(
        _OUTPUT_DIR.value, layout=_LAYOUT.value,
        synsets=tuple(_CLASSES.value or synthetic.DEFAULT_SYNSETS),
        train_per_class=_TRAIN_PER_CLASS.value, val_per_class=_VAL_PER_CLASS.value,
        problems=_PROBLEMS.value, seed=_SEED.value, val_label_file=_VAL_LABEL_FILE.value,
        style=synthetic.ImageStyle(scene_offset=_SCENE_OFFSET.value))
    kinds = collections.Counter(record.kind for record in files)
    print(f"wrote {len(files)} files under {os.path.abspath(_OUTPUT_DIR.value)} ({_LAYOUT.value}): "
          + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())))


if __name__ == "__main__":
    program.run(main, "tools.generate_images", tensorflow=False)
