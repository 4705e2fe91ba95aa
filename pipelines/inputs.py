"""tf.data inputs for training (§3.1) and evaluation (§3.2): pure functions from shards to
``tf.data.Dataset``.

Reads our converter's shards, slim's ``build_imagenet_data.py`` shards (same keys), or a
tfds-prepared ``imagenet2012`` directory, as ``dataset_info.read_info`` describes them. Labels are
shifted by ``label_offset`` (1 for our and slim's shards, whose label 0 is reserved; 0 for tfds)
and checked against ``num_classes``: a label outside [0, num_classes) stops the pipeline with an
error naming the shard. Damaged shards fail naming themselves, or with ``skip_corrupt`` are left
out and counted (``shard_integrity``: sizes checked against the manifest before reading).
"""

import os

import tensorflow as tf

from pipelines import data_service as service
from pipelines import dataset_info
from pipelines import preprocessing
from pipelines import shard_integrity

AUTOTUNE = tf.data.AUTOTUNE


def _records(files, expected, *, input_context, shuffle, seed, deterministic, skip_corrupt,
             corrupt_counter, cycle_length, verify, remote=False):
    """``(record, path)`` of the files of this input pipeline, interleaved, by the route of
    ``shard_integrity``: sizes checked first where ``expected`` knows them, each record
    accounted for where it does not (or with ``skip_corrupt``). ``remote``: the graph runs on
    tf.data service workers, where this process's counter variable is not: shards skipped
    while reading are logged there, not counted here."""
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} shards cannot feed "
                             f"{input_context.num_input_pipelines} input pipelines")
        files = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
    known = all("size_bytes" in expected.get(os.path.basename(f), {}) for f in files)
    if known or verify:
        files = shard_integrity.checked_files(files, expected, skip_corrupt=skip_corrupt,
                                              corrupt_counter=corrupt_counter, verify=verify)
    if known and not skip_corrupt:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        read = shard_integrity.plain_records
    else:
        sizes = tf.constant([tf.io.gfile.stat(f).length for f in files], tf.int64)
        dataset = tf.data.Dataset.from_tensor_slices((files, sizes))
        read = lambda path, size: shard_integrity.accounted_records(  # noqa: E731
            path, size, skip_corrupt, None if remote else corrupt_counter)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if cycle_length <= 1:
        return dataset.interleave(read, cycle_length=1)  # one file after the other
    return dataset.interleave(read, cycle_length=min(cycle_length, len(files)),
                              num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def make_parser(keys, label_offset, num_classes):
    """A function ``(record, path) → (encoded image, label, file name)`` for records with the
    feature ``keys`` (``DatasetInfo.record_keys``), the label shifted by ``label_offset`` and
    checked to lie in [0, num_classes)."""
    spec = {keys["encoded"]: tf.io.FixedLenFeature([], tf.string),
            keys["label"]: tf.io.FixedLenFeature([], tf.int64),
            keys["filename"]: tf.io.FixedLenFeature([], tf.string, default_value="")}

    def parse(record, path):
        features = tf.io.parse_single_example(record, spec)
        label = features[keys["label"]] - label_offset
        valid = tf.logical_and(label >= 0, label < num_classes)

        def fail():  # the message is built only for a label that fails
            message = tf.strings.join([  # format() would quote the names
                "label ", tf.strings.as_string(features[keys["label"]]), " of ",
                features[keys["filename"]], " in shard ", path,
                f" is outside [0, {num_classes}) after label_offset={label_offset}: shards of "
                "our converter and slim's use --label_offset=1, tfds's 0; and --num_classes "
                "must cover every label"])
            with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
                return tf.constant(False)

        check = tf.cond(valid, lambda: tf.constant(True), fail)
        with tf.control_dependencies([check]):
            label = tf.cast(tf.identity(label), tf.int32)
        return features[keys["encoded"]], label, features[keys["filename"]]

    return parse


def _prepare(source, split, num_classes, label_offset, data_format):
    """The files of ``split``, what the metadata expects of them, and the parser of their
    records."""
    info = dataset_info.read_info(source)
    files = info.split_files(split)
    data_format = data_format or info.format
    if data_format not in dataset_info.FORMATS:
        raise ValueError(f"data_format must be one of {dataset_info.FORMATS}, "
                         f"got {data_format!r}")
    num_classes = num_classes or info.num_classes
    if not num_classes:
        raise ValueError(f"num_classes is required: no dataset_info.json or features.json "
                         f"beside {files[0]}")
    if label_offset is None:
        label_offset = info.label_offset
    keys = dataset_info.RECORD_KEYS["tfds" if data_format == "tfds" else "vgg"]
    return files, info.expected_shards(), make_parser(keys, label_offset, int(num_classes))


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def make_train_dataset(source, *, batch_size, num_classes=None, scale=(256, 512),
                       crop_size=224, label_offset=None, input_context=None,
                       deterministic=False, seed=None, shuffle_buffer=10_000, skip_corrupt=False,
                       corrupt_counter=None, data_format=None, split="train", repeat=True,
                       cycle_length=16, skip_batches=0, verify_shards=False, data_service=None,
                       data_service_job="vgg_train"):
    """The §3.1 training input: batches of random crops at training scale S.

    Args:
        source: a folder of shards (our converter's, slim's or tfds's), a glob pattern, a list
            of files, or their ``dataset_info.DatasetInfo``.
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
        skip_corrupt: leave out (or skip the rest of) a damaged shard, counted, instead of
            failing.
        corrupt_counter: variable incremented per corrupt shard (``make_corrupt_counter``).
        data_format: one of ``dataset_info.FORMATS`` (default: detected).
        split: which shards of a folder to read.
        repeat: repeat forever (training); False for one pass.
        cycle_length: shards read in parallel.
        skip_batches: per-replica batches this input pipeline already produced (a resumed
            deterministic run): their records and seeds are skipped before decoding, so the
            pipeline continues exactly where it stopped.
        verify_shards: compare every shard's sha256 with the manifest before reading (reads
            every byte once; sizes are always compared where the manifest records them).
        data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher: its workers run
            this pipeline (reading, decoding, cropping, batching) and send the batches
            (``pipelines.data_service``). Not with ``deterministic``: the service keeps no
            order.
        data_service_job: the job's name; every input pipeline that names it shares its batches.

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
    if data_service and deterministic:
        raise ValueError("a deterministic input cannot come from the tf.data service, which "
                         "keeps no order: drop --data_service or --deterministic")
    if deterministic and seed is None:
        seed = 0
    if seed is not None and input_context is not None:
        seed += 1000 * input_context.input_pipeline_id  # other crops on each pipeline
    files, expected, parse = _prepare(source, split, num_classes, label_offset, data_format)
    records = _records(files, expected, input_context=None if data_service else input_context,
                       shuffle=True, seed=seed, deterministic=deterministic,
                       skip_corrupt=skip_corrupt, corrupt_counter=corrupt_counter,
                       cycle_length=cycle_length, verify=verify_shards,
                       remote=bool(data_service))
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
    dataset = dataset.batch(per_replica, drop_remainder=True)
    if data_service:  # everything above runs on the service's workers
        dataset = service.distribute(dataset, data_service, data_service_job)
    return dataset.prefetch(AUTOTUNE).with_options(_options(deterministic))


EVAL_MODES = ("center", "dense")


def make_eval_dataset(source, *, mode="center", scale=256, crop_size=224, batch_size=32,
                      num_classes=None, label_offset=None, data_format=None, split="validation",
                      skip_corrupt=False, corrupt_counter=None, input_context=None,
                      verify_shards=False):
    """The §3.2 test inputs at test scale Q (``scale``), in file order, deterministic.

    Modes:
        ``center``: shorter side → Q, the central ``crop_size`` crop; batches of
            ``(images [b, crop, crop, 3], labels [b], filenames [b])``.
        ``dense``: the whole image rescaled to shorter side Q, for the fully convolutional net
            and the multi-crop grid. Image sizes differ, so each element is one image:
            ``(image [1, H, W, 3], label [1], filename [1])``.

    Every element carries its label (after ``label_offset``) and file name.
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    if mode == "center" and scale < crop_size:
        raise ValueError(f"test scale Q={scale} is smaller than the {crop_size} crop")
    files, expected, parse = _prepare(source, split, num_classes, label_offset, data_format)
    records = _records(files, expected, input_context=input_context, shuffle=False, seed=None,
                       deterministic=True, skip_corrupt=skip_corrupt,
                       corrupt_counter=corrupt_counter, cycle_length=1, verify=verify_shards)

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
    else:
        dataset = dataset.batch(1)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))
