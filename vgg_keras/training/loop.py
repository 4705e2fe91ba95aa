"""``vgg-train``: §3.1 training — mini-batch SGD with momentum 0.9, weight decay 5·10⁻⁴ (Caffe's
convention, on kernels only), dropout 0.5 on fc1 and fc2, learning rate 10⁻² divided by 10
whenever the validation accuracy stops improving, 74 epochs of batches of 256 — on one device,
several GPUs, several machines or a TPU.

The loop is our own rather than ``Model.fit``, so that a run killed at any step resumes at that
step: model, optimizer (momentum), step, learning-rate state and (with ``deterministic``) the
input position are restored from ``MODEL_DIR/backup/``. Keras 3's ``BackupAndRestore``
restores only the epoch and silently redoes the rest of it. SIGTERM or Ctrl-C stops a run after
its current step with a backup of that step (``preemption``); a command that would change the
run a model dir holds is refused before anything starts (``run_identity``).
"""

import contextlib
import os

import keras
import tensorflow as tf

from pipelines import data_service
from pipelines import dataset_info
from pipelines import shard_integrity
from pipelines.foundation import errors
from pipelines.foundation import lease
from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.compute import cluster
from vgg_keras.compute import distribution
from vgg_keras.nets import builder
from vgg_keras.training import data as run_data
from vgg_keras.training import epochs
from vgg_keras.training import model as run_model
from vgg_keras.training import notes
from vgg_keras.training import outputs as run_outputs
from vgg_keras.training import preemption
from vgg_keras.training import run_identity
from vgg_keras.training import state as run_state

TrainingError = epochs.TrainingError  # a NaN loss, inconsistent data: raised by train


def train(cfg):
    """Trains ``cfg.config`` on ``cfg.data_dir`` and returns the summary (also written to
    ``MODEL_DIR/summary.json``). Resumes from ``MODEL_DIR`` if a run was interrupted.

    Raises:
        ValueError: for inconsistent settings, before anything heavy starts.
        run_identity.ChangedSettings: if ``MODEL_DIR`` holds a run with other settings (and
            ``allow_changed_settings`` is not set), before anything is written.
        preemption.Stopped: on SIGTERM or SIGINT, after a backup of the step reached.
        TrainingError: if the loss or the weights stop being finite (nothing is saved then).
    """
    cfg.validate()
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(cfg):
    info = dataset_info.read_info(cfg.data_dir)
    identity = run_identity.check(cfg, info)  # refused here, nothing has been written
    data = run_data.read_run_data(cfg, info)
    finished = finished_summary(cfg, data)
    if finished:  # the same command again: nothing to do, and nothing is written
        print(f"the run in {cfg.model_dir} finished at step {finished['steps']:,}: nothing to "
              "do (a longer --train_epochs or --train_steps, with --allow_changed_settings, "
              "continues it)", flush=True)
        return finished
    if cfg.data_service:  # before anything heavy: its client would wait without end
        data_service.check_reachable(cfg.data_service)
    strategy = distribution.make_strategy(cfg.distribution_strategy, cfg.num_gpus,
                                          cfg.cpu_replicas, cfg.tpu)
    _check_batch(cfg, strategy.num_replicas_in_sync)
    # One run per model dir: the chief's lease, taken before this run writes anything there,
    # and given back as its last act whatever ends it.
    found = _entries(cfg.model_dir)
    held = lease.Lease(cfg.model_dir) if distribution.is_chief(strategy) else None
    taken_over = held.acquire(wait=cfg.lease_wait) if held else None
    try:
        return _run(cfg, data, identity, strategy, held, taken_over, found)
    finally:
        if held:
            held.release()
            if found is None and not _entries(cfg.model_dir):  # made by this start, left empty
                storage.rmtree(cfg.model_dir)


def _entries(model_dir):
    """The names in ``model_dir``, or None where it does not exist."""
    return set(storage.listdir(model_dir)) if storage.isdir(model_dir) else None


@contextlib.contextmanager
def _as_found_on_failure(model_dir, found, chief):
    """A start that fails before its first step (published weights that cannot be had, an
    ``--init`` that does not fit) removes what it wrote: the model dir as it found it (but the
    lease, given back last)."""
    try:
        yield
    except BaseException:
        if chief:
            for name in (_entries(model_dir) or set()) - (found or set()) - {layout.LEASE_FILE}:
                path = storage.join(model_dir, name)
                storage.rmtree(path) if storage.isdir(path) else storage.remove(path)
        raise


def finished_summary(cfg, data):
    """The summary of the run in ``cfg.model_dir`` if it has trained ``data.total_steps`` steps
    already (or more) and written its model, else None."""
    summary = layout.read_summary(cfg.model_dir)
    done = summary.get("steps", 0) >= data.total_steps and storage.isfile(
        os.path.join(cfg.model_dir, layout.MODEL_FILE))
    return summary if done else None


