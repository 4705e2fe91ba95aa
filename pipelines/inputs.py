"""tf.data inputs for training (§3.1) and evaluation (§3.2): pure functions from shards to
``tf.data.Dataset``, in three parts, each usable alone:

- the reader, ``read_records``: files → ``(record, path)``: this input pipeline's share of the
  shards, their integrity checked (``shard_integrity``: sizes against the manifest before
  reading, or every record accounted for), interleaved;
- the parser, ``make_parser``: a record → ``(encoded image, label, file name)``, for our
  converter's and slim's shards or tfds's ``imagenet2012`` (``dataset_info.RECORD_KEYS``), the
  label shifted by ``label_offset`` and checked to lie in [0, num_classes): a label outside
  stops the pipeline with an error naming the shard;
- the augmentation of ``preprocessing``: §3.1's random crop of the image rescaled to a random S,
  and flip (``train_crop``); §3.2's rescale to Q and centre crop.

``make_train_dataset`` and ``make_eval_dataset`` compose them. Reads our converter's shards,
slim's ``build_imagenet_data.py`` shards (same keys), or a tfds-prepared ``imagenet2012``
directory, as ``dataset_info.read_info`` describes them.
"""

import contextlib
import dataclasses
import os

import tensorflow as tf

from pipelines import augment as augment_ops
from pipelines import auto_augment
from pipelines import data_service as service
from pipelines import dataset_info
from pipelines import input_config
from pipelines import preprocessing
from pipelines import shard_integrity
from pipelines.foundation import errors
from pipelines.foundation import storage
from pipelines.input_config import EvalInputConfig
from pipelines.input_config import InputConfig  # noqa: F401 - part of this module's API

AUTOTUNE = tf.data.AUTOTUNE
# Every function a dataset here maps is written with TensorFlow's own control flow (tf.cond,
# Python conditions on Python values only): it runs as it is. AutoGraph's conversion of each,
# which tf.data would otherwise make, cost 3 of the 6 s a tiny run takes to train an epoch.
as_written = tf.autograph.experimental.do_not_convert
CENTER_CROPS, WHOLE_IMAGES = input_config.CENTER_CROPS, input_config.WHOLE_IMAGES
INPUT_MODES = input_config.INPUT_MODES


