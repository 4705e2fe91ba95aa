"""The converter's job as ``vgg-convert`` runs it: its settings declared once (``ConvertConfig``),
the inputs found (the official archives, an extracted copy, or a folder of class sub-folders),
the shards and manifest written (``convert``), and the summary a person reads.
"""

import collections
import dataclasses

from pipelines import convert
from pipelines import images
from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvertConfig:
    """One conversion: where the inputs are, where the shards go, and how they are written."""

    raw_data_dir: str | None = setting(
        None, "Folder holding ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar, or train/ and "
              "val/ folders of an extracted copy.")
    image_folder: str | None = setting(
        None, "Instead of --raw_data_dir: DIR/<class>/… or DIR/train/<class> and "
              "DIR/val/<class>.")
    validation_fraction: float = setting(
        0.0, "With a single --image_folder: fraction of each class held out for validation, "
             "chosen deterministically by file name.",
        check=(lambda value: 0.0 <= value < 1.0, "in [0, 1)"))
    output_dir: str | None = setting(None, "Where the shards and manifest go (required).")
    train_shards: int | None = setting(
        None, "Number of training shards (default: ImageNet's 1024 for --raw_data_dir; for "
              "--image_folder, by size: about 100 MB each, at least one per worker).",
        check=at_least(1))
    validation_shards: int | None = setting(
        None, "Number of validation shards (default: ImageNet's 128 for --raw_data_dir; for "
              "--image_folder, by size, as --train_shards).", check=at_least(1))
    num_workers: int | None = setting(None, "Worker processes, each writing whole shards "
                                            "(default: all cores).", check=at_least(1))
    seed: int = setting(0, "Seed of the shuffle of images across shards.")
    val_labels: str | None = setting(
        None, "Validation label file, one synset per line in file-number order (default: the "
              "list shipped in tensorflow-datasets).")
    bbox_dir: str | None = setting(None, "Folder of ILSVRC bounding-box XML files (optional).")
    max_pixels: int = setting(images.DEFAULT_MAX_PIXELS, "Images whose header declares more "
                                                         "pixels are skipped as decompression "
                                                         "bombs.", check=at_least(1))
    strict: bool = setting(False, "Exit with status 1 if any input was skipped.")
    max_shorter_side: int | None = setting(
        None, "If set, images with a larger shorter side are downscaled to it and re-encoded, "
              "so that training decodes fewer pixels.", check=at_least(1))
    exif_orientation: str | None = setting(
        None, "apply: photos stored sideways with an EXIF orientation are turned upright "
              "(re-encoded, reported as repaired); keep: the pixels as stored. Default: apply "
              "for --image_folder, keep for --raw_data_dir (ImageNet's models saw its images as "
              "stored).", choices=convert.EXIF_ORIENTATIONS)

    def validate(self, check_files=True):
        """Raises ``UserError`` for a value that cannot work; with ``check_files``, for a label
        file or box folder that is not there."""
        declared.check_settings(self)
        if bool(self.raw_data_dir) == bool(self.image_folder):
            raise errors.UserError("give exactly one of --raw_data_dir and --image_folder")
        if not self.output_dir:
            raise errors.UserError("--output_dir is required")
        if self.validation_fraction and not self.image_folder:
            raise errors.UserError("--validation_fraction applies to --image_folder only")
        for name in ("raw_data_dir", "image_folder", "output_dir", "val_labels", "bbox_dir"):
            if getattr(self, name):
                storage.check_filesystem(getattr(self, name), f"--{name}")
        if not check_files:
            return
        if self.val_labels and not storage.isfile(self.val_labels):
            raise errors.UserError(f"--val_labels {self.val_labels} is not a file")
        if self.bbox_dir and not storage.isdir(self.bbox_dir):
            raise errors.UserError(f"--bbox_dir {self.bbox_dir} is not a folder")


def run_conversion(config, progress=None):
    """Finds the inputs of ``config``, writes their shards and manifest; returns the manifest.

    Raises:
        UserError: for settings that cannot work, inputs that are not there, or an output
            folder holding another conversion.
    """
    from pipelines import bbox
    from pipelines import sources

    config.validate()
    if config.raw_data_dir:
        plan = sources.find_imagenet(config.raw_data_dir, config.val_labels)
    else:
        plan = sources.find_image_folder(config.image_folder, config.validation_fraction)
    boxes, bbox_problems = bbox.read_boxes(config.bbox_dir) if config.bbox_dir else ({}, [])
    asked = {"train": config.train_shards, "validation": config.validation_shards}
    options = convert.ConvertOptions(
        num_shards={split: count for split, count in asked.items() if count},
        num_workers=config.num_workers, seed=config.seed, max_pixels=config.max_pixels,
        max_shorter_side=config.max_shorter_side, exif_orientation=config.exif_orientation)
    return convert.convert(plan, config.output_dir, options, boxes=boxes,
                           bbox_problems=bbox_problems, arguments=dataclasses.asdict(config),
                           progress=progress)


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