def _run(cfg, data, identity, strategy, held, taken_over, found):
    with _as_found_on_failure(cfg.model_dir, found, distribution.is_chief(strategy)):
        state, say = _start(cfg, data, identity, strategy, taken_over)
    return _train_epochs(cfg, data, state, strategy, held, say)


def _start(cfg, data, identity, strategy, taken_over):
    """The run's state (its net built and initialised, or restored) and its first lines:
    everything before its first step; ``(state, the function printing its log)``."""
    outputs = run_outputs.RunOutputs(cfg.model_dir,
                                     run_state.output_root(strategy, cfg.model_dir))
    # One log per cluster: the chief's; every other worker says where it stands, and its stop.
    say = print if outputs.chief else _silent
    if outputs.chief:
        identity.record()
    else:
        workers, index = distribution.worker_share(strategy)
        print(f"worker {index} of {workers}: training the run in {cfg.model_dir} "
              "(the chief prints its log)", flush=True)
    if cfg.dtype != "float32":
        keras.mixed_precision.set_global_policy(f"mixed_{cfg.dtype}")
    state = run_state.RunState(cfg, strategy, data, outputs)
    if outputs.chief and not storage.exists(os.path.join(cfg.model_dir,
                                                         layout.ARCHITECTURE_FILE)):
        layout.write_architecture(cfg.model_dir, state.model)  # its checkpoints as models
        layout.write_classes(cfg.model_dir, run_outputs.classes(cfg, data))
    say(notes.recipe(cfg, strategy.num_replicas_in_sync, data, state.schedule), flush=True)
    frozen = f"; frozen below {cfg.trainable_from}" if cfg.trainable_from else ""
    for line in (taken_over, notes.imagenet_defaults(cfg, data), notes.plateau_note(cfg, data),
                 notes.batch_norm_note(cfg, data), run_model.normalization_note(cfg),
                 identity.describe_changes(), state.init.describe() + frozen):
        if line:
            say(line, flush=True)
    state.resumed = state.restore(report=say)
    if state.resumed:
        say(state.resumed.describe(), flush=True)
    outputs.resume(state.resumed.step if state.resumed else 0)
    return state, say


def _train_epochs(cfg, data, state, strategy, held, say):
    """The run's steps and epochs, then its model and summary; returns the summary."""
    resumed, outputs = state.resumed, state.outputs
    start = resumed.step if resumed else 0
    corrupt = shard_integrity.make_corrupt_counter() if cfg.skip_corrupt else None
    iterator = iter(strategy.distribute_datasets_from_function(
        run_data.train_dataset_fn(cfg, data, start, corrupt)))
    eval_data = strategy.experimental_distribute_dataset(
        run_data.eval_dataset(cfg, data, corrupt, distribution.worker_share(strategy)[0]))
    runner = epochs.EpochLoop(cfg, state, data, corrupt, held, say)
    stop_watching = (data_service.watch_workers(cfg.data_service, waiting=runner.waiting)
                     if cfg.data_service else None)
    try:
        with preemption.StopRequests(strategy, cfg.stop_grace_seconds,
                                     runner.stop_while_blocked) as stops:
            runner.stops = stops
            result = runner.run(iterator, eval_data, resumed)
    except tf.errors.OpError as error:  # a peer or the input's service gone: rerun, resume
        gone = _gone(cfg, strategy, error, state)
        if gone is None:
            raise
        raise gone from error
    finally:
        if stop_watching:
            stop_watching()
    outputs.save_keras(state.evaluated, layout.MODEL_FILE)  # the average, with --model_ema
    summary = run_outputs.build_summary(cfg, data, strategy.num_replicas_in_sync, result,
                                        state.init, builder.normalization_of(state.model))
    outputs.write_summary(summary)
    outputs.finish()
    return summary


def _silent(*arguments, **keywords):
    """What a worker other than the chief prints of the run's log: nothing."""


def _gone(cfg, strategy, error, state):
    """The ``TemporaryError`` of a TensorFlow error that says a peer of a multi-worker run, or
    the tf.data service, went away, naming where a rerun resumes; None for any other error."""
    saved = state.saved()
    resume = max(saved, default=None, key=lambda path: layout.checkpoint_step(path) or 0)
    resume = state.outputs.run_path(resume) if resume else None
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        gone = cluster.peer_gone(error, cluster.read_cluster(), resume)
        if gone is not None:
            return gone
    if cfg.data_service:
        return data_service.service_gone(error, cfg.data_service, resume)
    return None


def _check_batch(cfg, replicas):
    if cfg.batch_size % replicas:
        raise errors.UserError(f"--batch_size={cfg.batch_size} is not divisible by the {replicas} "
                               "replicas")
