"""Counts that Tables 1–2 of the paper state and ``vgg-describe`` prints, read off built models."""

import keras
import numpy as np


def is_weight_layer(layer):
    """Whether ``layer`` is a weight layer as Table 1 counts them: a convolution or an FC layer
    (the layers weight decay applies to, and the ones weights move between nets by)."""
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))


def is_random_state(variable):
    """Whether ``variable`` is the state of a random stream (a Keras seed generator: dropout,
    the colour shift): a variable, not a parameter, yet part of a run's state."""
    return "seed_generator" in variable.path


def count_weight_layers(model):
    """Returns the number of weight layers (convolutions and FC layers), as Table 1 counts."""
    return sum(is_weight_layer(layer) for layer in model.layers)


def count_parameters(model, trainable_only=False):
    """Returns the number of parameters (Table 2); BN moving statistics count unless
    ``trainable_only``."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights if not is_random_state(w)))


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
