"""Corrupt shards are never dropped silently.

TensorFlow reads a truncated TFRecord file as if it ended early (no error at all), and
``ignore_errors`` after a ``TFRecordDataset`` drops the rest of a corrupt file without a word.
So each file's bytes are accounted for: the records read (plus 16 bytes of framing each) must add
up to the file's size. If they do not, reading fails with an error naming the shard, or, with
``skip_corrupt``, skips the rest of that shard, counts it in a counter and logs it on standard
error.
"""

import sys

import tensorflow as tf

TFRECORD_FRAMING = 16  # length (8) + its CRC (4) + data CRC (4)


def make_corrupt_counter():
    """A CPU variable counting the shards found corrupt by pipelines with ``skip_corrupt``."""
    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="corrupt_shards")


def checked_records(path, size, skip_corrupt, corrupt_counter):
    """``(record, path)`` of one file, checked to account for all of its ``size`` bytes."""
    records = tf.data.TFRecordDataset(path).ignore_errors()
    stream = records.map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def count(consumed, item):
        record, is_end = item
        framing = tf.where(is_end, tf.constant(0, tf.int64), TFRECORD_FRAMING)
        consumed += tf.cast(tf.strings.length(record), tf.int64) + framing
        return consumed, (record, is_end, consumed)

    def check(record, is_end, consumed):
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, size))
        if skip_corrupt:
            action = tf.cond(complete, lambda: tf.constant(0, tf.int64),
                             lambda: _count_corrupt(path, consumed, size, corrupt_counter))
        else:
            action = tf.debugging.Assert(complete, [tf.strings.join([
                "corrupt or truncated TFRecord shard ", path, ": only ",
                tf.strings.as_string(consumed), " of its ", tf.strings.as_string(size),
                " bytes could be read; convert it again, or pass --skip_corrupt to skip the "
                "rest of such shards"])])
        with tf.control_dependencies([action]):
            return tf.identity(record), is_end

    stream = stream.scan(tf.constant(0, tf.int64), count).map(check)
    return stream.filter(lambda record, is_end: tf.logical_not(is_end)).map(
        lambda record, is_end: (record, path))


def _count_corrupt(path, consumed, size, counter):
    printed = tf.print("WARNING: skipped the rest of corrupt or truncated TFRecord shard", path,
                       "(read", consumed, "of", size, "bytes)", output_stream=sys.stderr)
    with tf.control_dependencies([printed]):
        if counter is None:
            return tf.constant(1, tf.int64)
        return counter.assign_add(1, read_value=True)
