"""The recipes as users run them: ``--recipe=torchvision`` on a batch-norm net over two replicas,
killed mid-epoch and resumed to the weights of an uninterrupted run (its moving average, its
optimizer's slots, the augmentation's position), its checkpoints loaded, evaluated and exported
as the average and saying so; ``--recipe=torchvision_simple`` on a plain net with XLA, bfloat16,
AdamW and a clipped gradient."""

import hashlib
import json
import pathlib
import shutil
import signal
import sys
import time

import keras
import numpy as np
import pytest

import vgg_keras
from tests import programs
from tests.conftest import TINY_FLAGS
from tests.conftest import TINY_RUN
from vgg_keras.artifacts import layout
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
# The 2021 recipe on the tiny net: its crops scaled to a 64-pixel net (train 50, validation
# resize 66, FixRes through the adaptive pooling), two epochs of 12 steps, an EMA update every
# 3 steps after a warm-up of 6, a backup every 2 steps to be killed after.
RECIPE_FLAGS = [*TINY_FLAGS, "--recipe=torchvision", "--config=A-BN", "--crop_size=64",
                "--batch_size=8", "--train_epochs=2", "--deterministic", "--cpu_replicas=2",
                "--model_ema_steps=3", "--warmup_epochs=0.5", "--backup_steps=2",
                "--learning_rate=0.01"]


def _command(data, model_dir):
    return [sys.executable, "-m", "tools.train", *RECIPE_FLAGS, f"--data_dir={data}",
            f"--model_dir={model_dir}"]


def _backup_step(model_dir):
    state = model_dir / "backup" / "checkpoint"
    for line in (state.read_text() if state.exists() else "").splitlines():
        if line.startswith("model_checkpoint_path:"):
            return int(line.rsplit("-", 1)[1].rstrip('"'))
    return 0


