"""One builder for every VGG net (§2.1–2.3, Table 1) and the fully convolutional test-time head
of §3.2 ("dense evaluation").

The model takes uint8 RGB images, as the input pipeline yields them; its first layers cast them,
subtract the training set's mean RGB value (§2.1) and, only while training, apply the PCA colour
shift (§3.1). So the same preprocessing runs on the accelerator and inside every export.

Layer names follow keras.applications (``block{b}_conv{i}``, ``block{b}_pool``, ``fc1``,
``fc2``, ``predictions``) so that weights move by name between configurations, checkpoints and
keras.applications files.
"""

import dataclasses

import keras

from vgg_keras.nets import configs
from vgg_keras.nets import initializers
from vgg_keras.nets import layers as vgg_layers
from vgg_keras.nets.initializers import WeightInit

# §2.1: "subtracting the mean RGB value, computed on the training set, from each pixel".
RGB_MEAN = (123.68, 116.78, 103.94)
# The input normalisation PyTorch's ImageNet weights (torchvision, timm) were trained with:
# RGB / 255, minus this mean, divided by this standard deviation.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATIONS = ("paper", "torchvision")
DEFAULT_INPUT_SHAPE = (configs.CROP_SIZE, configs.CROP_SIZE, 3)  # §2.1: the training crops
FC1_KERNEL_SIZE = 7  # §3.2: "the first FC layer is converted to a 7×7 conv. layer"
# The classifier heads: "fc", the fully connected layers (fixed input size, as trained);
# "conv", the same layers as convolutions (§3.2, any input size); None, no head (a backbone).
HEADS = ("fc", "conv", None)
HEAD_ALIASES = {"dense": "fc"}  # the FC head's earlier name, still taken
POOLINGS = (None, "avg", "max")
_FC_ARGS = ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer")


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


BN_MOMENTUM, BN_EPSILON = BatchNorm.momentum, BatchNorm.epsilon  # Keras' defaults


