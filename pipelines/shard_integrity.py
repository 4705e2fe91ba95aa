"""Corrupt shards are never dropped silently, at a cost that does not grow with the records.

Three facts about TensorFlow's TFRecord reader (measured, tests/test_shard_integrity.py): a file
cut in the middle of a record fails with ``DataLossError: truncated record at N``; a flipped
byte fails its record's CRC, ``DataLossError: corrupted record at N``; but a file cut exactly at
a record boundary reads as a shorter file, without a word. Neither error names the file.

So there are two routes:

* **The shards' sizes are known** (our manifest records each one; a training run records those
  of shards it counted): each shard's size is compared with it before anything is read — a
  truncated or replaced shard is refused at once, named, or with ``skip_corrupt`` left out and
  counted — and the records are read as they are, with TensorFlow's CRC checks. A CRC failure
  then stops the pipeline; ``find_damaged`` names the shard afterwards (its sha256 against the
  manifest's), on that error path only. ``verify=True`` compares every shard's sha256 before
  reading, on request (it reads every byte once).
* **Sizes unknown** (slim's shards, tfds's), or ``skip_corrupt``: each record is accounted for,
  so that the records read plus 16 bytes of framing each must add up to the file's size; a shard
  that does not fails naming itself, or with ``skip_corrupt`` the rest of it is skipped, counted
  and logged on standard error.
"""

import os
import re
import sys

import tensorflow as tf

from pipelines.foundation import errors
from pipelines.foundation import progress
from pipelines.foundation import storage

# The functions the readers map are written with TensorFlow's own control flow: run as they are,
# without AutoGraph's conversion (pipelines.inputs.as_written).
_as_written = tf.autograph.experimental.do_not_convert

# What else a damaged shard leaves open, said alike by every program that reads shards: only
# vgg-train goes on without what it cannot read.
_TRAINING_SKIPS = "vgg-train can go on without such shards (--skip_corrupt)"
TFRECORD_FRAMING = 16  # length (8) + its CRC (4) + data CRC (4)


def make_corrupt_counter():
    """A CPU variable counting the shards found corrupt by pipelines with ``skip_corrupt``."""
    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="corrupt_shards")


def checked_files(files, expected, *, skip_corrupt=False, corrupt_counter=None, verify=False):
    """The shards fit to read: each one's size (and with ``verify`` its sha256) against
    ``expected`` (``{file name: {"size_bytes", "sha256"}}``), before reading a record.

    Raises:
        ValueError: naming the first shard that differs, unless ``skip_corrupt`` (then it is
            left out, counted in ``corrupt_counter`` and reported on standard error).
    """
    kept = []
    for path in files:
        problem = _problem(path, expected.get(os.path.basename(path), {}), verify)
        if problem is None:
            kept.append(path)
        elif not skip_corrupt:
            raise errors.UserError(f"shard {path} {problem}: convert it again (vgg-convert "
                                   f"rewrites damaged shards when run again); {_TRAINING_SKIPS}")
        else:
            print(f"WARNING: left out shard {path}: it {problem}", file=sys.stderr, flush=True)
            if corrupt_counter is not None:
                corrupt_counter.assign_add(1)
    if not kept:
        raise errors.UserError(f"every shard of {storage.dirname(files[0])} is damaged")
    return kept


def _problem(path, entry, verify):
    size = storage.size(path)
    if "size_bytes" in entry and size != entry["size_bytes"]:
        how = "truncated" if size < entry["size_bytes"] else "longer than written"
        said = entry.get("recorded_by", "its manifest")  # or the run that counted it
        return (f"is {size:,} bytes, {said} says {entry['size_bytes']:,}: it is {how} or was "
                "replaced")
    if verify and entry.get("sha256") and storage.sha256(path) != entry["sha256"]:
        return "has another sha256 than its manifest records: it is corrupt or was replaced"
    return None


def plain_records(path):
    """``(record, path)`` of a shard whose size was checked: TensorFlow's CRC checks only."""
    return tf.data.TFRecordDataset(path).map(_as_written(lambda record: (record, path)))


