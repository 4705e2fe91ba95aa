"""Fine-tuning on one's own images, end to end: a keras.applications VGG16 notop weights file
(written by keras.applications itself), an image folder of 3 classes converted, vgg-train from
those weights with the early blocks frozen and a faster head: frozen layers bit-identical to the
file's, the others moved, 3 outputs; vgg-export and vgg-predict name the folder's classes. And
--init=model= of a run with another class count loads every layer that fits."""

import json
import pathlib
import sys

import h5py
import keras
import numpy as np
import pytest

import vgg_keras
from pipelines import synthetic
from pipelines.foundation import errors
from tests import programs
from vgg_keras.nets import keras_weights as vgg_weights
from vgg_keras.training import model as run_model
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

BIN = pathlib.Path(sys.executable).parent
CLASSES = ("café au lait", "dog", "猫")  # real folder names are not ASCII identifiers


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """keras.applications' VGG16 without its top, random weights, saved by Keras itself."""
    path = tmp_path_factory.mktemp("keras_applications") / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)
                             ).save_weights(path)
    return path


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_images")
    synthetic.write_dataset(root / "images", layout="image_folder", synsets=CLASSES,
                            train_per_class=12, val_per_class=4, problems=False)
    # Every path of this module's programs as a file:// URL: what a bucket's job meets, through
    # the same tf.io.gfile calls (no network here for gs://).
    result = programs.run([str(BIN / "vgg-convert"),
                           f"--image_folder=file://{root / 'images'}",
                           "--validation_fraction=0.25", f"--output_dir=file://{root / 'data'}",
                           "--train_shards=2", "--validation_shards=1", "--num_workers=1"],
                          timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _file_weights(path):
    """{layer name: (kernel, bias)} read back from the Keras weights file itself."""
    reference = keras.applications.VGG16(include_top=False, weights=None,
                                         input_shape=(32, 32, 3))
    reference.load_weights(path)
    return {layer.name: layer.get_weights() for layer in reference.layers
            if len(layer.get_weights()) == 2}


def test_fine_tune_from_keras_applications_weights_end_to_end(weights_file, folder_data):
    model_dir = folder_data / "model"
    train = programs.run(
        [str(BIN / "vgg-train"), "--config=D", f"--data_dir={folder_data / 'data'}",
         f"--model_dir=file://{model_dir}", f"--init=keras_applications=file://{weights_file}",
         "--trainable_from=block5_conv1", "--head_learning_rate_multiplier=10",
         "--crop_size=32", "--scale=36,44", "--fc_units=16", "--batch_size=8",
         "--train_steps=3", "--learning_rate=0.001", "--distribution_strategy=one_device"],
        timeout=900)
    assert train.returncode == 0, train.stderr[-3000:]
    assert ("init: loaded 13 layers from file://" + str(weights_file) + " (block1_conv1, "
            in train.stdout)
    assert "; new: fc1, fc2, predictions; frozen below block5_conv1" in train.stdout
    trained = keras.models.load_model(model_dir / "model.keras")
    assert trained.output.shape == (None, 3)
    original = _file_weights(weights_file)
    first_kernel, first_bias = vgg_weights.bgr_to_rgb_first_conv(*original["block1_conv1"])
    original["block1_conv1"] = [first_kernel, first_bias]  # our nets take RGB (weights.py)
    for name, (kernel, bias) in original.items():
        mine = trained.get_layer(name).get_weights()
        if name < "block5":  # frozen: bit-identical to the file's
            np.testing.assert_array_equal(mine[0], kernel, err_msg=name)
            np.testing.assert_array_equal(mine[1], bias, err_msg=name)
        else:
            assert not np.array_equal(mine[0], kernel), f"{name} did not train"
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["init"]["new"] == ["fc1", "fc2", "predictions"]
    assert summary["class_names"] == sorted(CLASSES)
    export = programs.run([str(BIN / "vgg-export"), f"--model=file://{model_dir}",
                           f"--export_dir=file://{folder_data / 'export'}", "--model_name=own"],
                          timeout=600)
    assert export.returncode == 0, export.stderr[-3000:]
    image = next((folder_data / "images" / "dog").iterdir())
    predict = programs.run([str(BIN / "vgg-predict"),
                            f"--model=file://{folder_data / 'export/own'}", "--json",
                            f"file://{image}"], timeout=600)
    assert predict.returncode == 0, predict.stderr[-3000:]
    result = json.loads(predict.stdout.strip().splitlines()[-1])
    assert {p["label"] for p in result["predictions"]} == set(CLASSES)


def test_init_from_a_run_with_other_classes_loads_what_fits(tmp_path):
    source = vgg_keras.build_vgg("A", 4, input_shape=(32, 32, 3), width=0.125,
                                 head=vgg_keras.Head(fc_units=16),
                                 weight_init=vgg_keras.WeightInit(seed=1))
    source.save(tmp_path / "four.keras")
    cfg = run_config.TrainConfig(data_dir="", model_dir=str(tmp_path / "m"), config="A",
                                 width=0.125, fc_units=16, crop_size=32, scale=(36, 36),
                                 init=f"model={tmp_path / 'four.keras'}", seed=2)
    model, init = run_model.build_initialized_model(cfg, 3)
    assert init.new == ("predictions",) and init.loaded[0] == "block1_conv1"
    assert init.describe().startswith(f"init: loaded 10 layers from {tmp_path / 'four.keras'}")
    for name in init.loaded:
        for mine, theirs in zip(model.get_layer(name).get_weights(),
                                source.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert model.get_layer("predictions").kernel.shape == (16, 3)


def test_an_init_that_leaves_frozen_layers_random_is_refused(tmp_path):
    """--init=model= of a net A into a net D frozen below block5_conv1: D's second convolutions
    are in no A, and would stay random; refused, naming them and why. An A of another width
    loads no convolution at all: refused too."""
    source = vgg_keras.build_vgg("A", 3, input_shape=(32, 32, 3), width=0.125,
                                 head=vgg_keras.Head(fc_units=16))
    source.save(tmp_path / "a.keras")
    cfg = run_config.TrainConfig(data_dir="", model_dir=str(tmp_path / "m"), config="D",
                                 width=0.125, fc_units=16, crop_size=32, scale=(36, 36),
                                 init=f"model={tmp_path / 'a.keras'}",
                                 trainable_from="block5_conv1")
    with pytest.raises(errors.UserError, match=r"did not load block1_conv2, block2_conv2, "
                                               r".*which --trainable_from=block5_conv1 freezes: "
                                               r"they would stay random \(block1_conv2: not in "
                                               r"the source"):
        run_model.build_initialized_model(cfg, 3)
    with pytest.raises(errors.UserError, match=r"loaded no convolution into vgg_a \(block1_conv1"
                                               r": source \[\(3, 3, 3, 8\), \(8,\)\], net "
                                               r"\[\(3, 3, 3, 16\), \(16,\)\]"):
        run_model.build_initialized_model(run_config.TrainConfig(**dict(
            vars(cfg), config="A", width=0.25, trainable_from=None)), 3)
    assert run_model.build_initialized_model(run_config.TrainConfig(**dict(
        vars(cfg), trainable_from=None)), 3)[1].new[:2] == ("block1_conv2", "block2_conv2")


def test_keras_3_weights_files_are_read_as_the_legacy_ones(weights_file, tmp_path):
    """keras.applications' own .h5 downloads are Keras 2's layout; save_weights writes Keras
    3's: both load the same weights into D."""
    with h5py.File(weights_file) as h5:
        assert "layer_names" not in h5.attrs  # Keras 3's layout indeed
    net = vgg_keras.build_vgg("D", head=None, input_shape=(32, 32, 3))
    report = vgg_keras.load_keras_applications_weights(net, weights_file)
    assert len(report["loaded"]) == 13 and not report["skipped"]
    np.testing.assert_array_equal(net.get_layer("block3_conv2").kernel.numpy(),
                                  _file_weights(weights_file)["block3_conv2"][0])


def test_trainable_from_and_its_errors(tmp_path):
    cfg = run_config.TrainConfig(data_dir="", model_dir=str(tmp_path), config="A-BN",
                                 width=0.125, fc_units=16, crop_size=32, scale=(36, 36),
                                 trainable_from="block4_conv1")
    model = run_model.build_initialized_model(cfg, 3)[0]
    assert not model.get_layer("block3_conv2").trainable
    assert not model.get_layer("block3_conv2_bn").trainable  # frozen BN: inference mode
    assert model.get_layer("block4_conv1").trainable and model.get_layer("fc1").trainable
    with pytest.raises(ValueError, match="--trainable_from=block9_conv1: vgg_a_bn has no such "
                                         "layer; its weight layers: block1_conv1, "):
        run_model.build_initialized_model(run_config.TrainConfig(**dict(vars(cfg),
                                                            trainable_from="block9_conv1")), 3)[0]
    with pytest.raises(ValueError, match=r"/nowhere/vgg16.h5 does not exist \(or give "
                                         r"--init=paper alone: the file is downloaded once"):
        run_config.TrainConfig(data_dir="", model_dir=str(tmp_path),
                               init="keras_applications=/nowhere/vgg16.h5").validate()
