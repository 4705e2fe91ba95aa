"""§3.1 training: mini-batch SGD with momentum 0.9, weight decay 5·10⁻⁴ (Caffe's convention, on
kernels only), dropout 0.5 on fc1 and fc2, learning rate 10⁻² divided by 10 whenever the
validation accuracy stops improving, 74 epochs of batches of 256; on one device, several GPUs
(``MirroredStrategy``), several machines (``MultiWorkerMirroredStrategy``) or a TPU.

The loop is our own rather than ``Model.fit``, so that a run killed at any step resumes at that
step: model, optimizer (momentum), step, learning-rate state and (with ``deterministic``) the
input position are restored from ``MODEL_DIR/backup/``. Keras 3's ``BackupAndRestore``
restores only the epoch and silently redoes the rest of it.
"""

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time

import keras
import tensorflow as tf
from absl import logging

import pipelines
from pipelines import inputs
from pipelines import schema
from vgg_keras import builder
from vgg_keras import configs
from vgg_keras import evaluation
from vgg_keras import initializers
from vgg_keras import weights as vgg_weights

STRATEGIES = ("mirrored", "multi_worker", "one_device", "tpu", "default")
LR_SCHEDULES = ("plateau", "step", "cosine")
DTYPES = ("float32", "bfloat16", "float16")
PLATEAU_PATIENCE = 1  # §3.1: "decreased by a factor of 10 when the validation set accuracy
PLATEAU_FACTOR = 0.1  # stopped improving"
PLATEAU_MIN_DELTA = 1e-4
CURVE_FILE = "training_curve.png"  # beside logs/ (TensorBoard) and training_log.csv


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, inconsistent data); the message says why."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; the defaults are the paper's (§3.1)."""

    data_dir: str
    model_dir: str
    config: str = "A"
    batch_size: int = 256
    train_epochs: int = 74
    train_steps: int | None = None
    learning_rate: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    lr_schedule: str = "plateau"
    lr_step_epochs: tuple = (30, 60)
    warmup_epochs: float = 0.0
    scale: tuple = (256, 256)
    init: str = "auto"
    init_stddev: float = initializers.PAPER_INIT_STDDEV
    distribution_strategy: str = "mirrored"
    num_gpus: int | None = None
    cpu_replicas: int | None = None
    dtype: str = "float32"
    enable_xla: bool = False
    steps_per_execution: int = 1
    label_offset: int | None = None
    seed: int | None = None
    deterministic: bool = False
    width: float = 1.0
    fc_units: int = 4096
    crop_size: int = 224
    num_classes: int | None = None
    backup_steps: int = 1000
    skip_corrupt: bool = False
    shuffle_buffer: int = 10_000
    verbose: int | None = None  # Keras progress bar: 1 on a terminal, 2 one line per epoch

    def validate(self):
        """Raises ``ValueError`` for an unknown or inconsistent value, before anything heavy."""
        configs.resolve_config(self.config)
        checks = [
            (self.distribution_strategy in STRATEGIES,
             f"distribution_strategy must be one of {STRATEGIES}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.train_epochs >= 1 or self.train_steps, "train_epochs must be >= 1"),
            (self.train_steps is None or self.train_steps >= 1, "train_steps must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (len(self.scale) == 2 and self.crop_size <= self.scale[0] <= self.scale[1],
             f"scale must be S or Smin,Smax with crop_size {self.crop_size} <= Smin <= Smax, "
             f"got {self.scale}"),
            (self.steps_per_execution >= 1, "steps_per_execution must be >= 1"),
            (self.backup_steps >= 1, "backup_steps must be >= 1"),
            (self.cpu_replicas is None or self.cpu_replicas >= 1, "cpu_replicas must be >= 1"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        parse_init(self.init)


def parse_init(init):
    """Returns ``(kind, path)`` of ``--init``: auto, gaussian, glorot, from_a=PATH,
    keras_applications=PATH or model=PATH (all weights of a model of the same net: a Keras
    file, a model dir or one of its checkpoints, as ``evaluation.load_model`` reads them)."""
    kind, _, path = init.partition("=")
    if kind in ("auto", "gaussian", "glorot") and not path:
        return kind, None
    if kind in ("from_a", "keras_applications", "model") and path:
        if not os.path.exists(path):
            raise ValueError(f"--init={init}: {path} does not exist")
        return kind, path
    raise ValueError(f"--init must be auto, gaussian, glorot, from_a=PATH, "
                     f"keras_applications=PATH or model=PATH, got {init!r}")


def make_strategy(name, num_gpus=None, cpu_replicas=None):
    """Returns the ``tf.distribute`` strategy for ``--distribution_strategy``.

    ``cpu_replicas`` splits the CPU into that many logical devices first, so that
    ``MirroredStrategy`` runs that many replicas without GPUs (TensorFlow must not have
    started yet).
    """
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    # These two must exist before TensorFlow's runtime starts (listing devices starts it).
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPUs are visible")
        gpus = gpus[:num_gpus]
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this worker writes the model dir (the others write to scratch folders)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


def _read_manifest(data_dir):
    path = os.path.join(data_dir, schema.MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def _num_train_examples(data_dir, manifest):
    if manifest and "train" in manifest.get("splits", {}):
        return int(manifest["splits"]["train"]["num_examples"])
    files, _, _ = inputs.resolve_files(data_dir, "train")
    return sum(1 for f in files for _ in tf.data.TFRecordDataset(f))


def _classes(cfg, num_classes, data_format):
    """The data and the class of each output, for the export (which names its predictions)."""
    label_offset = cfg.label_offset
    if label_offset is None:
        label_offset = inputs.default_label_offset(data_format)
    try:
        classes = inputs.class_names(cfg.data_dir, num_classes, label_offset)
    except ValueError as error:  # more outputs than the data has classes: allowed, unnamed
        logging.warning("classes not recorded in summary.json: %s", error)
        classes = None
    synsets, names = classes or (None, None)
    return {"data_dir": os.path.abspath(cfg.data_dir), "label_offset": label_offset,
            "class_synsets": synsets, "class_names": names}


def build_model(cfg, num_classes):
    """Builds and initialises the net of ``cfg`` (call inside the strategy's scope)."""
    kind, path = parse_init(cfg.init)
    if kind == "auto":  # §3.1: net A from N(0, σ²); deeper nets trainable with Glorot's init
        kind = "gaussian" if configs.resolve_config(cfg.config)[0].startswith("A") else "glorot"
    model = builder.build_vgg(
        cfg.config, num_classes, input_shape=(cfg.crop_size, cfg.crop_size, 3),
        dropout=cfg.dropout, width=cfg.width, fc_units=cfg.fc_units,
        init="gaussian" if kind == "gaussian" else "glorot", init_stddev=cfg.init_stddev,
        seed=cfg.seed)  # weight decay is applied by the training step
    if kind == "from_a":
        initializers.initialize_from_a(model, path)
    elif kind == "keras_applications":
        vgg_weights.load_keras_applications_weights(model, path, skip_mismatch=True)
    elif kind == "model":
        model.set_weights(evaluation.load_model(path).get_weights())
    return model


def make_optimizer(cfg):
    """SGD with momentum (§3.1); float16 wraps it in dynamic loss scaling. Weight decay is the
    model's kernel regulariser (Caffe's coupled decay), not the optimizer's."""
    optimizer = keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    if cfg.dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class LearningRate:
    """``--lr_schedule``: the paper's ÷10 on plateau, or steps, or cosine, with linear warm-up.

    The plateau state is kept in variables so that checkpoints carry it.
    """

    def __init__(self, cfg, steps_per_epoch, total_steps):
        self.cfg, self.steps_per_epoch, self.total_steps = cfg, steps_per_epoch, total_steps
        self.scale = tf.Variable(1.0, trainable=False, name="lr_scale")
        self.best_top1 = tf.Variable(-1.0, trainable=False, name="best_top1")
        self.bad_epochs = tf.Variable(0, trainable=False, name="bad_epochs")

    def __call__(self, step):
        cfg = self.cfg
        rate = cfg.learning_rate
        if cfg.lr_schedule == "plateau":
            rate *= float(self.scale.numpy())
        elif cfg.lr_schedule == "step":
            epoch = step / self.steps_per_epoch
            rate *= 0.1 ** sum(epoch >= boundary for boundary in cfg.lr_step_epochs)
        else:
            rate *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / self.total_steps)))
        warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        if warmup_steps:
            rate *= min(1.0, (step + 1) / warmup_steps)
        return rate

    def end_epoch(self, top1):
        """Tracks the best validation top-1; under "plateau", divides the rate by 10 when an
        epoch brings no improvement. Returns whether ``top1`` is a new best."""
        improved = top1 > float(self.best_top1.numpy()) + PLATEAU_MIN_DELTA
        if improved:
            self.best_top1.assign(top1)
            self.bad_epochs.assign(0)
        else:
            self.bad_epochs.assign_add(1)
            if self.cfg.lr_schedule == "plateau" and self.bad_epochs.numpy() >= PLATEAU_PATIENCE:
                self.scale.assign(self.scale * PLATEAU_FACTOR)
                self.bad_epochs.assign(0)
        return improved


def decayed_variables(model):
    """The variables weight decay applies to: the kernels of the convolutions and FC layers
    (not biases, not batch-norm scales and offsets)."""
    return [layer.kernel for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def _make_train_steps(model, optimizer, strategy, global_batch, enable_xla, images_seen,
                      weight_decay=0.0):
    """A function running ``count`` training steps on the distributed iterator; mean loss.

    Weight decay is Caffe's (§3.1): ``gradient += λ·w`` on kernels, added to the gradients
    directly (one multiply-add per weight; an L2 term in the loss costs autodiff a pass over
    every weight and ~30% of a small-batch CPU step). Each replica adds ``λ·w / replicas``,
    as the replicas' gradients are summed. ``images_seen`` (sync-on-read) counts the images
    each replica trained on.
    """
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    # Batch-norm moving statistics: each replica updates its copy from its own share of the
    # batch; averaging them after every step keeps the replicas identical (and, for the
    # mean, equals the moving average of the global batch mean).
    moving = [v for v in model.non_trainable_variables if "/moving_" in v.path]
    decayed = {id(v) for v in decayed_variables(model)}
    decay = [weight_decay / replicas if id(v) in decayed else 0.0 for v in variables]

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.reduce_sum(per_example) / global_batch  # the global mean, summed later
            if model.losses:  # regularisers a model brings along, if any
                loss += tf.add_n(model.losses) / replicas
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if weight_decay:
            # Under float16 the gradients are of the scaled loss: scale the decay alike.
            loss_scale = getattr(optimizer, "dynamic_scale", None)
            scale = 1.0 if loss_scale is None else tf.cast(loss_scale, tf.float32)
            gradients = [g + tf.cast(rate * scale * v.value, g.dtype) if rate else g
                         for g, v, rate in zip(gradients, variables, decay, strict=True)]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        if replicas > 1 and moving:
            averaged = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.MEAN, [v.value for v in moving])
            for variable, value in zip(moving, averaged, strict=True):
                variable.assign(value)
        images_seen.assign_add(tf.cast(tf.shape(labels)[0], tf.int64))
        return loss

    replica_step = tf.function(replica_step, jit_compile=enable_xla) if enable_xla else \
        replica_step

    # An explicit while loop rather than AutoGraph's conversion of a Python loop: AutoGraph
    # needs the source file, and falls back to a broken graph when it cannot read it (a
    # package installed without sources, or edited while a run is going).
    @tf.function(autograph=False)
    def train_steps(iterator, count):
        def body(index, total):
            loss = strategy.run(replica_step, args=next(iterator))
            return index + 1, total + strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)

        start = (tf.zeros_like(count), tf.constant(0.0))
        _, total = tf.while_loop(lambda index, _: index < count, body, start)
        return total / tf.cast(count, tf.float32)

    return train_steps


