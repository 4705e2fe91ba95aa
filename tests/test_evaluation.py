"""The test protocols, each against numbers computed independently here."""

import csv
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from pipelines import inputs
from pipelines.foundation import errors
from tests import programs
from tests import reference_protocols as reference
from tests.conftest import evaluate
from tests.conftest import write_shards
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.evaluation import config as eval_config
from vgg_keras.evaluation import evaluator
from vgg_keras.evaluation import results as results_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
CROP = 32
EVAL = dict(label_offset=1, num_classes=4)  # the first 4 ImageNet synsets: labels 1..4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    write_shards(root, train_per_class=1, val_per_class=3, size_range=(36, 60), train_shards=1)
    model = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                head=vgg_keras.Head(fc_units=16, dropout=0.0),
                                weight_init=vgg_keras.WeightInit(seed=3))
    model.save(root / "a.keras")
    return root / "data", root / "a.keras", model


def _errors(probabilities, labels):
    """(top-1 error, top-5 error) of rows of probabilities, computed here."""
    ranked = np.argsort(-np.asarray(probabilities), axis=1)
    labels = np.asarray(labels)
    top1 = float(np.mean(ranked[:, 0] != labels))
    top5 = float(np.mean([label not in row[:5] for row, label in zip(ranked, labels,
                                                                      strict=True)]))
    return top1, top5


def test_error_table_matches_per_image_predictions(setup, tmp_path):
    data, path, model = setup
    results = evaluate([str(path)], data, protocols=("single",), scales=[40],
                                  output_dir=tmp_path, **EVAL)
    errors = total = 0
    for images, labels, _ in inputs.make_eval_dataset(data, mode=inputs.CENTER_CROPS, test_scale=40,
                                                      crop_size=CROP, **EVAL):
        predictions = model.predict(images, verbose=0).argmax(axis=1)
        errors += int((predictions != labels.numpy()).sum())
        total += len(labels)
    assert results["single"]["num_images"] == total == 12
    assert results["single"]["top1_error"] == pytest.approx(errors / total)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["single"] == results["single"]
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == (
        "protocol,top1_error,top5_error,num_images")
    per_class = list(csv.reader(io.StringIO((tmp_path / "per_class_accuracy.csv").read_text())))
    assert sum(int(row[2]) for row in per_class[1:]) == 12


def test_fusion_of_a_model_with_itself_is_the_model(setup):
    data, path, _ = setup
    # The fusion is protocol-blind (the mean over models of each protocol's probabilities):
    # the two cheapest protocols stand for all.
    arguments = dict(protocols=("single", "dense"), scales=[36, 44], **EVAL)
    alone = evaluate([str(path)], data, **arguments)
    fused = evaluate([str(path), str(path)], data, **arguments)
    for protocol in ("single", "dense"):
        assert fused[protocol] == alone[protocol]


def test_multi_scale_and_combined_protocols_average_softmax(setup):
    """Each protocol's softmax averaged over the scales, dense+multicrop the mean of the two:
    the errors evaluate() reports equal those of the averages computed here."""
    data, path, model = setup
    results = evaluate([str(path)], data, protocols=protocols.PROTOCOLS,
                                  scales=[36, 48], **EVAL)
    expected, labels = reference.probabilities([(model, [36, 48])], data, protocols.PROTOCOLS,
                                               **EVAL)
    for name in protocols.PROTOCOLS:
        top1, top5 = _errors(expected[name], labels)
        assert results[name]["top1_error"] == pytest.approx(top1), name
        assert results[name]["top5_error"] == pytest.approx(top5), name


