r"""vgg-train: trains a VGG net (§3.1 of the paper) on TFRecords from vgg-convert.

    # VGG-16 (config D) as the paper trained it: batch 256, SGD 0.9, lr 1e-2 ÷10 on plateau,
    # weight decay 5e-4, dropout 0.5, 74 epochs, S = 256, on every visible GPU.
    vgg-train --config=D --data_dir=/data/imagenet-tfrecords --model_dir=/models/vgg16

    # A narrow net on the CPU, MirroredStrategy over 2 logical devices.
    vgg-train --config=A --data_dir=demo_output/data --model_dir=/tmp/a --width=0.125 \
        --fc_units=256 --crop_size=64 --scale=72,96 --batch_size=32 --cpu_replicas=2

Killed, it resumes from MODEL_DIR/backup/ when run again with the same command. SIGTERM (a
preemptible machine taken away) or Ctrl-C stops it after the current step with a backup of
that step; it exits with 143 (SIGTERM) or 130 (SIGINT), and the same command resumes there.
A command that would change the run MODEL_DIR holds is refused (--allow_changed_settings).
"""

import os
import sys

from absl import app
from absl import flags

from vgg_keras import artifacts
from vgg_keras.training import run_config

from . import program

_D = run_config.DEFAULTS  # every default is the library's (the paper's, §3.1)


def _scale_text(scale):
    return str(scale[0]) if scale[0] == scale[1] else f"{scale[0]},{scale[1]}"


_CONFIG = flags.DEFINE_string("config", _D["config"], "A, A-LRN, B, C, D, E, or a -BN variant "
                              "(D-BN).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of TFRecord shards (vgg-convert's "
                                "output, slim's, or a tfds imagenet2012 folder).")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Where checkpoints, logs and models go.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _D["batch_size"], "Global batch size (§3.1: "
                                   "256).")
_TRAIN_EPOCHS = flags.DEFINE_integer("train_epochs", _D["train_epochs"], "Epochs (§3.1: 74).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", _D["train_steps"], "Steps; overrides "
                                    "--train_epochs.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", _D["learning_rate"], "Initial learning "
                                    "rate (§3.1).")
_MOMENTUM = flags.DEFINE_float("momentum", _D["momentum"], "SGD momentum (§3.1).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", _D["weight_decay"], "Weight decay λ on "
                                   "kernels, Caffe's convention: gradient += λ·w (§3.1).")
_DROPOUT = flags.DEFINE_float("dropout", _D["dropout"], "Dropout after fc1 and fc2 (§3.1).")
_LR_SCHEDULE = flags.DEFINE_enum("lr_schedule", _D["lr_schedule"], run_config.LR_SCHEDULES,
                                 "plateau: ÷10 when validation top-1 stops improving (§3.1).")
_PLATEAU_DECAYS = flags.DEFINE_integer("plateau_decays", _D["plateau_decays"], "With "
                                      "--lr_schedule=plateau: at most this many ÷10 (§3.1: 3, "
                                      "so 1e-2 ends at 1e-5); then the rate stays.")
_PLATEAU_PATIENCE = flags.DEFINE_integer("plateau_patience", _D["plateau_patience"], "Epochs "
                                        "without improvement of validation top-1 before a ÷10.")
_PLATEAU_MIN_DELTA = flags.DEFINE_float("plateau_min_delta", _D["plateau_min_delta"], "The "
                                        "least rise of validation top-1 that counts as an "
                                        "improvement.")
_MIN_LEARNING_RATE = flags.DEFINE_float("min_learning_rate", _D["min_learning_rate"], "The "
                                        "rate never goes below this, whatever the schedule.")
_LR_STEP_EPOCHS = flags.DEFINE_list("lr_step_epochs", [f"{e:g}" for e in _D["lr_step_epochs"]],
                                    "With --lr_schedule=step: epochs at which the rate ÷10.")
_WARMUP_EPOCHS = flags.DEFINE_float("warmup_epochs", _D["warmup_epochs"], "Linear warm-up "
                                    "(large batches).")