@pytest.fixture(scope="module")
def recipe_runs(train_data, tmp_path_factory):
    """An uninterrupted run and one killed mid-epoch 1, then resumed by the same command."""
    root = tmp_path_factory.mktemp("recipe_runs")
    whole, killed = root / "whole", root / "killed"
    process = programs.start(_command(train_data, killed), cwd=ROOT)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (
            2 <= _backup_step(killed) < 12):
        time.sleep(0.005)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = _backup_step(killed)
    result = programs.run(_command(train_data, whole), cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = programs.run(_command(train_data, killed), cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return whole, killed, result, resumed, stopped_at


def test_a_torchvision_recipe_run_killed_mid_epoch_resumes_exactly(recipe_runs):
    whole, killed, result, resumed, stopped_at = recipe_runs
    assert 0 < stopped_at < 12, "the kill did not land in epoch 1"
    assert f"resumed at step {stopped_at} from backup/" in resumed.stdout
    recipe_line = next(line for line in result.stdout.splitlines() if line.startswith("recipe:"))
    for piece in ("--recipe=torchvision: random resized crop (area 0.08–1", "ta_wide",
                  "random erasing p 0.1", "mixup α 0.2", "cutmix α 1", "label smoothing 0.1",
                  "repeated augmentation ×4", "EMA 0.99998 every 3 steps",
                  "train crop 50 (FixRes)", "weight decay 2e-05", "cosine"):
        assert piece in recipe_line, recipe_line
    assert "(EMA weights; " in result.stdout
    recorded = json.loads((whole / "run.json").read_text())["settings"]
    assert (recorded["recipe"], recorded["train_crop_size"], recorded["val_resize_size"],
            recorded["ra_reps"], recorded["label_smoothing"]) == ("torchvision", 50, 66, 4, 0.1)
    assert (recorded["learning_rate"], recorded["batch_size"]) == (0.01, 8)  # given: they win
    # The average, the raw weights and the log: as if never interrupted.
    ours = keras.models.load_model(killed / "model.keras").get_weights()
    theirs = keras.models.load_model(whole / "model.keras").get_weights()
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert ((killed / "training_log.csv").read_text().splitlines()[0]
            == (whole / "training_log.csv").read_text().splitlines()[0])
    last = lambda run: (run / "training_log.csv").read_text().splitlines()[-1].split(",")  # noqa: E731
    assert last(killed)[:2] == last(whole)[:2] == ["2", "24"]
    np.testing.assert_allclose(float(last(killed)[2]), float(last(whole)[2]), rtol=1e-3)


def test_an_ema_runs_checkpoints_load_evaluate_and_export_as_the_average(recipe_runs, tmp_path,
                                                                        train_data):
    whole = recipe_runs[0]
    latest = sorted((whole / "checkpoints" / "latest").glob("ckpt-*.index"))[-1]
    model, source = vgg_keras.artifacts.loading.load_model_and_source(str(latest)[:-6])
    assert source.averaged and "its EMA weights" in source.describe()
    final = keras.models.load_model(whole / "model.keras")
    for a, b in zip(model.get_weights(), final.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # the last checkpoint's average is the saved
    summary = json.loads((whole / "summary.json").read_text())
    evaluated = programs.run([sys.executable, "-m", "tools.evaluate", f"--model={whole}",
                              f"--data_dir={train_data}", "--num_classes=4",
                              "--label_offset=1", "--protocols=single", "--cpu_replicas=1"],
                             cwd=ROOT, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "model.keras (EMA weights)" in evaluated.stdout
    row = next(line.split() for line in evaluated.stdout.splitlines()
               if line.startswith("whole "))
    # At the Q of its own validation, the average's error is its validation line's; trained on
    # RandomResizedCrop, at no scale S.
    assert row[1] == "RRC" and row[2] == "66"
    assert float(row[4]) == pytest.approx(100 * (1 - summary["val_top1"]), abs=0.01)
    exported = programs.run([sys.executable, "-m", "tools.export", f"--model={whole}",
                             f"--export_dir={tmp_path / 'export'}", "--format=saved_model"],
                            cwd=ROOT, timeout=600)
    assert exported.returncode == 0, exported.stderr[-3000:]
    metadata = json.loads(next((tmp_path / "export").rglob("vgg_metadata.json")).read_text())
    assert metadata["test_scale"] == 66 and "(EMA weights)" in exported.stdout
    assert metadata["random_resized_crop"] == list(summary["random_resized_crop"])
    version = next((tmp_path / "export").rglob("vgg_metadata.json")).parent
    assert layout.trained_with_resized_crops(str(version))
    # A run still training (no summary.json yet) says the same through its run.json.
    training = tmp_path / "training"
    shutil.copytree(whole, training)
    (training / "summary.json").unlink()
    assert layout.trained_with_resized_crops(str(training))
    assert layout.recorded_test_scale(str(training)) == 66


def test_the_simple_recipe_with_xla_bfloat16_adamw_and_a_clipped_gradient(train_data, tmp_path):
    cfg = run_config.TrainConfig.for_recipe(
        "torchvision_simple", data_dir=str(train_data), model_dir=str(tmp_path),
        **{**TINY_RUN, "train_epochs": 1, "optimizer": "adamw", "norm_weight_decay": 1e-4,
           "clip_grad_norm": 1.0, "enable_xla": True, "dtype": "bfloat16",
           "distribution_strategy": "one_device", "learning_rate": 1e-3})
    assert (cfg.random_resized_crop, cfg.normalization, cfg.weight_decay) == (
        (0.08, 1.0, 3 / 4, 4 / 3), "torchvision", 1e-4)
    summary = loop.train(cfg)
    assert np.isfinite(summary["final_loss"]) and summary["recipe"] == "torchvision_simple"
    assert summary["normalization"] == "torchvision" and summary["val_resize_size"] == 37


def _digests(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_finished_recipe_run_given_the_same_command_or_another_recipe(recipe_runs, train_data,
                                                                        tmp_path):
    """The same ``--recipe=torchvision`` command on its finished run: nothing to do, exit 0,
    every file as it was; the paper's recipe on it: refused before anything is written, the
    change named, exit 1, no traceback."""
    run = tmp_path / "run"
    shutil.copytree(recipe_runs[0], run)
    before = _digests(run)
    again = programs.run(_command(train_data, run), cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout and _digests(run) == before
    paper = [flag for flag in _command(train_data, run) if flag != "--recipe=torchvision"]
    refused = programs.run([*paper, "--recipe=paper", "--scale=72,96"], cwd=ROOT, timeout=600)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "recipe" in refused.stderr and "--allow_changed_settings" in refused.stderr
    assert _digests(run) == before
