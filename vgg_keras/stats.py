"""Counts that Tables 1–2 of the paper state and ``vgg-describe`` prints, read off built models."""

import keras
import numpy as np


def count_weight_layers(model):
    """Returns the number of weight layers (convolutions and FC layers), as Table 1 counts."""
    return sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
               for layer in model.layers)


def count_parameters(model, trainable_only=False):
    """Returns the number of parameters (Table 2); BN moving statistics count unless
    ``trainable_only``."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights if not _is_seed_state(w)))


def _is_seed_state(variable):
    # The colour shift's random-stream state is a variable but not a parameter.
    return "seed_generator" in variable.path


def count_flops(model):
    """Returns the forward-pass FLOPs of one image (a multiply-add counts as 2 FLOPs).

    Counts convolutions and FC layers, the >99.9% of the cost; needs a fixed input size.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w, channels, _ = layer.kernel.shape
            total += 2 * kernel_h * kernel_w * channels * filters * height * width
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return int(total)