_SCALE = flags.DEFINE_string("scale", _scale_text(_D["scale"]), "Training scale S: 256, 384, "
                             "or Smin,Smax (256,512) for scale jitter (§3.1).")
_INIT = flags.DEFINE_string("init", _D["init"], "auto (gaussian for A, glorot otherwise), "
                            "gaussian, glorot, from_a=PATH (§3.1), keras_applications=PATH, "
                            "model=PATH.")
_TRAINABLE_FROM = flags.DEFINE_string("trainable_from", _D["trainable_from"], "Fine-tuning: "
                                      "freeze every layer before this one (e.g. block5_conv1; "
                                      "frozen batch norm runs in inference mode).")
_HEAD_LR_MULTIPLIER = flags.DEFINE_float(
    "head_learning_rate_multiplier", _D["head_learning_rate_multiplier"], "Fine-tuning: the "
    "layers not loaded from --init (a new classifier) learn this many times faster.")
_INIT_STDDEV = flags.DEFINE_float("init_stddev", _D["init_stddev"], "σ of --init=gaussian (the "
                                  "paper's text says '10^-2 variance'; see README).")
_DISTRIBUTION_STRATEGY = flags.DEFINE_enum(
    "distribution_strategy", _D["distribution_strategy"], run_config.STRATEGIES,
    "tf.distribute strategy.")
_NUM_GPUS = flags.DEFINE_integer("num_gpus", _D["num_gpus"], "GPUs to use (default: all "
                                 "visible).")
_CPU_REPLICAS = flags.DEFINE_integer("cpu_replicas", _D["cpu_replicas"], "Split the CPU into N "
                                     "logical devices, so that MirroredStrategy runs N replicas.")
_DTYPE = flags.DEFINE_enum("dtype", _D["dtype"], run_config.DTYPES,
                           "Compute dtype (float16 with loss scaling).")
_ENABLE_XLA = flags.DEFINE_bool("enable_xla", _D["enable_xla"], "Compile the training step "
                                "with XLA.")
_STEPS_PER_EXECUTION = flags.DEFINE_integer("steps_per_execution", _D["steps_per_execution"],
                                            "Training steps per call of the step function.")
_LABEL_OFFSET = flags.DEFINE_integer("label_offset", _D["label_offset"], "Subtracted from "
                                     "stored labels (default: 1 for our/slim shards, 0 for "
                                     "tfds).")
_SEED = flags.DEFINE_integer("seed", _D["seed"], "Seed of initialisation and input.")
_DETERMINISTIC = flags.DEFINE_bool("deterministic", _D["deterministic"], "Reproducible input "
                                   "order and augmentation (seeded; resumes at the same input "
                                   "position).")
_WIDTH = flags.DEFINE_float("width", _D["width"], "Multiplier of every conv's filters (small "
                            "data).")
_FC_UNITS = flags.DEFINE_integer("fc_units", _D["fc_units"], "Units of fc1 and fc2.")
_CROP_SIZE = flags.DEFINE_integer("crop_size", _D["crop_size"], "Training crop; --scale in the "
                                  "same pixels.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", _D["num_classes"], "Default: from the data's "
                                    "metadata.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", _D["train_examples"], "Images in "
                                      "the training split, for shards without metadata "
                                      "(default: from the metadata, or counted once and "
                                      "cached in --model_dir).")
_BACKUP_STEPS = flags.DEFINE_integer("backup_steps", _D["backup_steps"], "Steps between "
                                     "backups.")
_SKIP_CORRUPT = flags.DEFINE_bool("skip_corrupt", _D["skip_corrupt"], "Leave out (or skip the "
                                  "rest of) damaged shards, counted, instead of stopping.")
_DATA_SERVICE = flags.DEFINE_string("data_service", _D["data_service"], "grpc://HOST:PORT of a "
                                    "tf.data service dispatcher (vgg-data-service): its workers "
                                    "read, decode and crop the training input.")
_VERIFY_SHARDS = flags.DEFINE_bool("verify_shards", _D["verify_shards"], "Compare every "
                                   "shard's sha256 with the manifest before training (reads "
                                   "the data once; sizes are always compared).")
