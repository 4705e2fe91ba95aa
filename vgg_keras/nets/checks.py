"""The one place where the builders' arguments are judged, before anything is built: each value
against what it must be, and whether the net and its head fit the input size (five pools, and
fc1's 7×7 kernel for the conv head: §3.2)."""

from vgg_keras.nets import configs
from vgg_keras.nets import heads
from vgg_keras.nets import initializers

NORMALIZATIONS = configs.NORMALIZATIONS
# What each value must be: (test, what the error says it must be).
_RULES = {
    "head": (lambda v: v in heads.HEADS, f"head must be one of {heads.HEADS}"),
    "normalization": (lambda v: v in NORMALIZATIONS,
                      f"normalization must be one of {NORMALIZATIONS}"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "dropout must be in [0, 1)"),
    "width": (lambda v: v > 0, "width must be > 0"),
    "init": (lambda v: v in initializers.INITS, f"init must be one of {initializers.INITS}"),
    "weight_decay": (lambda v: v >= 0, "weight_decay must be >= 0"),
    "bn": (lambda v: 0 <= v[0] < 1 and v[1] > 0,
           "bn_momentum must be in [0, 1) and bn_epsilon > 0"),
    "sizes": (lambda v: min(int(n) for n in v) >= 1, "num_classes and fc_units must be >= 1"),
    "pooling": (lambda v: v[0] in heads.POOLINGS and not (v[0] and v[1] is not None),
                f"pooling must be one of {heads.POOLINGS}, and is for head=None only"),
}


def check_arguments(config=None, num_classes=1000, *, input_shape=None, width=None, head=None,
                    batch_norm=None, weight_init=None, preprocessing=None, pools=None):
    """Judges the builders' arguments, as their objects (``Head``, ``BatchNorm``,
    ``WeightInit``, ``Preprocessing``) or values; with an input shape, whether the net and its
    head fit it. ``pools``: the max-pooling layers before the head (default: those of
    ``config``).

    Raises:
        ValueError: naming the first argument that is wrong, and what it must be.
    """
    values = _values(width, head, batch_norm, weight_init, preprocessing)
    if head is not None:
        values["sizes"] = (num_classes, head.fc_units)
    for name, value in values.items():
        ok, must = _RULES[name]
        if not ok(value):
            raise ValueError(f"{must}, got {value!r}")
    if input_shape is not None:
        if pools is None:
            spec = [configs.parse_layer(t) for t in configs.resolve_config(config)[1]]
            pools = sum(isinstance(layer, configs.MaxPool) for layer in spec)
        kind = head.kind if head is not None else None
        kernel = head.fc1_kernel_size if head is not None else heads.FC1_KERNEL_SIZE
        _check_input_shape(input_shape, kind, kernel, pools)


def _values(width, head, batch_norm, weight_init, preprocessing):
    """The values to judge, by the rule that judges each."""
    values = {} if width is None else {"width": width}
    if head is not None:
        values.update(head=head.kind, dropout=head.dropout, pooling=(head.pooling, head.kind))
    if preprocessing is not None:
        values["normalization"] = preprocessing.normalization
    if weight_init is not None:
        values.update(init=weight_init.kind, weight_decay=weight_init.weight_decay)
    if batch_norm:
        values["bn"] = (batch_norm.momentum, batch_norm.epsilon)
    return values


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