def _make_eval_step(model, strategy, num_classes):
    top = min(5, num_classes)

    def replica_step(images, labels):
        probabilities = model(images, training=False)
        top1 = tf.math.in_top_k(labels, probabilities, 1)
        top5 = tf.math.in_top_k(labels, probabilities, top)
        return (tf.reduce_sum(tf.cast(top1, tf.int64)), tf.reduce_sum(tf.cast(top5, tf.int64)),
                tf.cast(tf.shape(labels)[0], tf.int64))

    @tf.function
    def eval_step(batch):
        results = strategy.run(replica_step, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return eval_step


def evaluate_top_k(eval_step, dataset):
    """Returns (top-1 accuracy, top-5 accuracy, images) over a distributed eval dataset."""
    correct1 = correct5 = count = 0
    for batch in dataset:
        top1, top5, images = eval_step(batch)
        correct1, correct5, count = correct1 + int(top1), correct5 + int(top5), count + int(images)
    if not count:
        raise TrainingError("the validation split holds no images")
    return correct1 / count, correct5 / count, count


def random_streams(model):
    """The states of the model's random streams (dropout, colour shift), by position.

    ``tf.train.Checkpoint`` does not see Keras' seed generators: without these, a resumed run
    would restart every random stream and diverge from an uninterrupted one.
    """
    states = [v.value for v in model.variables if "seed_generator" in v.path]
    return {f"stream_{index}": state for index, state in enumerate(states)}


def _weights_finite(model):
    return all(bool(tf.reduce_all(tf.math.is_finite(v.value))) for v in model.trainable_weights)


def _checkpoint_step(path):
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


class _Outputs:
    """Where a run writes: the chief the model dir, other workers a scratch folder each."""

    def __init__(self, model_dir, chief, task_id):
        self.model_dir = model_dir
        self.chief = chief
        self.root = model_dir if chief else os.path.join(model_dir, f".worker_{task_id}")
        os.makedirs(self.root, exist_ok=True)
        self.csv = os.path.join(model_dir, "training_log.csv")
        self.writer = tf.summary.create_file_writer(os.path.join(self.root, "logs"))

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def log_epoch(self, row):
        with self.writer.as_default(step=row["step"]):
            for key in ("loss", "val_top1", "val_top5", "learning_rate", "images_per_second"):
                tf.summary.scalar(key, row[key])
        self.writer.flush()
        if not self.chief:
            return
        new = not os.path.exists(self.csv)
        with open(self.csv, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        write_training_curve(self.csv, os.path.join(self.model_dir, CURVE_FILE))

    def save_keras(self, model, name):
        if self.chief:  # written whole under a temporary name, then renamed
            temporary = os.path.join(self.model_dir, f".tmp_{name}")
            model.save(temporary)
            os.replace(temporary, os.path.join(self.model_dir, name))

    def finish(self):
        shutil.rmtree(self.path("backup"), ignore_errors=True)  # as BackupAndRestore does
        if not self.chief:
            shutil.rmtree(self.root, ignore_errors=True)


def write_training_curve(csv_path, png_path):
    """Draws ``training_log.csv`` (training loss and validation top-1 per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot

    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    epochs = [int(row["epoch"]) for row in rows]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [float(row["loss"]) for row in rows], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    right.plot(epochs, [100 * float(row["val_top1"]) for row in rows], marker="o",
               label="top-1")
    right.plot(epochs, [100 * float(row["val_top5"]) for row in rows], marker=".",
               label="top-5")
    right.set(title="validation accuracy (centre crop)", xlabel="epoch", ylabel="%",
              ylim=(0, 100))
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    temporary = png_path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    pyplot.close(figure)
    os.replace(temporary, png_path)


def _restore(state, managers):
    """Restores the most advanced of the backup and the latest epoch checkpoint; its step."""
    candidates = [m.latest_checkpoint for m in (managers["backup"], managers["latest"])
                  if m.latest_checkpoint]
    if not candidates:
        return 0
    newest = max(candidates, key=_checkpoint_step)
    state.restore(newest).expect_partial()
    return _checkpoint_step(newest)


def _train_dataset_fn(cfg, num_classes, start_step, corrupt_counter):
    def dataset_fn(context):
        # A deterministic run resumes its input where it stopped: skip what it consumed.
        consumed = start_step * context.num_replicas_in_sync // context.num_input_pipelines
        return pipelines.make_train_dataset(
            cfg.data_dir, batch_size=cfg.batch_size, num_classes=num_classes, scale=cfg.scale,
            crop_size=cfg.crop_size, label_offset=cfg.label_offset, input_context=context,
            deterministic=cfg.deterministic, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
            skip_corrupt=cfg.skip_corrupt, corrupt_counter=corrupt_counter,
            skip_batches=consumed if cfg.deterministic else 0)

    return dataset_fn


def default_test_scale(scale):
    """§4.1: Q = S for a fixed S, Q = (Smin + Smax) / 2 for scale jitter."""
    return int(round((scale[0] + scale[1]) / 2))


def train(cfg):
    """Trains ``cfg.config`` on ``cfg.data_dir`` and returns the summary (also written to
    ``MODEL_DIR/summary.json``). Resumes from ``MODEL_DIR`` if a run was interrupted.

    Raises:
        ValueError: for inconsistent settings, before anything heavy starts.
        TrainingError: if the loss or the weights stop being finite (nothing is saved then).
    """
    cfg.validate()
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(cfg):
    strategy = make_strategy(cfg.distribution_strategy, cfg.num_gpus, cfg.cpu_replicas)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ValueError(f"--batch_size={cfg.batch_size} is not divisible by the {replicas} "
                         "replicas")
    manifest = _read_manifest(cfg.data_dir)
    _, data_format, found_classes = inputs.resolve_files(cfg.data_dir, "train")
    num_classes = cfg.num_classes or found_classes
    if not num_classes:
        raise ValueError(f"--num_classes is needed: no dataset_info.json in {cfg.data_dir}")
    num_train = _num_train_examples(cfg.data_dir, manifest)
    if num_train < cfg.batch_size:
        raise ValueError(f"the training split has {num_train} images, fewer than one batch of "
                         f"{cfg.batch_size}")
    steps_per_epoch = num_train // cfg.batch_size
    total_steps = cfg.train_steps or cfg.train_epochs * steps_per_epoch
    resolver = getattr(strategy, "cluster_resolver", None)
    outputs = _Outputs(cfg.model_dir, is_chief(strategy), getattr(resolver, "task_id", 0))
    if cfg.dtype != "float32":
        keras.mixed_precision.set_global_policy(f"mixed_{cfg.dtype}")
    with strategy.scope():
        model = build_model(cfg, int(num_classes))
        optimizer = make_optimizer(cfg)
        optimizer.build(model.trainable_variables)  # slots must exist before strategy.run
        images_seen = tf.Variable(  # per replica: each adds the images it trained on
            0, dtype=tf.int64, trainable=False, name="images_seen",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    schedule = LearningRate(cfg, steps_per_epoch, total_steps)
    state = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                lr_scale=schedule.scale, best_top1=schedule.best_top1,
                                bad_epochs=schedule.bad_epochs, images_seen=images_seen,
                                random_streams=random_streams(model))
    managers = {name: tf.train.CheckpointManager(state, outputs.path(*folder), max_to_keep=1)
                for name, folder in (("backup", ("backup",)),
                                     ("latest", ("checkpoints", "latest")),
                                     ("best", ("checkpoints", "best")))}
    start = _restore(state, managers)
    step.assign(start)
    corrupt = inputs.make_corrupt_counter() if cfg.skip_corrupt else None
    iterator = iter(strategy.distribute_datasets_from_function(
        _train_dataset_fn(cfg, int(num_classes), start, corrupt)))
    eval_data = strategy.experimental_distribute_dataset(pipelines.make_eval_dataset(
        cfg.data_dir, mode="center", scale=default_test_scale(cfg.scale), crop_size=cfg.crop_size,
        batch_size=cfg.batch_size, num_classes=num_classes, label_offset=cfg.label_offset,
        skip_corrupt=cfg.skip_corrupt, corrupt_counter=corrupt).map(lambda x, y, _: (x, y)))
    loop = _Loop(cfg, model, optimizer, strategy, schedule, managers, outputs, step, corrupt,
                 steps_per_epoch, total_steps, int(num_classes), images_seen)
    result = loop.run(iterator, eval_data, start)
    outputs.save_keras(model, "model.keras")
    summary = {"config": configs.resolve_config(cfg.config)[0], "steps": total_steps,
               "epochs": total_steps / steps_per_epoch, "replicas": replicas,
               "num_classes": int(num_classes), "train_examples": num_train,
               "batch_size": cfg.batch_size, "dtype": cfg.dtype, "scale": list(cfg.scale),
               "crop_size": cfg.crop_size,
               "distribution_strategy": cfg.distribution_strategy, **result,
               "model": os.path.join(cfg.model_dir, "model.keras"),
               "best_model": os.path.join(cfg.model_dir, "best.keras"),
               **_classes(cfg, int(num_classes), data_format)}
    if outputs.chief:
        with open(os.path.join(cfg.model_dir, "summary.json"), "w") as file:
            json.dump(summary, file, indent=1)
    outputs.finish()
    return summary


class _Loop:
    """The epochs of one run: steps, backups, NaN checks, validation, checkpoints, logs."""

    def __init__(self, cfg, model, optimizer, strategy, schedule, managers, outputs, step,
                 corrupt, steps_per_epoch, total_steps, num_classes, images_seen):
        self.cfg, self.model, self.optimizer, self.schedule = cfg, model, optimizer, schedule
        self.managers, self.outputs, self.step, self.corrupt = managers, outputs, step, corrupt
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.strategy, self.images_seen = strategy, images_seen
        self.train_steps = _make_train_steps(model, optimizer, strategy, cfg.batch_size,
                                             cfg.enable_xla, self.images_seen, cfg.weight_decay)
        self.eval_step = _make_eval_step(model, strategy, num_classes)
        self.verbose = cfg.verbose if cfg.verbose is not None else (
            1 if sys.stdout.isatty() else 2)
        self.train_seconds = self.train_images = 0.0

    def run(self, iterator, eval_data, start):
        current, row = start, None
        while current < self.total_steps:
            current, row = self._epoch(iterator, eval_data, current)
        if row is None:  # nothing left to do: a finished run started again
            top1, top5, _ = evaluate_top_k(self.eval_step, eval_data)
            row = {"loss": None, "val_top1": top1, "val_top5": top5}  # no step taken
        return {"final_loss": row["loss"], "val_top1": row["val_top1"],
                "val_top5": row["val_top5"],
                "best_val_top1": float(self.schedule.best_top1.numpy()),
                "images_per_second": self.train_images / max(self.train_seconds, 1e-9),
                "corrupt_shards": int(self.corrupt.numpy()) if self.corrupt is not None else 0,
                "images_per_replica": [int(v.numpy()) for v in
                                       self.strategy.experimental_local_results(
                                           self.images_seen)],
                "resumed_from_step": start}

    def _epoch(self, iterator, eval_data, current):
        cfg, per_epoch = self.cfg, self.steps_per_epoch
        epoch = current // per_epoch
        end = min(self.total_steps, (epoch + 1) * per_epoch)
        bar = keras.utils.Progbar(end - epoch * per_epoch, verbose=self.verbose,
                                  stateful_metrics=["learning_rate"])
        loss_sum, started = 0.0, time.perf_counter()
        first = current
        while current < end:
            next_backup = (current // cfg.backup_steps + 1) * cfg.backup_steps
            count = min(cfg.steps_per_execution, end - current, next_backup - current)
            rate = self.schedule(current)
            self.optimizer.learning_rate = rate
            loss = self.train_steps(iterator, tf.constant(count))
            loss = float(loss)
            if not math.isfinite(loss):
                self._stop(f"the training loss is {loss} at step {current + count}")
            current += count
            self.step.assign(current)
            loss_sum += loss * count
            bar.update(current - epoch * per_epoch, [("loss", loss), ("learning_rate", rate)])
            if current % cfg.backup_steps == 0 and current < end:
                self._save("backup")
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        self.train_images += (current - first) * cfg.batch_size
        top1, top5, _ = evaluate_top_k(self.eval_step, eval_data)
        improved = self.schedule.end_epoch(top1)
        self._save("latest")
        if improved:
            self._save("best")
            self.outputs.save_keras(self.model, "best.keras")
        row = {"epoch": epoch + 1, "step": current, "loss": loss_sum / max(1, current - first),
               "val_top1": top1, "val_top5": top5, "learning_rate": rate,
               "images_per_second": (current - first) * cfg.batch_size / max(seconds, 1e-9)}
        self.outputs.log_epoch(row)
        corrupt = f", {int(self.corrupt.numpy())} corrupt shards skipped" if self.corrupt \
            is not None and int(self.corrupt.numpy()) else ""
        print(f"epoch {row['epoch']} (step {current}/{self.total_steps}): loss {row['loss']:.4f}"
              f", val top-1 {top1:.4f}, top-5 {top5:.4f}, lr {rate:.3g}, "
              f"{row['images_per_second']:.1f} images/s{corrupt}", flush=True)
        return current, row

    def _save(self, name):
        if not _weights_finite(self.model):
            self._stop(f"the weights are no longer finite at step {int(self.step.numpy())}")
        self.managers[name].save(checkpoint_number=int(self.step.numpy()))

    def _stop(self, what):
        kept = [m.latest_checkpoint for m in self.managers.values() if m.latest_checkpoint]
        raise TrainingError(
            f"{what}: training stopped, and nothing was saved from this point on. The last "
            f"good checkpoint{'s are' if len(kept) > 1 else ' is'} "
            f"{', '.join(kept) if kept else '(none yet)'}. Lower --learning_rate, or use "
            "--dtype=float32 if a reduced precision overflowed.")
