"""``--lr_schedule``: the learning rate at each step of a run (§3.1).

``plateau`` is the paper's: "the learning rate was decreased by a factor of 10 when the
validation set accuracy stopped improving. In total, the learning rate was decreased 3 times".
So the rate is divided by 10 after ``plateau_patience`` epochs without an improvement of the
validation top-1 by more than ``plateau_min_delta``, at most ``plateau_decays`` times (the
paper's run ends at 10⁻⁵), and never below ``min_learning_rate``; after the last division it
stays. ``step`` (÷10 at given epochs) and ``cosine`` are the usual alternatives; each can start
with a linear warm-up (large batches).

The plateau state (divisions done, best top-1, epochs waited) is kept in variables that every
checkpoint carries, so a resumed run continues it exactly; the rate itself is derived from it.
"""

import math

import tensorflow as tf

PLATEAU_FACTOR = 0.1  # §3.1: "decreased by a factor of 10"


class LearningRate:
    """The rate at a step: ``rate = schedule(step)``; ``end_epoch(top1)`` after each epoch."""

    def __init__(self, cfg, steps_per_epoch, total_steps):
        self.cfg, self.steps_per_epoch, self.total_steps = cfg, steps_per_epoch, total_steps
        self.decays = tf.Variable(0, trainable=False, name="plateau_decays")
        self.best_top1 = tf.Variable(-1.0, trainable=False, name="best_top1")
        self.bad_epochs = tf.Variable(0, trainable=False, name="bad_epochs")

    def state(self):
        """The variables a checkpoint must carry, by name."""
        return {"plateau_decays": self.decays, "best_top1": self.best_top1,
                "bad_epochs": self.bad_epochs}

    def __call__(self, step):
        cfg = self.cfg
        if cfg.lr_schedule == "plateau":
            rate = self._plateau_rate(int(self.decays.numpy()))
        elif cfg.lr_schedule == "step":
            epoch = step / self.steps_per_epoch
            rate = cfg.learning_rate * 0.1 ** sum(epoch >= b for b in cfg.lr_step_epochs)
        else:  # after the warm-up, as torchvision's SequentialLR(LinearLR, CosineAnnealingLR)
            warmup = min(cfg.warmup_epochs * self.steps_per_epoch, self.total_steps - 1)
            progress = min(1.0, max(0.0, step - warmup) / (self.total_steps - warmup))
            rate = cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
        warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        if warmup_steps:
            rate *= min(1.0, (step + 1) / warmup_steps)
        return max(rate, cfg.min_learning_rate)

    def _plateau_rate(self, decays):
        return max(self.cfg.learning_rate * PLATEAU_FACTOR ** decays, self.cfg.min_learning_rate)

    def end_epoch(self, top1):
        """Tracks the best validation top-1; under "plateau", divides the rate by 10 after
        ``plateau_patience`` epochs without improvement, while divisions are left and the rate
        is above ``min_learning_rate``. Returns whether ``top1`` is a new best."""
        cfg = self.cfg
        improved = top1 > float(self.best_top1.numpy()) + cfg.plateau_min_delta
        if improved:
            self.best_top1.assign(top1)
            self.bad_epochs.assign(0)
            return True
        self.bad_epochs.assign_add(1)
        decays = int(self.decays.numpy())
        if (cfg.lr_schedule == "plateau" and self.bad_epochs.numpy() >= cfg.plateau_patience
                and decays < cfg.plateau_decays
                and self._plateau_rate(decays + 1) < self._plateau_rate(decays)):
            self.decays.assign_add(1)
            self.bad_epochs.assign(0)
        return False

    def describe(self):
        """The schedule in words, for the first line of a run's log."""
        cfg = self.cfg
        if cfg.lr_schedule == "plateau":
            text = (f"lr {cfg.learning_rate:g} ÷10 when validation top-1 has not improved by "
                    f"{cfg.plateau_min_delta:g} for {cfg.plateau_patience} epoch(s), at most "
                    f"{cfg.plateau_decays} times (to "
                    f"{self._plateau_rate(cfg.plateau_decays):g})")
        elif cfg.lr_schedule == "step":
            text = (f"lr {cfg.learning_rate:g} ÷10 at epochs "
                    f"{', '.join(f'{e:g}' for e in cfg.lr_step_epochs)}")
        else:
            text = f"lr {cfg.learning_rate:g} cosine to 0 over {self.total_steps} steps"
        if cfg.warmup_epochs:
            text += f", linear warm-up over {cfg.warmup_epochs:g} epochs"
        if cfg.min_learning_rate:
            text += f", never below {cfg.min_learning_rate:g}"
        return text
