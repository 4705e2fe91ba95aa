"""The offline converter: a ``Plan`` of input images → sharded TFRecords and ``dataset_info.json``.

Guarantees:
- Deterministic: shard contents depend on the inputs and the seed only, never on the number of
  workers; examples serialize deterministically.
- Crash-safe and resumable: a shard is written under a temporary name, fsynced and renamed; a
  small report beside it (in ``.convert_state/``) records its counts and sha256. Running the same
  conversion again skips completed shards and finishes the others.
- Nothing is lost silently: every input is written or listed in the manifest's ``skipped`` with
  its reason, and the counts reconcile (inputs = written + skipped).
- It writes only inside the output folder: archive members are read by offset, never extracted.
"""

import collections
import dataclasses
import json
import logging
import math
import os

import numpy as np

from pipelines import images
from pipelines import manifest
from pipelines import schema
from pipelines import shard_writer
from pipelines.foundation import errors
from pipelines.foundation import lease
from pipelines.foundation import storage

# "apply": a photo stored sideways with an EXIF orientation is turned upright; "keep": the pixels
# as stored (what models trained on ImageNet saw: its path keeps them by default).
EXIF_ORIENTATIONS = ("apply", "keep")
# Splits with fewer inputs per shard than this are judged image by image before their shards are
# planned, so that every shard gets images: a few skipped inputs could empty a shard of a few.
# (Larger shards are planned at once: judging costs a second read of every input; a shard that
# still ends empty is dropped, and the others renumbered, before the manifest.)
JUDGED_BELOW = 64
SHARD_BYTES = 100 << 20  # of inputs a shard holds, where the counts are by size (~100 MB)
_LOG = logging.getLogger("vgg_keras.convert")


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to write: its name and its inputs, in order."""

    split: str
    index: int
    num_shards: int
    entries: tuple

    @property
    def name(self):
        return schema.shard_name(self.split, self.index, self.num_shards)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What decides the bytes of a shard besides its inputs."""

    output_dir: str
    labels: tuple
    label_text: tuple
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_shorter_side: int | None = None
    exif_orientation: str = "keep"  # or "apply": images turned upright (EXIF_ORIENTATIONS)


