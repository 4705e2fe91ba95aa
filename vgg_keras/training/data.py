"""The data of a run: its classes and epoch size, learned from metadata before anything is read
(start-up grows with the number of shards, never with the images), and its training and
validation inputs.

The epoch size comes from ``--train_examples``, or the data's metadata (our manifest, tfds's
``dataset_info.json``), or, for shards without any (slim's), from counting their records once:
with a progress line, then cached in the model dir for every later start of the run.
"""

import dataclasses
import hashlib
import os

import tensorflow as tf

from pipelines import dataset_info
from pipelines import inputs
from pipelines import shard_integrity
from pipelines.foundation import errors
from pipelines.foundation import progress
from pipelines.foundation import storage
from vgg_keras import protocols
from vgg_keras.artifacts import layout

_FORMAT_NAMES = {"vgg": "vgg-convert's shards and manifest", "tfds": "tfds's imagenet2012",
                 "slim": "slim's shards, no metadata"}


@dataclasses.dataclass(frozen=True)
class RunData:
    """What a run knows of its data before it starts."""

    info: dataset_info.DatasetInfo
    num_classes: int
    num_train: int
    train_examples_from: str  # where num_train came from, in words
    steps_per_epoch: int
    total_steps: int

    def describe(self):
        """The data in words, for the first line of a run's log."""
        return (f"{self.info.location} ({_FORMAT_NAMES[self.info.format]}): "
                f"{self.num_train:,} training images ({self.train_examples_from}), "
                f"{self.num_classes} classes")


def read_run_data(cfg, info=None, show_progress=None):
    """The classes and epoch size of ``cfg.data_dir`` (``info``: its ``DatasetInfo``, if read
    already), and the run's length in steps.

    Raises:
        FileNotFoundError: if the data dir holds no training shards.
        ValueError: if the number of classes is unknown or the split is smaller than a batch.
    """
    info = info or dataset_info.read_info(cfg.data_dir)
    info.split_files("train")  # no training shards: say so before anything else
    num_classes = cfg.num_classes or info.num_classes
    if not num_classes:
        raise errors.UserError(f"--num_classes is needed: the shards in {cfg.data_dir} carry no "
                               "metadata naming their classes (no dataset_info.json)")
    _check_classes(cfg, info)
    num_train, source, checked = _train_examples(cfg, info, show_progress)
    if checked:  # slim's shards, read through once: from now on, checked as ours are
        info = with_checked_sizes(info, checked)
    if num_train < cfg.batch_size:
        raise errors.UserError(f"the training split of {cfg.data_dir} has {num_train} images, "
                               f"fewer than one batch of --batch_size={cfg.batch_size}: lower "
                               "--batch_size")
    steps_per_epoch = num_train // cfg.batch_size
    total_steps = cfg.train_steps or cfg.train_epochs * steps_per_epoch
    return RunData(info, int(num_classes), num_train, source, steps_per_epoch, total_steps)


def _check_classes(cfg, info):
    """Refuses a ``--num_classes`` above the data's label space: an output no label reaches
    trains toward zero and names no class (slim's "background", label 0 of our shards read with
    ``--label_offset=0``, is within it). Fewer outputs are for data that holds only the first
    classes of its label space (a partial ImageNet conversion keeps ImageNet's labels); a label
    beyond them stops the input, naming its shard."""
    if not (cfg.num_classes and info.num_classes):
        return
    label_offset = info.label_offset if cfg.label_offset is None else cfg.label_offset
    needed = info.num_classes + info.label_offset - label_offset
    if cfg.num_classes > needed:
        raise errors.UserError(
            f"--num_classes={cfg.num_classes} does not fit {cfg.data_dir}: its {info.num_classes}"
            f" classes (labels from {info.label_offset}, read with label_offset={label_offset}) "
            f"need {needed} outputs; give --num_classes={needed}, or leave it out")


