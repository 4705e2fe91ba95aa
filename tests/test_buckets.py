"""Data, runs and exports on any filesystem TensorFlow reads, as on a bucket. No network here:
``ram://`` (TensorFlow's in-memory filesystem, in one process) stands in for ``gs://``, through
the same ``tf.io.gfile`` calls. The programs take ``file://`` URLs for every path in their own
end-to-end tests: vgg-convert, vgg-train, vgg-export and vgg-predict (test_fine_tune), vgg-train
on 2 CPU replicas and killed with ``kill -9``, then resumed (test_training), vgg-evaluate
(test_evaluation)."""

import os
import pathlib
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines import convert
from pipelines import dataset_info
from pipelines import sources
from pipelines import synthetic
from pipelines.foundation import storage
from tests.conftest import TINY_RUN
from tests.conftest import evaluate
from vgg_keras.artifacts import layout
from vgg_keras.serving import export
from vgg_keras.serving import graph
from vgg_keras.serving.config import ServingSettings
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
CLASSES = ("cat", "dog")


def _upload(local, url):
    """Every file under the local folder ``local``, copied under ``url``."""
    for here, _, names in os.walk(local):
        for name in names:
            target = storage.join(url, storage.relative(os.path.join(here, name), local))
            storage.makedirs(storage.dirname(target))
            storage.copy(os.path.join(here, name), target)


def _names(folder):
    """The files and folders under ``folder``, relative to it, as a set (checkpoints by kind,
    not by step: ``ckpt-N``)."""
    found = set()
    for here, subfolders, names in storage.walk(folder):
        found |= {re.sub(r"ckpt-\d+", "ckpt-N", storage.relative(storage.join(here, n), folder))
                  for n in [*subfolders, *names]}
    return found


def test_the_whole_job_on_ram(reference_run, tmp_path):
    """Convert (an image folder, and the official tar layout), train, evaluate, export and
    predict, every input and output at a URL, in one process."""
    root = f"ram://job_{os.getpid()}"
    synthetic.write_dataset(tmp_path / "images", layout="image_folder", synsets=CLASSES,
                            train_per_class=10, val_per_class=2, problems=False)
    _upload(tmp_path / "images", f"{root}/images")
    manifest = convert.convert(sources.find_image_folder(f"{root}/images", 0.25),
                               f"{root}/data", num_shards={"train": 2, "validation": 1},
                               num_workers=1, progress=False)
    assert manifest["splits"]["train"]["num_examples"] + manifest["splits"]["validation"][
        "num_examples"] == 24
    assert storage.listdir(f"{root}/data") == [
        ".convert_state", "dataset_info.json", "train-00000-of-00002", "train-00001-of-00002",
        "validation-00000-of-00001"]

    # The official layout: a train tar of per-synset tars and a flat validation tar, read in
    # place through seekable gfile handles.
    files = synthetic.write_dataset(tmp_path / "raw", layout="archives",
                                    synsets=synthetic.DEFAULT_SYNSETS[:2], train_per_class=3,
                                    val_per_class=2, problems=False)
    _upload(tmp_path / "raw", f"{root}/raw")
    tars = convert.convert(sources.find_imagenet(f"{root}/raw"), f"{root}/imagenet",
                           num_shards={"train": 1, "validation": 1}, num_workers=1,
                           progress=False)
    assert sum(split["num_examples"] for split in tars["splits"].values()) == len(files) == 10
    assert dataset_info.read_info(f"{root}/imagenet").num_examples == {"train": 6,
                                                                       "validation": 4}

    model_dir = f"{root}/model"
    summary = loop.train(run_config.TrainConfig(
        data_dir=f"{root}/data", model_dir=model_dir, **dict(
            TINY_RUN, num_classes=2, label_offset=1, batch_size=6, train_epochs=2,
            distribution_strategy="one_device")))
    assert summary["steps"] == 2 * (manifest["splits"]["train"]["num_examples"] // 6)
    # Every artefact a local run writes (the reference run's, on a local disk) is there.
    local = {name for name in _names(str(reference_run)) if not name.startswith("logs/")}
    assert {name for name in _names(model_dir) if not name.startswith("logs/")} == local
    assert storage.glob(f"{model_dir}/logs/events.out.tfevents.*")

    results = evaluate([model_dir], f"{root}/data", protocols=["single", "dense"],
                                  scales=[40], output_dir=f"{root}/eval")
    assert storage.read_json(f"{root}/eval/results.json")["dense"] == results["dense"]
    assert sorted(storage.listdir(f"{root}/eval")) == [
        "confusion_matrix.csv", "confusion_matrix.png", "per_class_accuracy.csv",
        "predictions.csv", "results.csv", "results.json"]

    first = export.export_saved_model(model_dir, f"{root}/exports")
    second = export.export_saved_model(model_dir, f"{root}/exports",
                                       ServingSettings(eval_mode="dense"))
    assert (first, second) == (f"{root}/exports/vgg/1", f"{root}/exports/vgg/2")
    assert layout.find_export(f"{root}/exports/vgg") == second
    assert layout.read_metadata(f"{root}/exports/vgg")["eval_mode"] == "dense"
    assert storage.exists(f"{second}/{layout.WARMUP_FILE}")
    signature = tf.saved_model.load(second).signatures["serving_default"]
    image = f"{root}/images/cat/" + storage.listdir(f"{root}/images/cat")[0]
    ((path, predictions, error),) = graph.predict_files(signature, [image])
    assert path == image and error is None and predictions[0]["synset"] in CLASSES
    direct = signature(images=tf.constant([storage.read_bytes(image)]))
    np.testing.assert_allclose(predictions[0]["score"], direct["scores"][0, 0].numpy())
    from_export = evaluate([f"{root}/exports/vgg/1"], f"{root}/data",
                                      protocols=["single"], scales=[40])
    assert from_export["single"] == results["single"]
    storage.rmtree(root)
