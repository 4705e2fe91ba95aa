"""vgg-export's tensor formats (ONNX, LiteRT, OpenVINO): where their files go, each run by its
own runtime equal to the Keras net, int8 calibrated and close to it, Triton's configuration as
Triton parses it, every artifact a model of vgg-evaluate and vgg-predict, and what goes wrong said
in one line."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest

import vgg_keras
from pipelines import inputs
from pipelines import synthetic
from pipelines.foundation import errors
from tests import programs
from tests.conftest import evaluate
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.artifacts import runtimes
from vgg_keras.serving import client
from vgg_keras.serving import export
from vgg_keras.serving import formats
from vgg_keras.serving.config import ServingSettings

pytestmark = pytest.mark.slow

BIN = pathlib.Path(sys.executable).parent
TENSOR_FILES = ["model.onnx", "model.tflite", "model.xml"]
# The int8 net's top-1 may differ from the float net's on this many of the 24 validation
# images of the suite's reference run (measured: 0-1 for each runtime).
INT8_TOP1_CHANGES = 3


@pytest.fixture(scope="module")
def exported(deploy_exports, reference_run, train_data):
    """The suite's exports of the reference run (every format at fp32, the tensor formats at
    int8), with the float Keras net and the validation crops."""
    every, int8 = deploy_exports
    metadata = layout.read_metadata(str(every))
    crops = np.concatenate([images for images, _, _ in inputs.make_eval_dataset(
        str(train_data), test_scale=metadata["test_scale"], crop_size=metadata["crop_size"],
        batch_size=64).as_numpy_iterator()])
    model = loading.load_model(str(reference_run))
    return every, int8, model, crops


def test_every_format_where_its_server_looks(exported):
    every, int8, _, _ = exported
    assert every == every.parent / "1" and every.parent.name == "vgg"
    assert sorted(p.name for p in every.iterdir()) == sorted([
        "saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb",
        "vgg_metadata.json", *TENSOR_FILES, "model.bin"])
    assert sorted(p.name for p in every.parent.iterdir()) == ["1", "config.pbtxt", "labels.txt",
                                                              "warmup"]
    metadata = json.loads((every / "vgg_metadata.json").read_text())
    assert metadata == json.loads((every / "assets.extra" / "vgg_metadata.json").read_text())
    assert list(metadata["formats"]) == list(formats.FORMATS)
    crop, classes = metadata["crop_size"], metadata["num_classes"]
    # Each format's tensors by the names its runtime's own API uses: ONNX Runtime's and
    # OpenVINO's ours; LiteRT's interpreter names them after the signature, whose runner keys
    # are ours.
    names = {"onnx": ("images", "probabilities"), "openvino": ("images", "probabilities"),
             "litert": ("serving_default_images:0", "StatefulPartitionedCall:0")}
    for name in formats.TENSOR_FORMATS:
        entry = metadata["formats"][name]
        keys = {"signature_key": "images"} if name == "litert" else {}
        assert entry["input"] == {"name": names[name][0], "dtype": "uint8",
                                  "shape": [None, crop, crop, 3], **keys}
        keys = {"signature_key": "probabilities"} if name == "litert" else {}
        assert entry["output"] == {"name": names[name][1], "dtype": "float32",
                                   "shape": [None, classes], **keys}
        assert entry["precision"] == "fp32"
    assert metadata["formats"]["litert"]["signature"] == "serving_default"
    assert metadata["formats"]["openvino"]["compile"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert metadata["client_preprocessing"]["resize_shorter_side_to"] == metadata["test_scale"]
    assert not [p for p in every.parent.iterdir() if p.name.startswith(".export-")]
    assert "calibration" not in metadata
    calibrated = layout.read_metadata(str(int8))
    assert calibrated["precision"] == "int8" and "saved_model" not in calibrated["formats"]
    assert calibrated["calibration"]["images"] == 48 and calibrated["calibration"][
        "split"] == "train"


@pytest.mark.parametrize("file", TENSOR_FILES)
def test_each_runtime_equals_the_keras_net_at_batch_1_and_5(exported, file):
    every, _, model, crops = exported
    runtime = runtimes.Runtime(every / file)
    for batch in (crops[:1], crops[:5]):
        expected = np.asarray(model(batch, training=False))
        got = runtime(batch)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=5e-4)
        assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("file", TENSOR_FILES)
def test_int8_is_full_integer_and_close_to_the_float_net(exported, file):
    _, int8, model, crops = exported
    expected = np.asarray(model(crops, training=False)).argmax(1)
    got = runtimes.Runtime(int8 / file)(crops).argmax(1)
    assert (got != expected).sum() <= INT8_TOP1_CHANGES, (got, expected)
    assert (int8 / file).stat().st_size < 0.6 * (int8.parent.parent / "vgg" / "1" / file
                                                  ).stat().st_size or file == "model.xml"
    if file == "model.tflite":  # every weight of every convolution and FC layer: int8
        from ai_edge_litert import interpreter as litert

        details = litert.Interpreter(model_path=str(int8 / file)).get_tensor_details()
        kernels = [d for d in details if len(d["shape"]) in (2, 4) and d["name"].endswith(
            ("Conv2D", "MatMul", "kernel")) or "conv" in d["name"].lower() and
            len(d["shape"]) == 4 and d["shape"][0] > 3]
        assert kernels and all(d["dtype"] == np.int8 for d in kernels), [
            (d["name"], d["dtype"]) for d in kernels if d["dtype"] != np.int8]


def test_triton_parses_the_configuration_and_it_matches_the_onnx_model(exported):
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    every, _, _, _ = exported
    config = text_format.Parse((every.parent / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    graph = onnx.load(str(every / "model.onnx")).graph
    assert config.name == "vgg" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    (tensor,), (output,) = config.input, config.output
    assert [tensor.name, output.name] == [graph.input[0].name, graph.output[0].name]
    onnx_dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert list(tensor.dims) == onnx_dims[1:] and tensor.data_type == model_config_pb2.TYPE_UINT8
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert list(output.dims) == [4] and output.data_type == model_config_pb2.TYPE_FP32
    labels = (every.parent / output.label_filename).read_text().splitlines()
    assert labels == layout.read_metadata(str(every))["labels"]
    # As deployed: one instance where Triton puts it, the newest version only, and warm-up
    # requests of the export's own images, each a raw uint8 crop Triton reads from warmup/.
    (instances,) = config.instance_group
    assert instances.count == 1 and instances.kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    assert config.version_policy.latest.num_versions == 1
    assert config.default_model_filename == "model.onnx"
    assert [warmup.batch_size for warmup in config.model_warmup] == [1, 1]
    for warmup in config.model_warmup:
        data = warmup.inputs[tensor.name]
        assert data.data_type == model_config_pb2.TYPE_UINT8 and list(data.dims) == onnx_dims[1:]
        raw = (every.parent / "warmup" / data.input_data_file).read_bytes()
        assert len(raw) == int(np.prod(onnx_dims[1:]))  # one crop, row-major


def test_every_artifact_is_a_model_of_vgg_evaluate(exported, train_data):
    """The same table for the SavedModel and each format, fp32 and int8: single-crop on each,
    multi-crop on ONNX (the fixed input allows no dense evaluation)."""
    every, int8, _, _ = exported
    protocols = ["single", "multicrop"]
    reference = evaluate([str(every)], str(train_data), protocols=protocols, num_classes=4)
    for path in [every / f for f in TENSOR_FILES]:
        asked = protocols if path.name == "model.onnx" else ["single"]
        results = evaluate([str(path)], str(train_data), protocols=asked, num_classes=4)
        for protocol in asked:
            assert results[protocol]["top1_error"] == reference[protocol]["top1_error"], path
            assert results[protocol]["num_images"] == 24
    for path in [int8 / f for f in TENSOR_FILES]:
        results = evaluate([str(path)], str(train_data), protocols=["single"], num_classes=4)
        assert abs(results["single"]["top1_error"] - reference["single"]["top1_error"]) <= (
            INT8_TOP1_CHANGES / 24)
    with pytest.raises(errors.UserError, match="dense evaluation of .*model.onnx needs"):
        evaluate([str(every / "model.onnx")], str(train_data), protocols=["dense"],
                 num_classes=4)


def test_fp16_halves_the_files_and_keeps_the_top_1(exported, reference_run, tmp_path):
    every, _, model, crops = exported
    half = pathlib.Path(export.export_saved_model(str(reference_run), str(tmp_path),
                                                  ServingSettings(format=formats.TENSOR_FORMATS,
                                                                  precision="fp16")))
    expected = np.asarray(model(crops, training=False))
    for file in TENSOR_FILES:
        got = runtimes.Runtime(half / file)(crops)
        assert (got.argmax(1) == expected.argmax(1)).all(), file
        np.testing.assert_allclose(got, expected, atol=1e-2)
        weights = "model.bin" if file == "model.xml" else file
        assert (half / weights).stat().st_size < 0.6 * (every / weights).stat().st_size, file
    assert layout.read_metadata(str(half))["formats"]["onnx"]["precision"] == "fp16"


def test_vgg_predict_and_vgg_evaluate_on_tensor_files(exported, train_data, tmp_path):
    """The commands on an ONNX file and a LiteRT version folder: vgg-predict's top classes are
    the SavedModel's (the client's preprocessing, ``vgg_keras.preprocess_image``, is the
    serving graph's)."""
    every, int8, _, _ = exported
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(synthetic.encode(synthetic.draw_scene(2, np.random.default_rng(1), 70,
                                                            90)))
    predictions = {}
    for model in (every, every / "model.onnx", every / "model.xml"):
        result = programs.run([str(BIN / "vgg-predict"), f"--model={model}", "--json",
                               str(photo)])
        assert result.returncode == 0, result.stderr[-2000:]
        predictions[model.name] = json.loads(result.stdout)["predictions"]
    assert [p["class"] for p in predictions["model.onnx"]] == [
        p["class"] for p in predictions["1"]] == [p["class"] for p in predictions["model.xml"]]
    np.testing.assert_allclose([p["score"] for p in predictions["model.onnx"]],
                               [p["score"] for p in predictions["1"]], atol=5e-4)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = programs.run([str(BIN / "vgg-predict"), f"--model={every / 'model.tflite'}",
                           str(text), str(photo)])
    assert result.returncode == 1 and str(photo) in result.stdout  # the others still predicted
    # In the serving graph's words: the same checks as the SavedModel's, before the runtime.
    assert result.stderr.strip() == (f"vgg-predict: {text}: image 0 of the request is not a "
                                     "JPEG, PNG, GIF or BMP image")
    result = programs.run([str(BIN / "vgg-evaluate"), f"--model={int8 / 'model.tflite'}",
                           f"--data_dir={train_data}", "--protocols=single", "--num_classes=4"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "single" in result.stdout


def test_the_client_preprocessing_is_the_serving_graphs(exported):
    every, _, _, _ = exported
    metadata = layout.read_metadata(str(every))
    image = synthetic.draw_scene(0, np.random.default_rng(3), 61, 83)
    crop = client.preprocess_image(synthetic.encode(image, "png"), metadata["test_scale"],
                                   metadata["crop_size"])
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    import tensorflow as tf

    served = tf.saved_model.load(str(every)).signatures["predict_images"](
        images=tf.constant(image[None]))
    onnx = runtimes.Runtime(every / "model.onnx")(crop[None])[0]
    assert served["classes"].numpy()[0, 0] == onnx.argmax()
    np.testing.assert_allclose(served["scores"].numpy()[0, 0], onnx.max(), atol=5e-4)


def test_what_goes_wrong_is_one_line(exported, reference_run, train_data, tmp_path,
                                     monkeypatch):
    every, int8, _, _ = exported
    cases = [
        (dict(format=("onnx", "tensorrt")), "--format must be a comma list of saved_model"),
        (dict(precision="int8", format=("onnx",)), "--precision=int8 needs --calibration_data"),
        (dict(precision="fp16"), "--precision=fp16 is for the tensor formats"),
    ]
    for settings, message in cases:
        with pytest.raises(errors.UserError, match=message):
            export.export_saved_model(str(reference_run), str(tmp_path),
                                      ServingSettings(**settings))
    with pytest.raises(FileNotFoundError, match="none does not exist: give the folder of the "
                                                "shards"):  # one line, exit 1, in vgg-export
        export.export_saved_model(str(reference_run), str(tmp_path), ServingSettings(
            format=("onnx",), precision="int8", calibration_data=str(tmp_path / "none")))
    with pytest.raises(errors.UserError, match=r"holds 3 formats .*give --model one of its"):
        loading.load_model(str(int8))
    damaged = tmp_path / "model.onnx"
    damaged.write_bytes((every / "model.onnx").read_bytes()[:5000])
    with pytest.raises(errors.UserError, match="model.onnx does not load in its runtime"):
        runtimes.Runtime(damaged)
    with pytest.raises(errors.UserError, match="has no vgg_metadata.json beside it"):
        export.serving_signature(str(damaged))
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else find_spec(name, *a))
    with pytest.raises(errors.UserError, match=r"--format=openvino needs openvino: pip install "
                                               r"'vgg-keras\[deploy\]'"):
        export.export_saved_model(str(reference_run), str(tmp_path / "none"),
                                  ServingSettings(format=("openvino",)))
    assert not (tmp_path / "none").exists()


def test_an_export_stopped_midway_leaves_no_version(reference_run, tmp_path, monkeypatch):
    def stopped(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(formats, "_openvino", stopped)
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(str(reference_run), str(tmp_path), ServingSettings(
            format=("onnx", "openvino")))  # OpenVINO's is written after ONNX's
    assert os.listdir(tmp_path / "vgg") == []  # no version, no staging folder left


@pytest.mark.parametrize("config, overrides", [
    ("A-LRN", {}), ("C", {"head": vgg_keras.Head(fc_units=16, activation=None)}),
    ("E-BN", {"preprocessing": vgg_keras.Preprocessing(normalization="torchvision")})])
def test_the_onnx_graph_of_every_kind_of_layer_equals_keras(tiny, config, overrides):
    """LRN, 1×1 convolutions, logits (a softmax added), batch norm and torchvision's mean/std,
    and the fully convolutional head: each net's ONNX graph gives the Keras net's
    probabilities."""
    import onnxruntime

    from vgg_keras import protocols
    from vgg_keras.serving import onnx_graph

    net = tiny(config, input_shape=(64, 64, 3), **overrides)
    images = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    for model in (net, vgg_keras.to_conv_head(net, input_shape=(64, 64, 3))):
        session = onnxruntime.InferenceSession(
            onnx_graph.onnx_model(model).SerializeToString(), providers=["CPUExecutionProvider"])
        expected = np.asarray(protocols.as_probabilities(model)(images))
        np.testing.assert_allclose(session.run(None, {"images": images})[0], expected,
                                   atol=1e-5)