def build_vgg(
    config,
    num_classes=1000,
    *,
    input_shape=None,
    head="fc",
    dropout=0.5,
    batch_norm=False,
    bn_momentum=BN_MOMENTUM,
    bn_epsilon=BN_EPSILON,
    width=1.0,
    fc_units=4096,
    init="glorot",
    init_stddev=configs.PAPER_INIT_STDDEV,
    weight_decay=0.0,
    color_shift_stddev=vgg_layers.PCA_COLOR_STDDEV,
    classifier_activation="softmax",
    fc1_kernel_size=FC1_KERNEL_SIZE,
    input_dtype="uint8",
    normalization="paper",
    pooling=None,
    seed=None,
    name=None,
):
    """Builds a VGG net of Table 1 as a ``keras.Model``, in one call: ``build_backbone`` and
    ``build_classifier`` on it, with every argument checked before anything is built.

    Args:
        config: a key of ``CONFIGS`` ("A", "A-LRN", "B", "C", "D", "E"), a batch-norm variant
            ("D-BN"), an alias ("VGG16"), or a literal sequence of layer tokens.
        num_classes: units of the last FC layer (1000 for ImageNet).
        input_shape: ``(height, width, 3)``; spatial dims may be ``None`` with ``head="conv"``
            or ``None``. Default: the crops of §2.1, any size for the feature extractor.
        head: ``"fc"`` (FC layers, fixed input size, as trained; ``"dense"`` is taken too),
            ``"conv"`` (FC layers as convolutions, any input size, class score map averaged
            spatially, §3.2), or ``None``: the convolutional part only, a feature extractor
            (keras.applications' ``include_top=False``), its output the last pooling layer's
            ``[h, w, 512]``.
        dropout: rate of the dropout after fc1 and fc2 (§3.1: 0.5).
        batch_norm: add batch normalisation after every convolution (torchvision's ``*_bn``);
            also selected by a config name ending in "-BN".
        bn_momentum, bn_epsilon: the batch normalisation's (``BatchNorm``).
        width: multiplier of every convolution's filter count (narrow nets for tests).
        fc_units: units of fc1 and fc2 (§2.1: 4096).
        init: ``"glorot"`` or ``"gaussian"`` (N(0, init_stddev²), §3.1); biases start at zero.
        init_stddev: σ of the ``"gaussian"`` init (see ``configs.PAPER_INIT_STDDEV``).
        weight_decay: the paper's weight decay λ (§3.1: 5e-4) in Caffe's convention (the
            gradient gets ``+λ·w``), applied to kernels only; 0 adds no regulariser.
        color_shift_stddev: σ of the training-time PCA colour shift; 0 disables it.
        classifier_activation: ``"softmax"`` for probabilities, ``None`` for logits.
        fc1_kernel_size: with ``head="conv"``, the kernel of fc1 = the spatial size of the last
            pooling layer at the training resolution (7 for the crops of §2.1).
        input_dtype: dtype of the input images: uint8 RGB by default, or ``"float32"`` for
            float images with values in [0, 255].
        normalization: the input normalisation, part of the model: ``"paper"`` (the mean RGB
            subtracted, §2.1) or ``"torchvision"`` (RGB / 255, minus ``TORCHVISION_MEAN``,
            divided by ``TORCHVISION_STD``: what PyTorch's ImageNet weights expect).
        pooling: with ``head=None``: ``None`` (the feature map), ``"avg"`` or ``"max"`` (global
            pooling to ``[512]``), as keras.applications' ``pooling``.
        seed: makes the initial weights and the colour shift reproducible.
        name: the model's name; defaults to ``vgg_<config>``.

    Returns:
        A ``keras.Model`` from images to class probabilities (or logits).

    Raises:
        ValueError: for an unknown configuration or an inconsistent argument.
    """
    head = HEAD_ALIASES.get(head, head)
    if input_shape is None:
        input_shape = (None, None, 3) if head is None else DEFAULT_INPUT_SHAPE
    named_bn = configs.resolve_config(config)[2]
    batch_norm = BatchNorm(bn_momentum, bn_epsilon) if batch_norm or named_bn else None
    weight_init = WeightInit(init, init_stddev, weight_decay, seed)
    backbone_args = dict(input_shape=input_shape, width=width, batch_norm=batch_norm,
                         normalization=normalization, input_dtype=input_dtype,
                         color_shift_stddev=color_shift_stddev, weight_init=weight_init)
    head_args = dict(head=head, fc_units=fc_units, dropout=dropout,
                     classifier_activation=classifier_activation,
                     fc1_kernel_size=fc1_kernel_size, pooling=pooling)
    check_arguments(config, num_classes, **backbone_args, **head_args)  # before building
    backbone = build_backbone(config, **backbone_args)
    return build_classifier(backbone, num_classes, **head_args, weight_init=weight_init,
                            name=name or _model_name(config, batch_norm))


def build_backbone(config, *, input_shape=None, width=1.0, batch_norm=None,
                   normalization="paper", input_dtype="uint8",
                   color_shift_stddev=vgg_layers.PCA_COLOR_STDDEV, weight_init=None, name=None):
    """The convolutional part of a net of Table 1, as keras-hub's VGG backbone: the input's
    normalisation (part of the model), the colour shift (training only), and the blocks of
    convolutions each closed by its max-pooling. Output: the last pooling layer's map.

    Args:
        config: as ``build_vgg``'s.
        input_shape: ``(height, width, 3)``, spatial dims may be None (default: any size).
        width: multiplier of every convolution's filter count.
        batch_norm: a ``BatchNorm`` (or True, for Keras' defaults) to normalise after every
            convolution; None or False: none unless the config's name ends in "-BN".
        normalization, input_dtype, color_shift_stddev: as ``build_vgg``'s.
        weight_init: a ``WeightInit`` (default: Glorot's, no weight decay, unseeded).
        name: default ``vgg_<config>_backbone``.

    Raises:
        ValueError: for an unknown configuration or an inconsistent argument.
    """
    input_shape = (None, None, 3) if input_shape is None else tuple(input_shape)
    weight_init = weight_init or WeightInit()
    if batch_norm is True or (not batch_norm and configs.resolve_config(config)[2]):
        batch_norm = BatchNorm()
    check_arguments(config, input_shape=input_shape, width=width, batch_norm=batch_norm or None,
                    normalization=normalization, input_dtype=input_dtype,
                    color_shift_stddev=color_shift_stddev, weight_init=weight_init)
    spec = [configs.parse_layer(t) for t in configs.resolve_config(config)[1]]
    seeds = initializers.SeedSequence(weight_init.seed)
    inputs = keras.Input(shape=input_shape, dtype=input_dtype, name="images")
    x = build_preprocessing(inputs, color_shift_stddev, seeds.next(), normalization)
    bn_args = dataclasses.asdict(batch_norm) if batch_norm else None
    x = _features(x, spec, width=width, batch_norm=bn_args,
                  layer_args=initializers.layer_arguments(weight_init, seeds))
    return keras.Model(inputs, x, name=name or _model_name(config, batch_norm) + "_backbone")


