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
import hashlib
import json
import logging

import numpy as np

from pipelines import images
from pipelines import schema
from pipelines import shard_writer
from pipelines.foundation import errors
from pipelines.foundation import storage

# "apply": a photo stored sideways with an EXIF orientation is turned upright; "keep": the pixels
# as stored (what models trained on ImageNet saw: its path keeps them by default).
EXIF_ORIENTATIONS = ("apply", "keep")
MANIFEST_VERSION = 2  # 2: each shard's size_bytes
# Splits with fewer inputs per shard than this are judged image by image before their shards are
# planned, so that every shard gets images: a few skipped inputs could empty a shard of a few.
# (Larger shards are planned at once: judging costs a second read of every input; a shard that
# still ends empty is dropped, and the others renumbered, before the manifest.)
JUDGED_BELOW = 64
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
    requested = dict(schema.DEFAULT_SHARDS, **(options.num_shards or {}))
    plan, tasks = _planned(plan, settings, options, requested, progress)
    existed = storage.exists(output)
    storage.makedirs(output)
    state = _claim(output, plan, settings, {t.split: t.num_shards for t in tasks},
                   options.seed, boxes)
    reports, todo = {}, []
    for task in tasks:
        report = _finished_report(output, state, task)
        if report:
            reports[task.name] = report
        else:
            todo.append(task)
    _LOG.info("%d shards to write, %d already complete", len(todo), len(reports))
    for report in shard_writer.write_shards(todo, settings, boxes or {}, options.num_workers,
                                            progress):
        reports[report["file"]] = report
    tasks, reports, dropped = _without_empty_shards(output, tasks, reports)
    manifest = _manifest(plan, tasks, reports, bbox_problems, arguments, options.seed, settings,
                         requested, dropped)
    if not any(split["num_examples"] for split in manifest["splits"].values()):
        _remove_conversion(output, tasks, existed)
        raise errors.UserError(_no_images(plan, manifest["skipped"]))
    # The manifest last: it marks a finished conversion (resume state and shards come before).
    storage.write_atomic(storage.join(output, schema.MANIFEST), json.dumps(manifest, indent=1))
    return manifest


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


def _planned(plan, settings, options, requested, progress):
    """``(plan, tasks)``: the inputs that convert (small splits judged image by image first; a
    validation split held out of an image folder), and the shards to write them to."""
    fraction = plan.source.get("validation_fraction") or 0.0
    plan = judged(plan, settings, [split for split, entries in plan.entries.items()
                                   if fraction or len(entries) < JUDGED_BELOW *
                                   requested.get(split, 1)], options.num_workers, progress)
    if fraction:
        plan = split_by_class(plan, fraction)
    if not plan.total_entries():
        raise errors.UserError(_no_images(plan, plan.skipped))
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
    return plan, tasks


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


def _without_empty_shards(output, tasks, reports):
    """``(tasks, reports, dropped reports)`` with the shards that hold no image removed and the
    others of their split renumbered (``-of-N`` is the count written), their files renamed;
    any other shard-named file (a renumbering a killed run left half done) removed, so that the
    folder holds exactly the manifest's shards."""
    kept_tasks, kept_reports = [], {}
    dropped = [reports[t.name] for t in tasks if not reports[t.name]["num_examples"]]
    for split in sorted({t.split for t in tasks}):
        full = [t for t in tasks if t.split == split and reports[t.name]["num_examples"]]
        for index, task in enumerate(full):
            renamed = dataclasses.replace(task, index=index, num_shards=len(full))
            report = dict(reports[task.name], file=renamed.name)
            if renamed.name != task.name:
                storage.replace(storage.join(output, task.name),
                                storage.join(output, renamed.name))
                storage.write_atomic(storage.join(output, shard_writer.STATE_DIR,
                                                  f"{renamed.name}.json"), json.dumps(report))
            kept_tasks.append(renamed)
            kept_reports[renamed.name] = report
    for split in {t.split for t in tasks}:
        for path in storage.glob(storage.join(output, schema.shard_pattern(split))):
            if storage.basename(path) not in kept_reports:
                storage.remove(path)
    return kept_tasks, kept_reports, dropped


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


