"""One builder for every VGG net (§2.1–2.3, Table 1): a backbone (the input layers and the blocks
of convolutions) and a classifier on it (``heads``), or both in one call, ``build_vgg``. Each
builder takes the few ideas a net is made of, as keras-hub's backbone does; what belongs together
comes as one object: ``Preprocessing`` (the input), ``BatchNorm``, ``WeightInit``
(``initializers``) and ``Head`` (``heads``).

The model takes uint8 RGB images, as the input pipeline yields them; its first layers cast them,
subtract the training set's mean RGB value (§2.1) and, only while training, apply the PCA colour
shift (§3.1). So the same preprocessing runs on the accelerator and inside every export.

Layer names follow keras.applications (``block{b}_conv{i}``, ``block{b}_pool``, ``fc1``,
``fc2``, ``predictions``) so that weights move by name between configurations, checkpoints and
keras.applications files.
"""

import dataclasses
import warnings

import keras

from vgg_keras.nets import checks
from vgg_keras.nets import configs
from vgg_keras.nets import heads
from vgg_keras.nets import initializers
from vgg_keras.nets import layers as vgg_layers
from vgg_keras.nets.initializers import WeightInit

# §2.1: "subtracting the mean RGB value, computed on the training set, from each pixel".
RGB_MEAN = (123.68, 116.78, 103.94)
# The input normalisation PyTorch's ImageNet weights (torchvision, timm) were trained with:
# RGB / 255, minus this mean, divided by this standard deviation.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATIONS = checks.NORMALIZATIONS
DEFAULT_INPUT_SHAPE = (configs.CROP_SIZE, configs.CROP_SIZE, 3)  # §2.1: the training crops


