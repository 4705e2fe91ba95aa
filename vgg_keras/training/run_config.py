"""The settings of a training run, each declared once: its name, type, default (the paper's, §3.1),
help text, check, and whether a resumed run may change it. ``vgg-train`` derives its flags from
these declarations (``tools/program.py``), ``validate`` runs their checks, and the run's identity
(``run_identity``) takes the settings that may not change.

Free of TensorFlow and Keras, so that ``vgg-train`` defines its flags, and refuses a bad value,
before anything heavy starts.
"""

import dataclasses
import os

from pipelines import data_service
from pipelines import errors
from pipelines import input_config
from pipelines import storage
from vgg_keras import artifacts
from vgg_keras import configs
from vgg_keras import settings
from vgg_keras.settings import above
from vgg_keras.settings import at_least
from vgg_keras.settings import setting

STRATEGIES = settings.STRATEGIES
LR_SCHEDULES = ("plateau", "step", "cosine")
DTYPES = ("float32", "bfloat16", "float16")
PROGRESS = ("auto", "live", "epochs")
INITS = ("auto", "gaussian", "glorot")  # and KIND=PATH of INITS_FROM_FILE
INITS_FROM_FILE = ("from_a", "keras_applications", "torchvision", "timm", "model")


def parse_scale(value):
    """'256' → (256, 256); '256,512' → (256, 512)."""
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise errors.UserError(f"--scale must be S or Smin,Smax in pixels, got {value!r}")
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def scale_text(scale):
    """The training scale as its flag writes it, wherever it is shown: ``256``, ``256,512``."""
    return str(scale[0]) if scale[0] == scale[1] else f"{scale[0]},{scale[1]}"


def _parse_epochs(value):
    try:
        return tuple(float(e) for e in (value.split(",") if isinstance(value, str) else value))
    except ValueError:
        raise errors.UserError(f"--lr_step_epochs must be numbers, got {value}") from None