def _claim(output, plan, settings, num_shards, seed, boxes):
    """Marks ``output`` as holding this conversion, or refuses if it holds another one."""
    state = storage.join(output, shard_writer.STATE_DIR)
    storage.makedirs(state)
    identity = {
        "inputs": plan.fingerprint(),
        "num_shards": num_shards,
        "seed": seed,
        "max_pixels": settings.max_pixels,
        "max_shorter_side": settings.max_shorter_side,
        "exif_orientation": settings.exif_orientation,
        "boxes": hashlib.sha256(json.dumps(boxes or {}, sort_keys=True).encode()).hexdigest(),
    }
    marker = storage.join(state, "conversion.json")
    if storage.exists(marker):
        if storage.read_json(marker, written_by="vgg-convert", fix=f"delete {state} to start "
                             "this conversion over") != identity:
            raise errors.UserError(
                f"{output} holds shards of a different conversion (other inputs, shard counts, "
                "seed or image settings); use an empty --output_dir")
    else:
        stray = [storage.basename(path)
                 for path in storage.glob(storage.join(output, "*-?????-of-?????"))]
        if stray:
            raise errors.UserError(f"{output} already holds shards of an unknown conversion "
                                   f"({stray[0]}, ...); use an empty --output_dir")
        storage.write_atomic(marker, json.dumps(identity, indent=1))
    for leftover in storage.glob(storage.join(output, "*" + storage.TEMPORARY_SUFFIX)):
        storage.remove(leftover)  # shards a killed run did not finish
    return state


def _finished_report(output, state, task):
    report = storage.read_json(storage.join(state, f"{task.name}.json"),
                               damaged=None)  # the shard is written again
    if report is None:
        return None
    shard = storage.join(output, task.name)
    if not storage.exists(shard) or storage.size(shard) != report["size_bytes"]:
        return None
    return report


def _manifest(plan, tasks, reports, bbox_problems, arguments, seed, settings, requested,
              dropped=()):
    """Builds ``dataset_info.json``: labels, per-split counts and shards, skipped and repaired
    (those of ``dropped`` shards, which ended empty, too)."""
    skipped = list(plan.skipped)
    repaired = []
    splits = {}
    for split in sorted(plan.entries):
        shard_reports = [reports[t.name] for t in tasks if t.split == split]
        split_reports = shard_reports + [r for r in dropped if r["split"] == split]
        per_class = {synset: 0 for synset in plan.labels}
        for report in split_reports:
            for synset, count in report["per_class"].items():
                per_class[synset] += count
            skipped += report["skipped"]
            repaired += report["repaired"]
        index_skipped = sum(1 for s in plan.skipped if s["split"] == split)
        splits[split] = {
            "num_examples": sum(r["num_examples"] for r in split_reports),
            "num_inputs": len(plan.entries[split]) + index_skipped,
            "num_skipped": sum(len(r["skipped"]) for r in split_reports) + index_skipped,
            "num_repaired": sum(len(r["repaired"]) for r in split_reports),
            "num_resized": sum(r["num_resized"] for r in split_reports),
            "shards_requested": requested[split],
            "per_class": per_class,
            "shards": [{"file": r["file"], "num_examples": r["num_examples"],
                        "size_bytes": r["size_bytes"], "sha256": r["sha256"]}
                       for r in shard_reports],
        }
    order = lambda record: (record["split"], record["path"], record["reason"])  # noqa: E731
    return {
        "format_version": MANIFEST_VERSION,
        "labels": list(plan.labels),
        "label_text": list(plan.label_text),
        "label_offset": schema.LABEL_OFFSET,
        "num_classes": len(plan.labels),
        "splits": splits,
        "skipped": sorted(skipped, key=order),
        "repaired": sorted(repaired, key=order),
        "bbox_problems": list(bbox_problems),
        "settings": {"num_shards": requested, "seed": seed, "max_pixels": settings.max_pixels,
                     "max_shorter_side": settings.max_shorter_side,
                     "exif_orientation": settings.exif_orientation},
        "ignored": list(plan.ignored),
        "source": plan.source,
        "arguments": arguments or {},
    }