@dataclasses.dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation after every convolution (torchvision's ``*_bn`` nets).

    Attributes:
        momentum: the share of the moving statistics kept at each training step (Keras' 0.99;
            torchvision's recipes correspond to 0.9: its momentum 0.1 is the share of the new
            batch). After n steps the initial statistics weigh momentum^n.
        epsilon: added to the variance (Keras' 1e-3; PyTorch's weights were trained with 1e-5).
    """

    momentum: float = 0.99
    epsilon: float = 1e-3


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The model's input and the layers that prepare it, part of the model so that every export
    carries them.

    Attributes:
        dtype: of the input images: uint8 RGB, or ``"float32"`` for floats in [0, 255].
        normalization: ``"paper"`` (the mean RGB subtracted, §2.1) or ``"torchvision"`` (RGB /
            255, minus ``TORCHVISION_MEAN``, divided by ``TORCHVISION_STD``: what PyTorch's
            ImageNet weights expect).
        color_shift_stddev: σ of the training-time PCA colour shift (§3.1); 0 disables it.
    """

    dtype: str = "uint8"
    normalization: str = "paper"
    color_shift_stddev: float = vgg_layers.PCA_COLOR_STDDEV


# build_vgg's keyword arguments from before its objects, still taken (with a DeprecationWarning):
# each is a field of the object named.
LEGACY_ARGUMENTS = {
    "dropout": ("head", "dropout"), "fc_units": ("head", "fc_units"),
    "classifier_activation": ("head", "activation"),
    "fc1_kernel_size": ("head", "fc1_kernel_size"), "pooling": ("head", "pooling"),
    "bn_momentum": ("batch_norm", "momentum"), "bn_epsilon": ("batch_norm", "epsilon"),
    "init": ("weight_init", "kind"), "init_stddev": ("weight_init", "stddev"),
    "weight_decay": ("weight_init", "weight_decay"), "seed": ("weight_init", "seed"),
    "input_dtype": ("preprocessing", "dtype"), "normalization": ("preprocessing", "normalization"),
    "color_shift_stddev": ("preprocessing", "color_shift_stddev"),
}


def build_vgg(config, num_classes=1000, *, input_shape=None, head="fc", width=1.0,
              batch_norm=None, weight_init=None, preprocessing=None, name=None, **legacy):
    """Builds a VGG net of Table 1 as a ``keras.Model``, in one call: ``build_backbone`` and
    ``build_classifier`` on it, with every argument checked before anything is built.

        build_vgg("D")                                       # VGG-16, 224×224 uint8 in
        build_vgg("D-BN", 10, weight_init=WeightInit(seed=0))
        build_vgg("E", head=Head(None, pooling="avg"))       # a [512] feature per image
        build_vgg("C", 10, input_shape=(32, 32, 3), width=1 / 16, head=Head(fc_units=16))

    Args:
        config: a key of ``CONFIGS`` ("A", "A-LRN", "B", "C", "D", "E"), a batch-norm variant
            ("D-BN"), an alias ("VGG16"), or a literal sequence of layer tokens.
        num_classes: units of the last FC layer (1000 for ImageNet).
        input_shape: ``(height, width, 3)``; spatial dims may be ``None`` with the conv head or
            none. Default: the crops of §2.1, any size for a feature extractor.
        head: a ``Head``, or its kind: ``"fc"`` (as trained), ``"conv"`` (§3.2, any input
            size) or ``None`` (the convolutional part only).
        width: multiplier of every convolution's filter count (narrow nets for tests).
        batch_norm: a ``BatchNorm`` (or True: Keras' defaults) after every convolution; also
            selected by a config name ending in "-BN".
        weight_init: a ``WeightInit`` (its kind, σ, weight decay and seed), or its kind
            (``"glorot"``, the default, or ``"gaussian"``, §3.1).
        preprocessing: a ``Preprocessing``: the input's dtype and normalisation, the colour
            shift's σ.
        name: the model's name; defaults to ``vgg_<config>``.
        **legacy: the keyword arguments of earlier versions (``LEGACY_ARGUMENTS``: dropout,
            fc_units, init, seed, normalization, bn_epsilon, ...), each a field of the object
            it names now; taken with a ``DeprecationWarning``.

    Returns:
        A ``keras.Model`` from images to class probabilities (or logits, or features).

    Raises:
        ValueError: for an unknown configuration or an inconsistent argument.
    """
    head = heads.head_of(head)
    batch_norm = batch_norm_of(config, batch_norm)
    weight_init = _weight_init_of(weight_init)
    preprocessing = preprocessing or Preprocessing()
    if legacy:
        head, batch_norm, weight_init, preprocessing = _from_legacy(
            legacy, head=head, batch_norm=batch_norm, weight_init=weight_init,
            preprocessing=preprocessing)
    if input_shape is None:
        input_shape = (None, None, 3) if head.kind is None else DEFAULT_INPUT_SHAPE
    checks.check_arguments(config, num_classes, input_shape=input_shape, width=width, head=head,
                           batch_norm=batch_norm, weight_init=weight_init,
                           preprocessing=preprocessing)
    backbone = build_backbone(config, input_shape=input_shape, width=width,
                              batch_norm=batch_norm or None, preprocessing=preprocessing,
                              weight_init=weight_init)
    return build_classifier(backbone, num_classes, head=head, weight_init=weight_init,
                            name=name or _model_name(config, batch_norm))


def build_backbone(config, *, input_shape=None, width=1.0, batch_norm=None, preprocessing=None,
                   weight_init=None, name=None):
    """The convolutional part of a net of Table 1, as keras-hub's VGG backbone: the input's
    normalisation (part of the model), the colour shift (training only), and the blocks of
    convolutions each closed by its max-pooling. Output: the last pooling layer's map.

    Args:
        config: as ``build_vgg``'s.
        input_shape: ``(height, width, 3)``, spatial dims may be None (default: any size).
        width: multiplier of every convolution's filter count.
        batch_norm: a ``BatchNorm`` (or True, for Keras' defaults) to normalise after every
            convolution; None or False: none unless the config's name ends in "-BN".
        preprocessing: a ``Preprocessing`` (default: uint8 RGB, the paper's mean).
        weight_init: a ``WeightInit`` or its kind (default: Glorot's, no weight decay,
            unseeded).
        name: default ``vgg_<config>_backbone``.

    Raises:
        ValueError: for an unknown configuration or an inconsistent argument.
    """
    input_shape = (None, None, 3) if input_shape is None else tuple(input_shape)
    weight_init = _weight_init_of(weight_init)
    batch_norm = batch_norm_of(config, batch_norm)
    preprocessing = preprocessing or Preprocessing()
    checks.check_arguments(config, input_shape=input_shape, width=width, batch_norm=batch_norm,
                           preprocessing=preprocessing, weight_init=weight_init)
    spec = [configs.parse_layer(t) for t in configs.resolve_config(config)[1]]
    seeds = initializers.SeedSequence(weight_init.seed)
    inputs = keras.Input(shape=input_shape, dtype=preprocessing.dtype, name="images")
    x = build_preprocessing(inputs, preprocessing, seeds.next())
    x = _features(x, spec, width=width, batch_norm=batch_norm,
                  layer_args=initializers.layer_arguments(weight_init, seeds))
    return keras.Model(inputs, x, name=name or _model_name(config, batch_norm) + "_backbone")


def build_classifier(backbone, num_classes=1000, *, head="fc", weight_init=None, name=None):
    """A backbone (``build_backbone``) with its classifier: the FC layers of Table 1, the same
    as convolutions (§3.2), or none (a feature extractor, optionally pooled), as one flat model
    whose layers keep their names.

    Args:
        backbone: the convolutional part, as ``build_backbone`` returns it.
        num_classes, head: as ``build_vgg``'s.
        weight_init: a ``WeightInit`` or its kind; its seeds continue the backbone's, as
            ``build_vgg`` draws them (default: Glorot's, no weight decay, unseeded).
        name: default: the backbone's name without ``_backbone``.

    Raises:
        ValueError: for an inconsistent argument (a head that does not fit the backbone's
            input size among them).
    """
    head = heads.head_of(head)
    weight_init = _weight_init_of(weight_init)
    pools = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in backbone.layers)
    checks.check_arguments(None, num_classes, input_shape=tuple(backbone.input.shape[1:]),
                           head=head, weight_init=weight_init, pools=pools)
    # The seeds the backbone took: its colour shift's, then one per convolution.
    taken = 1 + sum(isinstance(layer, keras.layers.Conv2D) for layer in backbone.layers)
    layer_args = initializers.layer_arguments(
        weight_init, initializers.SeedSequence(weight_init.seed, start=taken))
    outputs = heads.build_head(backbone.output, num_classes, head, layer_args)
    return keras.Model(backbone.input, outputs,
                       name=name or backbone.name.removesuffix("_backbone"))


