"""VGG as a backbone: the activations of named layers, for perceptual and style losses (which tap
``block1_conv2`` … ``block5_conv4`` of VGG-19) and for detection and segmentation heads (which
take whole blocks).

``feature_model(net, layers)`` is a Keras model from the net's input to those activations, a dict
by layer name, sharing the net's weights: training one trains the other. ``relu=False`` taps a
convolution before its ReLU (after its batch normalisation in a ``-BN`` net), which some losses
prefer. Keras only, any backend, like the nets.
"""

import keras


def feature_model(model, layers, *, relu=True, name=None, input_shape=None):
    """A model returning ``{layer name: activation}`` of ``layers`` of ``model``.

    Its input is float32 images in the net's range (0..255 RGB), whatever the net's own input
    dtype: a net built for uint8 images (``build_vgg``'s default) casts its input, which has no
    gradient; the taps take float images, so that a loss on them differentiates with respect to
    the images (perceptual and style losses, a generator trained through them).

    Args:
        model: one of our nets (any head, any config, with or without batch normalisation).
        layers: layer names (``"block1_conv2"``, ``"block3_pool"``, ``"fc1"``, ...).
        relu: tap after the ReLU (True) or before it (False) for layers that have one.
        name: the model's name; default ``<net name>_features``.
        input_shape: default the net's own; ``(None, None, 3)`` takes images of any size when
            every tap is a convolution's or a pooling's (style transfer on whole photos).

    Raises:
        ValueError: naming a layer the net does not have, and the ones it has.
    """
    names = list(layers)
    known = [layer.name for layer in model.layers]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"{model.name} has no layer {unknown or names}; its layers: "
                         f"{', '.join(known[1:])}")
    inputs = keras.Input(shape=tuple(input_shape or model.inputs[0].shape[1:]), dtype="float32",
                         name="images")
    return keras.Model(inputs, _taps(model, inputs, names, relu),
                       name=name or f"{model.name}_features")


def _source(model, name, relu):
    """The layer whose output is the tap: ``name`` itself, its BN or ReLU layer in a ``-BN``
    net, or None for a layer whose ReLU is fused into it when ``relu=False``."""
    known = {layer.name for layer in model.layers}
    if f"{name}_relu" in known:  # conv → BN → ReLU
        return f"{name}_relu" if relu else f"{name}_bn"
    activation = getattr(model.get_layer(name), "activation", None)
    if relu or activation in (None, keras.activations.linear):
        return name
    return None


def _taps(model, inputs, names, relu):
    """The net's layers applied again, in order (a VGG is a chain), from ``inputs`` up to the
    last tap, with the same variables: ``{name: output}``. A tapped layer whose ReLU is fused
    into it is split, for ``relu=False``, into its linear part and the ReLU."""
    wanted, outputs, x = set(names), {}, inputs
    for layer in model.layers[1:]:
        if layer.name in wanted and _source(model, layer.name, relu) is None:
            linear = _Linear(layer)(x)
            outputs[layer.name] = linear
            x = keras.layers.Activation(layer.activation, name=f"{layer.name}_relu")(linear)
        else:
            x = layer(x)
            outputs[layer.name] = x
        if all((_source(model, n, relu) or n) in outputs for n in names):
            break
    return {n: outputs[_source(model, n, relu) or n] for n in names}


class _Linear(keras.layers.Layer):
    """A convolution's or FC layer's output before its activation, computed with that layer's
    own kernel and bias (shared: the same variables)."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_linear", dtype=layer.dtype_policy, **kwargs)
        self.wrapped = layer

    def call(self, inputs):
        kernel = keras.ops.cast(self.wrapped.kernel, self.compute_dtype)
        bias = keras.ops.cast(self.wrapped.bias, self.compute_dtype)
        if isinstance(self.wrapped, keras.layers.Conv2D):
            outputs = keras.ops.conv(inputs, kernel, strides=self.wrapped.strides,
                                     padding=self.wrapped.padding,
                                     dilation_rate=self.wrapped.dilation_rate)
        else:
            outputs = keras.ops.matmul(inputs, kernel)
        return outputs + bias

    def compute_output_shape(self, input_shape):
        return self.wrapped.compute_output_shape(input_shape)
