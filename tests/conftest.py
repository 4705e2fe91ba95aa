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