def _train_examples(cfg, info, show_progress):
    """(the training split's size, where it came from, and ``[[shard name, size]]`` of shards
    without metadata that were read through whole: counted now, or before with these sizes)."""
    if cfg.train_examples:
        return cfg.train_examples, "given by --train_examples", None
    if info.num_examples.get("train") is not None:
        return info.num_examples["train"], "from its metadata", None
    files = info.split_files("train")
    cache = os.path.join(cfg.model_dir, layout.TRAIN_EXAMPLES_FILE)
    identity = info.shard_sizes(files)  # no manifest here: one stat per shard
    cached = storage.read_json(cache, damaged=None)  # a damaged cache: counted again
    if cached and cached.get("shards") == identity:  # a shard whose size changed is recounted
        return (cached["num_examples"], f"counted before, cached in {cache}",
                None if cached.get("damaged") else identity)
    count, damaged = count_shards(files, cfg.skip_corrupt, show_progress)
    storage.makedirs(cfg.model_dir)
    storage.write_json(cache, {"data_dir": storage.absolute(cfg.data_dir), "num_examples": count,
                               "shards": identity, "damaged": damaged})
    return (count, f"counted once in {len(files)} shards without metadata, cached in {cache}",
            None if damaged else identity)


def count_shards(files, skip_corrupt=False, show_progress=None):
    """``(records, damaged shards)`` of ``files``, read shard by shard with TensorFlow's checks
    (every record's CRC), reporting progress: shards without metadata are checked once so.

    Raises:
        UserError: naming a damaged shard, unless ``skip_corrupt`` (then it counts 0 and is
            listed).
    """
    import tensorflow as tf

    meter = progress.Progress(len(files), label="counting training records (no metadata):",
                              unit="shards", show=show_progress, interval=10.0)
    total, damaged = 0, []
    for index, path in enumerate(files, 1):
        try:
            total += dataset_info.count_records([path])
        except tf.errors.DataLossError as error:
            if not skip_corrupt:
                raise errors.UserError(
                    f"shard {path} is damaged ({errors.one_line(error)}): convert it again, or "
                    "pass --skip_corrupt to leave such shards out") from None
            damaged.append(path)
        meter.update(index, extra=f"{total:,} records")
    meter.close(extra=f"{total:,} records")
    return total, damaged


def with_checked_sizes(info, sizes):
    """``info`` with the sizes of training shards that were read through whole (``sizes``:
    ``[[file name, size]]``): the input then compares each shard's size before reading and
    reads it plainly, as our converter's shards with their manifest, instead of accounting for
    every record (a shard whose size has changed since is refused by name)."""
    recorded = {name: {"size_bytes": size, "recorded_by": "the count of its records"}
                for name, size in sizes}
    return dataclasses.replace(info, shards={**info.shards, "train": recorded})


def explain_data_loss(data, error):
    """The ``ValueError`` naming the damaged shard behind a ``DataLossError`` of a run."""
    files = [f for split in data.info.files for f in data.info.files[split]]
    return shard_integrity.explain(error, files, data.info.expected_shards())


def train_dataset_fn(cfg, data, start_step, corrupt_counter):
    """The ``dataset_fn`` of ``strategy.distribute_datasets_from_function``: each input
    pipeline's share of the training input, resumed at ``start_step`` when deterministic."""
    config = cfg.input_config(data.num_classes, data_service_job(cfg))

    def dataset_fn(context):
        # A deterministic run resumes its input where it stopped: skip what it consumed.
        consumed = start_step * context.num_replicas_in_sync // context.num_input_pipelines
        return inputs.make_train_dataset(
            data.info, config, input_context=context, corrupt_counter=corrupt_counter,
            skip_batches=consumed if cfg.deterministic else 0)

    return dataset_fn


def data_service_job(cfg):
    """The tf.data service job of a run: one per model dir, shared by all its input pipelines
    (and continued by a resumed run while the dispatcher keeps it)."""
    digest = hashlib.sha256(storage.absolute(cfg.model_dir).encode()).hexdigest()[:12]
    return f"vgg_train_{digest}"


def eval_dataset(cfg, data, corrupt_counter, workers=1):
    """The validation split's centre crops at vgg-evaluate's default Q (§4.1); for ``workers``
    workers with fewer validation shards than that, shared among them by batches rather than by
    files (which TensorFlow's default would refuse)."""
    dataset = inputs.make_eval_dataset(data.info, inputs.EvalInputConfig(
        mode=protocols.INPUT_MODES[protocols.SINGLE],
        test_scale=cfg.val_resize_size or protocols.default_test_scale(cfg.scale),
        crop_size=cfg.crop_size,
        batch_size=cfg.batch_size, num_classes=data.num_classes,
        label_offset=cfg.label_offset, skip_corrupt=cfg.skip_corrupt,
        verify_shards=cfg.verify_shards), corrupt_counter=corrupt_counter)
    dataset = dataset.map(inputs.as_written(lambda images, labels, _: (images, labels)))
    if workers > len(data.info.split_files("validation")):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        dataset = dataset.with_options(options)
    return dataset
