"""The state of a run and the checkpoints that carry it: net, optimizer, step, images seen,
schedule state and random streams, in three ``tf.train`` checkpoint folders (``artifacts``):
``backup/`` every ``--backup_steps`` and when the run is stopped, ``checkpoints/latest`` at
every epoch's end, ``checkpoints/best`` at every new best validation top-1. A run resumes from
the more advanced of the backup and the latest epoch checkpoint, and says which.
"""

import dataclasses
import datetime

import tensorflow as tf

from pipelines.foundation import errors
from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.compute import distribution
from vgg_keras.training import ema
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
        where = (f"(written {self.written})" if self.source == layout.BACKUP_DIR else
                 f"(epoch {self.epochs})")
        return f"resumed at step {self.step:,} from {self.source}/ {where}"


class RunState:
    """The run's net, optimizer, counters and schedule, and the checkpoints that carry them."""

    def __init__(self, cfg, strategy, data, outputs):
        self.strategy, self.outputs, self.data = strategy, outputs, data
        self.resumed = None  # where it resumed from (``Resumed``), once ``restore`` has said
        resumed = cfg.has_checkpoint()
        with strategy.scope():
            self.model, init = run_model.build_initialized_model(cfg, data.num_classes,
                                                                 resumed=resumed)
            self.optimizer = run_model.make_optimizer(cfg)
            steps.exclude_from_decay(self.optimizer, self.model, cfg.norm_weight_decay)
            self.optimizer.build(self.model.trainable_variables)  # slots before strategy.run
            # The net the steps train: itself, or its twin at --train_crop_size (FixRes).
            self.train_model = run_model.training_view(self.model, cfg.train_crop)
            self.images_seen = tf.Variable(  # per replica: each adds the images it trained on
                0, dtype=tf.int64, trainable=False, name="images_seen",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM)
        self.init = outputs.init(init, resumed)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.schedule = schedules.LearningRate(cfg, data.steps_per_epoch, data.total_steps)
        self.ema = ema.WeightsEMA(self.model, strategy, cfg, data.steps_per_epoch,
                                  data.total_steps) if cfg.model_ema else None
        # The net validated, saved as model.keras and exported: the average, where there is one.
        self.evaluated = self.ema.model if self.ema else self.model
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step,
            images_seen=self.images_seen, random_streams=steps.random_streams(self.model),
            **self.schedule.state(), **(self.ema.state() if self.ema else {}))
        # Each folder keeps its newest --keep_checkpoints: a damaged newest has an older twin.
        self.managers = {name: tf.train.CheckpointManager(
            self.checkpoint, outputs.checkpoint_dir(name), max_to_keep=cfg.keep_checkpoints)
            for name in layout.CHECKPOINT_NAMES}

    def candidates(self):
        """Every checkpoint the run could resume from, the most advanced first: ``[(folder
        name, path, step)]`` (at one step: the backup, then the epoch's, then the best)."""
        found = []
        for rank, name in enumerate(("backup", "latest", "best")):
            for path in self.managers[name].checkpoints:
                step = layout.checkpoint_step(path)
                if step is not None:
                    found.append((step, -rank, name, path))
        return [(name, path, step) for step, _, name, path in sorted(found, reverse=True)]

    def restore(self, report=print):
        """Restores the most advanced checkpoint that restores; returns its ``Resumed`` (None
        for a new run). One that fails (a damaged or half-copied file) is passed over, with a
        line to ``report`` naming it and why.

        Raises:
            UserError: if there are checkpoints and none of them restores.
        """
        failed = []
        for name, path, step in self.candidates():
            try:
                self.checkpoint.restore(path).expect_partial()
            except Exception as error:  # noqa: BLE001 - any failure: this checkpoint is unusable
                reason = errors.one_line(error) if hasattr(error, "error_code") else (
                    f"{type(error).__name__}: {error}")
                failed.append(f"{path} ({reason})")
                report(f"checkpoint {path} does not restore ({reason}): passed over",
                       flush=True)
                continue
            self.step.assign(step)
            written = datetime.datetime.fromtimestamp(storage.mtime(path + ".index"))
            return Resumed(step, storage.relative(self.outputs.checkpoint_dir(name),
                                                  self.outputs.root),
                           path, written.isoformat(sep=" ", timespec="seconds"),
                           step // self.data.steps_per_epoch)
        if failed:
            raise errors.UserError(
                f"no checkpoint of --model_dir={self.outputs.model_dir} restores: "
                f"{'; '.join(failed)}. Start afresh with another --model_dir (or move these "
                "checkpoint folders away to start over in this one)")
        self.step.assign(0)
        return None

    def save(self, name):
        """Saves a checkpoint of the current step into ``name``'s folder; returns its path."""
        return self.managers[name].save(checkpoint_number=int(self.step.numpy()))

    def saved(self):
        return [m.latest_checkpoint for m in self.managers.values() if m.latest_checkpoint]


def output_root(strategy, model_dir):
    """Where this worker writes its checkpoints and logs: the model dir for the chief, a scratch
    folder of the model dir for every other worker (their writes are needed for the
    collective saves, not kept)."""
    if distribution.is_chief(strategy):
        return model_dir
    resolver = getattr(strategy, "cluster_resolver", None)
    return layout.worker_dir(model_dir, getattr(resolver, "task_id", 0))
