"""The converter's workers: each writes whole shards (``write_shard``: a temporary name, fsynced
and renamed, then a small report in ``.convert_state/`` with its counts and sha256) or judges
inputs (``judge``), in processes of their own (``write_shards``, ``in_workers``: spawned clean,
whatever the parent has imported) or, for a few inputs, in this one; image by image progress
through a shared counter. What each image becomes is ``images``'.
"""

import collections
import json
import multiprocessing
import os
import time

from pipelines import images
from pipelines import schema
from pipelines.foundation import progress as progress_lines
from pipelines.foundation import storage
from pipelines.foundation import tf_runtime

STATE_DIR = ".convert_state"
PROGRESS_INTERVAL = 10.0  # seconds between progress lines off a terminal
IN_PROCESS_BELOW = 512  # inputs judged without starting worker processes


def write_shards(todo, settings, boxes, num_workers, show_progress):
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


def in_workers(function, items, settings, num_workers, show_progress, label):
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
        if entry.offset == 0:  # a file of its own (not a tar member): as it was indexed?
            size = storage.size(entry.source)
            if size != entry.size:
                raise images.BadImage(f"file changed since it was indexed ({entry.size} bytes "
                                      f"then, {size} now)")
            # Read and closed: a folder of a million photos must not hold a million handles.
            with storage.open_file(entry.source, "rb") as file:
                data = file.read(entry.size)
        else:  # a member of an archive: the archive's handle kept for its next members
            if entry.source not in files:
                files[entry.source] = storage.open_file(entry.source, "rb")
            file = files[entry.source]
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
    report["mtime"] = storage.mtime(target)  # a rerun rewrites a shard changed since
    report["finished"] = time.time()
    storage.write_atomic(storage.join(output, STATE_DIR, f"{task.name}.json"),
                         json.dumps(report))
    return report