_ALLOW_CHANGED_SETTINGS = flags.DEFINE_bool(
    "allow_changed_settings", _D["allow_changed_settings"], "Resume the run in --model_dir "
    "with settings that change it (a longer schedule, another batch size …): recorded in its "
    "run.json and the log. Without it such a command is refused.")


def parse_scale(text):
    """'256' → (256, 256); '256,512' → (256, 512)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise app.UsageError(f"--scale must be S or Smin,Smax in pixels, got {text!r}")
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def make_config(check_files=True):
    """The TrainConfig of the flags, validated (``check_files``: that an ``--init`` file
    exists too)."""
    for name in ("data_dir", "model_dir"):
        if not flags.FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    try:
        epochs = tuple(float(e) for e in _LR_STEP_EPOCHS.value)
    except ValueError:
        raise app.UsageError(
            f"--lr_step_epochs must be numbers, got {_LR_STEP_EPOCHS.value}") from None
    cfg = run_config.TrainConfig(
        data_dir=_DATA_DIR.value, model_dir=_MODEL_DIR.value, config=_CONFIG.value,
        batch_size=_BATCH_SIZE.value, train_epochs=_TRAIN_EPOCHS.value,
        train_steps=_TRAIN_STEPS.value, learning_rate=_LEARNING_RATE.value,
        momentum=_MOMENTUM.value, weight_decay=_WEIGHT_DECAY.value, dropout=_DROPOUT.value,
        lr_schedule=_LR_SCHEDULE.value, plateau_decays=_PLATEAU_DECAYS.value,
        plateau_patience=_PLATEAU_PATIENCE.value, plateau_min_delta=_PLATEAU_MIN_DELTA.value,
        min_learning_rate=_MIN_LEARNING_RATE.value, lr_step_epochs=epochs,
        warmup_epochs=_WARMUP_EPOCHS.value, scale=parse_scale(_SCALE.value), init=_INIT.value,
        init_stddev=_INIT_STDDEV.value, trainable_from=_TRAINABLE_FROM.value,
        head_learning_rate_multiplier=_HEAD_LR_MULTIPLIER.value,
        distribution_strategy=_DISTRIBUTION_STRATEGY.value,
        num_gpus=_NUM_GPUS.value, cpu_replicas=_CPU_REPLICAS.value, dtype=_DTYPE.value,
        enable_xla=_ENABLE_XLA.value, steps_per_execution=_STEPS_PER_EXECUTION.value,
        label_offset=_LABEL_OFFSET.value, seed=_SEED.value, deterministic=_DETERMINISTIC.value,
        width=_WIDTH.value, fc_units=_FC_UNITS.value, crop_size=_CROP_SIZE.value,
        num_classes=_NUM_CLASSES.value, train_examples=_TRAIN_EXAMPLES.value,
        backup_steps=_BACKUP_STEPS.value,
        skip_corrupt=_SKIP_CORRUPT.value, verify_shards=_VERIFY_SHARDS.value,
        data_service=_DATA_SERVICE.value, allow_changed_settings=_ALLOW_CHANGED_SETTINGS.value)
    try:
        cfg.validate(check_files=check_files)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    return cfg


def check_flags():
    """The flags' values parsed and checked as a run checks them, reading no file (the
    documentation's commands are tested with it)."""
    make_config(check_files=False)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = make_config()
    from vgg_keras.training import loop
    from vgg_keras.training import preemption

    try:
        summary = loop.train(cfg)
    except preemption.Stopped as stopped:
        print(f"vgg-train: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    print(f"done: {summary['steps']} steps, val top-1 {summary['val_top1']:.4f}, top-5 "
          f"{summary['val_top5']:.4f}, {summary['images_per_second']:.1f} images/s on "
          f"{summary['replicas']} replicas; "
          f"{os.path.join(cfg.model_dir, artifacts.SUMMARY_FILE)}")
    return 0


def run():
    program.run(main, "vgg-train")


if __name__ == "__main__":
    run()
