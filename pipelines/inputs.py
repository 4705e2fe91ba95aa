"""tf.data inputs for training (§3.1) and evaluation (§3.2): pure functions from shards to
``tf.data.Dataset``.

Reads our converter's shards, slim's ``build_imagenet_data.py`` shards (same keys), or a
tfds-prepared ``imagenet2012`` directory. Labels are shifted by ``label_offset`` (1 for our and
slim's shards, whose label 0 is reserved; 0 for tfds) and checked against ``num_classes``: a label
outside [0, num_classes) stops the pipeline with an error naming the shard.

Corrupt shards are never dropped silently. TensorFlow reads a truncated TFRecord file as if it
ended early (no error at all), and ``ignore_errors`` after a ``TFRecordDataset`` drops the rest of
a corrupt file without a word. So each file's bytes are accounted for: the records read (plus
16 bytes of framing each) must add up to the file's size. If they do not, the pipeline fails
with an error naming the shard, or, with ``skip_corrupt=True``, skips the rest of that shard,
counts it in ``corrupt_counter`` and logs it.
"""

import glob
import json
import os
import sys

import tensorflow as tf

from pipelines import imagenet_labels
from pipelines import preprocessing
from pipelines import schema

AUTOTUNE = tf.data.AUTOTUNE
DATA_FORMATS = ("vgg", "tfds")  # vgg: our and slim's schema
_TFRECORD_FRAMING = 16  # length (8) + its CRC (4) + data CRC (4)
_TFDS_KEYS = {"encoded": "image", "label": "label", "filename": "file_name"}
_VGG_KEYS = {"encoded": schema.ENCODED, "label": schema.LABEL, "filename": schema.FILENAME}


def resolve_files(file_pattern, split="train"):
    """Returns ``(files, data_format, num_classes or None)`` for a pattern, list or folder.

    A folder is our converter's output (``{split}-*-of-*``, ``dataset_info.json`` beside) or a
    tfds-prepared folder (``*-{split}.tfrecord-*``, ``features.json`` beside).

    Raises:
        FileNotFoundError: if nothing matches.
    """
    if isinstance(file_pattern, (list, tuple)):
        files = sorted(str(f) for f in file_pattern)
    elif os.path.isdir(file_pattern):
        tfds_split = "validation" if split in ("validation", "val") else split
        files = sorted(glob.glob(os.path.join(file_pattern, schema.shard_pattern(split))))
        files = files or sorted(glob.glob(os.path.join(file_pattern,
                                                       f"*-{tfds_split}.tfrecord*")))
    else:
        files = sorted(glob.glob(str(file_pattern)))
    if not files:
        raise FileNotFoundError(f"no {split} shards found for {file_pattern!r} (expected "
                                f"{schema.shard_pattern(split)} or a tfds folder)")
    data_format, num_classes = _read_metadata(os.path.dirname(files[0]), files[0])
    return files, data_format, num_classes


def _read_metadata(directory, first_file):
    """Returns ``(data_format, num_classes or None)`` from the metadata beside the shards."""
    manifest = os.path.join(directory, schema.MANIFEST)
    features = os.path.join(directory, "features.json")
    if os.path.exists(features):
        with open(features) as file:
            spec = json.load(file)
        label = spec.get("featuresDict", {}).get("features", {}).get("label", {})
        classes = label.get("classLabel", {}).get("numClasses")
        return "tfds", int(classes) if classes else None
    if os.path.exists(manifest):
        with open(manifest) as file:
            info = json.load(file)
        if "num_classes" in info:
            return "vgg", int(info["num_classes"])
    # No metadata: tell the formats apart by the keys of the first record.
    for raw in tf.data.TFRecordDataset(first_file).take(1):
        keys = tf.train.Example.FromString(raw.numpy()).features.feature
        return ("tfds" if "image" in keys and schema.ENCODED not in keys else "vgg"), None
    return "vgg", None


def default_label_offset(data_format):
    """The stored label of the first class: 1 for our and slim's shards (0 is reserved), 0 for
    tfds."""
    return 0 if data_format == "tfds" else schema.LABEL_OFFSET


def class_names(data_dir, num_classes, label_offset=None):
    """Returns ``(synsets, names)`` of a model's output classes, index by index, or None.

    Output index i is the class whose stored label is ``i + label_offset``. Our converter's
    ``dataset_info.json`` names its classes; a tfds folder or metadata-less shards of 1,000
    classes are ImageNet's (tfds order). Index of the reserved label 0 (a model trained with
    ``label_offset=0`` on our shards) is called "background", as slim calls it.
    """
    try:
        files, data_format, _ = resolve_files(data_dir, "validation")
    except FileNotFoundError:
        files, data_format, _ = resolve_files(data_dir, "train")
    if label_offset is None:
        label_offset = default_label_offset(data_format)
    manifest = os.path.join(os.path.dirname(files[0]), schema.MANIFEST)
    if data_format == "vgg" and os.path.exists(manifest):
        with open(manifest) as file:
            info = json.load(file)
        synsets, texts, first = info["labels"], info["label_text"], info["label_offset"]
    else:
        first = default_label_offset(data_format)  # ImageNet's first label in this format
        if num_classes + label_offset - first != imagenet_labels.NUM_IMAGENET_CLASSES:
            return None
        synsets, texts = imagenet_labels.synsets(), imagenet_labels.synset_names()
    result_synsets, result_names = [], []
    for index in range(num_classes):
        position = index + label_offset - first
        if 0 <= position < len(synsets):
            result_synsets.append(synsets[position])
            result_names.append(texts[position])
        elif position == -1:
            result_synsets.append("background")
            result_names.append("background")
        else:
            raise ValueError(f"output {index} of {num_classes} has no class in {data_dir} "
                             f"({len(synsets)} classes, label_offset={label_offset})")
    return result_synsets, result_names


