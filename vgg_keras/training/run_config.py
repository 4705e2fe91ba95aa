"""The settings of a training run, with the paper's defaults (§3.1), and their validation.

Free of TensorFlow and Keras, so that ``vgg-train`` defines its flags (choices and defaults)
from here, and refuses a bad value, before anything heavy starts.
"""

import dataclasses
import os

from pipelines import data_service
from vgg_keras import artifacts
from vgg_keras import configs

STRATEGIES = ("mirrored", "multi_worker", "one_device", "tpu", "default")
LR_SCHEDULES = ("plateau", "step", "cosine")
DTYPES = ("float32", "bfloat16", "float16")
INITS = ("auto", "gaussian", "glorot")  # and from_a=PATH, keras_applications=PATH, model=PATH
INITS_FROM_FILE = ("from_a", "keras_applications", "model")


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
    plateau_decays: int = 3  # §3.1: "the learning rate was decreased 3 times"
    plateau_patience: int = 1  # §3.1: ÷10 as soon as the validation accuracy stops improving
    plateau_min_delta: float = 1e-4
    min_learning_rate: float = 0.0
    lr_step_epochs: tuple = (30, 60)
    warmup_epochs: float = 0.0
    scale: tuple = (256, 256)
    init: str = "auto"
    init_stddev: float = configs.PAPER_INIT_STDDEV
    trainable_from: str | None = None  # fine-tuning: the layers before this one are frozen
    head_learning_rate_multiplier: float = 1.0  # for the layers not loaded from --init
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
    train_examples: int | None = None  # the epoch size, for shards without metadata
    backup_steps: int = 1000
    skip_corrupt: bool = False
    verify_shards: bool = False
    data_service: str | None = None  # grpc://HOST:PORT of a tf.data service dispatcher
    allow_changed_settings: bool = False  # resume a model dir's run with other settings
    shuffle_buffer: int = 10_000
    verbose: int | None = None  # Keras progress bar: 1 on a terminal, 2 one line per epoch

    def validate(self, check_files=True):
        """Raises ``ValueError`` for an unknown or inconsistent value, before anything heavy
        (and, with ``check_files``, for an ``--init`` file that does not exist)."""
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
            (self.head_learning_rate_multiplier > 0, "head_learning_rate_multiplier must be > 0"),
            (self.plateau_decays >= 0, "plateau_decays must be >= 0"),
            (self.plateau_patience >= 1, "plateau_patience must be >= 1"),
            (self.plateau_min_delta >= 0, "plateau_min_delta must be >= 0"),
            (0 <= self.min_learning_rate <= self.learning_rate,
             f"min_learning_rate must be in [0, learning_rate={self.learning_rate:g}]"),
            (self.train_examples is None or self.train_examples >= 1,
             "train_examples must be >= 1"),
            (not (self.data_service and self.deterministic),
             "--deterministic runs read their input in order, which the tf.data service does "
             "not keep: drop --data_service or --deterministic"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        parse_init(self.init, check_exists=check_files and not self.has_checkpoint())
        if self.data_service:
            data_service.parse_address(self.data_service)


    def has_checkpoint(self):
        """Whether ``model_dir`` holds a checkpoint to resume from (then ``--init`` is not
        read again)."""
        return any(os.path.exists(os.path.join(artifacts.checkpoint_dir(self.model_dir, name),
                                               "checkpoint"))
                   for name in ("backup", "latest"))


# The default of every setting that has one: the CLI's flag defaults.
DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)
            if field.default is not dataclasses.MISSING}


def parse_init(init, check_exists=True):
    """Returns ``(kind, path)`` of ``--init``: auto, gaussian, glorot, from_a=PATH,
    keras_applications=PATH (a keras.applications VGG16/VGG19 weights file, with or without
    its top) or model=PATH (a Keras file, a model dir or one of its checkpoints, as
    ``artifacts.load_model`` reads them: every layer whose shape fits)."""
    kind, _, path = init.partition("=")
    if kind in INITS and not path:
        return kind, None
    if kind in INITS_FROM_FILE and path:
        if check_exists and not os.path.exists(path):
            hint = (" (keras.applications' weights are downloaded once, on a connected machine, "
                    "by keras.applications.VGG16(weights=\"imagenet\"); Keras keeps them in "
                    "~/.keras/models/)") if kind == "keras_applications" else ""
            raise ValueError(f"--init={init}: {path} does not exist{hint}")
        return kind, path
    raise ValueError(f"--init must be auto, gaussian, glorot, from_a=PATH, "
                     f"keras_applications=PATH or model=PATH, got {init!r}")
