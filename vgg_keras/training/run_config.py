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
from pipelines import input_config
from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import above
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from pipelines.input_config import parse_scale
from pipelines.input_config import scale_text
from vgg_keras.artifacts import layout
from vgg_keras.compute import cluster
from vgg_keras.compute import settings as compute_settings
from vgg_keras.nets import configs
from vgg_keras.nets import published
from vgg_keras.training import recipes

LR_SCHEDULES = ("plateau", "step", "cosine")
DTYPES = ("float32", "bfloat16", "float16")
PROGRESS = ("auto", "live", "epochs")
INITS = ("auto", "gaussian", "glorot")  # random; and KIND=PATH of INITS_FROM_FILE
INITS_FROM_FILE = ("from_a", *configs.WEIGHT_KINDS, "model")  # published weights also by name


def parse_init(text):
    """The ``published.Weights`` of ``--init``: auto, gaussian, glorot (random, §3.1),
    from_a=PATH (§3.1: a trained net A), model=PATH (a Keras file, a model dir or one of its
    checkpoints, as ``artifacts.loading.load_model`` reads them: every layer whose shape fits),
    or published ImageNet weights: paper / keras_applications (the authors' VGG16/VGG19 as
    keras.applications publishes them), torchvision or timm (PyTorch's), by name or as
    KIND=PATH; a path checked to be of a filesystem this TensorFlow reads.

    Raises:
        UserError: naming the forms that work.
    """
    try:
        init = published.parse(text, "--init", named=(*INITS, *configs.WEIGHT_KINDS),
                               with_file=INITS_FROM_FILE)
    except ValueError:
        raise errors.UserError(
            "--init must be auto, gaussian, glorot, paper, torchvision, timm (published "
            "weights, downloaded once), from_a=PATH, model=PATH, or paper=PATH, "
            f"keras_applications=PATH, torchvision=PATH, timm=PATH; got {text!r}") from None
    if init.path is not None:
        storage.check_filesystem(init.path, f"--init={init.kind}=")
    return init


def _parse_epochs(value):
    try:
        return tuple(float(e) for e in (value.split(",") if isinstance(value, str) else value))
    except ValueError:
        raise errors.UserError(f"--lr_step_epochs must be numbers, got {value}") from None