def test_fused_models_each_use_their_own_training_scale(setup, tmp_path):
    """Two model dirs trained with S in [36, 60] and [40, 56]: fused, each is tested at its own
    §4.2 scales, and the fusion is the mean of each model's mean over its own scales."""
    data, _, model = setup
    other = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                head=vgg_keras.Head(fc_units=16, dropout=0.0),
                                weight_init=vgg_keras.WeightInit(seed=4))
    runs = {"a": (model, (36, 60)), "b": (other, (40, 56))}
    for name, (net, scale) in runs.items():
        (tmp_path / name).mkdir()
        net.save(tmp_path / name / layout.MODEL_FILE)
        (tmp_path / name / layout.SUMMARY_FILE).write_text(json.dumps({"scale": scale}))
    dirs = [str(tmp_path / name) for name in runs]
    batched = evaluate(dirs, data, **EVAL)
    settings = batched["settings"]
    assert settings["model_scales"] == [[36, 48, 60], [40, 48, 56]]
    assert settings["train_scales"] == [[36, 60], [40, 56]] and settings["train_scale"] is None
    assert settings["scales"] == [36, 40, 48, 56, 60]
    assert "36,60+40,56" in results_lib.format_table(batched).splitlines()[2]
    fused, labels = reference.probabilities(
        list(zip((model, other), settings["model_scales"], strict=True)), data, ["single"],
        **EVAL)
    top1, top5 = _errors(fused["single"], labels)
    streamed = evaluate(dirs, data, protocols=("single", "multicrop"), **EVAL)
    for results in (batched, streamed):
        assert results["single"]["top1_error"] == pytest.approx(top1)
        assert results["single"]["top5_error"] == pytest.approx(top5)
    applied = evaluate(dirs, data, train_scale=(40, 56), max_images=2,
                                  **EVAL)["settings"]  # given: the same for every model
    assert applied["model_scales"] == [[40, 48, 56]] * 2 and applied["train_scale"] == [40, 56]


def test_clear_errors(setup):
    data, path, _ = setup
    with pytest.raises(ValueError, match=r"predicts 4 classes but the data has 1000"):
        evaluate([str(path)], data, scales=[40])
    with pytest.raises(ValueError, match="protocols must be among"):
        evaluate([str(path)], data, protocols=("tencrop",), scales=[40], **EVAL)
    with pytest.raises(ValueError, match="give --scales, or --train_scale"):
        evaluate([str(path)], data, **EVAL)
    with pytest.raises(ValueError, match="must be at least the crop size"):
        evaluate([str(path)], data, scales=[24], **EVAL)
    with pytest.raises(FileNotFoundError, match="does not exist: give a vgg-train model dir"):
        loading.load_model(str(path) + ".missing")
    with pytest.raises(FileNotFoundError, match="neither a .keras file"):
        loading.load_model(pathlib.Path(data) / "dataset_info.json")


