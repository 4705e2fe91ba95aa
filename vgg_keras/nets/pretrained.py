"""Nets with published ImageNet weights, in one call: the net built as its weights expect (the
input normalisation they were trained with, PyTorch's batch-norm ε) and the weights loaded.

Kinds of weights (``WEIGHT_KINDS``): ``keras_applications`` (VGG16/VGG19 ``.h5``: D, E; the
paper's mean-RGB subtraction, channels converted from BGR), ``torchvision`` and ``timm`` (A, B,
D, E and their BN variants; torchvision's mean/std). Nothing is downloaded: the file is given.
"""

from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import keras_weights as keras_weights
from vgg_keras.nets import torch_weights

WEIGHT_KINDS = configs.WEIGHT_KINDS
_TORCH = {"torchvision": torch_weights.load_torchvision_weights,
          "timm": torch_weights.load_timm_weights}


def build_arguments(kind):
    """``build_vgg``'s arguments that weights of ``kind`` need: their input normalisation, and
    for PyTorch's, its batch-norm ε."""
    if kind in _TORCH:
        return {"normalization": "torchvision", "bn_epsilon": torch_weights.TORCH_BN_EPSILON}
    return {}


def load_weights(model, kind, path, *, skip_mismatch=False):
    """Loads the weights of ``kind`` from ``path`` (a local file) into ``model``; returns
    ``{"loaded", "skipped"}`` layer names and ``{"problems": {skipped layer: why}}``
    (``skip_mismatch``: leave layers that do not fit as they are, instead of failing).

    Raises:
        ValueError: for an unknown kind, or weights that do not fit (one line naming why).
    """
    if kind in _TORCH:
        return _TORCH[kind](model, path, skip_mismatch=skip_mismatch)
    if kind == "keras_applications":
        return keras_weights.load_keras_applications_weights(model, path,
                                                             skip_mismatch=skip_mismatch)
    raise ValueError(f"weights must be one of {WEIGHT_KINDS}, got {kind!r}")


def build_pretrained(config, kind, path, *, num_classes=1000,
                     input_shape=builder.DEFAULT_INPUT_SHAPE, head="fc", **build_args):
    """``config`` built as weights of ``kind`` expect, with the weights from ``path`` loaded
    (every layer must fit). ``build_args``: any other argument of ``build_vgg``."""
    model = builder.build_vgg(config, num_classes, input_shape=input_shape, head=head,
                              **build_arguments(kind), **build_args)
    load_weights(model, kind, path)
    return model
