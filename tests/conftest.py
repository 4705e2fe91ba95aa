"""Shared test set-up: quiet TensorFlow logs and one helper that builds tiny VGG nets."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import vgg_keras  # noqa: E402

# A tiny net: 1/16 of the paper's widths (block1 has 4 filters, block5 32), FC-16, 10 classes.
TINY = dict(num_classes=10, input_shape=(32, 32, 3), width=1 / 16, fc_units=16)


def build_tiny(config, **overrides):
    """Builds ``config`` with the tiny widths; ``overrides`` replace any argument."""
    arguments = dict(TINY, seed=1)
    arguments.update(overrides)
    return vgg_keras.build_vgg(config, **arguments)


@pytest.fixture
def tiny():
    return build_tiny


def write_shards(root, *, train_per_class, val_per_class, size_range, train_shards=4,
                 validation_shards=2):
    """Generates a clean 4-class ImageNet-layout dataset under ``root/raw`` and converts it to
    ``root/data``; returns that folder and the manifest. (ImageNet labels 1..4.)"""
    from pipelines import convert
    from pipelines import sources
    from pipelines import synthetic

    synthetic.write_dataset(root / "raw", layout="extracted",
                                  synsets=synthetic.DEFAULT_SYNSETS[:4],
                                  train_per_class=train_per_class, val_per_class=val_per_class,
                                  problems=False, size_range=size_range)
    manifest = convert.convert(sources.find_imagenet(root / "raw"), root / "data",
                               num_shards={"train": train_shards, "validation": validation_shards},
                               num_workers=1)
    return root / "data", manifest
