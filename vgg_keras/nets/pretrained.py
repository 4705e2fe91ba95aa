"""Nets with published ImageNet weights, in one call: the net built as its weights expect (the
input normalisation they were trained with, PyTorch's batch-norm ε) and the weights loaded.

Kinds of weights (``WEIGHT_KINDS``): ``paper`` or ``keras_applications`` (the authors' VGG-16 and
VGG-19 as keras.applications publishes them, ``.h5``: D, E; the paper's mean-RGB subtraction,
channels converted from BGR), ``torchvision`` and ``timm`` (A, B, D, E and their BN variants;
torchvision's mean/std). Named alone, a kind's file is fetched into its library's cache
(``published``); ``path`` gives a file instead.
"""

from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import keras_weights as keras_weights
from vgg_keras.nets import published
from vgg_keras.nets import torch_weights

WEIGHT_KINDS = configs.WEIGHT_KINDS
_LOADERS = {"torchvision": torch_weights.load_torchvision_weights,
            "timm": torch_weights.load_timm_weights,
            "keras_applications": keras_weights.load_keras_applications_weights}


def build_arguments(kind):
    """``build_vgg``'s arguments that weights of ``kind`` need: their input normalisation, and
    for PyTorch's, its batch-norm ε."""
    if kind in published.HUB_KINDS:
        return {"normalization": "torchvision", "bn_epsilon": torch_weights.TORCH_BN_EPSILON}
    return {}


def locate(config, kind, path=None, **fetch_args):
    """The weights of ``kind`` for ``config`` as a ``published.Weights``: the file at ``path``
    (a local file), or, without one, the published file from the cache or downloaded into it
    (``fetch_args``: ``published.fetch``'s).

    Raises:
        ValueError: for an unknown kind (one line); ``published.WeightsUnavailable`` and
            ``published.DownloadInterrupted`` as ``published.fetch``.
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {kind!r}")
    if path is None:
        return published.fetch(config, kind, **fetch_args)
    return published.Weights(str(path), kind, published.LAYOUTS[kind], str(path))


def load_weights(model, kind, path, *, skip_mismatch=False):
    """Loads the weights of ``kind`` from ``path`` (a local file, or the ``published.Weights``
    of ``locate``, whose file layout it reads) into ``model``; returns ``{"loaded",
    "skipped"}`` layer names and ``{"problems": {skipped layer: why}}`` (``skip_mismatch``:
    leave layers that do not fit as they are, instead of failing).

    Raises:
        ValueError: for an unknown kind, or weights that do not fit (one line naming why).
    """
    if isinstance(path, published.Weights):
        kind, path = path.layout, path.path
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {kind!r}")
    return _LOADERS[published.LAYOUTS[kind]](model, path, skip_mismatch=skip_mismatch)


def build_pretrained(config, kind, path=None, *, num_classes=1000,
                     input_shape=builder.DEFAULT_INPUT_SHAPE, head="fc", **build_args):
    """``config`` built as weights of ``kind`` expect, with the weights loaded (every layer must
    fit): from ``path`` (a local file, or ``locate``'s ``published.Weights``), or without it the
    published file, from the cache or downloaded (``published.fetch``). ``build_args``: any
    other argument of ``build_vgg``.

        build_pretrained("D-BN", "timm")    # timm/vgg16_bn.tv_in1k, torchvision's weights
        build_pretrained("D", "paper")      # the authors' VGG-16, as keras.applications has it
    """
    weights = path if isinstance(path, published.Weights) else locate(config, kind, path)
    model = builder.build_vgg(config, num_classes, input_shape=input_shape, head=head,
                              **build_arguments(kind), **build_args)
    load_weights(model, kind, weights)
    return model
