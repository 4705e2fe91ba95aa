r"""vgg-convert: ImageNet (the official archives, an extracted copy) or any folder of class
sub-folders → sharded TFRecords and ``dataset_info.json``.

    vgg-convert --raw_data_dir=/data/imagenet --output_dir=/data/imagenet-tfrecords
    vgg-convert --image_folder=/data/flowers --validation_fraction=0.1 \
        --output_dir=/data/flowers-tfrecords

Bad inputs are skipped and listed with their reason; ``--strict`` makes any of them an error
(exit status 1) once the conversion is written.
"""

import collections
import logging
import os
import sys

from absl import app
from absl import flags

from pipelines import images
from pipelines import storage

from . import program

_RAW_DATA_DIR = flags.DEFINE_string(
    "raw_data_dir", None, "Folder holding ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar, or "
    "train/ and val/ folders of an extracted copy.")
_IMAGE_FOLDER = flags.DEFINE_string(
    "image_folder", None, "Instead of --raw_data_dir: DIR/<class>/… or DIR/train/<class> and "
    "DIR/val/<class>.")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.0, "With a single --image_folder: fraction of each class held out "
    "for validation, chosen deterministically by file name.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the shards and manifest go.")
_TRAIN_SHARDS = flags.DEFINE_integer("train_shards", 1024, "Number of training shards.")
_VALIDATION_SHARDS = flags.DEFINE_integer("validation_shards", 128,
                                          "Number of validation shards.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", None,
                                    "Worker processes, each writing whole shards (default: all "
                                    "cores).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the shuffle of images across shards.")
_VAL_LABELS = flags.DEFINE_string(
    "val_labels", None, "Validation label file, one synset per line in file-number order "
    "(default: the list shipped in tensorflow-datasets).")
_BBOX_DIR = flags.DEFINE_string("bbox_dir", None,
                                "Folder of ILSVRC bounding-box XML files (optional).")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels", images.DEFAULT_MAX_PIXELS, "Images whose header declares more pixels are "
    "skipped as decompression bombs.")
_STRICT = flags.DEFINE_bool("strict", False, "Exit with status 1 if any input was skipped.")
_MAX_SHORTER_SIDE = flags.DEFINE_integer(
    "max_shorter_side", None, "If set, images with a larger shorter side are downscaled to it "
    "and re-encoded, so that training decodes fewer pixels.")
_EXIF_ORIENTATION = flags.DEFINE_enum(
    "exif_orientation", None, ["apply", "keep"], "apply: photos stored sideways with an EXIF "
    "orientation are turned upright (re-encoded, reported as repaired); keep: the pixels as "
    "stored. Default: apply for --image_folder, keep for --raw_data_dir (ImageNet's models saw "
    "its images as stored).")


def check_flags():
    """The flags' values checked, reading no file (the documentation's commands are tested
    with it)."""
    if bool(_RAW_DATA_DIR.value) == bool(_IMAGE_FOLDER.value):
        raise app.UsageError("give exactly one of --raw_data_dir and --image_folder")
    if not _OUTPUT_DIR.value:
        raise app.UsageError("--output_dir is required")
    if _TRAIN_SHARDS.value < 1 or _VALIDATION_SHARDS.value < 1:
        raise app.UsageError("--train_shards and --validation_shards must be >= 1")
    if _NUM_WORKERS.value is not None and _NUM_WORKERS.value < 1:
        raise app.UsageError("--num_workers must be >= 1")
    if _MAX_PIXELS.value < 1:
        raise app.UsageError("--max_pixels must be >= 1")
    if _MAX_SHORTER_SIDE.value is not None and _MAX_SHORTER_SIDE.value < 1:
        raise app.UsageError("--max_shorter_side must be >= 1")
    if not 0.0 <= _VALIDATION_FRACTION.value < 1.0:
        raise app.UsageError("--validation_fraction must be in [0, 1)")
    if _VALIDATION_FRACTION.value and not _IMAGE_FOLDER.value:
        raise app.UsageError("--validation_fraction applies to --image_folder only")


