"""vgg-train: a tiny net really trains; replicas, resume after kill -9, NaN stop, flags."""

import json
import pathlib
import shutil
import signal
import sys
import time

import keras
import numpy as np
import pytest

from pipelines.foundation import errors
from tests import programs
from tests.conftest import REFERENCE_FLAGS
from tests.conftest import REFERENCE_RUN
from tests.conftest import REFERENCE_STEPS_PER_EPOCH
from tests.conftest import TINY_FLAGS
from tests.conftest import TINY_RUN as TINY
from vgg_keras import protocols
from vgg_keras.compute import distribution
from vgg_keras.training import loop
from vgg_keras.training import model as run_model
from vgg_keras.training import notes
from vgg_keras.training import run_config
from vgg_keras.training import schedules
from vgg_keras.training import steps

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`
ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def data(train_data):
    return train_data


def _config(data, model_dir, **overrides):
    arguments = dict(TINY, data_dir=str(data), model_dir=str(model_dir),
                     distribution_strategy="one_device")
    arguments.update(overrides)
    return run_config.TrainConfig(**arguments)


def _cli(*arguments, env=None, timeout=600):
    return programs.run([sys.executable, "-m", "tools.train", *arguments], cwd=ROOT,
                        timeout=timeout, env=env)


def test_tiny_net_learns_and_writes_every_output(data, tmp_path):
    # Deterministic: the same trajectory on every run (loss 1.34 → 0.33 here), not a lucky one.
    summary = loop.train(_config(data, tmp_path, train_epochs=6, deterministic=True))
    rows = (tmp_path / "training_log.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("epoch,step,loss,val_top1,val_top5")
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert min(losses[-3:]) < 0.6 * losses[0]  # it learns
    assert summary["best_val_top1"] >= 0.6  # 4 classes: chance is 0.25
    assert summary["steps"] == 6 * (96 // 16) and summary["epochs"] == 6
    for key in ("config", "steps", "epochs", "final_loss", "val_top1", "val_top5",
                "images_per_second", "replicas"):
        assert key in summary
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == summary["steps"]
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.output.shape == (None, 4)
    assert keras.models.load_model(tmp_path / "best.keras").count_params() == model.count_params()
    assert list((tmp_path / "checkpoints" / "latest").glob("ckpt-36.index"))
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert not (tmp_path / "backup").exists()  # removed once the run is complete


def test_settings_reach_the_model_optimizer_and_schedule(data, tmp_path):
    cfg = _config(data, tmp_path, config="B-BN", weight_decay=5e-4, dropout=0.3, width=0.25,
                  fc_units=32)
    model = run_model.build_initialized_model(cfg, 10)[0]
    assert model.name == "vgg_b_bn" and model.get_layer("fc1").units == 32
    assert model.get_layer("fc1_dropout").rate == 0.3
    assert model.get_layer("block1_conv1").filters == 16
    gaussian = run_model.build_initialized_model(_config(data, tmp_path, init="auto"), 10)[0]
    assert np.std(gaussian.get_layer("block4_conv1").kernel.numpy()) == pytest.approx(0.01, 0.1)
    schedule = schedules.LearningRate(_config(data, tmp_path, lr_schedule="step",
                                             lr_step_epochs=(2, 4)), 10, 60)
    assert [round(schedule(s), 7) for s in (0, 19, 20, 40)] == [0.002, 0.002, 0.0002, 0.00002]
    cosine = schedules.LearningRate(_config(data, tmp_path, lr_schedule="cosine",
                                           warmup_epochs=1), 10, 100)
    assert cosine(0) == pytest.approx(0.0002) and cosine(9) == pytest.approx(0.002, rel=0.03)
    assert cosine(99) < 0.00004
    plateau = schedules.LearningRate(_config(data, tmp_path), 10, 100)
    assert plateau.end_epoch(0.3) and plateau(10) == pytest.approx(0.002)
    assert not plateau.end_epoch(0.3) and plateau(20) == pytest.approx(0.0002)  # §3.1: ÷10


def test_init_from_a_copies_the_papers_layers(data, tmp_path):
    net_a = run_model.build_initialized_model(_config(data, tmp_path), 4)[0]
    net_a.save(tmp_path / "a.keras")
    net_d = run_model.build_initialized_model(_config(data, tmp_path, config="D",
                                         init=f"from_a={tmp_path / 'a.keras'}"), 4)[0]
    for name in ("block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2", "fc1", "fc2",
                 "predictions"):
        np.testing.assert_array_equal(net_d.get_layer(name).kernel.numpy(),
                                      net_a.get_layer(name).kernel.numpy())
    assert net_d.get_layer("block1_conv2").kernel.shape == (3, 3, 8, 8)


@pytest.mark.parametrize("overrides, message", [
    (dict(config="F"), "unknown VGG configuration"),
    (dict(lr_schedule="linear"), "lr_schedule must be one of"),
    (dict(scale=(24, 48)), "crop_size 32 <= Smin <= Smax"),
    (dict(init="from_a=/nonexistent.keras"), "does not exist"),
    (dict(init="he"), "--init must be"),
    (dict(dtype="int8"), "dtype must be one of"),
    (dict(momentum=1.0), "momentum must be in"),
])
def test_bad_settings_fail_before_anything_heavy(data, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(data, tmp_path, **overrides).validate()


def test_cli_errors(data, tmp_path):
    result = _cli(*TINY_FLAGS, f"--data_dir={data}", f"--model_dir={tmp_path}",
                  "--cpu_replicas=2", "--batch_size=15")
    assert result.returncode == 1
    assert "--batch_size=15 is not divisible by the 2 replicas" in result.stderr
    result = _cli(*TINY_FLAGS, f"--data_dir={data}", f"--model_dir={tmp_path}", "--scale=36,x")
    assert result.returncode != 0 and "--scale must be S or Smin,Smax" in result.stderr
    result = _cli(*TINY_FLAGS, f"--data_dir={data}")
    assert result.returncode != 0 and "--model_dir is required" in result.stderr


def test_mirrored_on_two_logical_cpus(data, tmp_path):
    """Data and model dir as file:// URLs (a bucket's stand-in: the same tf.io.gfile calls).
    (With oneDNN's kernels on: test_journeys, in a fresh interpreter.)"""
    result = _cli(*TINY_FLAGS, f"--data_dir=file://{data}", f"--model_dir=file://{tmp_path}",
                  "--cpu_replicas=2", "--train_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replicas"] == 2
    assert summary["images_per_replica"] == [6 * 8, 6 * 8]  # both replicas trained, half each


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    loop.train(_config(data, tmp_path, train_epochs=1))
    good = sorted(p.name for p in (tmp_path / "checkpoints" / "latest").iterdir())
    best = (tmp_path / "best.keras").read_bytes()
    with pytest.raises(loop.TrainingError, match=r"training stopped.*last good checkpoint"):
        loop.train(_config(data, tmp_path, train_epochs=2, learning_rate=1e12,
                           allow_changed_settings=True))
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "latest").iterdir()) == good
    assert (tmp_path / "best.keras").read_bytes() == best


def test_kill_mid_epoch_and_resume(reference_run, data, tmp_path):
    """With the data and the model dir as file:// URLs: what a bucket's run meets, through
    the same tf.io.gfile calls."""
    common = [*REFERENCE_FLAGS, f"--data_dir=file://{data}", "--backup_steps=2"]
    per_epoch = REFERENCE_STEPS_PER_EPOCH
    killed = tmp_path / "killed"
    process = programs.start([sys.executable, "-m", "tools.train", *common,
                              f"--model_dir=file://{killed}"], cwd=ROOT)
    deadline = time.monotonic() + 300
    # Kill once a mid-epoch backup is complete (epochs are 12 steps; backups every 2): the
    # manager's state file names it only after its files are written.
    state = killed / "backup" / "checkpoint"

    def recorded_backup():
        text = state.read_text() if state.exists() else ""
        for line in text.splitlines():
            if line.startswith("model_checkpoint_path:"):
                return int(line.rsplit("-", 1)[1].rstrip('"'))
        return 0

    while time.monotonic() < deadline and not recorded_backup() % per_epoch:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    backup = recorded_backup()
    assert backup % per_epoch and not (killed / "summary.json").exists()  # killed mid-epoch
    result = _cli(*common, f"--model_dir=file://{killed}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((killed / "summary.json").read_text())
    expected = json.loads((reference_run / "summary.json").read_text())
    assert summary["steps"] == expected["steps"] == 3 * per_epoch
    assert summary["resumed_from_step"] >= backup > 0  # at most backup_steps lost
    assert summary["resumed_from"] == "backup"
    assert f"resumed at step {summary['resumed_from_step']} from backup/ (written " in result.stdout
    rows = (killed / "training_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["1", "12"], ["2", "24"], ["3", "36"]]
    # Deterministic: the resumed run continues with the same data, and ends with the same net.
    ours = keras.models.load_model(killed / "model.keras").get_weights()
    theirs = keras.models.load_model(reference_run / "model.keras").get_weights()
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _latest_checkpoint_step(model_dir):
    """The step of the last complete epoch checkpoint (its state file names it only once its
    files are written), or 0."""
    state = model_dir / "checkpoints" / "latest" / "checkpoint"
    text = state.read_text() if state.exists() else ""
    for line in text.splitlines():
        if line.startswith("model_checkpoint_path:"):
            return int(line.rsplit("-", 1)[1].rstrip('"'))
    return 0


def _tensorboard_scalars(log_dir, tag):
    """{step: value} of a scalar in a run's TensorBoard events (the last write of a step)."""
    import tensorflow as tf

    values = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_flat_validation_accuracy_ends_with_three_divisions_across_a_kill(data, tmp_path, capfd):
    """§3.1 to the letter: with the validation accuracy flat (weights of σ = 1e-6 carry no
    signal through 11 layers: every image gets the same class, top-1 stays 1/4), the rate is
    divided by 10 after epochs 2, 3 and 4, then stays at 1e-5. Killed after epoch 3 and
    resumed, the run continues the count; the CSV and TensorBoard show the same rates."""
    common = [*TINY_FLAGS, f"--data_dir={data}", f"--model_dir={tmp_path}", "--train_epochs=7",
              "--learning_rate=0.01", "--init=gaussian", "--init_stddev=1e-6", "--deterministic",
              "--distribution_strategy=one_device"]
    process = programs.start([sys.executable, "-m", "tools.train", *common], cwd=ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _latest_checkpoint_step(tmp_path) < 18:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = _latest_checkpoint_step(tmp_path)
    assert 18 <= resumed < 42
    capfd.readouterr()
    # The same run, resumed by the library call the command makes (its flags' TrainConfig).
    loop.train(_config(data, tmp_path, train_epochs=7, learning_rate=0.01, init="gaussian",
                       init_stddev=1e-6, deterministic=True))
    printed = capfd.readouterr().out.splitlines()
    # No backup within an epoch (--backup_steps 1000): the epoch checkpoint, and the log says so.
    assert f"resumed at step {resumed} from checkpoints/latest/ (epoch {resumed // 6})" in printed
    assert "at most 3 times (to 1e-05)" in printed[0]  # the recipe line
    rows = [line.split(",") for line in
            (tmp_path / "training_log.csv").read_text().splitlines()[1:]]
    assert [int(row[1]) for row in rows] == [6 * epoch for epoch in range(1, 8)]
    assert {float(row[3]) for row in rows} == {0.25}  # flat
    rates = [float(row[5]) for row in rows]
    assert rates == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4, 1e-5, 1e-5, 1e-5])
    logged = _tensorboard_scalars(tmp_path / "logs", "learning_rate")
    assert sorted(logged) == [int(row[1]) for row in rows]
    assert [logged[int(row[1])] for row in rows] == pytest.approx(rates)


def test_optimizer_and_precision_flags(data, tmp_path):
    optimizer = run_model.make_optimizer(_config(data, tmp_path, momentum=0.8, learning_rate=0.3))
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.8 and float(optimizer.learning_rate) == pytest.approx(0.3)
    scaled = run_model.make_optimizer(_config(data, tmp_path, dtype="float16"))
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    policy = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = run_model.build_initialized_model(_config(data, tmp_path), 4)[0]
        assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
        assert model.layers[-1].compute_dtype == "float32"  # softmax stays float32
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_bfloat16_steps_per_execution_and_xla_runs(data, tmp_path):
    summary = loop.train(_config(data, tmp_path / "a", dtype="bfloat16", train_steps=7,
                                     steps_per_execution=3, enable_xla=True))
    assert summary["steps"] == 7 and summary["images_per_replica"] == [7 * 16]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    rows = (tmp_path / "a" / "training_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["6", "7"]  # epochs of 6 steps, then the rest


def test_float16_with_loss_scaling_and_weight_decay_runs(data, tmp_path):
    summary = loop.train(_config(data, tmp_path, dtype="float16", train_steps=3))
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])


def test_fine_tune_from_a_trained_model(data, tmp_path):
    """§3.1: S = 384 started from the S = 256 net (here 48 from 36), at a lower rate."""
    loop.train(_config(data, tmp_path / "s256", scale=(36, 36), train_epochs=1))
    source = keras.models.load_model(tmp_path / "s256" / "model.keras")
    cfg = _config(data, tmp_path / "s384", scale=(48, 48), learning_rate=1e-3,
                  init=f"model={tmp_path / 's256'}")
    model = run_model.build_initialized_model(cfg, 4)[0]
    for a, b in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert protocols.default_test_scale((48, 48)) == 48
    assert protocols.default_test_scale((256, 512)) == 384


def test_weight_decay_is_caffes_on_kernels_only(data, tmp_path):
    """One SGD step without momentum: with decay λ every kernel moves by −lr·λ·w more than
    without, biases and BN parameters not at all (§3.1, Caffe: gradient += λ·w)."""
    import tensorflow as tf

    rate, decay = 0.1, 0.05
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3], np.int32)
    after = {}
    for weight_decay in (0.0, decay):
        cfg = _config(data, tmp_path, config="A-BN", momentum=0.0, learning_rate=rate,
                      weight_decay=weight_decay)
        model = run_model.build_initialized_model(cfg, 4)[0]
        before = {v.path: v.numpy().copy() for v in model.trainable_variables}
        optimizer = run_model.make_optimizer(cfg)
        optimizer.build(model.trainable_variables)
        strategy = tf.distribute.get_strategy()
        step = steps.make_train_steps(model, optimizer, strategy, 4, weight_decay=weight_decay)
        iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
        step(iterator, tf.constant(1))
        after[weight_decay] = {v.path: v.numpy() for v in model.trainable_variables}
    kernels = {v.path for v in steps.decayed_variables(model)}
    assert len(kernels) == 11 and all(p.endswith("kernel") for p in kernels)
    for path, value in after[decay].items():
        expected = after[0.0][path] - (rate * decay * before[path] if path in kernels else 0)
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6)


def test_one_weight_decay_per_model(data, tmp_path):
    """A model built with WeightInit(weight_decay=λ) carries Keras L2 (λ/2): trained by the step
    with weight_decay=0 it moves exactly as a plain model trained with the step's λ; asking for
    both is refused, as it would decay twice."""
    import tensorflow as tf

    import vgg_keras

    rate, decay = 0.1, 0.05
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3], np.int32)
    cfg = _config(data, tmp_path, momentum=0.0, learning_rate=rate)
    after = []
    for model_decay, step_decay in ((decay, 0.0), (0.0, decay)):
        model = vgg_keras.build_vgg(
            "A", 4, input_shape=(32, 32, 3), width=0.125,
            head=vgg_keras.Head(fc_units=16, dropout=0.0),
            weight_init=vgg_keras.WeightInit(seed=5, weight_decay=model_decay),
            preprocessing=vgg_keras.Preprocessing(color_shift_stddev=0.0))
        optimizer = run_model.make_optimizer(cfg)
        optimizer.build(model.trainable_variables)
        step = steps.make_train_steps(model, optimizer, tf.distribute.get_strategy(), 4,
                                      weight_decay=step_decay)
        step(iter(tf.data.Dataset.from_tensors((images, labels)).repeat()), tf.constant(1))
        after.append([v.numpy() for v in model.trainable_variables])
        if model_decay:
            with pytest.raises(ValueError, match=r"carries weight decay already .* would add "
                                                 r"weight_decay=0.05 on top"):
                steps.make_train_steps(model, optimizer, tf.distribute.get_strategy(), 4,
                                       weight_decay=decay)
    for keras_l2, caffe in zip(*after, strict=True):
        np.testing.assert_allclose(keras_l2, caffe, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def replica_sync(tmp_path_factory, train_data):
    """The training step on 2 logical CPU devices, without and with XLA, in one subprocess
    (logical devices are set before TF starts; one strategy serves both, as in vgg-train):
    {enable_xla: (copies of fc1's kernel, largest difference between replicas over every
    variable, whether fc1 moved, images each replica counted)}."""
    folder = tmp_path_factory.mktemp("sync")
    script = folder / "sync.py"
    script.write_text(f"""
import json
import numpy as np
import tensorflow as tf
from pipelines import inputs
from vgg_keras.compute import distribution
from vgg_keras.training import model as run_model
from vgg_keras.training import notes
from vgg_keras.training import run_config
from vgg_keras.training import steps as run_steps
strategy = distribution.make_strategy("mirrored", cpu_replicas=2)
cfg = run_config.TrainConfig(data_dir={str(train_data)!r}, model_dir="", config="A-BN",
                             width=0.125, fc_units=16, crop_size=32, scale=(36, 48), batch_size=8,
                             seed=0, init="glorot", learning_rate=0.01, num_classes=4,
                             label_offset=1)
results = {{}}
for enable_xla in (False, True):
    with strategy.scope():
        model = run_model.build_initialized_model(cfg, 4)[0]
        optimizer = run_model.make_optimizer(cfg)
        optimizer.build(model.trainable_variables)
        seen = tf.Variable(0, dtype=tf.int64, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM)
    steps = run_steps.make_train_steps(model, optimizer, strategy, 8, weight_decay=5e-4,
                                       images_seen=seen, enable_xla=enable_xla)
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: inputs.make_train_dataset(
            cfg.data_dir, cfg.input_config(), input_context=context)))
    before = model.get_layer("fc1").kernel.numpy().copy()
    steps(iterator, tf.constant(4))
    differences = []
    for variable in model.variables:
        values = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
        differences.append(max(float(np.abs(values[0] - v).max()) for v in values[1:]))
    moved = float(np.abs(model.get_layer("fc1").kernel.numpy() - before).max())
    results[str(enable_xla)] = [
        len(strategy.experimental_local_results(model.get_layer("fc1").kernel.value)),
        max(differences), moved > 0, [int(v) for v in strategy.experimental_local_results(seen)]]
print(json.dumps(results))
""")
    result = programs.run([sys.executable, str(script)], cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("enable_xla", [False, True])
def test_mirrored_replicas_keep_identical_variables(replica_sync, enable_xla):
    """After several steps on 2 logical CPU devices every variable has the same value on both
    replicas."""
    copies, difference, moved, per_replica = replica_sync[str(enable_xla)]
    assert copies == 2 and difference == 0.0 and moved
    assert per_replica == [16, 16]  # 4 steps × 4 images on each replica


def test_skip_corrupt_reaches_the_summary(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    victim = copy / "train-00002-of-00004"
    victim.write_bytes(victim.read_bytes()[:-500])  # truncated
    with pytest.raises(ValueError, match=f"shard {victim} is .* bytes, its manifest says"):
        loop.train(_config(copy, tmp_path / "strict", train_steps=12))
    summary = loop.train(_config(copy, tmp_path / "skip", train_steps=12, skip_corrupt=True))
    assert summary["corrupt_shards"] >= 1


def test_num_gpus_and_crop_size(data, tmp_path):
    with pytest.raises(ValueError, match="--num_gpus=1 but only 0 GPUs are visible"):
        distribution.make_strategy("mirrored", num_gpus=1)
    model = run_model.build_initialized_model(
        _config(data, tmp_path, crop_size=64, scale=(64, 80)), 4)[0]
    assert model.input.shape == (None, 64, 64, 3)


def test_imagenet_length_on_small_data_earns_a_note(data, tmp_path):
    from vgg_keras.training import data as run_data

    cfg = _config(data, tmp_path)  # --train_epochs left at the paper's 74
    assert notes.imagenet_defaults(cfg, run_data.read_run_data(cfg)) == (
        "note: 74 epochs is the paper's ImageNet schedule (§3.1); on 96 images that is 444 "
        "steps of 16: set --train_epochs or --train_steps for your data")
    chosen = _config(data, tmp_path, train_epochs=3)
    assert notes.imagenet_defaults(chosen, run_data.read_run_data(chosen)) is None


def test_a_damaged_newest_checkpoint_is_passed_over(reference_run, data, tmp_path, capfd):
    """Each folder keeps two checkpoints: the newest cut to half its size (a disk fault, an
    interrupted copy), the run resumes from the older one, says so, and ends as an undamaged
    run; with every checkpoint damaged it stops in one line naming them."""
    model_dir = tmp_path / "run"
    loop.train(run_config.TrainConfig(data_dir=str(data), model_dir=str(model_dir),
                                      **dict(REFERENCE_RUN, train_epochs=2)))
    latest = model_dir / "checkpoints" / "latest"
    assert sorted(p.name for p in latest.glob("*.index")) == ["ckpt-12.index", "ckpt-24.index"]
    damaged = sorted(model_dir.glob("checkpoints/*/ckpt-24.data-*"))
    assert damaged
    for path in damaged:
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    all_damaged = tmp_path / "all_damaged"
    shutil.copytree(model_dir, all_damaged)
    capfd.readouterr()
    longer = dict(REFERENCE_RUN, allow_changed_settings=True)  # 3 epochs: 2 more than there
    summary = loop.train(run_config.TrainConfig(data_dir=str(data), model_dir=str(model_dir),
                                                **longer))
    out = capfd.readouterr().out
    assert f"checkpoint {latest / 'ckpt-24'} does not restore (" in out
    assert summary["resumed_from_step"] == 12 and summary["steps"] == 36
    rows = (model_dir / "training_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["1", "12"], ["2", "24"], ["3", "36"]]
    for ours, theirs in zip(keras.models.load_model(model_dir / "model.keras").get_weights(),
                            keras.models.load_model(reference_run / "model.keras").get_weights(),
                            strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)

    for path in all_damaged.glob("checkpoints/*/ckpt-*.data-*"):
        path.write_bytes(b"")
    with pytest.raises(errors.UserError, match=rf"^no checkpoint of --model_dir={all_damaged} "
                                               r"restores: .*ckpt-24 \(.*\)\. Start afresh "
                                               "with another --model_dir"):
        loop.train(run_config.TrainConfig(data_dir=str(data), model_dir=str(all_damaged),
                                          **longer))


def test_batch_norm_on_a_short_run(data, tmp_path, capfd):
    """Keras' momentum 0.99 leaves most of batch norm's initial statistics after a few dozen
    steps (the net then answers one class in inference mode): the run says so at its start;
    with --bn_momentum=0.9 the same short run validates well above chance."""
    loop.train(_config(data, tmp_path / "keras", config="A-BN", train_steps=6))
    assert ("note: batch norm's moving statistics keep 94% of their initial values after this "
            "run's 6 steps at --bn_momentum=0.99 (validation and the saved net use them, and "
            "answer about one class): pass --bn_momentum=0.9, or train at least 230 steps"
            ) in capfd.readouterr().out
    summary = loop.train(_config(data, tmp_path / "short", config="A-BN", train_epochs=6,
                                 bn_momentum=0.9, deterministic=True))
    assert "note: batch norm" not in capfd.readouterr().out
    assert summary["best_val_top1"] >= 0.5  # 4 classes: chance is 0.25
    assert json.loads((tmp_path / "short" / "run.json").read_text())["settings"][
        "bn_momentum"] == 0.9
