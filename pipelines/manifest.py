"""What a conversion records of itself, so that it resumes and its output says what it holds: its
claim on the output folder (``.convert_state/conversion.json``: the inputs and settings it
converts), each finished shard's report (its counts, size, sha256 and time, beside it in
``.convert_state/``), the shards renumbered where some ended empty, and the manifest,
``dataset_info.json``, built from the reports of the shards on disk.
"""

import dataclasses
import hashlib
import json

from pipelines import schema
from pipelines import shard_writer
from pipelines.foundation import errors
from pipelines.foundation import storage

MANIFEST_VERSION = 2  # 2: each shard's size_bytes


def claim(output, plan, settings, num_shards, seed, boxes):
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


def finished_report(output, state, task):
    report = storage.read_json(storage.join(state, f"{task.name}.json"),
                               damaged=None)  # the shard is written again
    if report is None:
        return None
    shard = storage.join(output, task.name)
    if not storage.exists(shard) or storage.size(shard) != report["size_bytes"]:
        return None
    if "mtime" in report and storage.mtime(shard) != report["mtime"]:  # written over since
        return None
    return report


def without_empty_shards(output, tasks, reports):
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


def build_manifest(plan, tasks, reports, bbox_problems, arguments, seed, settings, requested,
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
