"""vgg-export and vgg-predict: the reloaded SavedModel equals the in-memory model, the warm-up
file runs, bad requests get their errors, versions are never overwritten."""

import hashlib
import json
import os
import pathlib
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

import vgg_keras
from pipelines import preprocessing
from pipelines import schema
from pipelines import synthetic
from pipelines.foundation import errors
from tests import programs
from tests.conftest import evaluate
from tests.conftest import write_shards
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.serving import export
from vgg_keras.serving import graph
from vgg_keras.serving.config import ServingSettings
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
CROP, Q = 32, 40
TRAIN = dict(config="A", width=0.125, fc_units=16, crop_size=CROP, scale=(36, 44), batch_size=8,
             train_steps=2, init="glorot", dropout=0.0, seed=0, progress="epochs",
             num_classes=4, label_offset=1, distribution_strategy="one_device")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A vgg-train model dir (2 steps on 4 classes) and its data."""
    root = tmp_path_factory.mktemp("export")
    data, _ = write_shards(root, train_per_class=4, val_per_class=2, size_range=(40, 60),
                           train_shards=1, validation_shards=1)
    loop.train(run_config.TrainConfig(data_dir=str(data), model_dir=str(root / "model"),
                                      **TRAIN))
    return root, data, root / "model"


@pytest.fixture(scope="module")
def exports(trained):
    """The same model exported in both eval modes, with every probability."""
    root, _, model_dir = trained
    paths = {mode: export.export_saved_model(str(model_dir), str(root / "exports"),
                                             ServingSettings(model_name=mode, eval_mode=mode,
                                                             top_k=3, full_probabilities=True,
                                                             max_pixels=100_000))
             for mode in protocols.SERVED}
    return paths, loading.load_model(str(model_dir))


def _photo(height=50, width=70, seed=0):
    return synthetic.draw_scene(seed % 4, np.random.default_rng(seed), height, width)


def _expected(model, image, mode):
    """The in-memory model on vgg-evaluate's preprocessing of ``image`` at Q."""
    rescaled = preprocessing.rescale_shorter_side(tf.constant(image), Q)
    if mode == protocols.SINGLE:
        return model(preprocessing.center_crop(rescaled, CROP)[None], training=False).numpy()[0]
    conv = protocols.as_probabilities(vgg_keras.to_conv_head(model))
    return protocols.dense_probabilities(conv, rescaled[None]).numpy()[0]


@pytest.mark.parametrize("mode", protocols.SERVED)
def test_reloaded_export_equals_the_in_memory_model(exports, mode):
    paths, model = exports
    loaded = tf.saved_model.load(paths[mode])
    pixels = [_photo(50, 70, 1), _photo(64, 41, 2), _photo(45, 45, 3)]
    encoded = [synthetic.encode(pixels[0], "rgb"), synthetic.encode(pixels[1], "png"),
               synthetic.encode(pixels[2], "bmp")]
    decoded = [preprocessing.decode(data).numpy() for data in encoded]
    np.testing.assert_array_equal(decoded[1], pixels[1])  # lossless formats decode exactly
    expected = np.stack([_expected(model, image, mode) for image in decoded])
    outputs = loaded.signatures["serving_default"](images=tf.constant(encoded))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5, rtol=0)
    ranked = np.argsort(-expected, axis=1)[:, :3]
    np.testing.assert_array_equal(outputs["classes"].numpy(), ranked)
    np.testing.assert_allclose(outputs["scores"].numpy(),
                               np.take_along_axis(expected, ranked, 1), atol=1e-5)
    synsets = np.array(synthetic.DEFAULT_SYNSETS[:4])
    assert [s.decode() for s in outputs["synsets"].numpy()[0]] == list(synsets[ranked[0]])
    assert outputs["labels"].numpy()[0, 0].decode().split(",")[0] in (
        "tench", "goldfish", "great white shark", "tiger shark")

    images = loaded.signatures["predict_images"](images=tf.constant(decoded[1][None]))
    np.testing.assert_allclose(images["probabilities"].numpy()[0], expected[1], atol=1e-5)
    example = schema.make_example(jpeg=encoded[0], filename="a.jpg", height=50, width=70,
                                  label=1, synset="n01440764", text="tench")
    examples = loaded.signatures["tf_example"](examples=tf.constant([example]))
    np.testing.assert_allclose(examples["probabilities"].numpy()[0], expected[0], atol=1e-5)


