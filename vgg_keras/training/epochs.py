"""The epochs of a run (``loop.train``'s inner loop): the training step called in chunks that
end at backups and epochs, the validation and checkpoints of each epoch, the log and progress
lines, a NaN or lost lease stopping the run, and SIGTERM or Ctrl-C stopping it after a backup
of the step reached (``preemption``)."""

import math
import os
import sys
import time

import tensorflow as tf

from pipelines import data_service
from pipelines.foundation import errors
from pipelines.foundation import lease
from pipelines.foundation import progress
from vgg_keras.artifacts import layout
from vgg_keras.training import data as run_data
from vgg_keras.training import notes
from vgg_keras.training import preemption
from vgg_keras.training import steps

PROGRESS_INTERVAL = 60.0  # seconds between progress lines off a terminal


class TrainingError(errors.UserError):
    """Training cannot go on (a NaN loss, inconsistent data); the message says why."""


def _multipliers(cfg, state):
    """``--head_learning_rate_multiplier`` for the variables of the layers not loaded from
    ``--init`` (and of their batch normalisation)."""
    if cfg.head_learning_rate_multiplier == 1.0 or not state.init.loaded:
        return None
    new = set(state.init.new)
    return {v.path: cfg.head_learning_rate_multiplier for layer in state.model.layers
            if layer.name in new or layer.name.removesuffix("_bn") in new
            for v in layer.trainable_variables}