def build_classifier(backbone, num_classes=1000, *, head="fc", fc_units=4096, dropout=0.5,
                     classifier_activation="softmax", fc1_kernel_size=FC1_KERNEL_SIZE,
                     pooling=None, weight_init=None, name=None):
    """A backbone (``build_backbone``) with its classifier: the FC layers of Table 1, the same
    as convolutions (§3.2), or none (a feature extractor, optionally pooled), as one flat model
    whose layers keep their names.

    Args:
        backbone: the convolutional part, as ``build_backbone`` returns it.
        num_classes, head, fc_units, dropout, classifier_activation, fc1_kernel_size, pooling:
            as ``build_vgg``'s.
        weight_init: a ``WeightInit``; its seeds continue the backbone's, as ``build_vgg``
            draws them (default: Glorot's, no weight decay, unseeded).
        name: default: the backbone's name without ``_backbone``.

    Raises:
        ValueError: for an inconsistent argument (a head that does not fit the backbone's
            input size among them).
    """
    head = HEAD_ALIASES.get(head, head)
    weight_init = weight_init or WeightInit()
    pools = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in backbone.layers)
    check_arguments(None, num_classes, input_shape=tuple(backbone.input.shape[1:]), head=head,
                    fc_units=fc_units, dropout=dropout, fc1_kernel_size=fc1_kernel_size,
                    pooling=pooling, weight_init=weight_init, pools=pools,
                    classifier_activation=classifier_activation)
    # The seeds the backbone took: its colour shift's, then one per convolution.
    taken = 1 + sum(isinstance(layer, keras.layers.Conv2D) for layer in backbone.layers)
    layer_args = initializers.layer_arguments(
        weight_init, initializers.SeedSequence(weight_init.seed, start=taken))
    x = backbone.output
    if head is None:
        outputs = _pooled(x, pooling)
    elif head == "fc":
        outputs = _fc_head(x, num_classes, fc_units, dropout, classifier_activation, layer_args)
    else:
        outputs = _conv_head(x, num_classes, fc_units, fc1_kernel_size, dropout,
                             classifier_activation, layer_args)
    return keras.Model(backbone.input, outputs,
                       name=name or backbone.name.removesuffix("_backbone"))


def _model_name(config, batch_norm):
    return "vgg_" + configs.variant_name(config, bool(batch_norm)).lower().replace("-", "_")


def build_preprocessing(images, color_shift_stddev=vgg_layers.PCA_COLOR_STDDEV, seed=None,
                        normalization="paper"):
    """Casts images to float and normalises them (``normalization``: subtracts ``RGB_MEAN``,
    or torchvision's mean/std on RGB / 255), then (training only) shifts colours."""
    if normalization == "torchvision":  # (x / 255 − m) / s = (x − 255 m) / (255 s)
        mean = [255.0 * m for m in TORCHVISION_MEAN]
        variance = [(255.0 * s) ** 2 for s in TORCHVISION_STD]
        x = keras.layers.Normalization(mean=mean, variance=variance, axis=-1,
                                       name="mean_std")(images)
    else:
        x = keras.layers.Normalization(mean=RGB_MEAN, variance=(1.0, 1.0, 1.0), axis=-1,
                                       name="mean_rgb")(images)
    return vgg_layers.PCAColorShift(stddev=color_shift_stddev, seed=seed, name="color_shift")(x)