def _file_records(path, size, skip_corrupt, corrupt_counter):
    """The records of one file, checked to account for all of its ``size`` bytes."""
    records = tf.data.TFRecordDataset(path).ignore_errors()
    stream = records.map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def count(consumed, item):
        record, is_end = item
        framing = tf.where(is_end, tf.constant(0, tf.int64), _TFRECORD_FRAMING)
        consumed += tf.cast(tf.strings.length(record), tf.int64) + framing
        return consumed, (record, is_end, consumed)

    def check(record, is_end, consumed):
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, size))
        if skip_corrupt:
            action = tf.cond(complete, lambda: tf.constant(0, tf.int64),
                             lambda: _count_corrupt(path, consumed, size, corrupt_counter))
        else:
            action = tf.debugging.Assert(complete, [
                "corrupt or truncated TFRecord shard", path, "only", consumed, "of", size,
                "bytes could be read; pass skip_corrupt=True (--skip_corrupt) to skip the "
                "rest of such shards"], summarize=5)
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


def make_corrupt_counter():
    """A CPU variable counting the shards found corrupt by pipelines with ``skip_corrupt``."""
    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="corrupt_shards")


def _records(files, *, input_context, shuffle, seed, deterministic, skip_corrupt,
             corrupt_counter, cycle_length):
    """``(record, path)`` of the files of this input pipeline, interleaved."""
    sizes = [tf.io.gfile.stat(f).length for f in files]
    dataset = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} shards cannot feed "
                             f"{input_context.num_input_pipelines} input pipelines")
        dataset = dataset.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    read = lambda path, size: _file_records(path, size, skip_corrupt, corrupt_counter)  # noqa: E731
    if cycle_length <= 1:
        return dataset.interleave(read, cycle_length=1)  # one file after the other
    return dataset.interleave(read, cycle_length=min(cycle_length, len(files)),
                              num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def _parser(data_format, label_offset, num_classes):
    keys = _TFDS_KEYS if data_format == "tfds" else _VGG_KEYS
    spec = {keys["encoded"]: tf.io.FixedLenFeature([], tf.string),
            keys["label"]: tf.io.FixedLenFeature([], tf.int64),
            keys["filename"]: tf.io.FixedLenFeature([], tf.string, default_value="")}

    def parse(record, path):
        features = tf.io.parse_single_example(record, spec)
        label = features[keys["label"]] - label_offset
        valid = tf.logical_and(label >= 0, label < num_classes)
        check = tf.debugging.Assert(valid, [
            "label", features[keys["label"]], "of", features[keys["filename"]], "in shard",
            path, f"is outside [0, {num_classes}) after label_offset={label_offset}: shards "
            "of our converter and slim's use label_offset=1, tfds uses 0"], summarize=3)
        with tf.control_dependencies([check]):
            label = tf.cast(tf.identity(label), tf.int32)
        return features[keys["encoded"]], label, features[keys["filename"]]

    return parse


def _prepare(file_pattern, split, num_classes, label_offset, data_format):
    files, found_format, found_classes = resolve_files(file_pattern, split)
    data_format = data_format or found_format
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    num_classes = num_classes or found_classes
    if not num_classes:
        raise ValueError(f"num_classes is required: no {schema.MANIFEST} or features.json "
                         f"beside {files[0]}")
    if label_offset is None:
        label_offset = default_label_offset(data_format)
    return files, _parser(data_format, label_offset, int(num_classes))


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def make_train_dataset(file_pattern, *, batch_size, num_classes=None, scale=(256, 512),
                       crop_size=224, label_offset=None, input_context=None,
                       deterministic=False, seed=None, shuffle_buffer=10_000, skip_corrupt=False,
                       corrupt_counter=None, data_format=None, split="train", repeat=True,
                       cycle_length=16, skip_batches=0):
    """The §3.1 training input: batches of random crops at training scale S.

    Args:
        file_pattern: glob of shards, list of files, our converter's output folder or a
            tfds-prepared folder.
        batch_size: global batch size; each input pipeline yields the per-replica batch
            ``batch_size / input_context.num_replicas_in_sync``.
        num_classes: default: ``num_classes`` of the metadata beside the shards.
        scale: S as ``(Smin, Smax)`` (jitter, §3.1: 256–512) or one number (fixed S).
        crop_size: side of the square crops (224).
        label_offset: subtracted from stored labels (default: 1 for our/slim shards, 0 tfds).
        input_context: ``tf.distribute.InputContext`` of
            ``strategy.distribute_datasets_from_function``: shards files per input pipeline.
        deterministic: same batches in the same order for the same seed.
        seed: seed of shuffles and augmentation (required for reproducible runs).
        shuffle_buffer: records in the shuffle buffer.
        skip_corrupt: skip the rest of a corrupt shard (counted) instead of failing.
        corrupt_counter: variable incremented per corrupt shard (``make_corrupt_counter``).
        data_format: "vgg" or "tfds" (default: detected).
        split: which shards of a folder to read.
        repeat: repeat forever (training); False for one pass.
        cycle_length: shards read in parallel.
        skip_batches: per-replica batches this input pipeline already produced (a resumed
            deterministic run): their records and seeds are skipped before decoding, so the
            pipeline continues exactly where it stopped.

    Returns:
        A dataset of ``(uint8 images [batch, crop, crop, 3], int32 labels [batch])``.
    """
    scale = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
    if scale[0] > scale[1] or scale[0] < crop_size:
        raise ValueError(f"scale must be S or (Smin, Smax) with crop_size {crop_size} <= Smin <= "
                         f"Smax, got {scale}")
    per_replica = batch_size
    if input_context is not None:
        if batch_size % input_context.num_replicas_in_sync:
            raise ValueError(f"global batch size {batch_size} is not divisible by "
                             f"{input_context.num_replicas_in_sync} replicas")
        per_replica = input_context.get_per_replica_batch_size(batch_size)
    if deterministic and seed is None:
        seed = 0
    if seed is not None and input_context is not None:
        seed += 1000 * input_context.input_pipeline_id  # other crops on each pipeline
    files, parse = _prepare(file_pattern, split, num_classes, label_offset, data_format)
    records = _records(files, input_context=input_context, shuffle=True, seed=seed,
                       deterministic=deterministic, skip_corrupt=skip_corrupt,
                       corrupt_counter=corrupt_counter, cycle_length=cycle_length)
    records = records.shuffle(shuffle_buffer, seed=None if seed is None else seed + 1,
                              reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    if deterministic:
        # A seed per element, zipped in before the parallel map: each crop is a function of
        # its element and the seed, whatever the order in which the map runs.
        seeds = tf.data.Dataset.random(seed=seed + 2).batch(2)

        def augment(item, element_seed):
            encoded, label, _ = parse(*item)
            return preprocessing.train_crop(encoded, scale, crop_size, element_seed), label

        dataset = tf.data.Dataset.zip((records, seeds)).skip(skip_batches * per_replica)
    else:
        def augment(record, path):
            encoded, label, _ = parse(record, path)
            return preprocessing.train_crop(encoded, scale, crop_size), label

        dataset = records.skip(skip_batches * per_replica)
    dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    dataset = dataset.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE)
    return dataset.with_options(_options(deterministic))


EVAL_MODES = ("center", "dense", "multicrop")


def make_eval_dataset(file_pattern, *, mode="center", scale=256, crop_size=224, batch_size=32,
                      num_classes=None, label_offset=None, data_format=None, split="validation",
                      skip_corrupt=False, corrupt_counter=None, grid=5, input_context=None):
    """The §3.2 test inputs at test scale Q (``scale``), in file order, deterministic.

    Modes:
        ``center``: shorter side → Q, the central ``crop_size`` crop; batches of
            ``(images [b, crop, crop, 3], labels [b], filenames [b])``.
        ``dense``: the whole image rescaled to shorter side Q, for the fully convolutional net.
            Image sizes differ, so each element is one image: ``(image [1, H, W, 3], label [1],
            filename [1])`` (batched per image; the evaluator adds the mirror image).
        ``multicrop``: a ``grid``×``grid`` regular grid of crops and their mirrors at Q:
            ``(crops [2·grid², crop, crop, 3], label, filename)`` per image.

    Every element carries its label (after ``label_offset``) and file name.
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    if mode != "dense" and scale < crop_size:
        raise ValueError(f"test scale Q={scale} is smaller than the {crop_size} crop")
    files, parse = _prepare(file_pattern, split, num_classes, label_offset, data_format)
    records = _records(files, input_context=input_context, shuffle=False, seed=None,
                       deterministic=True, skip_corrupt=skip_corrupt,
                       corrupt_counter=corrupt_counter, cycle_length=1)

    def rescaled(record, path):
        encoded, label, filename = parse(record, path)
        return preprocessing.rescale_shorter_side(preprocessing.decode(encoded), scale), label, \
            filename

    dataset = records.map(rescaled, num_parallel_calls=AUTOTUNE, deterministic=True)
    if mode == "center":
        dataset = dataset.map(
            lambda image, label, name: (preprocessing.center_crop(image, crop_size), label,
                                        name), num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(batch_size)
    elif mode == "dense":
        dataset = dataset.batch(1)
    else:
        dataset = dataset.map(
            lambda image, label, name: (preprocessing.multi_crops(image, crop_size, grid), label,
                                        name), num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))
