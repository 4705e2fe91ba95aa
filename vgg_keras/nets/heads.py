"""The classifier of Table 1 on a backbone (``FC-4096, FC-4096, FC-N, soft-max``), the same layers
as convolutions for the paper's dense evaluation (§3.2: "the first FC layer is converted to a
7×7 conv. layer, the last two FC layers to 1×1 conv. layers"), or none (a feature extractor,
optionally pooled, as keras.applications' ``include_top=False``); and ``to_conv_head``, which
turns a trained FC net into its fully convolutional twin with the same weights.
"""

import dataclasses

import keras

FC1_KERNEL_SIZE = 7  # §3.2: "the first FC layer is converted to a 7×7 conv. layer"
# The classifier heads: "fc", the fully connected layers (fixed input size, as trained);
# "conv", the same layers as convolutions (§3.2, any input size); None, no head (a backbone).
HEADS = ("fc", "conv", None)
HEAD_ALIASES = {"dense": "fc"}  # the FC head's earlier name, still taken
POOLINGS = (None, "avg", "max")
_FC_ARGS = ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer")


@dataclasses.dataclass(frozen=True)
class Head:
    """The classifier on the backbone.

    Attributes:
        kind: ``"fc"`` (fully connected, fixed input size, as trained; ``"dense"`` is taken
            too), ``"conv"`` (the FC layers as convolutions, any input size, the class score
            map averaged spatially, §3.2), or ``None``: no classifier, the last pooling layer's
            ``[h, w, 512]`` map (a feature extractor).
        fc_units: units of fc1 and fc2 (Table 1: 4096).
        dropout: rate of the dropout after fc1 and fc2 (§3.1: 0.5).
        activation: ``"softmax"`` for probabilities, ``None`` for logits.
        fc1_kernel_size: with ``"conv"``, fc1's kernel: the spatial size of the last pooling
            layer at the training resolution (7 for the crops of §2.1).
        pooling: with ``kind=None``: ``None`` (the feature map), ``"avg"`` or ``"max"`` (global
            pooling to ``[512]``), as keras.applications' ``pooling``.
    """

    kind: str | None = "fc"
    fc_units: int = 4096
    dropout: float = 0.5
    activation: str | None = "softmax"
    fc1_kernel_size: int = FC1_KERNEL_SIZE
    pooling: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "kind", HEAD_ALIASES.get(self.kind, self.kind))


def head_of(head):
    """A ``Head`` of ``head``: a ``Head`` as it is, or its kind (``"fc"``, ``"conv"``, None)."""
    return head if isinstance(head, Head) else Head(head)


def build_head(x, num_classes, head, layer_args):
    """``head`` (a ``Head``) on the backbone's output ``x``: the model's output tensor.
    ``layer_args``: a function giving each new weight layer's initialiser arguments."""
    if head.kind is None:
        return _pooled(x, head.pooling)
    if head.kind == "fc":
        return _fc_head(x, num_classes, head, layer_args)
    return _conv_head(x, num_classes, head, layer_args)


def _classifier_output(x, activation, name):
    # float32 so that softmax stays exact under a mixed-precision policy.
    return keras.layers.Activation(activation or "linear", dtype="float32", name=name)(x)


def _output_name(activation):
    return "logits" if activation in (None, "linear") else "probabilities"


def _pooled(x, pooling):
    """The feature extractor's output: the feature map, or its global average or maximum."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _fc_head(x, num_classes, head, layer_args):
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(head.fc_units, activation="relu", name="fc1", **layer_args())(x)
    x = keras.layers.Dropout(head.dropout, name="fc1_dropout")(x)
    x = keras.layers.Dense(head.fc_units, activation="relu", name="fc2", **layer_args())(x)
    x = keras.layers.Dropout(head.dropout, name="fc2_dropout")(x)
    x = keras.layers.Dense(num_classes, name="predictions", **layer_args())(x)
    return _classifier_output(x, head.activation, _output_name(head.activation))


def _conv_head(x, num_classes, head, layer_args):
    """§3.2: fc1 → k×k conv, fc2 and predictions → 1×1 convs, then the class score map
    (per-location posteriors) averaged over space."""
    x = keras.layers.Conv2D(head.fc_units, head.fc1_kernel_size, activation="relu", name="fc1",
                            **layer_args())(x)
    x = keras.layers.Dropout(head.dropout, name="fc1_dropout")(x)
    x = keras.layers.Conv2D(head.fc_units, 1, activation="relu", name="fc2", **layer_args())(x)
    x = keras.layers.Dropout(head.dropout, name="fc2_dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, name="predictions", **layer_args())(x)
    x = _classifier_output(x, head.activation, "score_map")
    return keras.layers.GlobalAveragePooling2D(dtype="float32",
                                               name=_output_name(head.activation))(x)


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
    inputs = keras.Input(shape=tuple(input_shape), dtype=model.inputs[0].dtype, name="images")
    x = inputs
    for layer in model.layers[1 : layer_names.index("flatten")]:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    fc_config = fc1.get_config()
    head = Head("conv", fc1.units, model.get_layer("fc1_dropout").rate,
                model.layers[-1].get_config()["activation"],
                int(pool_shape[1]) if pool_shape[1] == pool_shape[2] else tuple(pool_shape[1:3]))
    outputs = _conv_head(x, predictions.units, head,
                         lambda: {key: fc_config[key] for key in _FC_ARGS})
    conv_model = keras.Model(inputs, outputs, name=model.name + "_conv")
    for dense in (fc1, fc2, predictions):
        kernel, bias = dense.get_weights()
        target = conv_model.get_layer(dense.name)
        target.set_weights([kernel.reshape(target.kernel.shape), bias])
    return conv_model
