"""Whole paths as a user takes them, across features: a photo folder with odd files converted,
trained from scratch, a checkpoint of the run evaluated, exported and its model dir asked for
predictions; a finished run started again; a fine-tune that would load nothing; the losses on
the nets as built. Each uses the suite's data and runs where it can."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from pipelines import synthetic
from tests import programs
from tests.conftest import LIBRARY_LINE
from tests.conftest import REFERENCE_RUN
from tests.conftest import TINY_FLAGS
from tests.conftest import build_tiny
from tests.conftest import write_applications_h5

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _digests(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_photo_folder_to_predictions_through_a_checkpoint(tmp_path):
    """A folder of photos with odd files among them → vgg-convert → vgg-train from scratch on 2
    replicas (a fresh interpreter, oneDNN on: its output is its own lines, the recipe first) →
    vgg-evaluate on a
    checkpoint of the run → vgg-export of a run that has not finished (its newest checkpoint)
    → vgg-predict on the model dir itself, naming the folder's own classes."""
    photos = tmp_path / "photos"
    synthetic.write_dataset(photos, layout="image_folder", synsets=("circles", "squares",
                                                                    "stripes"),
                            train_per_class=8, val_per_class=0, problems=False, seed=3,
                            style=synthetic.ImageStyle(size_range=(40, 64)))
    (photos / ".DS_Store").write_bytes(b"\0\1")
    (photos / "circles" / "empty.jpg").write_bytes(b"")
    (photos / "squares" / "notes.txt").write_text("taken on a sunny day")
    data, run = tmp_path / "data", tmp_path / "run"
    converted = programs.run([BIN / "vgg-convert", f"--image_folder={photos}",
                              "--validation_fraction=0.25", f"--output_dir={data}"])
    assert converted.returncode == 0, converted.stderr[-3000:]
    manifest = json.loads((data / "dataset_info.json").read_text())
    assert manifest["splits"]["validation"]["per_class"] == {"circles": 2, "squares": 2,
                                                             "stripes": 2}
    assert {s["path"] for s in manifest["skipped"]} == {"circles/empty.jpg",
                                                        "squares/notes.txt"}
    flags = [flag for flag in TINY_FLAGS if not flag.startswith(("--num_classes",
                                                                 "--label_offset"))]
    # A fresh interpreter: TensorFlow's start-up in it too; on 2 replicas with oneDNN's kernels
    # (TensorFlow's default on AVX-512 CPUs, read when it starts; the suite has them off).
    trained = subprocess.run(
        [BIN / "vgg-train", *flags, "--batch_size=4", "--train_epochs=2", f"--data_dir={data}",
         f"--model_dir={run}", "--cpu_replicas=2"], capture_output=True, text=True,
        timeout=600, cwd=tmp_path, env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    lines = trained.stdout.splitlines() + trained.stderr.splitlines()
    assert not [line for line in lines if LIBRARY_LINE.match(line)], lines
    assert trained.stdout.splitlines()[0].startswith("recipe: config A"), trained.stdout
    checkpoints = sorted((run / "checkpoints" / "latest").glob("ckpt-*.index"))
    first = str(checkpoints[0]).removesuffix(".index")
    step = int(first.rsplit("-", 1)[1])
    evaluated = programs.run([BIN / "vgg-evaluate", f"--model={first}", f"--data_dir={data}",
                              f"--output_dir={tmp_path / 'eval'}"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{first}: {first} (the checkpoint of step {step})" in evaluated.stdout
    predictions = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()
    assert predictions[0].startswith("image,protocol,true_class,top1,probability1")
    assert len(predictions) == 1 + 6 and {"circles", "squares", "stripes"} >= {
        line.split(",")[2] for line in predictions[1:]}
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    unfinished = tmp_path / "unfinished"  # the run as it was before its end: no model.keras
    shutil.copytree(run, unfinished)
    (unfinished / "model.keras").unlink()
    (unfinished / "summary.json").unlink()
    exported = programs.run([BIN / "vgg-export", f"--model={unfinished}",
                             f"--export_dir={tmp_path / 'exports'}"])
    assert exported.returncode == 0, exported.stderr[-3000:]
    newest = max(checkpoints, key=lambda path: int(str(path)[:-6].rsplit("-", 1)[1]))
    assert f"(the checkpoint of step {int(str(newest)[:-6].rsplit('-', 1)[1])})" in \
        exported.stdout
    photo = next((photos / "stripes").glob("*.jpg"))
    for model in (run, tmp_path / "exports" / "vgg"):
        predicted = programs.run([BIN / "vgg-predict", f"--model={model}", photo])
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        ranked = predicted.stdout.splitlines()[1:]
        assert len(ranked) == 3 and {line.split()[-1] for line in ranked} == {
            "circles", "squares", "stripes"}, predicted.stdout  # each name once


def test_a_finished_run_started_again_changes_nothing(reference_run, train_data, tmp_path,
                                                      capsys):
    """The same command on a finished run: it says so, exit 0, and every file stays as it was
    (summary, model, logs); a longer schedule, allowed, continues it."""
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = _digests(run)
    cfg = run_config.TrainConfig(data_dir=str(train_data), model_dir=str(run), **REFERENCE_RUN)
    summary = loop.train(cfg)
    assert summary["steps"] == 36 and _digests(run) == before
    assert f"the run in {run} finished at step 36: nothing to do" in capsys.readouterr().out
    longer = run_config.TrainConfig(**dict(vars(cfg), train_epochs=4,
                                           allow_changed_settings=True))
    assert loop.train(longer)["steps"] == 48


def test_a_fine_tune_that_would_load_nothing_is_refused(train_data, tmp_path):
    """keras.applications-layout weights of a wider net into a narrower one: no convolution
    fits; refused, naming the shapes, before any training. The same width loads."""
    from pipelines.foundation import errors
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    weights = tmp_path / "vgg16_notop.h5"
    write_applications_h5(build_tiny("D", width=0.25, input_shape=(32, 32, 3)), weights,
                          include_top=False)
    common = dict(REFERENCE_RUN, config="D", init=f"keras_applications={weights}",
                  trainable_from="block5_conv1", train_epochs=1, data_dir=str(train_data))
    with pytest.raises(errors.UserError, match=r"loaded no convolution into vgg_d \(block1_conv1:"
                                               r" source kernel \(3, 3, 3, 16\), model "
                                               r"\(3, 3, 3, 8\)"):
        loop.train(run_config.TrainConfig(model_dir=str(tmp_path / "narrow"), **common))
    assert not os.path.exists(tmp_path / "narrow" / "checkpoints")
    summary = loop.train(run_config.TrainConfig(model_dir=str(tmp_path / "fits"),
                                                **dict(common, width=0.25)))
    assert len(summary["init"]["loaded"]) == 13 and summary["init"]["new"] == [
        "fc1", "fc2", "predictions"]
