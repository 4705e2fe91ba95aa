"""``--model_ema``: an exponential moving average of the net's weights, as torchvision's
``ExponentialMovingAverage`` (``references/classification/utils.py``, an ``AveragedModel`` with
``use_buffers=True``): every ``--model_ema_steps`` steps, ``ema = d·ema + (1 − d)·w`` for every
weight and batch norm's moving statistics, the first update (and every update during the
learning rate's warm-up) a copy.

The decay per update is torchvision's adjusted one (its ``train.py``: "decay adjustment that
aims to keep the decay independent of other hyper-parameters originally proposed at
facebookresearch/ClassyVision"): ``α = (1 − decay) · batch · steps / epochs``, ``d = 1 −
min(1, α)``; so ``--model_ema_decay=0.99998`` with batch 1024, 32 steps, 600 epochs averages with
d = 0.99891 per update. torchvision counts its steps within each epoch (updating after the first
of each, and every ``steps`` after it); here they are the run's steps (the first, and every
``steps`` after it), so that a resumed run updates at the same steps.

The average is a second net of the same architecture (``model``), which the run's checkpoints
carry (``ema_model``, and ``ema_updates``): a resumed run continues it exactly, and
``artifacts.loading`` loads a checkpoint's average in place of its raw weights. The validation
line, ``model.keras`` and ``best_model.keras`` are the average's.
"""

import keras
import tensorflow as tf

from vgg_keras.nets import stats


def effective_decay(decay, global_batch, steps, epochs):
    """torchvision's adjusted decay per update (see above)."""
    alpha = min(1.0, (1.0 - decay) * global_batch * steps / max(epochs, 1e-9))
    return 1.0 - alpha


class WeightsEMA:
    """The moving average of ``model``'s weights, updated every ``cfg.model_ema_steps``."""

    def __init__(self, model, strategy, cfg, steps_per_epoch, total_steps):
        self.strategy, self.period = strategy, cfg.model_ema_steps
        self.decay = effective_decay(cfg.model_ema_decay, cfg.batch_size, cfg.model_ema_steps,
                                     total_steps / steps_per_epoch)
        self.warmup_steps = cfg.warmup_epochs * steps_per_epoch
        with strategy.scope():
            self.model = keras.models.clone_model(model)
        self.sources = _averaged(model)
        self.targets = _averaged(self.model)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self._update = self._make_update()

    def state(self):
        """The objects a checkpoint must carry, by name."""
        return {"ema_model": self.model, "ema_updates": self.updates}

    def due(self, step):
        """Whether the step ``step`` (counted from 1) ends with an update: the first and every
        ``period``-th after it (torchvision: ``i % model_ema_steps == 0`` from ``i = 0``)."""
        return (step - 1) % self.period == 0

    def next_due(self, step):
        """The first step after ``step`` that ends with an update."""
        due = (step // self.period) * self.period + 1
        return due if due > step else due + self.period

    def update(self, step):
        """The update after step ``step``: a copy while nothing is averaged yet or the rate
        warms up (torchvision resets its average then), else the decayed average."""
        copy = int(self.updates.numpy()) == 0 or step <= self.warmup_steps
        self._update(tf.constant(0.0 if copy else self.decay, tf.float32))

    def _make_update(self):
        strategy, pairs = self.strategy, list(zip(self.targets, self.sources, strict=True))

        def blend(target, source, decay):
            value = decay * tf.cast(target, tf.float32) + (1.0 - decay) * tf.cast(source,
                                                                                  tf.float32)
            return target.assign(tf.cast(value, target.dtype))

        @tf.function(autograph=False)
        def update(decay):
            for target, source in pairs:  # on each device, its own copies
                strategy.extended.update(target.value, blend, args=(source.value, decay),
                                         group=False)
            self.updates.assign_add(1)

        return update


def _averaged(model):
    """The variables the average follows: every weight and moving statistic (not the random
    streams' states)."""
    return [v for v in model.weights if not stats.is_random_state(v)]
