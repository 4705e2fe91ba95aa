"""The test protocols, each against numbers computed independently here."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from pipelines import inputs
from tests.conftest import write_shards
from vgg_keras import evaluation

ROOT = pathlib.Path(__file__).resolve().parents[1]
CROP = 32
EVAL = dict(label_offset=1, num_classes=4)  # the first 4 ImageNet synsets: labels 1..4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    write_shards(root, train_per_class=1, val_per_class=3, size_range=(36, 60), train_shards=1)
    model = vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125, fc_units=16,
                                seed=3, dropout=0.0)
    model.save(root / "a.keras")
    return root / "data", root / "a.keras", model


def _image(data, q):
    image, label, _ = next(iter(evaluation._images_at(data, q, 1, 4)))
    return image, label


def test_multicrop_is_the_mean_of_50_numpy_crops(setup):
    data, _, model = setup
    image, _ = _image(data, 44)
    pixels = image.numpy()
    height, width = pixels.shape[:2]
    crops = []
    for top in np.round(np.linspace(0, height - CROP, 5)).astype(int):
        for left in np.round(np.linspace(0, width - CROP, 5)).astype(int):
            crops.append(pixels[top : top + CROP, left : left + CROP])
    crops += [crop[:, ::-1] for crop in crops]
    expected = np.mean([model.predict(crop[None], verbose=0)[0] for crop in crops], axis=0)
    center, grid = evaluation._Net(model, CROP, False).crops(image, True, True)
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    top, left = (height - CROP) // 2, (width - CROP) // 2
    np.testing.assert_allclose(center, model.predict(
        pixels[None, top : top + CROP, left : left + CROP], verbose=0)[0], atol=1e-6)


def test_dense_on_a_crop_sized_image_is_single_crop_and_averages_the_flip(setup):
    _, _, model = setup
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (CROP, CROP, 3), np.uint8))
    net = evaluation._Net(model, CROP, True)
    single = model.predict(image[None], verbose=0)[0]
    np.testing.assert_allclose(net.conv.predict(image[None], verbose=0)[0], single, atol=1e-6)
    mirrored = model.predict(image[None, :, ::-1], verbose=0)[0]
    np.testing.assert_allclose(net.dense(image), (single + mirrored) / 2, atol=1e-6)


def test_error_table_matches_per_image_predictions(setup, tmp_path):
    data, path, model = setup
    results = evaluation.evaluate([str(path)], data, protocols=("single",), scales=[40],
                                  output_dir=tmp_path, **EVAL)
    errors = total = 0
    for images, labels, _ in inputs.make_eval_dataset(data, mode="center", scale=40,
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
    per_class = (tmp_path / "per_class_accuracy.csv").read_text().splitlines()[1:]
    assert sum(int(row.split(",")[2]) for row in per_class) == 12


def test_fusion_of_a_model_with_itself_is_the_model(setup):
    data, path, _ = setup
    arguments = dict(protocols=evaluation.PROTOCOLS, scales=[36, 44], **EVAL)
    alone = evaluation.evaluate([str(path)], data, **arguments)
    fused = evaluation.evaluate([str(path), str(path)], data, **arguments)
    for protocol in evaluation.PROTOCOLS:
        assert fused[protocol] == alone[protocol]


def test_multi_scale_and_combined_protocols_average_softmax(setup):
    data, _, model = setup
    net = evaluation._Net(model, CROP, True)
    items = [(_image(data, q)[0], None, None) for q in (36, 48)]
    scores = evaluation._protocol_scores([net], items, evaluation.PROTOCOLS)
    per_scale = [net.crops(image, True, True) + (net.dense(image),) for image, _, _ in items]
    np.testing.assert_allclose(scores["single"], np.mean([p[0] for p in per_scale], 0), atol=1e-7)
    np.testing.assert_allclose(scores["multicrop"], np.mean([p[1] for p in per_scale], 0),
                               atol=1e-7)
    np.testing.assert_allclose(scores["dense+multicrop"],
                               (scores["dense"] + scores["multicrop"]) / 2, atol=1e-7)


def test_default_scales_follow_the_paper():
    assert evaluation.default_scales((256, 256)) == [224, 256, 288]
    assert evaluation.default_scales((384, 384)) == [352, 384, 416]
    assert evaluation.default_scales((256, 512)) == [256, 384, 512]


def test_clear_errors(setup):
    data, path, _ = setup
    with pytest.raises(ValueError, match=r"predicts 4 classes but the data has 1000"):
        evaluation.evaluate([str(path)], data, scales=[40])
    with pytest.raises(ValueError, match="protocols must be among"):
        evaluation.evaluate([str(path)], data, protocols=("tencrop",), scales=[40], **EVAL)
    with pytest.raises(ValueError, match="give --scales, or --train_scale"):
        evaluation.evaluate([str(path)], data, **EVAL)
    with pytest.raises(ValueError, match="must be at least the crop size"):
        evaluation.evaluate([str(path)], data, scales=[24], **EVAL)
    with pytest.raises(FileNotFoundError, match="neither a .keras file"):
        evaluation.load_model(str(path) + ".missing")


def test_cli_prints_the_table(setup, tmp_path):
    data, path, _ = setup
    result = subprocess.run(
        [sys.executable, "-m", "tools.evaluate", f"--model={path}", f"--data_dir={data}",
         "--protocols=single,dense", "--train_scale=64", "--label_offset=1", "--num_classes=4",
         f"--output_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
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
                                  fc_units=16, seed=9, dropout=0.0)
    prefix = tf.train.Checkpoint(model=changed).save(str(model_dir / "checkpoints" / "best" /
                                                         "ckpt"))
    restored = evaluation.load_model(prefix)
    for a, b in zip(restored.get_weights(), changed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    results = evaluation.evaluate([str(model_dir)], data, max_images=3, **EVAL)
    assert results["settings"]["scales"] == [32, 64, 96]  # from summary.json: S = 64
    assert results["single"]["num_images"] == 3


def test_batched_single_crop_equals_image_by_image(setup):
    data, path, model = setup
    arguments = dict(protocols=("single",), scales=[36, 44], **EVAL)
    batched = evaluation.evaluate([str(path)], data, batch_size=5, **arguments)
    # The same through the image-by-image path (taken when another protocol is asked too).
    streamed = evaluation.evaluate([str(path)], data, **dict(arguments,
                                                             protocols=("single", "dense")))
    assert batched["single"] == streamed["single"]
    limited = evaluation.evaluate([str(path)], data, batch_size=5, max_images=7, **arguments)
    assert limited["single"]["num_images"] == 7


def test_saved_model_single_and_multicrop(setup, tmp_path):
    data, path, model = setup
    model.export(str(tmp_path / "saved"))  # serving_default: uint8 crops → probabilities
    arguments = dict(protocols=("single", "multicrop"), scales=[40], **EVAL)
    from_keras = evaluation.evaluate([str(path)], data, **arguments)
    from_saved = evaluation.evaluate([str(tmp_path / "saved")], data, **arguments)
    for protocol in ("single", "multicrop"):
        assert from_saved[protocol] == from_keras[protocol]
    with pytest.raises(ValueError, match="dense evaluation of saved needs its layers"):
        evaluation.evaluate([str(tmp_path / "saved")], data, protocols=("dense",),
                            scales=[40], **EVAL)
