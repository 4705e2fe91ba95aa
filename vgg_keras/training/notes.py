"""What a run says beyond its numbers: the recipe as the first line of its log, the notes on
settings that will not do what a user likely wants (ImageNet's schedule on small data, batch
norm's statistics on a short run), and the progress line between epochs."""

import dataclasses
import math
import time

from pipelines import input_config
from pipelines.foundation import progress
from vgg_keras.nets import configs
from vgg_keras.training import recipes
from vgg_keras.training import run_config

SMALL_DATA = 100_000  # training images below which ImageNet's 74 epochs earn a note
BN_LEFT = 0.1  # the share of batch norm's initial statistics a run may end with, unnoted
# Steps a net should train before the plateau schedule may judge it: on ImageNet one epoch is
# 5,000 steps, on a few hundred photos a handful, after which a net from scratch has not moved.
PLATEAU_MIN_STEPS = 300


def recipe(cfg, replicas, data, schedule):
    """The effective recipe in one line: the first line of a run's log."""
    name = configs.resolve_config(cfg.config)[0]
    jitter = " (scale jitter)" if cfg.scale[0] != cfg.scale[1] else ""
    crop = ("" if cfg.random_resized_crop else
            f"S = {input_config.scale_text(cfg.scale)}{jitter}, ") + f"crop {cfg.train_crop}"
    optimizer = {"sgd": f"SGD momentum {cfg.momentum:g}",
                 "sgd_nesterov": f"SGD Nesterov momentum {cfg.momentum:g}",
                 "adamw": "AdamW"}[cfg.optimizer]
    norm = (f" ({cfg.norm_weight_decay:g} on batch norm and biases)"
            if cfg.norm_weight_decay else "")
    pieces = recipes.describe(cfg)
    return (f"recipe: config {name}{f' ({pieces})' if pieces else ''}; global batch "
            f"{cfg.batch_size} "
            f"({cfg.batch_size // replicas} per replica × {replicas} replicas, "
            f"{cfg.distribution_strategy}); {optimizer}, {schedule.describe()}"
            f"; weight decay {cfg.weight_decay:g}{norm}; dropout {cfg.dropout:g}; {crop}; "
            f"{cfg.dtype}; {data.steps_per_epoch:,} steps per epoch, "
            f"{data.total_steps:,} steps ({data.total_steps / data.steps_per_epoch:g} epochs); "
            f"data {data.describe()}"
            + (f"; input from the tf.data service at {cfg.data_service}" if cfg.data_service
               else ""))


def imagenet_defaults(cfg, data):
    """A note when the run's length is ImageNet's default on data far smaller, or None."""
    if (cfg.train_steps is None and cfg.train_epochs == run_config.DEFAULTS["train_epochs"]
            and data.num_train < SMALL_DATA):
        return (f"note: {cfg.train_epochs} epochs is the paper's ImageNet schedule (§3.1); on "
                f"{data.num_train:,} images that is {data.total_steps:,} steps of "
                f"{cfg.batch_size}: set --train_epochs or --train_steps for your data")
    return None


def plateau_note(cfg, data):
    """A note when the plateau schedule may divide the rate before the net has trained
    ``PLATEAU_MIN_STEPS`` steps (a few epochs of small data), or None."""
    patience = cfg.plateau_patience * data.steps_per_epoch
    if cfg.lr_schedule != "plateau" or cfg.plateau_decays == 0 or patience >= PLATEAU_MIN_STEPS:
        return None
    epochs = math.ceil(PLATEAU_MIN_STEPS / data.steps_per_epoch)
    return (f"note: --lr_schedule=plateau divides the rate after {cfg.plateau_patience} "
            f"epoch(s) without a gain in validation top-1, and an epoch here is "
            f"{data.steps_per_epoch} steps: a net from scratch may not have moved yet. Pass "
            f"--plateau_patience={epochs} (or --lr_schedule=cosine)")


def batch_norm_note(cfg, data):
    """A note when a net with batch norm ends its run with more than ``BN_LEFT`` of its
    moving statistics still the initial ones (mean 0, variance 1), which validation and every
    later use of the net (inference mode) read: it then answers about one class. Or None."""
    if not configs.resolve_config(cfg.config)[2]:
        return None
    left = cfg.bn_momentum ** data.total_steps
    if left <= BN_LEFT:
        return None
    enough = math.ceil(math.log(BN_LEFT) / math.log(cfg.bn_momentum))
    # torchvision's 0.9 first; at 0.9 already, the momentum (in hundredths) that leaves at
    # most BN_LEFT after this run.
    lower = 0.9 if cfg.bn_momentum > 0.9 else math.floor(
        100 * BN_LEFT ** (1 / data.total_steps)) / 100
    return (f"note: batch norm's moving statistics keep {left:.0%} of their initial values "
            f"after this run's {data.total_steps:,} steps at --bn_momentum={cfg.bn_momentum:g} "
            "(validation and the saved net use them, and answer about one class): pass "
            f"--bn_momentum={lower:g}, or train at least {enough:,} steps")


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """Where an epoch stands, for the progress line: the epoch (0-based), its first step
    ``start`` (this start of the run), its ``end``, and when it ``began``; the run's length,
    and where and when this start of the run began."""

    epoch: int
    start: int
    end: int
    steps_per_epoch: int
    total_steps: int
    run_start: int
    run_began: float
    began: float
    batch_size: int

    def describe(self, current, rate, loss, now=None):
        """Step, epoch, speed, rate, loss, and the time left of the epoch and of the run."""
        now = time.monotonic() if now is None else now
        done = current - self.start
        images = done * self.batch_size / max(now - self.began, 1e-9)
        left_epoch = progress.eta(done, self.end - self.start, now - self.began)
        left_run = progress.eta(current - self.run_start, self.total_steps - self.run_start,
                                now - self.run_began)
        epochs = -(-self.total_steps // self.steps_per_epoch)
        within = current - self.epoch * self.steps_per_epoch
        return (f"step {current:,}/{self.total_steps:,}, epoch {self.epoch + 1}/{epochs} at "
                f"{within:,}/{self.steps_per_epoch:,}; {images:,.1f} images/s; lr {rate:.3g}; "
                f"loss {loss:.4f}; ETA epoch {progress.format_duration(left_epoch)}, run "
                f"{progress.format_duration(left_run)}")