def pipeline_files(files, input_context=None):
    """``(files, record share)``: the shards this input pipeline reads, every
    ``num_input_pipelines``-th file from its ``input_pipeline_id`` (all of them without a
    context, or with one pipeline), and None; or, with fewer shards than pipelines, every shard
    and ``(pipelines, id)``: the share of their records (every N-th) this pipeline keeps."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return list(files), None
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < count:
        return list(files), (count, index)
    return list(files[index::count]), None


def read_records(files, expected, *, shuffle=False, seed=None, deterministic=True,
                 cycle_length=1, skip_corrupt=False, corrupt_counter=None, verify=False,
                 remote=False):
    """``(record, path)`` of ``files``, by the route of ``shard_integrity``: sizes checked first
    where ``expected`` (``DatasetInfo.expected_shards``) knows them, each record accounted for
    where it does not (or with ``skip_corrupt``). ``shuffle``: the files' order, each pass;
    ``cycle_length``: files read at once (1: one after the other). ``remote``: the graph runs on
    tf.data service workers, where this process's counter variable is not: shards skipped while
    reading are logged there, not counted here."""
    known = all("size_bytes" in expected.get(os.path.basename(f), {}) for f in files)
    if known or verify:
        files = shard_integrity.checked_files(files, expected, skip_corrupt=skip_corrupt,
                                              corrupt_counter=corrupt_counter, verify=verify)
    if known and not skip_corrupt:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        read = shard_integrity.plain_records
    else:
        sizes = tf.constant([storage.size(f) for f in files], tf.int64)
        dataset = tf.data.Dataset.from_tensor_slices((files, sizes))
        read = lambda path, size: shard_integrity.accounted_records(  # noqa: E731
            path, size, skip_corrupt, None if remote else corrupt_counter)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    read = as_written(read)
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


def parser_of(info, num_classes=None, label_offset=None):
    """``make_parser`` for the records of ``info`` (a ``DatasetInfo``): their keys, and the
    classes and label offset of its metadata unless given.

    Raises:
        UserError: if the number of classes is neither given nor in the metadata.
    """
    num_classes = num_classes or info.num_classes
    if not num_classes:
        raise errors.UserError(f"num_classes is required: no dataset_info.json or features.json "
                               f"beside the shards of {info.location}")
    if label_offset is None:
        label_offset = info.label_offset
    return make_parser(info.record_keys, label_offset, int(num_classes))


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


@contextlib.contextmanager
def _own_seeds():
    """The seeded ``tf.data`` ops built meanwhile (the shuffles, the seeds' stream) draw from
    their own seeds alone. TensorFlow pairs an op's seed with the global one where a program has
    set it (``tf.random.set_seed``, ``keras.utils.set_random_seed``): a ``--deterministic`` run's
    order and crops would then depend on what the program calling it did before, and a run
    resumed by another program would not continue it. The global seed is hidden while they are
    built (private state of TensorFlow's eager context, read only by ``get_seed``; its stream of
    operation seeds untouched)."""
    from tensorflow.python.eager import context  # no public way to hide it without a reset

    eager = context.context()
    hidden = getattr(eager, "_seed", None)
    if hidden is None or not tf.executing_eagerly():
        yield
        return
    eager._seed = None
    try:
        yield
    finally:
        eager._seed = hidden


@_own_seeds()  # a context manager of contextlib's is a decorator too
def make_train_dataset(source, config, *, input_context=None, corrupt_counter=None,
                       skip_batches=0):
    """The §3.1 training input: batches of random crops at training scale S.

    Args:
        source: a folder of shards (our converter's, slim's or tfds's), a glob pattern, a list
            of files, or their ``dataset_info.DatasetInfo``.
        config: an ``InputConfig`` (batch, scale, crop, order, damaged shards, service).
        input_context: ``tf.distribute.InputContext`` of
            ``strategy.distribute_datasets_from_function``: shards files per input pipeline
            and sets the per-replica batch.
        corrupt_counter: variable incremented per corrupt shard (``make_corrupt_counter``).
        skip_batches: per-replica batches this input pipeline already produced (a resumed
            deterministic run): their records and seeds are skipped before decoding, so the
            pipeline continues exactly where it stopped.

    Returns:
        A dataset of ``(uint8 images [batch, crop, crop, 3], int32 labels [batch])``.
    """
    info = dataset_info.read_info(source)
    parse = parser_of(info, config.num_classes, config.label_offset)
    per_replica, seed = config.batch_size, config.seed
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(config.batch_size)
        if seed is not None:
            seed += 1000 * input_context.input_pipeline_id  # other crops on each pipeline
    # On the tf.data service, every worker reads every shard: the service splits the work.
    files, share = pipeline_files(info.split_files(config.split),
                                  None if config.data_service else input_context)
    # A share of records needs every pipeline to read the files in one order: not shuffled.
    records = read_records(files, info.expected_shards(), shuffle=share is None, seed=seed,
                           deterministic=config.deterministic if share is None else True,
                           cycle_length=config.cycle_length,
                           skip_corrupt=config.skip_corrupt, corrupt_counter=corrupt_counter,
                           verify=config.verify_shards, remote=bool(config.data_service))
    if share is not None:
        records = records.shard(*share)
    records = records.shuffle(config.shuffle_buffer, seed=None if seed is None else seed + 1,
                              reshuffle_each_iteration=True)
    if config.repeat:
        records = records.repeat()
    augment = _element_augmentation(config, parse)
    if config.seeded_elements:
        dataset = tf.data.Dataset.zip((records, _seeds(config, seed, 2)))
    else:
        unseeded = augment
        dataset, augment = records, as_written(lambda *record: unseeded(record, None))
    # Repeated augmentation: each record's ra_reps copies made from one decode, in a row.
    skipped, reps = skip_batches * per_replica, config.ra_reps
    dataset = dataset.skip(skipped // reps)
    dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE,
                          deterministic=config.deterministic)
    if reps > 1:
        dataset = dataset.unbatch().skip(skipped % reps)
    dataset = dataset.batch(per_replica, drop_remainder=True)
    if config.ra_reps > 1 and input_context is not None:
        dataset = _spread_copies(dataset, input_context.num_replicas_in_sync
                                 // input_context.num_input_pipelines)
    if config.augments_batches:
        dataset = _batch_augmentation(dataset, config, parse_classes(info, config), seed,
                                      skip_batches)
    if config.data_service:  # everything above runs on the service's workers
        dataset = service.distribute(dataset, config.data_service, config.data_service_job)
    return dataset.prefetch(AUTOTUNE).with_options(_options(config.deterministic))


def _seeds(config, seed, offset):
    """A stateless seed ``[2]`` per element: from ``seed`` (a deterministic run: each crop a
    function of its element and the seed, whatever order the parallel map runs in), or drawn
    anew each pass."""
    if config.deterministic:
        return tf.data.Dataset.random(seed=seed + offset).batch(2)
    return tf.data.Dataset.random().batch(2)


def _element_augmentation(config, parse):
    """The map from ``(record, seed)`` to ``(uint8 crop, label)``: §3.1's crop, or
    torchvision's random resized crop, and the flip; with ``ra_reps`` copies, to ``(crops
    [ra_reps, ...], labels [ra_reps])``, each copy its own draws from one decode."""
    scale, crop_size, reps = config.scale, config.crop_size, config.ra_reps

    def draw(shape, seed):  # (window, flip)
        if config.random_resized_crop:
            return augment_ops.resized_crop_draws(shape, config.random_resized_crop, seed)
        window, _, flip = preprocessing.sample_augmentation(shape, scale, crop_size, seed)
        return window, flip  # without a seed: §3.1's own random stream, not reproducible

    @as_written
    def augment(record, element_seed):
        encoded, label, _ = parse(*record)
        shape = preprocessing.image_shape(encoded)
        if reps == 1:
            return preprocessing.window_crop(encoded, *draw(shape, element_seed),
                                             crop_size), label
        seeds = ([None] * reps if element_seed is None
                 else tf.unstack(augment_ops.split(element_seed, reps)))
        return (preprocessing.window_crops(encoded, [draw(shape, s) for s in seeds], crop_size),
                tf.fill([reps], label))

    return augment


def _spread_copies(dataset, replicas):
    """Per-replica batches regrouped so that element ``i`` of every ``replicas`` batches goes to
    replica ``i % replicas``: the copies of repeated augmentation, in a row, land on different
    replicas (torchvision's ``RASampler``: every replica-th index)."""
    if replicas <= 1:
        return dataset

    def spread(tensor):  # [replicas, b, ...] in stream order → [replicas, b, ...] by stride
        _, batch, *rest = tensor.shape
        rows = tf.reshape(tensor, [batch, replicas, *rest])
        return tf.transpose(rows, [1, 0, *range(2, 2 + len(rest))])

    def regroup(images, labels):
        return spread(images), spread(labels)

    grouped = dataset.batch(replicas, drop_remainder=True).map(as_written(regroup))
    return grouped.unbatch()


def parse_classes(info, config):
    """The classes the labels index (``config.num_classes``, or the metadata's)."""
    return int(config.num_classes or info.num_classes)


def _batch_augmentation(dataset, config, num_classes, seed, skip_batches):
    """Each batch after ``--auto_augment``, random erasing, and mixup or cutmix (one-hot
    labels), drawn from a seed per batch (in a deterministic run, resumed at the batch it
    stopped at). Done on batches, not images: the draws are vectors and each op a few calls a
    batch, where per image they cost a third of the input's time."""
    seeds = _seeds(config, seed, 3).skip(skip_batches if config.deterministic else 0)

    @as_written
    def augment(batch, batch_seed):
        images, labels = batch
        seeds = augment_ops.split(batch_seed, 3)
        if config.auto_augment != "none":
            images = auto_augment.augment_batch(images, config.auto_augment, seeds[0])
        if config.random_erase:
            images = augment_ops.random_erase_batch(images, config.random_erase,
                                                    config.erase_fill, seeds[1])
        if config.mixes:
            images, labels = augment_ops.mix_batch(images, labels, num_classes,
                                                   config.mixup_alpha, config.cutmix_alpha,
                                                   seeds[2])
        return images, labels

    return tf.data.Dataset.zip((dataset, seeds)).map(augment, num_parallel_calls=AUTOTUNE,
                                                     deterministic=config.deterministic)


def make_eval_dataset(source, config=None, *, input_context=None, corrupt_counter=None,
                      **fields):
    """The §3.2 test inputs at test scale Q, in file order, deterministic.

    Args:
        source: as ``make_train_dataset``'s.
        config: an ``EvalInputConfig`` (mode, Q, crop, batch, classes, which images); or, in its
            place, its ``fields`` as keywords (``mode=WHOLE_IMAGES, test_scale=256``).
        input_context: ``tf.distribute.InputContext``: shards files per input pipeline.
        corrupt_counter: variable incremented per corrupt shard (``make_corrupt_counter``).

    Returns:
        With ``center_crops``: batches of ``(images [b, crop, crop, 3], labels [b], filenames
        [b])``; with ``whole_images``, each image whole, rescaled to shorter side Q (sizes
        differ): ``(image [1, H, W, 3], label [1], filename [1])``. Every element carries its
        label (after ``label_offset``) and file name.
    """
    config = dataclasses.replace(config, **fields) if config else EvalInputConfig(**fields)
    info = dataset_info.read_info(source)
    parse = parser_of(info, config.num_classes, config.label_offset)
    files, share = pipeline_files(info.split_files(config.split), input_context)
    records = read_records(files, info.expected_shards(), skip_corrupt=config.skip_corrupt,
                           corrupt_counter=corrupt_counter, verify=config.verify_shards)
    if share is not None:
        records = records.shard(*share)
    if config.max_images is not None:
        records = records.take(config.max_images)
    if config.shard is not None:
        records = records.shard(*config.shard)
    test_scale, crop_size = config.test_scale, config.crop_size

    @as_written
    def rescaled(record, path):
        encoded, label, filename = parse(record, path)
        return preprocessing.test_image(encoded, test_scale), label, filename

    dataset = records.map(rescaled, num_parallel_calls=AUTOTUNE, deterministic=True)
    if config.mode == CENTER_CROPS:
        dataset = dataset.map(
            as_written(lambda image, label, name: (preprocessing.center_crop(image, crop_size),
                                                   label, name)),
            num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(config.batch_size)
    else:
        dataset = dataset.batch(1)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))