@pytest.mark.slow
def test_cli_prints_the_table(setup, tmp_path):
    """Every path as a file:// URL (a bucket's stand-in: the same tf.io.gfile calls)."""
    data, path, _ = setup
    result = programs.run(
        [sys.executable, "-m", "tools.evaluate", f"--model=file://{path}",
         f"--data_dir=file://{data}", "--protocols=single,dense", "--train_scale=64",
         "--label_offset=1", "--num_classes=4", f"--output_dir=file://{tmp_path}"], cwd=ROOT,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "top-1 err (%)" in lines[0]
    assert "64" in lines[2] and "32,64,96" in lines[2] and lines[3].split()[3] == "dense"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["scales"] == [32, 64, 96] and saved["single"]["num_images"] == 12


def test_model_dir_checkpoint_and_recorded_train_scale(setup, tmp_path):
    data, path, model = setup
    model_dir = tmp_path / "run"
    (model_dir / "checkpoints" / "best").mkdir(parents=True)
    model.save(model_dir / "model.keras")
    (model_dir / "summary.json").write_text(json.dumps({"scale": [64, 64]}))
    changed = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                  head=vgg_keras.Head(fc_units=16, dropout=0.0),
                                  weight_init=vgg_keras.WeightInit(seed=9))
    prefix = tf.train.Checkpoint(model=changed).save(str(model_dir / "checkpoints" / "best" /
                                                         "ckpt"))
    restored = loading.load_model(prefix)
    for a, b in zip(restored.get_weights(), changed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    results = evaluate([str(model_dir)], data, max_images=3, **EVAL)
    assert results["settings"]["scales"] == [32, 64, 96]  # from summary.json: S = 64
    assert results["single"]["num_images"] == 3


def test_batched_single_crop_equals_image_by_image(setup):
    data, path, model = setup
    arguments = dict(protocols=("single",), scales=[36, 44], **EVAL)
    batched = evaluate([str(path)], data, batch_size=5, **arguments)
    # The same through the image-by-image path (taken when another protocol is asked too).
    streamed = evaluate([str(path)], data, **dict(arguments,
                                                             protocols=("single", "dense")))
    assert batched["single"] == streamed["single"]
    limited = evaluate([str(path)], data, batch_size=5, max_images=7, **arguments)
    assert limited["single"]["num_images"] == 7


def test_saved_model_single_and_multicrop(setup, tmp_path):
    data, path, model = setup
    model.export(str(tmp_path / "saved"))  # serving_default: uint8 crops → probabilities
    arguments = dict(protocols=("single", "multicrop"), scales=[40], **EVAL)
    from_keras = evaluate([str(path)], data, **arguments)
    from_saved = evaluate([str(tmp_path / "saved")], data, **arguments)
    for protocol in ("single", "multicrop"):
        assert from_saved[protocol] == from_keras[protocol]
    with pytest.raises(ValueError, match="dense evaluation of .*saved needs the net's layers"):
        evaluate([str(tmp_path / "saved")], data, protocols=("dense",),
                            scales=[40], **EVAL)


ALL = ("single", "dense", "multicrop", "dense+multicrop")


@pytest.mark.slow
def test_batched_protocols_equal_the_one_image_reference(setup, tmp_path):
    """Every protocol and a fusion of two nets, at two scales, on images of mixed sizes, in
    batches of 5 inputs from chunks of 4 images (partial batches, shapes bucketed): the same
    counts and probabilities as one image at a time (tests/reference_protocols.py)."""
    data, path, model = setup
    other = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                                head=vgg_keras.Head(fc_units=16, dropout=0.0),
                                weight_init=vgg_keras.WeightInit(seed=8))
    other.save(tmp_path / "b.keras")
    arguments = dict(protocols=ALL, scales=(40, 52), batch_size=5, chunk=4, **EVAL)
    batched = evaluate([path, tmp_path / "b.keras"], data, **arguments)
    config = eval_config.EvalConfig(model=(str(path), str(tmp_path / "b.keras")),
                                   data_dir=str(data), **arguments)
    chunks = list(evaluator.Evaluation(config, tf.distribute.get_strategy()).probabilities())
    found = {p: np.concatenate([rows[p] for _, rows, _ in chunks]) for p in ALL}
    expected, labels = reference.probabilities([(model, [40, 52]), (other, [40, 52])], data,
                                               ALL, **EVAL)
    assert [label for chunk, _, _ in chunks for label in chunk.labels] == labels
    for protocol in ALL:
        np.testing.assert_allclose(found[protocol], expected[protocol], atol=1e-5)
        top1, top5 = _errors(expected[protocol], labels)
        assert batched[protocol] == {"top1_error": pytest.approx(top1),
                                     "top5_error": pytest.approx(top5), "num_images": 12}
    assert found["dense"].shape == (12, 4)


# One process with 2 logical CPU replicas (they must be set before TensorFlow starts): the
# evaluation of the replica test, a batch larger than the split, and a split of one image.
TWO_REPLICAS = """
import json, sys
from tests.conftest import evaluate
from vgg_keras.compute import distribution
strategy = distribution.make_strategy("mirrored", cpu_replicas=2)
data, model = sys.argv[1], sys.argv[2]
common = dict(protocols=["single", "dense", "multicrop"], scales=[40], label_offset=1,
              num_classes=4, strategy=strategy)
runs = {"eleven": evaluate([model], data, max_images=11, batch_size=4, **common),
        "large_batch": evaluate([model], data, batch_size=512, **common),
        "one_image": evaluate([model], data, max_images=1, batch_size=4, **common)}
print(json.dumps({name: {p: r[p] for p in ("single", "dense", "multicrop")} | {
    "replicas": r["settings"]["replicas"]} for name, r in runs.items()}))
"""