def _epochs_text(epochs):
    return ",".join(f"{e:g}" for e in epochs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(settings.DistributionSettings):
    """Everything a run depends on; the defaults are the paper's (§3.1). Where it computes (the
    strategy and its devices) is ``DistributionSettings``', shared with ``vgg-evaluate``."""

    data_dir: str = setting(help="Folder of TFRecord shards (vgg-convert's output, slim's, or a "
                                 "tfds imagenet2012 folder).", changeable=True)
    model_dir: str = setting(help="Where checkpoints, logs and models go.", changeable=True)
    config: str = setting("A", "A, A-LRN, B, C, D, E, or a -BN variant (D-BN).")
    batch_size: int = setting(256, "Global batch size (§3.1: 256).", check=at_least(1))
    train_epochs: int = setting(74, "Epochs (§3.1: 74).")
    train_steps: int | None = setting(None, "Steps; overrides --train_epochs.",
                                      check=at_least(1))
    learning_rate: float = setting(1e-2, "Initial learning rate (§3.1).", check=above(0))
    momentum: float = setting(0.9, "SGD momentum (§3.1).",
                              check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    weight_decay: float = setting(5e-4, "Weight decay λ on kernels, Caffe's convention: "
                                        "gradient += λ·w (§3.1).", check=at_least(0))
    dropout: float = setting(0.5, "Dropout after fc1 and fc2 (§3.1).",
                             check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    bn_momentum: float = setting(0.99, "Nets with batch norm (-BN): the share of its moving "
                                       "statistics kept at each step (Keras' 0.99; 0.9 matches "
                                       "torchvision's recipes, and short runs: see the note "
                                       "at the start of a run).",
                                 check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    lr_schedule: str = setting("plateau", "plateau: ÷10 when validation top-1 stops improving "
                                          "(§3.1).", choices=LR_SCHEDULES)
    # §3.1: "the learning rate was decreased 3 times", as soon as the accuracy stopped improving.
    plateau_decays: int = setting(3, "With --lr_schedule=plateau: at most this many ÷10 (§3.1: "
                                     "3, so 1e-2 ends at 1e-5); then the rate stays.",
                                  check=at_least(0))
    plateau_patience: int = setting(1, "Epochs without improvement of validation top-1 before "
                                       "a ÷10.", check=at_least(1))
    plateau_min_delta: float = setting(1e-4, "The least rise of validation top-1 that counts as "
                                             "an improvement.", check=at_least(0))
    min_learning_rate: float = setting(0.0, "The rate never goes below this, whatever the "
                                            "schedule.")
    lr_step_epochs: tuple = setting((30, 60), "With --lr_schedule=step: epochs at which the "
                                              "rate ÷10.", parse=_parse_epochs,
                                    text=_epochs_text)
    warmup_epochs: float = setting(0.0, "Linear warm-up (large batches).", check=at_least(0))
    scale: tuple = setting((256, 256), "Training scale S: 256, 384, or Smin,Smax (256,512) for "
                                       "scale jitter (§3.1).", parse=parse_scale,
                           text=scale_text)
    init: str = setting("auto", "auto (gaussian for A, glorot otherwise), gaussian, glorot, "
                                "from_a=PATH (§3.1), keras_applications=PATH, "
                                "torchvision=PATH, timm=PATH (PyTorch's ImageNet weights, "
                                ".safetensors or .pth), model=PATH.")
    init_stddev: float = setting(configs.PAPER_INIT_STDDEV, "σ of --init=gaussian (the paper's "
                                                           "text says '10^-2 variance'; see "
                                                           "README).")
    trainable_from: str | None = setting(None, "Fine-tuning: freeze every layer before this one "
                                               "(e.g. block5_conv1; frozen batch norm runs in "
                                               "inference mode).")
    head_learning_rate_multiplier: float = setting(
        1.0, "Fine-tuning: the layers not loaded from --init (a new classifier) learn this many "
             "times faster.", check=above(0))
    dtype: str = setting("float32", "Compute dtype (float16 with loss scaling).", choices=DTYPES)
    enable_xla: bool = setting(False, "Compile the training step with XLA.", changeable=True)
    steps_per_execution: int = setting(1, "Training steps per call of the step function.",
                                       check=at_least(1), changeable=True)
    label_offset: int | None = setting(None, "Subtracted from stored labels (default: 1 for "
                                             "our/slim shards, 0 for tfds).")
    seed: int | None = setting(None, "Seed of initialisation and input.")
    deterministic: bool = setting(False, "Reproducible input order and augmentation (seeded; "
                                         "resumes at the same input position).")
    width: float = setting(1.0, "Multiplier of every conv's filters (small data).")
    fc_units: int = setting(4096, "Units of fc1 and fc2.")
    crop_size: int = setting(224, "Training crop; --scale in the same pixels.")
    num_classes: int | None = setting(None, "Default: from the data's metadata.")
    train_examples: int | None = setting(None, "Images in the training split, for shards "
                                               "without metadata (default: from the metadata, "
                                               "or counted once and cached in --model_dir).",
                                         check=at_least(1))
    backup_steps: int = setting(1000, "Steps between backups.", check=at_least(1),
                                changeable=True)
    stop_grace_seconds: float = setting(
        20.0, "After SIGTERM or Ctrl-C, how long a step whose input does not come (a tf.data "
              "service without workers) may wait before the run stops without it; well under "
              "the 30 s after which Kubernetes kills.", check=above(0), changeable=True)
    keep_checkpoints: int = setting(2, "Checkpoints each folder (backup/, checkpoints/latest/, "
                                       "checkpoints/best/) keeps: a damaged newest one has an "
                                       "older twin to resume from.", check=at_least(1),
                                    changeable=True)
    skip_corrupt: bool = setting(False, "Leave out (or skip the rest of) damaged shards, "
                                        "counted, instead of stopping.", changeable=True)
    verify_shards: bool = setting(False, "Compare every shard's sha256 with the manifest before "
                                         "training (reads the data once; sizes are always "
                                         "compared).", changeable=True)
    data_service: str | None = setting(None, "grpc://HOST:PORT of a tf.data service dispatcher "
                                             "(vgg-data-service): its workers read, decode and "
                                             "crop the training input.", changeable=True)
    allow_changed_settings: bool = setting(
        False, "Resume the run in --model_dir with settings that change it (a longer schedule, "
               "another batch size …): recorded in its run.json and the log. Without it such a "
               "command is refused.", changeable=True)
    shuffle_buffer: int = setting(10_000, "Records in the training input's shuffle buffer.",
                                  check=at_least(1))
    progress: str = setting("auto", "The progress line between epochs: auto (live on a "
                                    "terminal, otherwise a line a minute), live, or epochs (only "
                                    "each epoch's line).", choices=PROGRESS, changeable=True)

    def validate(self, check_files=True):
        """Raises ``UserError`` for an unknown or inconsistent value, before anything heavy
        (and, with ``check_files``, for an ``--init`` file that does not exist)."""
        settings.check_settings(self)
        with errors.user_input():
            configs.resolve_config(self.config)
        self.input_config()  # the training input's own checks (scale and crop, service)
        rules = [
            (self.train_epochs >= 1 or self.train_steps, "train_epochs must be >= 1"),
            (0 <= self.min_learning_rate <= self.learning_rate,
             f"min_learning_rate must be in [0, learning_rate={self.learning_rate:g}]"),
        ]
        for ok, message in rules:
            if not ok:
                raise errors.UserError(message)
        for name in ("data_dir", "model_dir"):
            storage.check_filesystem(getattr(self, name), f"--{name}")
        if self.distribution_strategy == "tpu":
            check_tpu_paths({"--data_dir": self.data_dir, "--model_dir": self.model_dir})
        parse_init(self.init, check_exists=check_files and not self.has_checkpoint())
        if self.data_service:
            data_service.parse_address(self.data_service)

    def input_config(self, num_classes=None, data_service_job="vgg_train"):
        """The run's training input (``InputConfig``, which checks itself as it is made)."""
        return input_config.InputConfig(
            batch_size=self.batch_size, scale=self.scale, crop_size=self.crop_size,
            num_classes=num_classes or self.num_classes, label_offset=self.label_offset,
            seed=self.seed, deterministic=self.deterministic, shuffle_buffer=self.shuffle_buffer,
            skip_corrupt=self.skip_corrupt, verify_shards=self.verify_shards,
            data_service=self.data_service, data_service_job=data_service_job)

    def has_checkpoint(self):
        """Whether ``model_dir`` holds a checkpoint to resume from (then ``--init`` is not
        read again)."""
        return any(storage.exists(os.path.join(artifacts.checkpoint_dir(self.model_dir, name),
                                               "checkpoint"))
                   for name in ("backup", "latest"))


def check_tpu_paths(paths):
    """Refuses a local path for a TPU run: its workers read only buckets, never this machine's
    disk (nor its ``ram://``).

    Raises:
        UserError: naming the first such path.
    """
    for flag, path in paths.items():
        if path and storage.scheme(path) in ("", "file", "ram"):
            raise errors.UserError(
                f"{flag}={path}: a TPU's workers read only buckets (gs://...), not this "
                "machine's disk: copy the data to a bucket and give --data_dir=gs://... and "
                "--model_dir=gs://...")


# The default of every setting that has one: the CLI's flag defaults.
DEFAULTS = settings.defaults(TrainConfig)


def parse_init(init, check_exists=True):
    """Returns ``(kind, path)`` of ``--init``: auto, gaussian, glorot, from_a=PATH,
    keras_applications=PATH (a keras.applications VGG16/VGG19 weights file, with or without
    its top), torchvision=PATH or timm=PATH (PyTorch's published ImageNet weights), or
    model=PATH (a Keras file, a model dir or one of its checkpoints, as ``artifacts.load_model``
    reads them: every layer whose shape fits)."""
    kind, _, path = init.partition("=")
    if kind in INITS and not path:
        return kind, None
    if kind in INITS_FROM_FILE and path:
        storage.check_filesystem(path, f"--init={kind}=")
        if check_exists and not storage.exists(path):
            hint = (" (keras.applications' weights are downloaded once, on a connected machine, "
                    "by keras.applications.VGG16(weights=\"imagenet\"); Keras keeps them in "
                    "~/.keras/models/)") if kind == "keras_applications" else ""
            raise errors.UserError(f"--init={init}: {path} does not exist{hint}")
        return kind, path
    raise errors.UserError(f"--init must be auto, gaussian, glorot, from_a=PATH, "
                           f"keras_applications=PATH, torchvision=PATH, timm=PATH or "
                           f"model=PATH, got {init!r}")