def test_every_image_kind_is_served(exports):
    paths, model = exports
    loaded = tf.saved_model.load(paths["single"])
    pixels = _photo(48, 60, 5)
    for kind in ("rgb", "grayscale", "cmyk", "progressive", "png", "gif", "bmp"):
        data = synthetic.encode(pixels, kind)
        outputs = loaded.signatures["serving_default"](images=tf.constant([data]))
        expected = _expected(model, preprocessing.decode(data).numpy(), protocols.SINGLE)
        np.testing.assert_allclose(outputs["probabilities"].numpy()[0], expected, atol=1e-5,
                                   err_msg=kind)


def _bad_requests():
    photo = _photo(50, 70)
    jpeg = synthetic.encode(photo)
    png = synthetic.encode(photo, "png")
    return [
        ("empty", b"", "image 1 of the request is an empty string"),
        ("not_image", synthetic.encode(photo, "not_image"),
         "image 1 of the request is not a JPEG, PNG, GIF or BMP image"),
        ("bomb_jpeg", synthetic.encode(photo, "bomb_jpeg"),
         "image 1 of the request has 20000x20000 = 400000000 pixels, more than the limit of "
         "100000"),
        ("bomb_png", synthetic.encode(photo, "bomb_png"),
         "image 1 of the request has 12000x12000 = 144000000 pixels"),
        ("too_small", synthetic.encode(photo[:20, :30]),
         "image 1 of the request is 20x30 pixels, too small: the shorter side must be at least "
         "32"),
        ("too_long", synthetic.encode(np.tile(photo[:32, :1], (1, 3000, 1)), "png"),
         "image 1 of the request is 32x3000 pixels: at the test scale 40 it would have more "
         "than 100000 pixels"),
        ("truncated_png_header", png[:20], "image 1 of the request is a truncated PNG image"),
        ("truncated_jpeg", jpeg[:60], "image 1 of the request is a truncated JPEG image (no "
                                      "end marker in its last 1024 bytes)"),
        ("half_a_jpeg", jpeg[:len(jpeg) // 2], "image 1 of the request is a truncated JPEG"),
    ]


@pytest.mark.parametrize("name,data,message",
                         [pytest.param(*case, id=case[0]) for case in _bad_requests()])
def test_bad_request_gets_a_clear_invalid_argument_and_the_model_keeps_serving(
        exports, name, data, message):
    paths, _ = exports
    for mode in protocols.SERVED:
        serve = tf.saved_model.load(paths[mode]).signatures["serving_default"]
        good = synthetic.encode(_photo(50, 70))
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            serve(images=tf.constant([good, data]))
        assert message in errors.one_line(raised.value), name
        assert serve(images=tf.constant([good]))["classes"].shape == (1, 3)


def test_bad_tensors_and_examples(exports):
    paths, _ = exports
    loaded = tf.saved_model.load(paths["single"])
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        loaded.signatures["predict_images"](images=tf.zeros([1, 10, 500, 3], tf.uint8))
    assert errors.one_line(raised.value) == (
        "image 0 of the request is 10x500 pixels, too small: the shorter side must be at "
        "least 32")
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        loaded.signatures["predict_images"](images=tf.zeros([1, 400, 400, 3], tf.uint8))
    assert "has 400x400 = 160000 pixels, more than the limit of 100000" in errors.one_line(
        raised.value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="the request holds no images"):
        loaded.signatures["serving_default"](images=tf.constant([], tf.string))
    no_image = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        loaded.signatures["tf_example"](examples=tf.constant([no_image]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not parse example"):
        loaded.signatures["tf_example"](examples=tf.constant([b"not a proto"]))


def _run_as_tf_serving(path, requests):
    """Runs ``(signature name, {input: array})`` requests the way TF Serving does: the graph
    loaded into a TF1 session, fed and fetched through the SignatureDefs' tensor names."""
    results = []
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name, arrays in requests:
            signature = meta_graph.signature_def[name]
            feeds = {signature.inputs[key].name: value for key, value in arrays.items()}
            fetches = {key: value.name for key, value in signature.outputs.items()}
            results.append(session.run(fetches, feeds))
    return results


def test_warmup_file_parses_and_every_request_runs(exports):
    from tensorflow_serving.apis import prediction_log_pb2

    paths, _ = exports
    for mode, path in paths.items():
        records = list(tf.data.TFRecordDataset(os.path.join(path, layout.WARMUP_FILE)))
        requests = []
        for record in records:
            request = prediction_log_pb2.PredictionLog.FromString(
                record.numpy()).predict_log.request
            assert request.model_spec.name == mode
            requests.append((request.model_spec.signature_name,
                             {key: tf.make_ndarray(value)
                              for key, value in request.inputs.items()}))
        # Each signature, with a batch of 1 and of 2 where the input type allows.
        assert [(name, len(next(iter(arrays.values())))) for name, arrays in requests] == [
            ("serving_default", 1), ("serving_default", 2), ("predict_images", 1),
            ("predict_images", 2), ("tf_example", 1)]
        assert len(records) <= export.MAX_WARMUP_RECORDS
        for (_, arrays), outputs in zip(requests, _run_as_tf_serving(path, requests),
                                        strict=True):
            batch = len(next(iter(arrays.values())))
            assert outputs["classes"].shape == (batch, 3)
            np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_metadata_readable_with_saved_model_cli_show(exports, trained):
    paths, _ = exports
    shown = programs.run([str(BIN / "saved_model_cli"), "show", "--dir", paths["dense"],
                          "--all"], timeout=300)
    assert shown.returncode == 0, shown.stderr
    for signature in graph.SIGNATURES:
        assert f"signature_def['{signature}']" in shown.stdout
    for text in ('"eval_mode": "dense"', '"config": "A"', '"test_scale": 40',
                 '"train_scale": [', '"n01484850"', '"great white shark, white shark',
                 f'"source_model": "{trained[2]}"'):
        assert text in shown.stdout, text
    metadata = json.loads(tf.saved_model.load(paths["dense"]).metadata().numpy())
    assert metadata == layout.read_metadata(paths["dense"])
    assert metadata["train_scale"] == [36, 44] and metadata["test_scale"] == Q  # (36 + 44) / 2


def test_saved_model_cli_run_and_vgg_predict_agree_on_a_real_jpeg(exports, tmp_path):
    paths, _ = exports
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(synthetic.encode(_photo(90, 120, 7)))
    np.save(tmp_path / "images.npy", np.array([jpeg.read_bytes()], dtype=object))
    run = programs.run([str(BIN / "saved_model_cli"), "run", "--dir", paths["single"],
                        "--tag_set", "serve", "--signature_def", "serving_default",
                        "--inputs", f"images={tmp_path / 'images.npy'}"],
                       timeout=300)
    assert run.returncode == 0, run.stderr
    classes = re.search(r"output key classes:\s*\[\[(\d+)", run.stdout)
    predict = programs.run([str(BIN / "vgg-predict"), "--model", str(pathlib.Path(
        paths["single"]).parent), "--json", str(jpeg)], timeout=300)
    assert predict.returncode == 0, predict.stderr
    result = json.loads(predict.stdout)
    assert result["image"] == str(jpeg)
    assert int(classes.group(1)) == result["predictions"][0]["class"]
    assert len(result["predictions"]) == 3
    scores = [item["score"] for item in result["predictions"]]
    assert scores == sorted(scores, reverse=True)


def test_vgg_predict_reports_bad_images_and_predicts_the_others(exports, tmp_path):
    paths, _ = exports
    good, bad = tmp_path / "good.png", tmp_path / "page.jpg"
    good.write_bytes(synthetic.encode(_photo(), "png"))
    bad.write_bytes(synthetic.encode(_photo(), "not_image"))
    result = programs.run([str(BIN / "vgg-predict"), f"--model={paths['dense']}", str(bad),
                           str(good), str(tmp_path / "missing.jpg")],
                          timeout=300)
    assert result.returncode == 1
    assert f"{bad}: image 0 of the request is not a JPEG, PNG, GIF or BMP image" in result.stderr
    assert f"{tmp_path / 'missing.jpg'}: cannot read" in result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(good) and len(lines) == 4 and lines[1].startswith("  1. ")


def test_vgg_predict_refuses_what_is_not_an_export(tmp_path):
    vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                        head=vgg_keras.Head(fc_units=8)).export(
        str(tmp_path / "plain" / "1"))
    for model, message in ((tmp_path / "plain", "is not a vgg-export export (its serving_default "
                            "returns no classes, labels, scores, synsets)"),
                           (tmp_path / "nothing", "does not exist: give a vgg-train model dir, "
                            "one of its checkpoints, a .keras file or an export of vgg-export")):
        result = programs.run([str(BIN / "vgg-predict"), f"--model={model}", "a.jpg"],
                              timeout=300)
        assert result.returncode == 1 and message in result.stderr
        assert "Traceback" not in result.stderr


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(folder).rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_second_export_is_version_2_and_leaves_1_untouched(trained, tmp_path):
    _, _, model_dir = trained
    first = export.export_saved_model(str(model_dir), str(tmp_path))
    assert first == str(tmp_path / "vgg" / "1")
    before = _tree_digest(first)
    stamp = os.stat(os.path.join(first, "saved_model.pb")).st_mtime_ns
    checkpoint = tf.train.latest_checkpoint(str(model_dir / "checkpoints" / "latest"))
    second = export.export_saved_model(checkpoint, str(tmp_path),
                                       ServingSettings(eval_mode="dense"))
    assert second == str(tmp_path / "vgg" / "2")
    assert _tree_digest(first) == before
    assert os.stat(os.path.join(first, "saved_model.pb")).st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path / "vgg")) == ["1", "2"]  # no staging folder left
    assert layout.resolve_export(str(tmp_path / "vgg")) == second


def test_vgg_evaluate_reads_an_export(trained, exports):
    _, data, model_dir = trained
    paths, _ = exports
    arguments = dict(protocols=("single", "multicrop"), scales=[Q], label_offset=1,
                     num_classes=4)
    from_keras = evaluate([str(model_dir)], str(data), **arguments)
    from_export = evaluate([str(pathlib.Path(paths["single"]).parent)], str(data),
                                      **arguments)
    for protocol in ("single", "multicrop"):
        assert from_export[protocol] == from_keras[protocol]
    assert layout.train_scale_of(paths["single"]) == (36, 44)


def test_export_errors(trained, tmp_path):
    root, data, model_dir = trained
    unnamed = tmp_path / "unnamed.keras"
    vgg_keras.build_vgg("A", 7, input_shape=(CROP, CROP, 3), width=0.125,
                        head=vgg_keras.Head(fc_units=8)).save(
        unnamed)
    with pytest.raises(ValueError, match="cannot name the 7 classes .* give --data_dir"):
        export.export_saved_model(str(unnamed), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="test scale Q=20 is smaller than the crop 32"):
        export.export_saved_model(str(model_dir), str(tmp_path / "out"),
                                  ServingSettings(test_scale=20))
    with pytest.raises(ValueError, match="eval_mode must be one of"):
        export.export_saved_model(str(model_dir), str(tmp_path / "out"),
                                  ServingSettings(eval_mode="multicrop"))
    with pytest.raises(FileNotFoundError):
        export.export_saved_model(str(tmp_path / "nothing.keras"), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "vgg").exists() or not os.listdir(tmp_path / "out" / "vgg")


def test_vgg_export_command(trained, tmp_path):
    _, data, model_dir = trained
    result = programs.run([str(BIN / "vgg-export"), f"--model={model_dir / 'model.keras'}",
                           f"--export_dir={tmp_path}", "--model_name=tiny", "--top_k=2",
                           f"--data_dir={data}"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"to {tmp_path / 'tiny' / '1'}" in result.stdout
    metadata = layout.read_metadata(str(tmp_path / "tiny"))
    assert metadata["top_k"] == 2 and metadata["synsets"] == list(
        synthetic.DEFAULT_SYNSETS[:4])
    missing = programs.run([str(BIN / "vgg-export"), f"--export_dir={tmp_path}"],
                           timeout=300)
    assert missing.returncode != 0 and "--export_dir is required, with --model" in missing.stderr