@pytest.mark.slow
def test_one_replica_two_replicas_and_two_workers_count_alike(setup, tmp_path):
    """11 images (divisible neither by the 2 replicas nor by the batch of 4): each image
    counted once, the same counts on 1 replica, on 2 logical CPU replicas, and on two
    multi_worker processes on localhost."""
    data, path, _ = setup
    protocols = ("single", "dense", "multicrop")
    one = evaluate([str(path)], str(data), protocols=protocols, scales=[40],
                              max_images=11, batch_size=4, **EVAL)
    script = tmp_path / "two_replicas.py"
    script.write_text(TWO_REPLICAS)
    child = programs.start([sys.executable, script, data, path], cwd=ROOT)
    try:
        workers = _evaluate_on_two_workers(data, path, tmp_path / "workers")
        result = child.wait(timeout=600)
    finally:
        child.kill()
    assert result.returncode == 0, result.stderr[-3000:]
    # The same with oneDNN's kernels (TensorFlow's default on AVX-512 CPUs), which refuse an
    # empty batch: a fresh interpreter, as TensorFlow reads the setting when it starts.
    onednn = subprocess.run([sys.executable, script, data, path], cwd=ROOT, capture_output=True,
                            text=True, timeout=600,
                            env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", PYTHONPATH=ROOT))
    assert onednn.returncode == 0, onednn.stderr[-3000:]
    two = json.loads(result.stdout.strip().splitlines()[-1])
    with_onednn = json.loads(onednn.stdout.strip().splitlines()[-1])
    for protocol in protocols:
        assert one[protocol]["num_images"] == 11
        assert two["eleven"][protocol] == one[protocol], protocol
        assert with_onednn["eleven"][protocol] == one[protocol], protocol
        assert workers[protocol] == one[protocol], protocol
    assert two["eleven"]["replicas"] == 2
    full = evaluate([str(path)], str(data), protocols=protocols, scales=[40],
                               **EVAL)
    assert {p: two["large_batch"][p] for p in protocols} == {p: full[p] for p in protocols}
    assert all(two["one_image"][p]["num_images"] == 1 for p in protocols)


def _evaluate_on_two_workers(data, model, out):
    """vgg-evaluate on two multi_worker processes on localhost; the chief's results.json."""
    results = programs.run_cluster(
        [BIN / "vgg-evaluate", f"--model={model}", f"--data_dir={data}", "--scales=40",
         "--protocols=single,dense,multicrop", "--max_images=11", "--batch_size=4",
         "--label_offset=1", "--num_classes=4", "--distribution_strategy=multi_worker",
         f"--output_dir={out}"])
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((out / "results.json").read_text())
    assert written["settings"]["workers"] == 2
    return written


def test_any_checkpoint_of_a_run_is_a_model(reference_run, tmp_path):
    """A run that has not finished (no model.keras) is read through its newest checkpoint that
    restores; any checkpoint by path, into the run's recorded architecture; a damaged one is
    named."""
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    finished = keras.models.load_model(run / "model.keras")
    (run / "model.keras").unlink()
    (run / "summary.json").unlink()
    model, source = loading.load_model_and_source(run)
    newest = layout.checkpoints_of(run)[0]
    assert source.kind == "checkpoint" and source.file == newest and source.step == 36
    assert source.describe() == f"{newest} (the checkpoint of step 36)"
    for mine, theirs in zip(model.get_weights(), finished.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert layout.read_summary(run)["scale"] == [36, 48]  # from run.json: S, and the classes
    assert len(layout.read_classes(run)[0]) == 4
    for data in pathlib.Path(newest).parent.glob(pathlib.Path(newest).name + ".data-*"):
        data.write_bytes(data.read_bytes()[:100])  # the newest one damaged: the next is read
    with pytest.raises(errors.UserError, match=f"checkpoint {newest} does not restore"):
        loading.load_model(newest)
    assert loading.load_model_and_source(run)[1].file == layout.checkpoints_of(run)[1]


def test_decode_predictions_names_imagenet_or_a_runs_classes(reference_run):
    rows = np.full((2, 1000), 1e-4, np.float32)
    rows[0, 0], rows[1, 999] = 0.9, 0.8
    decoded = vgg_keras.decode_predictions(rows, top=2)
    assert decoded[0][0][:2] == ("n01440764", "tench, Tinca tinca")
    assert decoded[0][0][2] == pytest.approx(0.9) and decoded[1][0][0] == "n15075141"
    own = vgg_keras.decode_predictions(np.eye(4)[[2]], top=1, classes=str(reference_run))
    assert own[0][0][0] == layout.read_classes(reference_run)[0][2]
    with pytest.raises(errors.UserError, match=r"shape \(1, 4\): expected \[images, 1000\]"):
        vgg_keras.decode_predictions(np.eye(4)[[2]])
