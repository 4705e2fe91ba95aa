"""Nets with published ImageNet weights, in one call: the net built as its weights need it
(``published.Needs``: the input normalisation they were trained with, PyTorch's batch-norm ε, the
crop they read) and the weights loaded.

Kinds of weights (``WEIGHT_KINDS``): ``paper`` or ``keras_applications`` (the authors' VGG-16 and
VGG-19 as keras.applications publishes them, ``.h5``: D, E; the paper's mean-RGB subtraction,
channels converted from BGR), ``torchvision`` and ``timm`` (A, B, D, E and their BN variants;
torchvision's mean/std). Named alone, a kind's file is fetched into its library's cache
(``downloads``); a ``published.Weights`` with a path, or ``path``, gives a file instead.
"""

import dataclasses

from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import downloads
from vgg_keras.nets import keras_weights
from vgg_keras.nets import published
from vgg_keras.nets import torch_weights

WEIGHT_KINDS = configs.WEIGHT_KINDS
_LOADERS = {"torchvision": torch_weights.load_torchvision_weights,
            "timm": torch_weights.load_timm_weights,
            "keras_applications": keras_weights.load_keras_applications_weights}


def build_options(needs, config):
    """``build_vgg``'s arguments that ``config`` takes for weights needing ``needs``
    (``published.Needs``): their input normalisation and, for a net with batch norm, PyTorch's
    ε where they were trained with it."""
    options = {"preprocessing": builder.Preprocessing(normalization=needs.normalization)}
    if needs.bn_epsilon is not None and builder.batch_norm_of(config, None):
        options["batch_norm"] = builder.BatchNorm(epsilon=needs.bn_epsilon)
    return options


def locate(weights, config, **fetch_args):
    """``weights`` (a ``published.Weights``, or its text: ``"timm"``, ``"timm=PATH"``) with its
    file found: the file given (a local file), or the published file from the cache or
    downloaded into it (``fetch_args``: ``downloads.fetch``'s).

    Raises:
        ValueError: for an unknown kind (one line); ``published.WeightsUnavailable`` and
            ``published.DownloadInterrupted`` as ``downloads.fetch``.
    """
    weights = published.parse(weights)
    if not weights.published:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got "
                         f"{weights.kind!r}")
    if weights.path is None:
        return downloads.fetch(config, weights.kind, **fetch_args)
    return dataclasses.replace(weights, path=str(weights.path), source=str(weights.path))


def load_weights(model, weights, *, skip_mismatch=False):
    """Loads ``weights`` (a located ``published.Weights``: its file, in the layout its kind or
    source has) into ``model``; returns ``{"loaded", "skipped"}`` layer names and
    ``{"problems": {skipped layer: why}}`` (``skip_mismatch``: leave layers that do not fit as
    they are, instead of failing).

    Raises:
        ValueError: for an unknown kind, or weights that do not fit (one line naming why).
    """
    if not weights.published or weights.path is None:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)} with their file, got "
                         f"{weights}")
    return _LOADERS[weights.layout](model, weights.path, skip_mismatch=skip_mismatch)


def build_pretrained(config, kind, path=None, *, num_classes=1000, input_shape=None, head="fc",
                     **build_args):
    """``config`` built as weights of ``kind`` need it, with the weights loaded (every layer must
    fit): from ``path`` (a local file, or a located ``published.Weights``), or without it the
    published file, from the cache or downloaded (``downloads.fetch``). ``input_shape``: default
    the crops the weights were trained on; ``build_args``: any other argument of ``build_vgg``.

        build_pretrained("D-BN", "timm")    # timm/vgg16_bn.tv_in1k, torchvision's weights
        build_pretrained("D", "paper")      # the authors' VGG-16, as keras.applications has it
    """
    if isinstance(path, published.Weights):
        weights = path
    else:
        weights = locate(published.Weights(kind, None if path is None else str(path)), config)
    model = build_for(config, weights.needs, num_classes=num_classes, input_shape=input_shape,
                      head=head, **build_args)
    load_weights(model, weights)
    return model


def build_for(config, needs, *, num_classes=1000, input_shape=None, **build_args):
    """``config`` built as weights needing ``needs`` (``published.Needs``) take it: their
    normalisation and batch norm's ε, at their crop unless ``input_shape`` says otherwise;
    ``build_args``: any other argument of ``build_vgg``."""
    crop_size = needs.crop_size
    return builder.build_vgg(config, num_classes,
                             input_shape=input_shape or (crop_size, crop_size, 3),
                             **{**build_options(needs, config), **build_args})