def build_preprocessing(images, preprocessing=None, seed=None):
    """Normalises images (``preprocessing.normalization``: subtracts ``RGB_MEAN``, or
    torchvision's mean/std on RGB / 255; the cast to float is Keras'), then (training only)
    shifts their colours."""
    preprocessing = preprocessing or Preprocessing()
    if preprocessing.normalization == "torchvision":  # (x / 255 − m) / s = (x − 255 m) / (255 s)
        mean = [255.0 * m for m in TORCHVISION_MEAN]
        variance = [(255.0 * s) ** 2 for s in TORCHVISION_STD]
        x = keras.layers.Normalization(mean=mean, variance=variance, axis=-1,
                                       name="mean_std")(images)
    else:
        x = keras.layers.Normalization(mean=RGB_MEAN, variance=(1.0, 1.0, 1.0), axis=-1,
                                       name="mean_rgb")(images)
    return vgg_layers.PCAColorShift(stddev=preprocessing.color_shift_stddev, seed=seed,
                                    name="color_shift")(x)


def batch_norm_of(config, batch_norm):
    """The ``BatchNorm`` of a net: ``batch_norm`` as given (True: Keras' defaults), Keras'
    defaults for a config named "-BN", or None (no batch normalisation)."""
    if isinstance(batch_norm, BatchNorm):
        return batch_norm
    if batch_norm or configs.resolve_config(config)[2]:
        return BatchNorm()
    return None


def _weight_init_of(weight_init):
    if weight_init is None or isinstance(weight_init, WeightInit):
        return weight_init or WeightInit()
    return WeightInit(weight_init)


def _from_legacy(legacy, **objects):
    """The builder's objects with the fields that ``legacy`` (``LEGACY_ARGUMENTS``) sets."""
    unknown = sorted(set(legacy) - set(LEGACY_ARGUMENTS))
    if unknown:
        raise TypeError(f"build_vgg() got an unexpected keyword argument {unknown[0]!r}")
    warnings.warn(f"build_vgg({', '.join(f'{k}=' for k in legacy)}...): these arguments are "
                  "fields of head=Head(...), batch_norm=BatchNorm(...), weight_init=WeightInit"
                  "(...) and preprocessing=Preprocessing(...) now", DeprecationWarning,
                  stacklevel=3)
    for key, value in legacy.items():
        owner, field = LEGACY_ARGUMENTS[key]
        if owner == "batch_norm" and objects[owner] is None:
            continue  # as before: batch norm's arguments count only where the net has it
        objects[owner] = dataclasses.replace(objects[owner], **{field: value})
    return objects["head"], objects["batch_norm"], objects["weight_init"], objects["preprocessing"]


def _model_name(config, batch_norm):
    return "vgg_" + configs.variant_name(config, bool(batch_norm)).lower().replace("-", "_")


def _scaled(filters, width):
    return max(1, int(round(filters * width)))


def _features(x, spec, *, width, batch_norm, layer_args):
    """The convolutional part: blocks of convs closed by max-pooling, named by block;
    ``batch_norm``: a ``BatchNorm`` after every conv, or None."""
    block, conv_index = 1, 0
    for layer in spec:
        if isinstance(layer, configs.Conv):
            conv_index += 1
            name = f"block{block}_conv{conv_index}"
            x = keras.layers.Conv2D(
                _scaled(layer.filters, width),
                layer.kernel_size,
                padding="same",  # pad 1 for 3×3 (§2.1), none needed for 1×1
                activation=None if batch_norm else "relu",
                name=name,
                **layer_args(),
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(name=name + "_bn", momentum=batch_norm.momentum,
                                                    epsilon=batch_norm.epsilon)(x)
                x = keras.layers.ReLU(name=name + "_relu")(x)
        elif isinstance(layer, configs.LRN):
            x = vgg_layers.LocalResponseNormalization(name=f"block{block}_lrn")(x)
        else:
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
            block, conv_index = block + 1, 0
    return x


def normalization_of(model):
    """The input normalisation a model built here carries: ``"paper"`` or ``"torchvision"``."""
    names = {layer.name for layer in model.layers}
    return "torchvision" if "mean_std" in names else "paper"


def crop_size_of(model):
    """The side of the square crops ``model`` reads: its input's, or, for a net that takes any
    size (the conv head, a backbone), the crop it was made for, §2.1's (the one fallback)."""
    crop_size = model.inputs[0].shape[1]
    return configs.CROP_SIZE if crop_size is None else int(crop_size)
