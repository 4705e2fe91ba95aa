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
import multiprocessing
import os
import time

import numpy as np

from pipelines import errors
from pipelines import images
from pipelines import progress as progress_lines
from pipelines import schema
from pipelines import storage
from pipelines import tf_runtime

STATE_DIR = ".convert_state"
# "apply": a photo stored sideways with an EXIF orientation is turned upright; "keep": the pixels
# as stored (what models trained on ImageNet saw: its path keeps them by default).
EXIF_ORIENTATIONS = ("apply", "keep")
PROGRESS_INTERVAL = 10.0  # seconds between progress lines off a terminal
MANIFEST_VERSION = 2  # 2: each shard's size_bytes
# Splits with fewer inputs per shard than this are judged image by image before their shards are
# planned, so that every shard gets images: a few skipped inputs could empty a shard of a few.
# (Larger shards are planned at once: judging costs a second read of every input; a shard that
# still ends empty is dropped, and the others renumbered, before the manifest.)
JUDGED_BELOW = 64
IN_PROCESS_BELOW = 512  # inputs judged without starting worker processes
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


def convert(plan, output_dir, *, num_shards=None, num_workers=None, seed=0,
            max_pixels=images.DEFAULT_MAX_PIXELS, max_shorter_side=None, boxes=None,
            bbox_problems=(), arguments=None, progress=None, exif_orientation=None):
    """Writes the shards of every split of ``plan`` and the manifest; returns the manifest.

    Args:
        plan: the inputs, from ``sources.find_imagenet`` or ``sources.find_image_folder``.
        output_dir: where shards, the manifest and the resume state go (created).
        num_shards: ``{split: shards}``; defaults to ImageNet's 1024 / 128. A split with fewer
            images than that gets one shard per image (never an empty shard), named ``-of-``
            the count written; the manifest records both (``shards_requested``).
        num_workers: processes, each writing whole shards (default: all cores).
        seed: seed of the shuffle across shards.
        max_pixels: images whose header declares more pixels are skipped (decompression bombs).
        max_shorter_side: if set, larger images are downscaled to it and re-encoded.
        boxes: ``{image file stem: [(xmin, ymin, xmax, ymax)]}`` from ``bbox.read_boxes``.
        bbox_problems: unreadable bounding-box files, reported in the manifest.
        arguments: the run's arguments, recorded in the manifest.
        progress: True for a live progress line, False for none, None for a live line on a
            terminal and otherwise a line every ``PROGRESS_INTERVAL`` seconds (image by image,
            with the ETA).
        exif_orientation: ``EXIF_ORIENTATIONS``; default "apply" for an image folder, "keep"
            for ImageNet.

    Raises:
        ValueError: if ``output_dir`` holds a different conversion, or if no input is an
            image (then nothing is left in ``output_dir``).
    """
    if exif_orientation is None:
        exif_orientation = "apply" if "image_folder" in plan.source else "keep"
    if exif_orientation not in EXIF_ORIENTATIONS:
        raise errors.UserError(f"exif_orientation must be one of {EXIF_ORIENTATIONS}, got "
                               f"{exif_orientation!r}")
    if not plan.total_entries():
        raise errors.UserError(_no_images(plan, plan.skipped))
    output = str(output_dir)
    storage.check_filesystem(output, "--output_dir")
    storage.check_folder(output, "--output_dir")
    requested = dict(schema.DEFAULT_SHARDS, **(num_shards or {}))
    settings = Settings(output, tuple(plan.labels), tuple(plan.label_text), max_pixels,
                        max_shorter_side, exif_orientation)
    fraction = plan.source.get("validation_fraction") or 0.0
    plan = judged(plan, settings, [split for split, entries in plan.entries.items()
                                   if fraction or len(entries) < JUDGED_BELOW *
                                   requested.get(split, 1)], num_workers, progress)
    if fraction:
        plan = split_by_class(plan, fraction)
    if not plan.total_entries():
        raise errors.UserError(_no_images(plan, plan.skipped))
    existed = storage.exists(output)
    storage.makedirs(output)
    num_shards = {split: min(requested[split], len(entries))
                  for split, entries in plan.entries.items() if entries}
    plan = dataclasses.replace(plan, entries={split: plan.entries[split] for split in num_shards})
    for split in sorted(split for split in num_shards if num_shards[split] < requested[split]):
        _LOG.info("%s: %d shards instead of %d (one per image: %d images)", split,
                  num_shards[split], requested[split], len(plan.entries[split]))
    tasks = [ShardTask(split, index, num_shards[split], shard)
             for split in sorted(plan.entries)
             for index, shard in enumerate(assign_shards(plan.entries[split],
                                                         num_shards[split], seed, split))]
    state = _claim(output, plan, settings, num_shards, seed, boxes)
    reports, todo = {}, []
    for task in tasks:
        report = _finished_report(output, state, task)
        if report:
            reports[task.name] = report
        else:
            todo.append(task)
    _LOG.info("%d shards to write, %d already complete", len(todo), len(reports))
    for report in _run(todo, settings, boxes or {}, num_workers, progress):
        reports[report["file"]] = report
    tasks, reports, dropped = _without_empty_shards(output, tasks, reports)
    manifest = _manifest(plan, tasks, reports, bbox_problems, arguments, seed, settings,
                         requested, dropped)
    if not any(split["num_examples"] for split in manifest["splits"].values()):
        _remove_conversion(output, tasks, existed)
        raise errors.UserError(_no_images(plan, manifest["skipped"]))
    # The manifest last: it marks a finished conversion (resume state and shards come before).
    storage.write_atomic(storage.join(output, schema.MANIFEST), json.dumps(manifest, indent=1))
    return manifest