def assign_shards(entries, num_shards, seed, split):
    """Shuffles ``entries`` with a fixed seed and cuts them into ``num_shards`` contiguous runs.

    The order before shuffling is sorted by (label, path), so the result depends only on the
    set of inputs, the seed and the split, never on how they were found.
    """
    ordered = sorted(entries, key=lambda e: (e.label, e.path))
    split_index = schema.SPLITS.index(split) if split in schema.SPLITS else len(schema.SPLITS)
    permutation = np.random.default_rng([seed, split_index]).permutation(len(ordered))
    shuffled = [ordered[i] for i in permutation]
    bounds = [len(shuffled) * i // num_shards for i in range(num_shards + 1)]
    return [tuple(shuffled[bounds[i] : bounds[i + 1]]) for i in range(num_shards)]


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """How a conversion writes its inputs.

    Attributes:
        num_shards: ``{split: shards}``; defaults to ImageNet's 1024 / 128. A split with fewer
            images than that gets one shard per image (never an empty shard), named ``-of-``
            the count written; the manifest records both (``shards_requested``).
        num_workers: processes, each writing whole shards (default: all cores).
        seed: seed of the shuffle across shards.
        max_pixels: images whose header declares more pixels are skipped (decompression bombs).
        max_shorter_side: if set, larger images are downscaled to it and re-encoded.
        exif_orientation: ``EXIF_ORIENTATIONS``; default "apply" for an image folder, "keep"
            for ImageNet.
    """

    num_shards: dict | None = None
    num_workers: int | None = None
    seed: int = 0
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_shorter_side: int | None = None
    exif_orientation: str | None = None


def convert(plan, output_dir, options=None, *, boxes=None, bbox_problems=(), arguments=None,
            progress=None, **fields):
    """Writes the shards of every split of ``plan`` and the manifest; returns the manifest.

    Args:
        plan: the inputs, from ``sources.find_imagenet`` or ``sources.find_image_folder``.
        output_dir: where shards, the manifest and the resume state go (created).
        options: a ``ConvertOptions`` (shard counts, workers, seed, image settings); or, in
            its place, its ``fields`` as keywords (``num_shards={"train": 4}, num_workers=1``).
        boxes: ``{image file stem: [(xmin, ymin, xmax, ymax)]}`` from ``bbox.read_boxes``.
        bbox_problems: unreadable bounding-box files, reported in the manifest.
        arguments: the run's arguments, recorded in the manifest.
        progress: True for a live progress line, False for none, None for a live line on a
            terminal and otherwise a line every ``shard_writer.PROGRESS_INTERVAL`` seconds
            (image by image, with the ETA).

    Raises:
        ValueError: if ``output_dir`` holds a different conversion, or if no input is an
            image (then nothing is left in ``output_dir``).
    """
    options = dataclasses.replace(options, **fields) if options else ConvertOptions(**fields)
    output = str(output_dir)
    settings = _settings(plan, output, options)
    existed = storage.exists(output)
    # One conversion per output folder: its lease, taken before anything is written there.
    held = lease.Lease(output, flag="--output_dir", job="conversion per output folder",
                       wait_flag=None, state=storage.join(output, shard_writer.STATE_DIR))
    held.acquire()
    try:
        return _convert(plan, settings, options, existed,
                        _Extras(boxes or {}, bbox_problems, arguments, progress))
    finally:
        held.release()
        if not existed:  # made by this conversion: removed if it wrote nothing there
            for folder in (storage.join(output, shard_writer.STATE_DIR), output):
                if storage.isdir(folder) and not storage.listdir(folder):
                    storage.rmtree(folder)


@dataclasses.dataclass(frozen=True)
class _Extras:
    """What a conversion carries along besides its inputs and options."""

    boxes: dict
    bbox_problems: tuple
    arguments: dict | None
    progress: bool | None


def _convert(plan, settings, options, existed, extras):
    output = settings.output_dir
    plan, tasks, requested = _planned(plan, settings, options, extras.progress)
    storage.makedirs(output)
    state = manifest.claim(output, plan, settings, {t.split: t.num_shards for t in tasks},
                   options.seed, extras.boxes)
    reports, todo = {}, []
    for task in tasks:
        report = manifest.finished_report(output, state, task)
        if report:
            reports[task.name] = report
        else:
            todo.append(task)
    _LOG.info("%d shards to write, %d already complete", len(todo), len(reports))
    for report in shard_writer.write_shards(todo, settings, extras.boxes, options.num_workers,
                                            extras.progress):
        reports[report["file"]] = report
    tasks, reports, dropped = manifest.without_empty_shards(output, tasks, reports)
    record = manifest.build_manifest(plan, tasks, reports, extras.bbox_problems,
                                     extras.arguments, options.seed, settings, requested, dropped)
    if not any(split["num_examples"] for split in record["splits"].values()):
        _remove_conversion(output, tasks, existed)
        raise errors.UserError(_no_images(plan, record["skipped"]))
    # The manifest last: it marks a finished conversion (resume state and shards come before).
    storage.write_atomic(storage.join(output, schema.MANIFEST), json.dumps(record, indent=1))
    return record


def default_shards(plan, num_workers=None):
    """The shard counts of ``plan`` where none are asked for: ImageNet's own (1024 / 128) for
    the official ILSVRC2012 inputs; for any other (a folder of photos), by size: shards of
    about ``SHARD_BYTES`` of inputs, and at least one per worker process (as many as there
    are inputs, at most), so that every worker converts and every input pipeline reads."""
    if "image_folder" not in plan.source:
        return dict(schema.DEFAULT_SHARDS)
    workers = num_workers or os.cpu_count() or 1
    counts = {}
    for split, entries in plan.entries.items():
        by_size = math.ceil(sum(entry.size for entry in entries) / SHARD_BYTES)
        counts[split] = max(1, min(len(entries), max(by_size, workers)))
    return counts


def _settings(plan, output, options):
    """The ``Settings`` of the shards of ``plan`` in ``output``, checked: the output a folder of
    a filesystem TensorFlow writes, an EXIF choice known, an input at all."""
    orientation = options.exif_orientation or ("apply" if "image_folder" in plan.source
                                               else "keep")
    if orientation not in EXIF_ORIENTATIONS:
        raise errors.UserError(f"exif_orientation must be one of {EXIF_ORIENTATIONS}, got "
                               f"{orientation!r}")
    if not plan.total_entries():
        raise errors.UserError(_no_images(plan, plan.skipped))
    storage.check_filesystem(output, "--output_dir")
    storage.check_folder(output, "--output_dir")
    return Settings(output, tuple(plan.labels), tuple(plan.label_text), options.max_pixels,
                    options.max_shorter_side, orientation)


def _planned(plan, settings, options, progress):
    """``(plan, tasks, shards requested)``: the inputs that convert (small splits judged image
    by image first; a validation split held out of an image folder), the shards to write them
    to, and the counts asked for (given, else ``default_shards``)."""
    requested = dict(default_shards(plan, options.num_workers), **(options.num_shards or {}))
    fraction = plan.source.get("validation_fraction") or 0.0
    plan = judged(plan, settings, [split for split, entries in plan.entries.items()
                                   if fraction or len(entries) < JUDGED_BELOW *
                                   requested.get(split, 1)], options.num_workers, progress)
    if fraction:
        plan = split_by_class(plan, fraction)
    if not plan.total_entries():
        raise errors.UserError(_no_images(plan, plan.skipped))
    requested = dict(default_shards(plan, options.num_workers), **(options.num_shards or {}))
    num_shards = {split: min(requested[split], len(entries))
                  for split, entries in plan.entries.items() if entries}
    plan = dataclasses.replace(plan, entries={split: plan.entries[split] for split in num_shards})
    for split in sorted(split for split in num_shards if num_shards[split] < requested[split]):
        _LOG.info("%s: %d shards instead of %d (one per image: %d images)", split,
                  num_shards[split], requested[split], len(plan.entries[split]))
    tasks = [ShardTask(split, index, num_shards[split], shard)
             for split in sorted(plan.entries)
             for index, shard in enumerate(assign_shards(plan.entries[split],
                                                         num_shards[split], options.seed,
                                                         split))]
    return plan, tasks, requested


def judged(plan, settings, splits, num_workers=None, progress=None):
    """``plan`` with the inputs of ``splits`` that do not convert moved to its skipped ones (with
    their reasons): each read and judged as its shard will judge it (``images.prepare_image``),
    by the converter's workers."""
    entries = [entry for split in splits for entry in plan.entries[split]]
    if not entries:
        return plan
    reasons = dict(zip((entry.path for entry in entries),
                       shard_writer.in_workers(shard_writer.judge, entries, settings, num_workers,
                                               progress, "checked"),
                       strict=True))
    kept = {split: [e for e in found if reasons.get(e.path) is None]
            for split, found in plan.entries.items()}
    skipped = [{"split": e.split, "path": e.path, "reason": reasons[e.path], "synset": e.synset}
               for e in entries if reasons[e.path] is not None]
    return dataclasses.replace(plan, entries=kept, skipped=[*plan.skipped, *skipped])


def split_by_class(plan, fraction):
    """Holds out ``round(fraction · n)`` of each class's n training inputs for validation (at
    least one, and not all, where n >= 2), chosen by a hash of each file's name: the same split
    on every run and machine, and the fraction of each class."""
    from pipelines import sources

    by_class = collections.defaultdict(list)
    for entry in plan.entries.get("train", []):
        by_class[entry.label].append(entry)
    entries = {"train": [], "validation": []}
    for label in sorted(by_class):
        found = sorted(by_class[label], key=lambda e: (sources.hash_fraction(e.path), e.path))
        count = len(found)
        held = min(count - 1, max(1, round(fraction * count))) if count >= 2 else 0
        entries["validation"] += [dataclasses.replace(e, split="validation")
                                  for e in found[:held]]
        entries["train"] += found[held:]
    return dataclasses.replace(plan, entries=entries)


def _no_images(plan, skipped):
    """The one line for inputs without a single image: the folder, and what it held."""
    where = (f"--image_folder {plan.source['image_folder']}" if "image_folder" in plan.source
             else f"--raw_data_dir {plan.source.get('raw_data_dir')}")
    reasons = collections.Counter(record["reason"].split(":")[0].split(" (")[0]
                                  for record in skipped)
    found = [f"{count} {reason}" for reason, count in reasons.most_common()]
    if plan.ignored:
        found.append(f"{len(plan.ignored)} hidden or system names ignored")
    return (f"{where} holds no image to convert: found "
            f"{'; '.join(found) if found else 'no files'} (every file is listed in the "
            "report); give folders of images, one sub-folder per class")


def _remove_conversion(output, tasks, existed):
    """Removes what a conversion that found no image wrote: its shards and state, and the
    output folder if it created it."""
    for task in tasks:
        storage.remove(storage.join(output, task.name))
    storage.rmtree(storage.join(output, shard_writer.STATE_DIR))
    if not existed and not storage.listdir(output):
        storage.rmtree(output)