# What each argument of the builders must be: (test, what the error says it must be).
_RULES = {
    "head": (lambda v: v in HEADS, f"head must be one of {HEADS}"),
    "normalization": (lambda v: v in NORMALIZATIONS,
                      f"normalization must be one of {NORMALIZATIONS}"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "dropout must be in [0, 1)"),
    "width": (lambda v: v > 0, "width must be > 0"),
    "init": (lambda v: v in initializers.INITS, f"init must be one of {initializers.INITS}"),
    "weight_decay": (lambda v: v >= 0, "weight_decay must be >= 0"),
    "bn": (lambda v: 0 <= v[0] < 1 and v[1] > 0,
           "bn_momentum must be in [0, 1) and bn_epsilon > 0"),
    "sizes": (lambda v: min(int(n) for n in v) >= 1, "num_classes and fc_units must be >= 1"),
    "pooling": (lambda v: v[0] in POOLINGS and not (v[0] and v[1] is not None),
                f"pooling must be one of {POOLINGS}, and is for head=None only"),
}


def check_arguments(config=None, num_classes=1000, *, input_shape=None, pools=None,
                    weight_init=None, batch_norm=None, **given):
    """The one place where the builders' arguments are judged, before anything is built: those
    given (as ``build_vgg`` names them, ``weight_init`` and ``batch_norm`` as their objects)
    and, with an input shape, whether the net and its head fit it. ``pools``: the max-pooling
    layers before the head (default: those of ``config``).

    Raises:
        ValueError: naming the first argument that is wrong, and what it must be.
    """
    values = {name: given[name] for name in ("head", "normalization", "dropout", "width")
              if name in given}
    if weight_init is not None:
        values.update(init=weight_init.kind, weight_decay=weight_init.weight_decay)
    if batch_norm:
        values["bn"] = (batch_norm.momentum, batch_norm.epsilon)
    if "fc_units" in given:
        values["sizes"] = (num_classes, given["fc_units"])
    if "head" in given:
        values["pooling"] = (given.get("pooling"), given["head"])
    for name, value in values.items():
        ok, must = _RULES[name]
        if not ok(value):
            raise ValueError(f"{must}, got {value!r}")
    if input_shape is not None:
        if pools is None:
            spec = [configs.parse_layer(t) for t in configs.resolve_config(config)[1]]
            pools = sum(isinstance(layer, configs.MaxPool) for layer in spec)
        _check_input_shape(input_shape, given.get("head"),
                           given.get("fc1_kernel_size", FC1_KERNEL_SIZE), pools)


def _check_input_shape(input_shape, head, fc1_kernel_size, pools):
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    spatial = input_shape[:2]
    if head == "fc" and None in spatial:
        raise ValueError("the FC head needs a fixed input size; use head='conv' for "
                         f"variable sizes (got input_shape={tuple(input_shape)})")
    smallest = (fc1_kernel_size if head == "conv" else 1) * 2**pools
    for size in spatial:
        if size is not None and size < smallest:
            raise ValueError(
                f"input size {size} is too small: {pools} pooling layers"
                + (f" and a {fc1_kernel_size}×{fc1_kernel_size} fc1" if head == "conv" else "")
                + f" need at least {smallest} pixels"
            )


def _scaled(filters, width):
    return max(1, int(round(filters * width)))


def _features(x, spec, *, width, batch_norm, layer_args):
    """The convolutional part: blocks of convs closed by max-pooling, named by block;
    ``batch_norm``: the arguments of a BatchNormalization after every conv, or None."""
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
                x = keras.layers.BatchNormalization(name=name + "_bn", **batch_norm)(x)
                x = keras.layers.ReLU(name=name + "_relu")(x)
        elif isinstance(layer, configs.LRN):
            x = vgg_layers.LocalResponseNormalization(name=f"block{block}_lrn")(x)
        else:
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
            block, conv_index = block + 1, 0
    return x


