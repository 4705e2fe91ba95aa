"""PyTorch's published VGG weights (torchvision's files, timm's names) in our nets: files in their
exact key layouts, random values with non-trivial batch-norm statistics, give the activations
and probabilities of a NumPy implementation of torch's forward pass (NCHW convolutions, the
C·H·W flatten, batch norm's eval formula with ε = 1e-5, torchvision's mean/std input). Each
porting pitfall has a test that fails if it is dropped. Nothing is downloaded: files are written
here; full width, at 64×64 (fc1 reads a 2×2 map, so the flatten order still matters) and D-BN at
224×224 with torchvision's exact shapes."""

import json
import os
import pathlib
import sys

import keras
import numpy as np
import pytest
import safetensors.numpy

import vgg_keras
from pipelines import imagenet_labels
from pipelines import preprocessing
from pipelines import synthetic
from tests import hub_server
from tests import programs
from tests.conftest import evaluate
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import pretrained
from vgg_keras.nets import published
from vgg_keras.nets import torch_weights
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow
BIN = pathlib.Path(sys.executable).parent
SIDE = 64


def torchvision_state(config, batch_norm, side, seed=0):
    """A torchvision VGG ``state_dict`` (``features.<i>``, ``classifier.0/3/6``) of random
    values: He-normal kernels (the signal lives through 19 layers), BN statistics far from
    (0, 1), a classifier scaled down to keep the softmax off saturation."""
    rng = np.random.default_rng(seed)
    state, index, channels = {}, 0, 3
    for token in configs.CONFIGS[config]:
        if token == "maxpool":
            index += 1
            continue
        filters = configs.parse_layer(token).filters
        state[f"features.{index}.weight"] = _normal(rng, np.sqrt(2 / (channels * 9)),
                                                    (filters, channels, 3, 3))
        state[f"features.{index}.bias"] = rng.normal(0, 0.05, filters)
        index += 1
        if batch_norm:
            state[f"features.{index}.weight"] = rng.uniform(0.5, 1.5, filters)
            state[f"features.{index}.bias"] = rng.normal(0, 0.1, filters)
            state[f"features.{index}.running_mean"] = rng.normal(0, 0.5, filters)
            state[f"features.{index}.running_var"] = rng.uniform(0.5, 2.0, filters)
            state[f"features.{index}.num_batches_tracked"] = np.array(1000, np.int64)
            index += 1
        index += 1  # the ReLU
        channels = filters
    flat = 512 * (side // 32) ** 2
    for key, (out, inputs, scale) in {"classifier.0": (4096, flat, 1.0),
                                      "classifier.3": (4096, 4096, 1.0),
                                      "classifier.6": (1000, 4096, 0.3)}.items():
        state[f"{key}.weight"] = _normal(rng, scale * np.sqrt(2 / inputs), (out, inputs))
        state[f"{key}.bias"] = rng.normal(0, 0.01, out)
    return {key: value.astype(np.float32) if value.dtype.kind == "f" else value
            for key, value in state.items()}


def _normal(rng, std, shape):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def timm_state(state, side):
    """The same weights under timm's names: fc1 and fc2 as convolutions, the classifier
    ``head.fc``."""
    timm = {key: value for key, value in state.items() if key.startswith("features.")}
    final = side // 32
    timm["pre_logits.fc1.weight"] = state["classifier.0.weight"].reshape(4096, 512, final, final)
    timm["pre_logits.fc1.bias"] = state["classifier.0.bias"]
    timm["pre_logits.fc2.weight"] = state["classifier.3.weight"][:, :, None, None]
    timm["pre_logits.fc2.bias"] = state["classifier.3.bias"]
    timm["head.fc.weight"], timm["head.fc.bias"] = (state["classifier.6.weight"],
                                                    state["classifier.6.bias"])
    return timm


def _conv_nchw(x, weight, bias):
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return np.einsum("nchwij,fcij->nfhw", windows, weight, optimize=True) + bias[:, None, None]


def torch_forward(state, config, batch_norm, images):
    """torchvision's VGG forward, in NumPy: ``(fc2 activations, probabilities)``."""
    mean, std = np.array(builder.TORCHVISION_MEAN), np.array(builder.TORCHVISION_STD)
    x = ((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)  # NCHW
    index = 0
    for token in configs.CONFIGS[config]:
        if token == "maxpool":
            n, c, h, w = x.shape
            x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
            index += 1
            continue
        x = _conv_nchw(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"])
        index += 1
        if batch_norm:
            g, b, m, v = (state[f"features.{index}.{part}"][:, None, None] for part in
                          ("weight", "bias", "running_mean", "running_var"))
            x = (x - m) / np.sqrt(v + 1e-5) * g + b
            index += 1
        x = np.maximum(x, 0)
        index += 1
    x = x.reshape(x.shape[0], -1)  # C·H·W, as torch.flatten
    fc1 = np.maximum(x @ state["classifier.0.weight"].T + state["classifier.0.bias"], 0)
    fc2 = np.maximum(fc1 @ state["classifier.3.weight"].T + state["classifier.3.bias"], 0)
    logits = (fc2 @ state["classifier.6.weight"].T + state["classifier.6.bias"]).astype(
        np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return fc2, probabilities / probabilities.sum(axis=1, keepdims=True)


def _images(side, count=4, seed=7):
    """Unlike images: noise, a colour gradient, a reddish ramp and a checkerboard."""
    rows, cols = np.mgrid[0:side, 0:side] * 255 // side
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3))
    gradient = np.stack([cols, rows, 255 - cols], axis=-1)
    reddish = np.stack([np.full_like(rows, 220), rows // 2, np.full_like(rows, 30)], axis=-1)
    checker = np.repeat(((rows * side // 255 // 8 + cols * side // 255 // 8) % 2 * 255)[..., None],
                        3, axis=-1)
    return np.stack([noise, gradient, reddish, checker][:count]).astype(np.uint8)


def _ours(model, images):
    fc2 = keras.Model(model.input, model.get_layer("fc2").output)
    return (keras.ops.convert_to_numpy(fc2(images, training=False)),
            keras.ops.convert_to_numpy(model(images, training=False)))


def _close(ours, reference):
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("config", ["A", "B", "D", "E", "A-BN", "B-BN", "D-BN", "E-BN"])
def test_torchvision_and_timm_files_give_torchs_numbers(config, tmp_path):
    """Every net's key layout, at 32×32 (fc1 reads 1×1×512; the flatten order is held at 64
    and 224 by the tests below)."""
    name, batch_norm, side = config.removesuffix("-BN"), config.endswith("-BN"), 32
    state = torchvision_state(name, batch_norm, side)
    images = _images(side)
    fc2, probabilities = torch_forward(state, name, batch_norm, images)
    # Off uniform (1e-3), not saturated, and a different answer for each image: a comparison
    # that can fail.
    assert 2e-3 < probabilities.max() < 0.99
    assert np.abs(probabilities[1:] - probabilities[:1]).max() > 1e-4
    model = pretrained.build_for(config, published.NEEDS["torchvision"],
                                 input_shape=(side, side, 3))
    for kind, tensors in (("timm", timm_state(state, side)), ("torchvision", state)):
        path = tmp_path / f"{kind}.safetensors"
        safetensors.numpy.save_file(tensors, str(path))
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # nothing left over
        pretrained.load_weights(model, published.Weights(kind, str(path)))
        ours_fc2, ours_probabilities = _ours(model, images)
        _close(ours_fc2, fc2)
        _close(ours_probabilities, probabilities)


def test_d_bn_at_torchvisions_exact_shapes_and_through_the_conv_head(tmp_path):
    state = torchvision_state("D", True, 224, seed=3)
    assert state["classifier.0.weight"].shape == (4096, 25088)  # vgg16_bn-6c64b313.pth's
    path = tmp_path / "vgg16_bn.safetensors"
    safetensors.numpy.save_file(state, str(path))
    images = _images(224, count=1)
    fc2, probabilities = torch_forward(state, "D", True, images)
    model = pretrained.build_pretrained("D-BN", "torchvision", path)
    _close(_ours(model, images)[1], probabilities)
    conv = pretrained.build_for("D-BN", published.NEEDS["torchvision"], head="conv",
                                input_shape=(None, None, 3))
    vgg_keras.load_torchvision_weights(conv, path)
    _close(np.asarray(conv(images, training=False)), probabilities)


@pytest.fixture(scope="module")
def a_bn(tmp_path_factory):
    """A-BN's weights in torchvision's layout, the reference numbers and the loaded net."""
    folder = tmp_path_factory.mktemp("a_bn")
    state = torchvision_state("A", True, SIDE, seed=5)
    path = folder / "vgg11_bn.safetensors"
    safetensors.numpy.save_file(state, str(path))
    images = _images(SIDE)
    return state, path, images, torch_forward(state, "A", True, images)[1]


def _loaded(path):
    return pretrained.build_pretrained("A-BN", "torchvision", path, input_shape=(SIDE, SIDE, 3))


def _far(ours, reference):
    assert np.abs(ours - reference).max() > 1e-3 * np.abs(reference).max()


def test_without_the_flatten_permutation_the_net_is_wrong(a_bn):
    state, path, images, probabilities = a_bn
    model = _loaded(path)
    _close(_ours(model, images)[1], probabilities)
    naive = state["classifier.0.weight"].T  # columns read as if the flatten were H·W·C
    model.get_layer("fc1").set_weights([naive, state["classifier.0.bias"]])
    _far(_ours(model, images)[1], probabilities)


def test_with_keras_batch_norm_epsilon_the_net_is_wrong(a_bn):
    _, path, images, probabilities = a_bn
    model = _loaded(path)
    epsilons = {layer.epsilon for layer in model.layers if hasattr(layer, "moving_variance")}
    assert epsilons == {torch_weights.TORCH_BN_EPSILON}
    for layer in model.layers:
        if hasattr(layer, "moving_variance"):
            layer.epsilon = 1e-3  # Keras' default
    _far(_ours(model, images)[1], probabilities)


def test_the_papers_normalisation_is_refused_and_would_be_wrong(a_bn):
    state, path, images, probabilities = a_bn
    paper = vgg_keras.build_vgg("A-BN", input_shape=(SIDE, SIDE, 3),
                                batch_norm=vgg_keras.BatchNorm(epsilon=1e-5))
    with pytest.raises(ValueError, match='subtracts the paper.s mean RGB; torchvision.s weights '
                                         'expect torchvision.s mean/std: build it with '
                                         'normalization="torchvision"'):
        vgg_keras.load_torchvision_weights(paper, path)
    loaded = _loaded(path)
    for layer in paper.layers:  # the same weights behind the other normalisation
        if layer.weights and layer.name != "mean_rgb":
            layer.set_weights(loaded.get_layer(layer.name).get_weights())
    _far(_ours(paper, images)[1], probabilities)


def test_another_class_count_skips_the_classifier_and_lists_it(a_bn):
    _, path, images, _ = a_bn
    model = pretrained.build_for("A-BN", published.NEEDS["torchvision"], num_classes=10,
                                 input_shape=(SIDE, SIDE, 3))
    with pytest.raises(ValueError, match=r"torchvision weights do not fit vgg_a_bn: predictions "
                                         r"\(classifier.6\): file \[\(4096, 1000\)"):
        vgg_keras.load_torchvision_weights(model, path)
    report = vgg_keras.load_torchvision_weights(model, path, skip_mismatch=True)
    assert report["skipped"] == ["predictions"] and "fc1" in report["loaded"]


def test_bad_files_and_nets_get_one_line(a_bn, tmp_path):
    state, path, _, _ = a_bn
    def build(config):
        return pretrained.build_for(config, published.NEEDS["torchvision"],
                                    input_shape=(SIDE, SIDE, 3))

    # A-BN's file for A (features.3 is a max-pool there) and for B-BN (a second conv in block 1).
    with pytest.raises(ValueError, match="vgg_a: no features.3.weight in the file"):
        vgg_keras.load_torchvision_weights(build("A"), path)
    with pytest.raises(ValueError, match="vgg_b_bn: no features.3.weight in the file"):
        vgg_keras.load_torchvision_weights(build("B-BN"), path)
    extra = tmp_path / "extra.safetensors"
    safetensors.numpy.save_file({**state, "features.99.weight": np.zeros(3, np.float32)},
                                str(extra))
    with pytest.raises(ValueError, match="features.99.weight in the file fits no layer"):
        _loaded(extra)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.safetensors is not a readable safetensors file"):
        _loaded(truncated)
    pth = tmp_path / "vgg11_bn-6002323d.pth"
    pth.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match=r"reading PyTorch's .pth/.bin files needs torch \(pip "
                                         r"install torch\), or give the weights as .safetensors"):
        _loaded(pth)
    for config in ("C", "A-LRN-BN"):
        with pytest.raises(ValueError, match=f"publishes no weights for config "
                                             f"{config.removesuffix('-BN')}"):
            vgg_keras.load_torchvision_weights(build(config), path)


@pytest.fixture(scope="module")
def hub_home(a_bn, tmp_path_factory):
    """An ``HF_HOME`` whose Hugging Face cache, laid out as huggingface_hub lays it out, holds
    timm's ``model.safetensors`` of ``timm/vgg11_bn.tv_in1k`` (A-BN's weights of ``a_bn``) and of
    ``timm/vgg16_bn.tv_in1k`` (D-BN, random), at 64×64; and D-BN's file in torchvision's layout,
    to compare with."""
    home = tmp_path_factory.mktemp("hf_home")
    d_bn = torchvision_state("D", True, SIDE, seed=11)
    for name, state in (("vgg11_bn", a_bn[0]), ("vgg16_bn", d_bn)):
        data = safetensors.numpy.save(timm_state(state, SIDE))
        hub_server.lay_out_cache(home / "hub", f"timm/{name}.tv_in1k", "model.safetensors", data)
    torchvision_file = home / "vgg16_bn.safetensors"
    safetensors.numpy.save_file(d_bn, str(torchvision_file))
    return home, torchvision_file


@pytest.fixture
def offline_hub(hub_home, monkeypatch):
    """huggingface_hub reading ``hub_home``'s cache, offline (as HF_HOME and HF_HUB_OFFLINE=1
    set before it is imported make it)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_home[0] / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_home


def test_published_weights_by_name_straight_to_serving(offline_hub, tmp_path):
    """vgg-export of a net with published weights named alone (timm's file in the Hugging Face
    cache, offline), no training run: ImageNet's classes, the normalisation and where the
    weights came from in the metadata, torchvision's protocol (Q = 256/224 of the crop);
    vgg-predict on a JPEG gives the Keras net's top 5, through the SavedModel and the ONNX
    model; build_pretrained("D-BN", "timm") reads the same cache in this process."""
    home, torchvision_file = offline_hub
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    export = programs.run([str(BIN / "vgg-export"), "--config=D-BN", "--weights=timm",
                           f"--crop_size={SIDE}", f"--export_dir={tmp_path}",
                           "--model_name=vgg16_bn", "--format=saved_model,onnx"], env=env,
                          timeout=900)
    assert export.returncode == 0, export.stderr[-3000:]
    assert "onnx (fp32): uint8 [None, 64, 64, 3] in, probabilities out" in export.stdout
    assert "downloading" not in export.stdout  # from the cache
    metadata = layout.read_metadata(str(tmp_path / "vgg16_bn"))
    assert metadata["normalization"] == "torchvision" and metadata["num_classes"] == 1000
    assert metadata["synsets"] == list(imagenet_labels.synsets())
    assert metadata["test_scale"] == protocols.fallback_test_scale(SIDE) == 73
    weights = metadata["source_weights"]
    assert (weights["kind"], weights["source"], weights["file"], weights["revision"]) == (
        "timm", "timm/vgg16_bn.tv_in1k", "model.safetensors", hub_server.COMMIT)
    assert weights["sha256"] == pathlib.Path(os.path.realpath(weights["path"])).name
    assert metadata["source_model"].startswith("timm/vgg16_bn.tv_in1k model.safetensors at "
                                               f"revision {hub_server.COMMIT} (sha256 ")
    assert f"exported D-BN from {metadata['source_model']}" in export.stdout
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(synthetic.encode(synthetic.draw_scene(1, np.random.default_rng(0), 90,
                                                           120)))
    predict = programs.run([str(BIN / "vgg-predict"), f"--model={tmp_path / 'vgg16_bn'}",
                            "--json", str(jpeg)], timeout=600)
    assert predict.returncode == 0, predict.stderr[-3000:]
    served = [item["class"] for item in json.loads(predict.stdout)["predictions"]]
    import tensorflow as tf

    image = preprocessing.rescale_shorter_side(preprocessing.decode(jpeg.read_bytes()), 73)
    crop = preprocessing.center_crop(image, SIDE)[None]
    reference = pretrained.build_pretrained("D-BN", "torchvision", torchvision_file,
                                            input_shape=(SIDE, SIDE, 3))
    probabilities = np.asarray(reference(crop, training=False))
    assert served == np.argsort(-probabilities[0])[:5].tolist()
    by_name = pretrained.build_pretrained("D-BN", "timm", input_shape=(SIDE, SIDE, 3))
    np.testing.assert_allclose(np.asarray(by_name(crop, training=False)), probabilities,
                               rtol=1e-5, atol=1e-7)
    onnx = programs.run([str(BIN / "vgg-predict"),
                         f"--model={tmp_path / 'vgg16_bn' / '1' / 'model.onnx'}", "--json",
                         str(jpeg)], timeout=600)  # the same net in ONNX, the client's crop
    assert onnx.returncode == 0, onnx.stderr[-3000:]
    assert [item["class"] for item in json.loads(onnx.stdout)["predictions"]] == served
    assert tf.saved_model.load(str(tmp_path / "vgg16_bn" / "1")).signatures["serving_default"]


def test_vgg_evaluate_reads_a_published_nets_export_at_its_own_protocol(a_bn, offline_hub,
                                                                       train_data, tmp_path):
    """No training run, no scale recorded: the export's own Q (torchvision's resize 256 of a
    224 crop, here 73 of 64), as its table was measured; the same net named by its published
    weights (--config=A-BN --weights=torchvision) gives the same table at the same Q."""
    _, path, _, _ = a_bn
    from vgg_keras.serving import export

    exported = export.export_model(_loaded(path), str(tmp_path), source=f"torchvision={path}")
    results = evaluate([exported], str(train_data), protocols=["single"])
    assert results["settings"]["scales"] == [73] and results["single"]["num_images"] == 24
    by_name = evaluate([], str(train_data), protocols=["single"], config="A-BN",
                       weights="torchvision", crop_size=SIDE)
    assert by_name["settings"]["scales"] == [73]
    assert by_name["single"] == results["single"]
    assert by_name["settings"]["models"] == ["A-BN torchvision"]
    assert by_name["settings"]["published_weights"][0]["source"] == "timm/vgg11_bn.tv_in1k"


def test_vgg_train_from_torchvision_weights_by_name(a_bn, offline_hub, train_data, tmp_path,
                                                   monkeypatch):
    _, path, _, _ = a_bn
    # A classifier of its own (FC-64, 4 classes) on the published convolutions: the run's
    # checkpoints stay small.
    # With the recipe behind torchvision's own VGG weights (its crops, decay, normalisation).
    cfg = run_config.TrainConfig.for_recipe(
        "torchvision_simple",
        data_dir=str(train_data), model_dir=str(tmp_path), config="A-BN", crop_size=SIDE,
        scale=(SIDE, SIDE + 8), batch_size=8, train_steps=2, num_classes=4, label_offset=1,
        fc_units=64, init="torchvision", trainable_from="block5_conv1", learning_rate=1e-3,
        distribution_strategy="one_device", progress="epochs")
    summary = loop.train(cfg)
    assert summary["normalization"] == "torchvision"
    assert summary["init"]["new"] == ["fc1", "fc2", "predictions"]
    recorded = json.loads((tmp_path / "init.json").read_text())
    assert recorded["weights"]["source"] == "timm/vgg11_bn.tv_in1k"
    assert recorded["weights"]["revision"] == hub_server.COMMIT
    assert recorded["source"] == summary["init"]["source"] == (
        f"timm/vgg11_bn.tv_in1k model.safetensors at revision {hub_server.COMMIT} (sha256 "
        f"{recorded['weights']['sha256']})")
    model = keras.models.load_model(tmp_path / "model.keras")
    assert builder.normalization_of(model) == "torchvision"
    loaded = _loaded(path)
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0],
                                  loaded.get_layer("block1_conv1").get_weights()[0])  # frozen
    assert {layer.epsilon for layer in model.layers if hasattr(layer, "moving_variance")} == {
        torch_weights.TORCH_BN_EPSILON}
    # Resumed (a longer schedule, allowed), with the weights gone from the cache: the same net
    # is rebuilt and its weights restored from the checkpoint, nothing fetched.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    longer = run_config.TrainConfig(**dict(vars(cfg), train_steps=3,
                                           allow_changed_settings=True))
    assert loop.train(longer)["resumed_from_step"] == 2