def judged(plan, settings, splits, num_workers=None, progress=None):
    """``plan`` with the inputs of ``splits`` that do not convert moved to its skipped ones (with
    their reasons): each read and judged as its shard will judge it (``images.prepare_image``),
    by the converter's workers."""
    entries = [entry for split in splits for entry in plan.entries[split]]
    if not entries:
        return plan
    reasons = dict(zip((entry.path for entry in entries),
                       _in_workers(judge, entries, settings, num_workers, progress, "checked"),
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
                storage.write_atomic(storage.join(output, STATE_DIR, f"{renamed.name}.json"),
                                     json.dumps(report))
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
    storage.rmtree(storage.join(output, STATE_DIR))
    if not existed and not storage.listdir(output):
        storage.rmtree(output)


def _claim(output, plan, settings, num_shards, seed, boxes):
    """Marks ``output`` as holding this conversion, or refuses if it holds another one."""
    state = storage.join(output, STATE_DIR)
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


def _run(todo, settings, boxes, num_workers, show_progress):
    """Writes the shards of ``todo``, yielding each shard's report as it completes; reports
    progress image by image (the workers count into a shared counter)."""
    if not todo:
        return
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(todo)))
    meter = progress_lines.Progress(sum(len(t.entries) for t in todo), label="converted",
                              show=show_progress, interval=PROGRESS_INTERVAL)
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    shards = 0

    def update(report=None):
        nonlocal shards
        shards += report is not None
        meter.update(counter.value, extra=f"{shards}/{len(todo)} shards")

    try:
        if workers == 1:
            _init_worker(settings, boxes, counter, on_image=update)
            for report in map(write_shard, todo):
                update(report)
                yield report
        else:
            # spawn: workers start clean, whatever the parent has imported or started.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker,
                              initargs=(settings, boxes, counter)) as pool:
                results = pool.imap_unordered(write_shard, todo)
                for _ in todo:
                    while True:
                        try:
                            report = results.next(timeout=1.0)
                            break
                        except multiprocessing.TimeoutError:
                            update()
                    update(report)
                    yield report
    finally:
        meter.close(extra=f"{shards}/{len(todo)} shards")


