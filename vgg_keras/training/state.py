"""The state of a run and the checkpoints that carry it: net, optimizer, step, images seen,
schedule state and random streams, in three ``tf.train`` checkpoint folders (``artifacts``):
``backup/`` every ``--backup_steps`` and when the run is stopped, ``checkpoints/latest`` at
every epoch's end, ``checkpoints/best`` at every new best validation top-1. A run resumes from
the more advanced of the backup and the latest epoch checkpoint, and says which.
"""

import dataclasses
import datetime
import os

import tensorflow as tf

from vgg_keras import artifacts
from vgg_keras.training import model as run_model
from vgg_keras.training import schedules
from vgg_keras.training import steps


@dataclasses.dataclass(frozen=True)
class Resumed:
    """Where a run resumed from: ``step``, the checkpoint folder ``source`` (``backup`` or
    ``checkpoints/latest``), the checkpoint ``path``, when it was ``written``, and the epochs
    completed at that step."""

    step: int
    source: str
    path: str
    written: str
    epochs: int

    def describe(self):
        where = (f"(written {self.written})" if self.source == artifacts.BACKUP_DIR else
                 f"(epoch {self.epochs})")
        return f"resumed at step {self.step:,} from {self.source}/ {where}"


class RunState:
    """The run's net, optimizer, counters and schedule, and the checkpoints that carry them."""

    def __init__(self, cfg, strategy, data, outputs):
        self.strategy, self.outputs, self.data = strategy, outputs, data
        resumed = cfg.has_checkpoint()
        with strategy.scope():
            self.model, init = run_model.build_initialized_model(cfg, data.num_classes,
                                                                 resumed=resumed)
            self.optimizer = run_model.make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)  # slots before strategy.run
            self.images_seen = tf.Variable(  # per replica: each adds the images it trained on
                0, dtype=tf.int64, trainable=False, name="images_seen",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM)
        self.init = outputs.init(init, resumed)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.schedule = schedules.LearningRate(cfg, data.steps_per_epoch, data.total_steps)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step,
            images_seen=self.images_seen, random_streams=steps.random_streams(self.model),
            **self.schedule.state())
        self.managers = {name: tf.train.CheckpointManager(
            self.checkpoint, outputs.checkpoint_dir(name), max_to_keep=1)
            for name in artifacts.CHECKPOINT_NAMES}

    def restore(self):
        """Restores the more advanced of the backup and the latest epoch checkpoint; returns
        its ``Resumed`` (None for a new run)."""
        candidates = [(name, self.managers[name].latest_checkpoint)
                      for name in ("backup", "latest") if self.managers[name].latest_checkpoint]
        resumed = None
        if candidates:
            name, path = max(candidates, key=lambda candidate: checkpoint_step(candidate[1]))
            self.checkpoint.restore(path).expect_partial()
            step = checkpoint_step(path)
            written = datetime.datetime.fromtimestamp(os.path.getmtime(path + ".index"))
            resumed = Resumed(step, os.path.relpath(self.outputs.checkpoint_dir(name),
                                                    self.outputs.root),
                              path, written.isoformat(sep=" ", timespec="seconds"),
                              step // self.data.steps_per_epoch)
        self.step.assign(resumed.step if resumed else 0)
        return resumed

    def save(self, name):
        """Saves a checkpoint of the current step into ``name``'s folder; returns its path."""
        return self.managers[name].save(checkpoint_number=int(self.step.numpy()))

    def saved(self):
        return [m.latest_checkpoint for m in self.managers.values() if m.latest_checkpoint]


def checkpoint_step(path):
    """The step a checkpoint was written at."""
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))