def _classifier_output(x, classifier_activation, name):
    # float32 so that softmax stays exact under a mixed-precision policy.
    activation = classifier_activation or "linear"
    return keras.layers.Activation(activation, dtype="float32", name=name)(x)


def _output_name(classifier_activation):
    return "logits" if classifier_activation in (None, "linear") else "probabilities"


def _pooled(x, pooling):
    """The feature extractor's output: the feature map, or its global average or maximum."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _fc_head(x, num_classes, fc_units, dropout, classifier_activation, layer_args):
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc1", **layer_args())(x)
    x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc2", **layer_args())(x)
    x = keras.layers.Dropout(dropout, name="fc2_dropout")(x)
    x = keras.layers.Dense(num_classes, name="predictions", **layer_args())(x)
    return _classifier_output(x, classifier_activation, _output_name(classifier_activation))


def _conv_head(x, num_classes, fc_units, fc1_kernel_size, dropout, classifier_activation,
               layer_args):
    """§3.2: fc1 → k×k conv, fc2 and predictions → 1×1 convs, then the class score map
    (per-location posteriors) averaged over space."""
    x = keras.layers.Conv2D(fc_units, fc1_kernel_size, activation="relu", name="fc1",
                            **layer_args())(x)
    x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
    x = keras.layers.Conv2D(fc_units, 1, activation="relu", name="fc2", **layer_args())(x)
    x = keras.layers.Dropout(dropout, name="fc2_dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, name="predictions", **layer_args())(x)
    x = _classifier_output(x, classifier_activation, "score_map")
    return keras.layers.GlobalAveragePooling2D(dtype="float32",
                                               name=_output_name(classifier_activation))(x)


def to_conv_head(model, input_shape=(None, None, 3)):
    """Returns the fully convolutional version of a VGG model with the FC head, with its
    weights.

    fc1's kernel ``(k·k·C, U)`` becomes a k×k convolution (k = the spatial size of the last
    pooling layer at the model's input size, 7 at 224×224), fc2 and predictions become 1×1
    convolutions. The returned model owns copies of the weights; on the model's own input size
    it gives the same outputs as ``model``.

    Args:
        model: a model built by ``build_vgg(..., head="fc")`` (or loaded from one).
        input_shape: input shape of the new model; ``None`` spatial dims accept any size.

    Raises:
        ValueError: if ``model`` has no FC head.
    """
    layer_names = [layer.name for layer in model.layers]
    if "flatten" not in layer_names:
        raise ValueError(f"{model.name} has no FC head of a VGG net (no 'flatten' layer)")
    pool_shape = model.get_layer("flatten").input.shape
    if None in pool_shape[1:3]:
        raise ValueError(f"{model.name} has no fixed input size; cannot size fc1's kernel")
    fc1, fc2, predictions = (model.get_layer(n) for n in ("fc1", "fc2", "predictions"))
    output_layer = model.layers[-1]

    original_input = model.inputs[0]
    inputs = keras.Input(shape=tuple(input_shape), dtype=original_input.dtype, name="images")
    x = inputs
    for layer in model.layers[1 : layer_names.index("flatten")]:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    fc_config = fc1.get_config()
    head_args = {key: fc_config[key] for key in _FC_ARGS}
    outputs = _conv_head(
        x,
        predictions.units,
        fc1.units,
        int(pool_shape[1]) if pool_shape[1] == pool_shape[2] else tuple(pool_shape[1:3]),
        model.get_layer("fc1_dropout").rate,
        output_layer.get_config()["activation"],
        lambda: dict(head_args),
    )
    conv_model = keras.Model(inputs, outputs, name=model.name + "_conv")
    for dense in (fc1, fc2, predictions):
        kernel, bias = dense.get_weights()
        target = conv_model.get_layer(dense.name)
        target.set_weights([kernel.reshape(target.kernel.shape), bias])
    return conv_model


def normalization_of(model):
    """The input normalisation a model built here carries: ``"paper"`` or ``"torchvision"``."""
    names = {layer.name for layer in model.layers}
    return "torchvision" if "mean_std" in names else "paper"