def _epochs_text(epochs):
    return ",".join(f"{e:g}" for e in epochs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSettings:
    """The data a run reads, and how its input reads it (``InputConfig.from_settings``)."""

    data_dir: str = setting(help="Folder of TFRecord shards (vgg-convert's output, slim's, or a "
                                 "tfds imagenet2012 folder).", changeable=True)
    num_classes: int | None = setting(None, "Default: from the data's metadata.")
    label_offset: int | None = setting(None, "Subtracted from stored labels (default: 1 for "
                                             "our/slim shards, 0 for tfds).")
    train_examples: int | None = setting(None, "Images in the training split, for shards "
                                               "without metadata (default: from the metadata, "
                                               "or counted once and cached in --model_dir).",
                                         check=at_least(1))
    scale: tuple = setting(input_config.TRAIN_SCALE, "Training scale S: 256, 384, or Smin,Smax "
                                                     "(256,512) for scale jitter (§3.1).",
                           parse=parse_scale, text=scale_text)
    crop_size: int = setting(configs.CROP_SIZE, "Training crop; --scale in the same "
                                                     "pixels.")
    shuffle_buffer: int = setting(10_000, "Records in the training input's shuffle buffer.",
                                  check=at_least(1))
    seed: int | None = setting(None, "Seed of initialisation and input.")
    deterministic: bool = setting(False, "Reproducible input order and augmentation (seeded; "
                                         "resumes at the same input position).")
    skip_corrupt: bool = setting(False, "Leave out (or skip the rest of) damaged shards, "
                                        "counted, instead of stopping.", changeable=True)
    verify_shards: bool = setting(False, "Compare every shard's sha256 with the manifest before "
                                         "training (reads the data once; sizes are always "
                                         "compared).", changeable=True)
    data_service: str | None = setting(None, "grpc://HOST:PORT of a tf.data service dispatcher "
                                             "(vgg-data-service): its workers read, decode and "
                                             "crop the training input.", changeable=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetSettings:
    """The net: its configuration, widths and first weights (§3.1)."""

    config: str = setting("A", "A, A-LRN, B, C, D, E, or a -BN variant (D-BN).")
    width: float = setting(1.0, "Multiplier of every conv's filters (small data).")
    fc_units: int = setting(4096, "Units of fc1 and fc2.")
    dropout: float = setting(0.5, "Dropout after fc1 and fc2 (§3.1).",
                             check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    bn_momentum: float = setting(0.99, "Nets with batch norm (-BN): the share of its moving "
                                       "statistics kept at each step (Keras' 0.99; 0.9 matches "
                                       "torchvision's recipes, and short runs: see the note "
                                       "at the start of a run).",
                                 check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    init: published.Weights = setting(
        published.Weights("auto"), "auto (gaussian for A, glorot otherwise), gaussian, glorot, "
                                   "from_a=PATH (§3.1), model=PATH, or published ImageNet "
                                   "weights: paper (D, E), torchvision or timm (A, B, D, E and "
                                   "their BN variants), downloaded once into the library's "
                                   "cache, or KIND=PATH for a file (.h5, .safetensors, .pth).",
        parse=parse_init, text=str)
    init_stddev: float = setting(configs.PAPER_INIT_STDDEV, "σ of --init=gaussian (the paper's "
                                                           "text says '10^-2 variance'; see "
                                                           "README).")
    trainable_from: str | None = setting(None, "Fine-tuning: freeze every layer before this one "
                                               "(e.g. block5_conv1; frozen batch norm runs in "
                                               "inference mode).")
    dtype: str = setting("float32", "Compute dtype (float16 with loss scaling).", choices=DTYPES)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    """How long and how fast it learns (§3.1)."""

    batch_size: int = setting(256, "Global batch size (§3.1: 256).", check=at_least(1))
    train_epochs: int = setting(74, "Epochs (§3.1: 74).")
    train_steps: int | None = setting(None, "Steps; overrides --train_epochs.",
                                      check=at_least(1))
    learning_rate: float = setting(1e-2, "Initial learning rate (§3.1).", check=above(0))
    momentum: float = setting(0.9, "SGD momentum (§3.1).",
                              check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    weight_decay: float = setting(5e-4, "Weight decay λ on kernels, Caffe's convention: "
                                        "gradient += λ·w (§3.1).", check=at_least(0))
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
    head_learning_rate_multiplier: float = setting(
        1.0, "Fine-tuning: the layers not loaded from --init (a new classifier) learn this many "
             "times faster.", check=above(0))


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepSettings:
    """How each step runs on the devices of ``DistributionSettings``."""

    enable_xla: bool = setting(False, "Compile the training step with XLA.", changeable=True)
    steps_per_execution: int = setting(1, "Training steps per call of the step function.",
                                       check=at_least(1), changeable=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutputSettings:
    """What a run writes, and how it stops and reports."""

    model_dir: str = setting(help="Where checkpoints, logs and models go.", changeable=True)
    backup_steps: int = setting(1000, "Steps between backups.", check=at_least(1),
                                changeable=True)
    keep_checkpoints: int = setting(2, "Checkpoints each folder (backup/, checkpoints/latest/, "
                                       "checkpoints/best/) keeps: a damaged newest one has an "
                                       "older twin to resume from.", check=at_least(1),
                                    changeable=True)
    stop_grace_seconds: float = setting(
        20.0, "After SIGTERM or Ctrl-C, how long a step whose input does not come (a tf.data "
              "service without workers) may wait before the run stops without it; well under "
              "the 30 s after which Kubernetes kills.", check=above(0), changeable=True)
    lease_wait: bool = setting(False, "A model dir whose lease another machine's run holds "
                                      "(a node lost, a pod rescheduled): wait until the lease "
                                      "may be taken over (5 min after its last refresh), "
                                      "instead of exiting with 75.", changeable=True)
    allow_changed_settings: bool = setting(
        False, "Resume the run in --model_dir with settings that change it (a longer schedule, "
               "another batch size …): recorded in its run.json and the log. Without it such a "
               "command is refused.", changeable=True)
    progress: str = setting("auto", "The progress line between epochs: auto (live on a "
                                    "terminal, otherwise a line a minute), live, or epochs (only "
                                    "each epoch's line).", choices=PROGRESS, changeable=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(DataSettings, NetSettings, ScheduleSettings, recipes.RecipeSettings,
                  StepSettings, OutputSettings, compute_settings.DistributionSettings):
    """Everything a run depends on, in its groups; the defaults are the paper's (§3.1), or the
    ``--recipe``'s (``recipes``). Where it computes (the strategy and its devices) is
    ``DistributionSettings``', shared with ``vgg-evaluate``."""

    @classmethod
    def for_recipe(cls, recipe, **settings):
        """The settings of ``recipe`` (``recipes.RECIPES``), ``settings`` winning over it."""
        return cls(**recipes.with_recipe({**settings, "recipe": recipe}, given=set(settings)))

    @classmethod
    def recipe_defaults(cls, values, given):
        """The CLI's values (``tools/program.py``) with the recipe's defaults for the flags
        not ``given`` on the command line."""
        return recipes.with_recipe(values, given)

    def validate(self, check_files=True):
        """Raises ``UserError`` for an unknown or inconsistent value, before anything heavy
        (and, with ``check_files``, for an ``--init`` file that does not exist)."""
        declared.check_settings(self)
        with errors.user_input():
            configs.resolve_config(self.config)
        self.input_config()  # the training input's own checks (scale and crop, service)
        rules = [
            (self.train_epochs >= 1 or self.train_steps, "train_epochs must be >= 1"),
            (0 <= self.min_learning_rate <= self.learning_rate,
             f"min_learning_rate must be in [0, learning_rate={self.learning_rate:g}]"),
        ]
        for ok, message in rules + self._recipe_rules():
            if not ok:
                raise errors.UserError(message)
        for name in ("data_dir", "model_dir"):
            storage.check_filesystem(getattr(self, name), f"--{name}")
        if check_files:
            storage.check_folder(self.model_dir, "--model_dir")
        if self.distribution_strategy == "tpu":
            compute_settings.check_tpu_paths({"--data_dir": self.data_dir,
                                              "--model_dir": self.model_dir})
        if self.distribution_strategy == "multi_worker" and check_files:
            cluster.read_cluster()  # TF_CONFIG there and right, before anything starts
        self.check_init(check_files and not self.has_checkpoint())
        if self.data_service:
            data_service.parse_address(self.data_service)

    def __post_init__(self):
        declared.parse_given(self, "init", "random_resized_crop", "scale", "lr_step_epochs")

    def _recipe_rules(self):
        decay = self.weight_decay
        return [
            (self.optimizer != "adamw" or self.norm_weight_decay in (0.0, decay),
             f"--optimizer=adamw decays batch norm and biases by --weight_decay={decay:g} or not "
             f"at all: --norm_weight_decay must be 0 or {decay:g}, got "
             f"{self.norm_weight_decay:g}"),
            (self.val_resize_size is None or self.val_resize_size >= self.crop_size,
             f"--val_resize_size={self.val_resize_size} is smaller than the {self.crop_size} "
             "centre crop (--crop_size)"),
        ]

    @property
    def train_crop(self):
        """The side of the training crops: ``--train_crop_size``, else ``--crop_size``."""
        return self.train_crop_size or self.crop_size

    def check_init(self, check_exists=True):
        """Refuses published weights named alone for a net that has none of that kind, and
        (with ``check_exists``) an ``--init`` file that is not there.

        Raises:
            UserError: one line naming what works.
        """
        init = self.init
        with errors.user_input():
            published.check(init, self.config)
        if init.path and check_exists and not storage.exists(init.path):
            hint = (" (or give --init=paper alone: the file is downloaded once into Keras' "
                    "cache, ~/.keras/models/)") if init.kind in published.KERAS_KINDS else ""
            raise errors.UserError(f"--init={init}: {init.path} does not exist{hint}")

    def input_config(self, num_classes=None, data_service_job="vgg_train"):
        """The run's training input (``InputConfig``, which checks itself as it is made)."""
        return input_config.InputConfig.from_settings(
            self, num_classes=num_classes or self.num_classes, data_service_job=data_service_job,
            crop_size=self.train_crop, erase_fill=recipes.mean_colour(self.normalization))

    def has_checkpoint(self):
        """Whether ``model_dir`` holds a checkpoint to resume from (then ``--init`` is not
        read again)."""
        return any(storage.exists(os.path.join(layout.checkpoint_dir(self.model_dir, name),
                                               "checkpoint"))
                   for name in ("backup", "latest"))


# The default of every setting that has one: the CLI's flag defaults.
DEFAULTS = declared.defaults(TrainConfig)