def _in_workers(function, items, settings, num_workers, show_progress, label):
    """``function`` of each of ``items`` in the converter's worker processes (``_init_worker``),
    the results in order, with a progress line."""
    # A few hundred inputs are judged sooner here than processes can start.
    workers = 1 if len(items) < IN_PROCESS_BELOW else max(
        1, min(num_workers or os.cpu_count() or 1, len(items)))
    meter = progress_lines.Progress(len(items), label=label, unit="inputs", show=show_progress,
                                    interval=PROGRESS_INTERVAL)
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    try:
        if workers == 1:
            _init_worker(settings, {}, counter, tensorflow=False)
            results = []
            for item in items:
                results.append(function(item))
                meter.update(counter.value)
            return results
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker,
                          initargs=(settings, {}, counter, None, False)) as pool:
            pending = pool.map_async(function, items, chunksize=max(1, len(items) // (8 * workers)))
            while not pending.ready():
                pending.wait(1.0)
                meter.update(counter.value)
            return pending.get()
    finally:
        meter.update(counter.value)
        meter.close()


_WORKER = {}


def _init_worker(settings, boxes, counter, on_image=None, tensorflow=True):
    if tensorflow:  # once per worker, before its first shard, as quiet as the program
        tf_runtime.start()

    _WORKER.clear()
    _WORKER.update(settings=settings, boxes=boxes, files={}, counter=counter,
                   on_image=on_image)


def _count_image():
    with _WORKER["counter"].get_lock():
        _WORKER["counter"].value += 1
    if _WORKER["on_image"]:
        _WORKER["on_image"]()


def _read(entry):
    """Returns the bytes of one input, or raises ``images.BadImage`` with the reason."""
    files = _WORKER["files"]
    try:
        if entry.source not in files:
            files[entry.source] = storage.open_file(entry.source, "rb")  # a cached handle
        file = files[entry.source]
        if entry.offset == 0:  # a file of its own (not a tar member): as it was indexed?
            size = storage.size(entry.source)
            if size != entry.size:
                raise images.BadImage(f"file changed since it was indexed ({entry.size} bytes "
                                      f"then, {size} now)")
        file.seek(entry.offset)
        data = file.read(entry.size)
    except OSError as error:
        raise images.BadImage(f"unreadable file: {error.strerror or error}") from None
    if len(data) != entry.size:
        raise images.BadImage(f"file shorter than its {entry.size} bytes ({len(data)} read)")
    return data


def judge(entry):
    """Why an input does not convert (the reason its shard would record), or None."""
    settings = _WORKER["settings"]
    _count_image()
    try:
        images.prepare_image(_read(entry), max_pixels=settings.max_pixels,
                             max_shorter_side=settings.max_shorter_side,
                             apply_orientation=settings.exif_orientation == "apply")
    except images.BadImage as error:
        return str(error)
    return None


def write_shard(task):
    """Writes one shard (temporary name, fsync, rename) and returns its report."""
    import tensorflow as tf

    settings, boxes = _WORKER["settings"], _WORKER["boxes"]
    output = settings.output_dir
    target = storage.join(output, task.name)
    temporary = storage.temporary_path(target)
    report = {"file": task.name, "split": task.split, "num_inputs": len(task.entries),
              "worker": os.getpid(), "started": time.time(),
              "per_class": collections.Counter(), "skipped": [], "repaired": [],
              "num_resized": 0}
    with tf.io.TFRecordWriter(str(temporary)) as writer:
        for entry in task.entries:
            _count_image()
            try:
                image = images.prepare_image(
                    _read(entry), max_pixels=settings.max_pixels,
                    max_shorter_side=settings.max_shorter_side,
                    apply_orientation=settings.exif_orientation == "apply")
            except images.BadImage as error:
                report["skipped"].append({"split": entry.split, "path": entry.path,
                                          "reason": str(error), "synset": entry.synset})
                continue
            filename = os.path.basename(entry.path)
            writer.write(schema.make_example(
                jpeg=image.jpeg, filename=filename, height=image.height, width=image.width,
                label=entry.label, synset=entry.synset,
                text=settings.label_text[entry.label - 1],
                boxes=boxes.get(os.path.splitext(filename)[0], ())))
            report["per_class"][entry.synset] += 1
            if image.repair:
                report["repaired"].append({"split": entry.split, "path": entry.path,
                                           "reason": image.repair})
            report["num_resized"] += image.resized_from is not None
    storage.replace(temporary, target)
    report["num_examples"] = sum(report["per_class"].values())
    report["per_class"] = dict(report["per_class"])
    report["size_bytes"] = storage.size(target)
    report["sha256"] = storage.sha256(target)
    report["finished"] = time.time()
    storage.write_atomic(storage.join(output, STATE_DIR, f"{task.name}.json"),
                         json.dumps(report))
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
