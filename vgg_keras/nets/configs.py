"""The six ConvNet configurations of Table 1 (Simonyan & Zisserman, 2014), in the paper's notation.

Each entry lists the layers before the classifier exactly as the columns of Table 1 read:
``conv3-64`` is a 3×3 convolution with 64 filters (stride 1, padding 1, ReLU), ``conv1-256`` a
1×1 convolution, ``LRN`` local response normalisation and ``maxpool`` a 2×2 max-pool of
stride 2. Every configuration ends in the same classifier, ``FC-4096, FC-4096, FC-1000,
soft-max`` (``CLASSIFIER``); the builder takes its widths as arguments.

A layer spec that is not in the table (a tiny literal tuple in a test, say) is accepted by the
builder as it is, so adding a variant is one line of data.
"""

import dataclasses
import re

CONFIGS = {
    "A": (
        "conv3-64", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "A-LRN": (
        "conv3-64", "LRN", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "B": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "C": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv1-256", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
    ),
    "D": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ),
    "E": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ),
}

# Table 1, bottom rows: the classifier shared by every configuration.
CLASSIFIER = ("FC-4096", "FC-4096", "FC-1000", "soft-max")

# Names people already use for these nets (torchvision, keras.applications).
ALIASES = {"VGG11": "A", "VGG11-LRN": "A-LRN", "VGG13": "B", "VGG16": "D", "VGG19": "E"}

BN_SUFFIX = "-BN"

# Published ImageNet weights the nets load (``pretrained``, ``published``): the paper's own as
# keras.applications publishes them (VGG16/VGG19 ``.h5``: D, E; "keras_applications" is their
# other name), torchvision's and timm's (A, B, D, E and their BN variants).
WEIGHT_KINDS = ("paper", "keras_applications", "torchvision", "timm")

# §2.1: "the input to our ConvNets is a fixed-size 224 × 224 RGB image": the training crop, and
# the input size of every net with the FC head, unless told otherwise.
CROP_SIZE = 224

# How a net normalises its input: the mean RGB subtracted (§2.1), or torchvision's mean/std.
NORMALIZATIONS = ("paper", "torchvision")

# §3.1: σ of the N(0, σ²) init of net A (the paper's "10⁻² variance" read as Caffe's std; see
# ``initializers``). Here, with the table, because a run's settings default to it without Keras.
PAPER_INIT_STDDEV = 0.01

_CONV = re.compile(r"^conv(\d+)-(\d+)$")


@dataclasses.dataclass(frozen=True)
class Conv:
    """A convolution of Table 1: ``conv{kernel_size}-{filters}``."""

    kernel_size: int
    filters: int


@dataclasses.dataclass(frozen=True)
class LRN:
    """Local response normalisation (A-LRN only)."""


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """2×2 max-pooling with stride 2; it closes a block."""


def parse_layer(token):
    """Returns the layer that one token of the paper's notation stands for.

    Args:
        token: ``"conv3-64"``, ``"conv1-256"``, ``"LRN"`` or ``"maxpool"``.

    Raises:
        ValueError: if the token is not in the paper's notation.
    """
    if token == "maxpool":
        return MaxPool()
    if token == "LRN":
        return LRN()
    match = _CONV.match(token) if isinstance(token, str) else None
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(
            f"unknown layer {token!r}: expected 'conv<k>-<filters>' (e.g. 'conv3-64'), "
            "'LRN' or 'maxpool'"
        )
    return Conv(kernel_size=int(match.group(1)), filters=int(match.group(2)))


def resolve_config(config):
    """Returns ``(name, layer_tokens, batch_norm)`` for a config name or a literal spec.

    Accepts the table's keys ("A", "A-LRN", "B", "C", "D", "E"), their batch-norm variants
    ("D-BN"), the usual aliases ("VGG16", "vgg16_bn") in any case, or a sequence of tokens.

    Raises:
        ValueError: naming the valid configurations, if ``config`` is none of these.
    """
    if not isinstance(config, str):
        tokens = tuple(config)
        for token in tokens:
            parse_layer(token)
        return "custom", tokens, False
    key = config.upper().replace("_", "-")
    batch_norm = key.endswith(BN_SUFFIX)
    if batch_norm:
        key = key[: -len(BN_SUFFIX)]
    key = ALIASES.get(key, key)
    if key not in CONFIGS:
        valid = ", ".join(list(CONFIGS) + [k + BN_SUFFIX for k in CONFIGS])
        raise ValueError(f"unknown VGG configuration {config!r}; valid: {valid}")
    return key + (BN_SUFFIX if batch_norm else ""), CONFIGS[key], batch_norm


def variant_name(config, batch_norm=False):
    """The name of ``config`` as built, its "-BN" suffix added where ``batch_norm`` asks for batch
    normalisation that the name does not say ("custom" for a literal spec, which takes none)."""
    name, _, named_bn = resolve_config(config)
    if (batch_norm or named_bn) and not name.endswith(BN_SUFFIX) and name != "custom":
        name += BN_SUFFIX
    return name


def config_names(batch_norm_variants=True):
    """Returns the valid ``--config`` values: the six nets, then their BN variants."""
    names = list(CONFIGS)
    return names + [n + BN_SUFFIX for n in CONFIGS] if batch_norm_variants else names