def accounted_records(path, size, skip_corrupt, corrupt_counter):
    """``(record, path)`` of one file, checked to account for all of its ``size`` bytes."""
    records = tf.data.TFRecordDataset(path).ignore_errors()
    stream = records.map(_as_written(lambda r: (r, False))).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    @_as_written
    def count(consumed, item):
        record, is_end = item
        framing = tf.where(is_end, tf.constant(0, tf.int64), TFRECORD_FRAMING)
        consumed += tf.cast(tf.strings.length(record), tf.int64) + framing
        return consumed, (record, is_end, consumed)

    @_as_written
    def check(record, is_end, consumed):
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, size))
        if skip_corrupt:
            action = tf.cond(complete, lambda: tf.constant(0, tf.int64),
                             lambda: _count_corrupt(path, consumed, size, corrupt_counter))
        else:
            action = tf.cond(complete, lambda: tf.constant(0, tf.int64),
                             lambda: _fail_incomplete(path, consumed, size))
        with tf.control_dependencies([action]):
            return tf.identity(record), is_end

    stream = stream.scan(tf.constant(0, tf.int64), count).map(check)
    return stream.filter(_as_written(lambda record, is_end: tf.logical_not(is_end))).map(
        _as_written(lambda record, is_end: (record, path)))


def _fail_incomplete(path, consumed, size):
    # Built only for the shard that fails: formatting costs per record otherwise.
    message = tf.strings.join([
        "corrupt or truncated TFRecord shard ", path, ": only ", tf.strings.as_string(consumed),
        " of its ", tf.strings.as_string(size), " bytes could be read; convert it again; ",
        _TRAINING_SKIPS])
    with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(0, tf.int64)


def _count_corrupt(path, consumed, size, counter):
    printed = tf.print("WARNING: skipped the rest of corrupt or truncated TFRecord shard", path,
                       "(read", consumed, "of", size, "bytes)", output_stream=sys.stderr)
    with tf.control_dependencies([printed]):
        if counter is None:
            return tf.constant(1, tf.int64)
        return counter.assign_add(1, read_value=True)


def find_damaged(files, expected, show_progress=None):
    """After a ``DataLossError``: the shards of ``files`` that are damaged, with why. Checks
    sizes and sha256 against ``expected`` where it records them, and reads the other shards
    record by record; reads every byte once (this is the error path only)."""
    meter = progress.Progress(len(files), label="looking for the damaged shard:", unit="shards",
                              show=show_progress, interval=10.0)
    damaged = []
    for index, path in enumerate(files, 1):
        entry = expected.get(os.path.basename(path), {})
        problem = _problem(path, entry, verify=True) if entry else _read_problem(path)
        if problem:
            damaged.append((path, problem))
        meter.update(index, extra=f"{len(damaged)} damaged")
    meter.close(extra=f"{len(damaged)} damaged")
    return damaged


def _read_problem(path):
    try:
        for _ in tf.data.TFRecordDataset(path):
            pass
    except tf.errors.DataLossError as error:
        return f"fails TensorFlow's record checks ({_what(error)})"
    return None


def _what(error):
    """TensorFlow's own words for a damaged record ("corrupted record at 1028")."""
    found = re.search(r"(corrupted|truncated) record at \d+", getattr(error, "message", ""))
    return found.group(0) if found else errors.one_line(error)


def explain(error, files, expected, show_progress=None):
    """A ``UserError`` naming the damaged shard behind a ``DataLossError`` (which names
    none), found by ``find_damaged``."""
    damaged = find_damaged(files, expected, show_progress)
    if not damaged:
        return errors.UserError(f"a record failed TensorFlow's checks ({_what(error)}), but "
                                "every shard checks out now: a read error of the disk or the "
                                "network? Run the command again")
    path, problem = damaged[0]
    more = f" (and {len(damaged) - 1} more shards)" if len(damaged) > 1 else ""
    return errors.UserError(f"shard {path} {problem}{more}: convert it again; "
                            f"{_TRAINING_SKIPS}")
