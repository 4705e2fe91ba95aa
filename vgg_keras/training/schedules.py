"""``--lr_schedule``: the learning rate at each step of a run (§3.1).

``plateau`` is the paper's: 10⁻² divided by 10 when the validation accuracy stops improving.
``step`` (÷10 at given epochs) and ``cosine`` are the usual alternatives; each can start with a
linear warm-up (large batches). The plateau state is kept in variables so that checkpoints carry
it and a resumed run continues it.
"""

import math

import tensorflow as tf

PLATEAU_PATIENCE = 1  # §3.1: "decreased by a factor of 10 when the validation set accuracy
PLATEAU_FACTOR = 0.1  # stopped improving"
PLATEAU_MIN_DELTA = 1e-4


class LearningRate:
    """The rate at a step: ``rate = schedule(step)``; ``end_epoch(top1)`` after each epoch."""

    def __init__(self, cfg, steps_per_epoch, total_steps):
        self.cfg, self.steps_per_epoch, self.total_steps = cfg, steps_per_epoch, total_steps
        self.scale = tf.Variable(1.0, trainable=False, name="lr_scale")
        self.best_top1 = tf.Variable(-1.0, trainable=False, name="best_top1")
        self.bad_epochs = tf.Variable(0, trainable=False, name="bad_epochs")

    def state(self):
        """The variables a checkpoint must carry, by name."""
        return {"lr_scale": self.scale, "best_top1": self.best_top1,
                "bad_epochs": self.bad_epochs}

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