def _check_paths():
    for flag in (_RAW_DATA_DIR, _IMAGE_FOLDER, _OUTPUT_DIR, _VAL_LABELS, _BBOX_DIR):
        if flag.value:
            storage.check_filesystem(flag.value, f"--{flag.name}")
    if _VAL_LABELS.value and not storage.isfile(_VAL_LABELS.value):
        raise app.UsageError(f"--val_labels {_VAL_LABELS.value} is not a file")
    if _BBOX_DIR.value and not storage.isdir(_BBOX_DIR.value):
        raise app.UsageError(f"--bbox_dir {_BBOX_DIR.value} is not a folder")


def summarize(manifest):
    """Returns the human-readable summary of a conversion."""
    lines = []
    for split, info in manifest["splits"].items():
        asked = info.get("shards_requested", len(info["shards"]))
        fewer = (f" (not the {asked} asked: never an empty shard)"
                 if len(info["shards"]) < asked else "")
        lines.append(f"{split}: {info['num_examples']} images written to "
                     f"{len(info['shards'])} shards{fewer} ({info['num_inputs']} inputs, "
                     f"{info['num_skipped']} skipped, {info['num_repaired']} repaired, "
                     f"{info['num_resized']} downscaled)")
    reasons = collections.Counter(_reason_kind(s["reason"]) for s in manifest["skipped"])
    if manifest["skipped"]:
        lines.append(f"skipped {len(manifest['skipped'])} inputs:")
        for record in manifest["skipped"][:20]:
            lines.append(f"  [{record['split']}] {record['path']}: {record['reason']}")
        if len(manifest["skipped"]) > 20:
            lines.append(f"  ... and {len(manifest['skipped']) - 20} more; by reason: "
                         + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    repairs = collections.Counter(r["reason"] for r in manifest["repaired"])
    for reason, count in repairs.most_common():
        lines.append(f"repaired {count}: {reason}")
    for problem in manifest["bbox_problems"]:
        lines.append(f"bounding boxes: {problem['path']}: {problem['reason']}")
    ignored = manifest.get("ignored", [])
    if ignored:
        shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        lines.append(f"ignored {len(ignored)} hidden or system names (neither classes nor "
                     f"inputs; listed in the manifest): {shown}")
    orientation = manifest["settings"].get("exif_orientation")
    if orientation:
        lines.append(f"EXIF orientation: {orientation}"
                     + (" (photos turned upright)" if orientation == "apply" else
                        " (pixels as stored)"))
    return "\n".join(lines)


def _reason_kind(reason):
    return reason.split(":")[0]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    check_flags()
    _check_paths()
    logging.getLogger("vgg_keras.convert").setLevel(logging.INFO)
    from pipelines import bbox
    from pipelines import convert
    from pipelines import sources

    if _RAW_DATA_DIR.value:
        plan = sources.find_imagenet(_RAW_DATA_DIR.value, _VAL_LABELS.value)
    else:
        plan = sources.find_image_folder(_IMAGE_FOLDER.value, _VALIDATION_FRACTION.value)
    boxes, bbox_problems = bbox.read_boxes(_BBOX_DIR.value) if _BBOX_DIR.value else ({}, [])
    arguments = {name: flags.FLAGS[name].value for name in (
        "raw_data_dir", "image_folder", "validation_fraction", "output_dir", "train_shards",
        "validation_shards", "num_workers", "seed", "val_labels", "bbox_dir", "max_pixels",
        "strict", "max_shorter_side", "exif_orientation")}
    manifest = convert.convert(
        plan, _OUTPUT_DIR.value,
        num_shards={"train": _TRAIN_SHARDS.value, "validation": _VALIDATION_SHARDS.value},
        num_workers=_NUM_WORKERS.value, seed=_SEED.value, max_pixels=_MAX_PIXELS.value,
        max_shorter_side=_MAX_SHORTER_SIDE.value, boxes=boxes, bbox_problems=bbox_problems,
        arguments=arguments, exif_orientation=_EXIF_ORIENTATION.value)
    print(summarize(manifest))
    print(f"manifest: {os.path.join(_OUTPUT_DIR.value, 'dataset_info.json')}")
    if _STRICT.value and manifest["skipped"]:
        print(f"--strict: {len(manifest['skipped'])} inputs were skipped", file=sys.stderr)
        return 1
    return 0


def run():
    program.run(main, "vgg-convert")


if __name__ == "__main__":
    run()
