"""Weight initialisation of §3.1: random N(0, σ²) for net A, Glorot & Bengio for any net, and
deeper nets started from a trained net A.

§3.1 reads "we sampled the weights from a normal distribution with the zero mean and 10⁻²
variance", i.e. σ = 0.1 taken literally. Taken so, the activations of even net A grow by
about ×20 per layer (σ·√(9·fan_in) ≫ 1), and Caffe's ``gaussian`` filler, which the authors'
toolbox derives from, takes a standard deviation (``std: 0.01``). So the default here is
σ = 0.01, the value everyone reproducing the paper uses; pass ``init_stddev=0.1`` for the
literal reading.
"""

import dataclasses

import keras

from vgg_keras.nets import configs

INITS = ("gaussian", "glorot")

# §3.1: "we initialised the first four convolutional layers and the last three fully-connected
# layers with the layers of net A (the intermediate layers were initialised randomly)".
# A's first four convolutions keep their names in every deeper net of Table 1.
FROM_A_LAYERS = (
    "block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2",
    "fc1", "fc2", "predictions",
)


@dataclasses.dataclass(frozen=True)
class WeightInit:
    """How a net's weight layers start and are regularised: ``kind`` ("gaussian": N(0,
    ``stddev``²), §3.1; or "glorot"), biases at zero, an L2 of ``weight_decay`` (λ in Caffe's
    convention, see ``layer_arguments``; 0: none) on kernels, and ``seed`` (None: unseeded),
    which makes the initial weights and the colour shift reproducible."""

    kind: str = "glorot"
    stddev: float = configs.PAPER_INIT_STDDEV
    weight_decay: float = 0.0
    seed: int | None = None


class SeedSequence:
    """Hands out a distinct seed per layer from one base seed (``None`` stays ``None``);
    ``start``: seeds already handed out (a classifier continues its backbone's sequence)."""

    def __init__(self, seed, start=0):
        self._seed = seed
        self._count = start

    def next(self):
        if self._seed is None:
            return None
        self._count += 1
        return self._seed * 1000 + self._count


def kernel_initializer(init, stddev=configs.PAPER_INIT_STDDEV, seed=None):
    """Returns the Keras initializer for ``init`` ("gaussian" or "glorot")."""
    if init == "gaussian":
        return keras.initializers.RandomNormal(mean=0.0, stddev=stddev, seed=seed)
    # Glorot & Bengio's "normalized initialization" is the uniform one.
    return keras.initializers.GlorotUniform(seed=seed)


def layer_arguments(weight_init, seeds):
    """Returns a function giving the initializer/regularizer kwargs of the next weight layer
    (``weight_init``, checked by the builder; ``seeds``: a ``SeedSequence``).

    ``weight_decay`` is λ in Caffe's convention (gradient += λ·w); Keras's L2 adds
    ``l2·Σw²`` to the loss, whose gradient is ``2·l2·w``, hence ``l2 = λ / 2``.
    """
    def next_arguments():
        arguments = {
            "kernel_initializer": kernel_initializer(weight_init.kind, weight_init.stddev,
                                                     seeds.next()),
            "bias_initializer": "zeros",
        }
        if weight_init.weight_decay:
            arguments["kernel_regularizer"] = keras.regularizers.L2(weight_init.weight_decay / 2)
        return arguments

    return next_arguments


def initialize_from_a(model, source):
    """Copies net A's first four convolutions and three FC layers into a deeper net (§3.1).

    Layers are matched by name (``FROM_A_LAYERS``); the batch-norm layer of a copied
    convolution comes along when both nets have one. Every other layer keeps its fresh weights.

    Args:
        model: the deeper net (B, C, D, E or a variant), built with the same width, fc_units
            and num_classes as the source.
        source: a trained net A (or A-LRN) as a model, or the path of a ``.keras`` file.

    Returns:
        The names of the layers copied, in order.

    Raises:
        ValueError: if a layer is missing in either net or its weights differ in shape.
    """
    if isinstance(source, str):
        source = keras.models.load_model(source, compile=False)
    model_names = {layer.name for layer in model.layers}
    source_names = {layer.name for layer in source.layers}
    copied = []
    for name in FROM_A_LAYERS:
        names = [name] + [n for n in (name + "_bn",) if n in model_names and n in source_names]
        for layer_name in names:
            if layer_name not in model_names or layer_name not in source_names:
                raise ValueError(f"layer {layer_name!r} is missing in "
                                 f"{model.name if layer_name not in model_names else source.name}")
            _copy_weights(source.get_layer(layer_name), model.get_layer(layer_name))
            copied.append(layer_name)
    return copied


def _copy_weights(source_layer, target_layer):
    weights = source_layer.get_weights()
    shapes = [w.shape for w in weights]
    expected = [tuple(v.shape) for v in target_layer.weights]
    if shapes != expected:
        raise ValueError(
            f"layer {target_layer.name!r}: source weights have shapes {shapes}, the model "
            f"expects {expected} (same width, fc_units and num_classes are needed)"
        )
    target_layer.set_weights(weights)