def plan_chunk(current, end, backup_steps, steps_per_execution, next_stop=None):
    """The next call of the training step function, from step ``current`` of an epoch that ends
    at step ``end``: ``(steps it runs, whether a backup follows)``. A call runs at most
    ``steps_per_execution`` steps and never past the epoch's end, the next multiple of
    ``backup_steps``, where the backup is written (unless that is the epoch's end, whose
    checkpoint is written anyway), or ``next_stop`` (a step after which something else is due:
    the EMA's update)."""
    next_backup = (current // backup_steps + 1) * backup_steps
    count = min(steps_per_execution, end - current, next_backup - current,
                (next_stop or end) - current)
    reached = current + count
    return count, reached % backup_steps == 0 and reached < end


class EpochLoop:
    """The epochs of one run: steps, backups, NaN checks, validation, checkpoints, logs."""

    def __init__(self, cfg, state, data, corrupt, held=None, say=print):
        self.cfg, self.state, self.data, self.corrupt = cfg, state, data, corrupt
        self.stops, self.lease, self.say = None, held, say
        self.step_began = None  # when the step call in flight began (None between calls)
        # AdamW decays the weights itself (decoupled); SGD's decay is the step's (Caffe's).
        own_decay = cfg.optimizer == "adamw"
        self.train_steps = steps.make_train_steps(
            state.train_model, state.optimizer, state.strategy, cfg.batch_size,
            weight_decay=0.0 if own_decay else cfg.weight_decay, enable_xla=cfg.enable_xla,
            images_seen=state.images_seen,
            learning_rate_multipliers=_multipliers(cfg, state),
            regularization=steps.Regularization(
                cfg.label_smoothing, 0.0 if own_decay else cfg.norm_weight_decay,
                cfg.clip_grad_norm))
        self.eval_step = steps.make_eval_step(state.evaluated, state.strategy, data.num_classes)
        # With an average of the weights, the raw weights' accuracy too, for the log.
        self.raw_eval_step = (steps.make_eval_step(state.model, state.strategy, data.num_classes)
                              if state.ema else None)
        # auto: a live line on a terminal, else a line a minute; live; epochs: only the line of
        # each epoch.
        show = {"auto": None, "live": True, "epochs": False}[cfg.progress]
        self.line = progress.ProgressLine(show=show if say is print else False,
                                          interval=PROGRESS_INTERVAL, stream=sys.stdout)
        self.train_seconds = self.train_images = 0.0
        self.started, self.start_step = time.monotonic(), None

    def run(self, iterator, eval_data, resumed):
        start = resumed.step if resumed else 0
        current, row, self.start_step = start, None, start
        try:
            while current < self.data.total_steps:
                current, row = self._epoch(iterator, eval_data, current)
                if current < self.data.total_steps:  # a signal during the validation
                    self._stop_if_asked(current, saved=self.state.managers["latest"])
        except tf.errors.DataLossError as error:  # TensorFlow names no shard: find it
            raise run_data.explain_data_loss(self.data, error) from error
        if row is None:  # nothing left to do: a finished run started again
            top1, top5, _ = steps.evaluate_top_k(self.eval_step, eval_data)
            row = {"loss": None, "val_top1": top1, "val_top5": top5}  # no step taken
        return {"final_loss": row["loss"], "val_top1": row["val_top1"],
                "val_top5": row["val_top5"],
                "best_val_top1": float(self.state.schedule.best_top1.numpy()),
                "images_per_second": self.train_images / max(self.train_seconds, 1e-9),
                "corrupt_shards": int(self.corrupt.numpy()) if self.corrupt is not None else 0,
                "images_per_replica": [int(v.numpy()) for v in
                                       self.state.strategy.experimental_local_results(
                                           self.state.images_seen)],
                "resumed_from_step": start,
                "resumed_from": resumed.source if resumed else None}

    def _epoch(self, iterator, eval_data, current):
        """Trains to the end of the current epoch, then validates and checkpoints; returns the
        step reached and the epoch's log row."""
        per_epoch = self.data.steps_per_epoch
        epoch = current // per_epoch
        first, started = current, time.perf_counter()
        current, loss_sum, rate = self._train_to(iterator, current, epoch)
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        self.train_images += (current - first) * self.cfg.batch_size
        top1, top5, _ = steps.evaluate_top_k(self.eval_step, eval_data)
        raw = (steps.evaluate_top_k(self.raw_eval_step, eval_data)[0] if self.raw_eval_step
               else None)
        row = {"epoch": epoch + 1, "step": current, "loss": loss_sum / max(1, current - first),
               "val_top1": top1, "val_top5": top5, "learning_rate": rate,
               "images_per_second": (current - first) * self.cfg.batch_size /
               max(seconds, 1e-9)}
        if raw is not None:  # the column of runs with --model_ema
            row["raw_val_top1"] = raw
        # The log first, then the checkpoint: killed in between, the run resumes before this
        # epoch and drops its row (RunOutputs.resume), so log and checkpoint always agree.
        self.state.outputs.log_epoch(row)
        self._end_epoch(top1)
        self._print(row)
        return current, row

    def _train_to(self, iterator, current, epoch):
        """The steps of one epoch from ``current``, with backups every ``backup_steps``;
        returns (step reached, summed loss, last learning rate)."""
        cfg, per_epoch = self.cfg, self.data.steps_per_epoch
        meter = notes.EpochProgress(epoch=epoch, start=current,
                              end=min(self.data.total_steps, (epoch + 1) * per_epoch),
                              steps_per_epoch=per_epoch, total_steps=self.data.total_steps,
                              run_start=self.start_step, run_began=self.started,
                              began=time.monotonic(), batch_size=cfg.batch_size)
        loss_sum, rate = 0.0, None
        while current < meter.end:
            count, back_up = plan_chunk(
                current, meter.end, cfg.backup_steps, cfg.steps_per_execution,
                self.state.ema.next_due(current) if self.state.ema else None)
            rate = self.state.schedule(current)
            self.state.optimizer.learning_rate = rate
            self.step_began = time.monotonic()
            loss = float(self.train_steps(iterator, tf.constant(count)))
            self.step_began = None
            if not math.isfinite(loss):
                self._stop(f"the training loss is {loss} at step {current + count}")
            current += count
            self.state.step.assign(current)
            if self.state.ema and self.state.ema.due(current):
                self.state.ema.update(current)
            loss_sum += loss * count
            if self.line.due():
                self.line.write(meter.describe(current, rate, loss))
            if back_up:
                self._save("backup")
            if current < meter.end:  # at the epoch's end: once its checkpoint is written
                self._stop_if_asked(current, saved=self.state.managers["backup"] if back_up
                                    else None)
        self.line.end()
        return current, loss_sum, rate

    def _end_epoch(self, top1):
        if self.lease is not None and self.lease.lost:  # two runs would write one model dir
            raise lease.LeaseHeld(f"the lease on {self.cfg.model_dir} was lost ({self.lease.lost})"
                                  ": this run stops before its next checkpoint; the last one is "
                                  f"{self.state.saved()[0] if self.state.saved() else 'none'}")
        improved = self.state.schedule.end_epoch(top1)
        self._save("latest")
        if improved:
            self._save("best")
            self.state.outputs.save_keras(self.state.evaluated, layout.BEST_MODEL_FILE)

    def _print(self, row):
        corrupt = int(self.corrupt.numpy()) if self.corrupt is not None else 0
        note = f", {corrupt} corrupt shards skipped" if corrupt else ""
        ema = ("" if row.get("raw_val_top1") is None else
               f" (EMA weights; {row['raw_val_top1']:.4f} without)")
        self.say(f"epoch {row['epoch']} (step {row['step']}/{self.data.total_steps}): loss "
                 f"{row['loss']:.4f}, val top-1 {row['val_top1']:.4f}, top-5 "
                 f"{row['val_top5']:.4f}{ema}, lr {row['learning_rate']:.3g}, "
                 f"{row['images_per_second']:.1f} images/s{note}", flush=True)

    def _save(self, name):
        if not steps.weights_finite(self.state.model):
            self._stop(f"the weights are no longer finite at step "
                       f"{int(self.state.step.numpy())}")
        return self.state.save(name)

    def _stop_if_asked(self, current, saved=None):
        """Stops the run at ``current`` if any worker received SIGTERM or SIGINT, after a
        backup of this step (unless ``saved``, a checkpoint manager, has one already)."""
        asked = self.stops.agreed()
        if asked is None:
            return
        self.stops.acknowledge()  # stopping here: the watchdog of blocked steps stands down
        self.line.end()
        path = self.state.outputs.run_path(
            saved.latest_checkpoint if saved is not None else self._save("backup"))
        self.state.outputs.flush()
        raise preemption.Stopped(asked[0], current, path, elsewhere=asked[1],
                                 written=saved is None)

    def waiting(self):
        """Seconds the step call in flight has waited so far (its input, or a peer), or None
        between calls."""
        began = self.step_began
        return None if began is None else time.monotonic() - began

    def stop_while_blocked(self, number):
        """The watchdog's call, ``stop_grace_seconds`` after a signal this run has not answered:
        its step waits for input that does not come. Saves that step's backup where the weights
        are surely those of the last completed step (a tf.data service with no worker: no batch
        can be in the step; one step per call; one worker), then ends the process with the
        signal's status. From the watchdog's thread: the main one is blocked."""
        step = int(self.state.step.numpy())
        saved = None
        if (step and self.cfg.data_service and self.cfg.steps_per_execution == 1
                and not isinstance(self.state.strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and not _registered(self.cfg.data_service)):
            saved = self._save("backup")
        kept = saved or max(self.state.saved(), default=None,
                            key=lambda path: layout.checkpoint_step(path) or 0)
        self.state.outputs.flush()
        if self.lease is not None:  # the process ends here, its finally clauses with it
            self.lease.release()
        print(f"vgg-train: stopped by {number.name} at step {step}, its input waiting "
              f"{self.cfg.stop_grace_seconds:g} s after the signal; "
              + (f"backup written; run the same command to resume (from {saved})" if saved else
                 f"the last checkpoint is {kept or 'none yet'}; run the same command to resume"),
              file=sys.stderr, flush=True)
        os._exit(preemption.exit_code(number))

    def _stop(self, what):
        kept = self.state.saved()
        raise TrainingError(
            f"{what}: training stopped, and nothing was saved from this point on. The last "
            f"good checkpoint{'s are' if len(kept) > 1 else ' is'} "
            f"{', '.join(kept) if kept else '(none yet)'}. Lower --learning_rate, or use "
            "--dtype=float32 if a reduced precision overflowed.")


def _registered(address):
    """Whether the tf.data service has any worker (an unanswering one counts as having some:
    then nothing is known)."""
    try:
        return bool(data_service.registered_workers(address))
    except Exception:  # noqa: BLE001 - unknown: assume a batch may be in the step
        return True
