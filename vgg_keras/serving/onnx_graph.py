"""A VGG net of this package as an ONNX graph, written layer by layer with ``onnx.helper``.

Written here rather than by tf2onnx because of memory: tf2onnx freezes the graph through
grappler and deep-copies it through its optimiser passes, holding about 45 copies of the weights
at once (7 GB for a 154 MB net; VGG-16's 528 MB end out of memory on 24 GB). The nets are a
chain of a dozen kinds of layers, each one ONNX operator, so the graph is written directly with
one copy of the weights, in seconds; ``tests/test_deploy.py`` checks it against the Keras net.

The graph takes uint8 RGB ``[batch, crop, crop, 3]`` (``images``), casts and normalises it as the
net's Normalization layer does, runs in ONNX's NCHW layout from the first convolution on (the
flatten of the FC head put back in Keras' NHWC order, so fc1's kernel is used as it is), and
gives float32 ``probabilities`` ``[batch, classes]`` (a softmax added to a net built with
logits, as ``protocols.as_probabilities`` does).
"""

import keras
import numpy as np

from pipelines.foundation import errors
from vgg_keras.nets import builder
from vgg_keras.nets import layers as vgg_layers

OPSET = 17
IR_VERSION = 9  # read by every ONNX Runtime since 1.15 (Triton's of 2023 on)
INPUT, OUTPUT = "images", "probabilities"
_IDENTITY = (keras.layers.InputLayer, keras.layers.Dropout, vgg_layers.PCAColorShift)


def onnx_model(model):
    """``model`` (a classifier of ``build_vgg``: FC or fully convolutional head) as an
    ``onnx.ModelProto``.

    Raises:
        UserError: for a layer this writer does not know.
    """
    import onnx
    from onnx import helper

    graph = _Graph()
    crop_size = builder.crop_size_of(model)
    x = graph.node("Cast", [INPUT], to=onnx.TensorProto.FLOAT)
    for layer in model.layers:
        x = _layer(graph, layer, x)
    if model.layers[-1].name == "logits":
        x = graph.node("Softmax", [x], axis=-1)
    graph.nodes.append(helper.make_node("Identity", [x], [OUTPUT]))
    images = helper.make_tensor_value_info(INPUT, onnx.TensorProto.UINT8,
                                           ["batch", crop_size, crop_size, 3])
    classes = int(model.output.shape[-1])
    probabilities = helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT,
                                                  ["batch", classes])
    proto = helper.make_model(
        helper.make_graph(graph.nodes, model.name, [images], [probabilities], graph.weights),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vgg_keras")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


class _Graph:
    """Nodes and weights, each output named after a counter; ``layout`` is where the tensor
    stands (Keras' NHWC until the first spatial operator, then NCHW)."""

    def __init__(self):
        self.nodes, self.weights, self.layout, self._count = [], [], "NHWC", 0

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def weight(self, hint, value):
        from onnx import numpy_helper

        name = self.name(hint)
        self.weights.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, hint=None, **attributes):
        from onnx import helper

        output = self.name(hint or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def nchw(self, x):
        if self.layout == "NHWC":
            x, self.layout = self.node("Transpose", [x], perm=[0, 3, 1, 2]), "NCHW"
        return x


def _activation(graph, x, activation, where):
    name = getattr(activation, "__name__", str(activation))
    if name == "linear":
        return x
    if name == "relu":
        return graph.node("Relu", [x])
    if name == "softmax":
        return graph.node("Softmax", [x], axis=1)  # classes: axis 1 in NC and NCHW alike
    raise errors.UserError(f"the ONNX export does not know the activation {name!r} of {where}")


def _layer(graph, layer, x):
    """The operators of one layer after ``x``; returns the new tensor's name."""
    if isinstance(layer, _IDENTITY):
        return x
    for kind, write in _WRITERS:
        if isinstance(layer, kind):
            return write(graph, layer, x)
    raise errors.UserError(f"the ONNX export does not know layer {layer.name} "
                           f"({type(layer).__name__}): export a net of build_vgg")


def _normalization(graph, layer, x):
    mean = np.reshape(keras.ops.convert_to_numpy(layer.mean), [-1])
    variance = np.reshape(keras.ops.convert_to_numpy(layer.variance), [-1])
    std = np.maximum(np.sqrt(variance), keras.config.epsilon())  # as Keras divides
    shape = [-1] if graph.layout == "NHWC" else [1, -1, 1, 1]
    x = graph.node("Sub", [x, graph.weight(f"{layer.name}_mean", mean.reshape(shape))])
    return graph.node("Div", [x, graph.weight(f"{layer.name}_std", std.reshape(shape))])


def _conv(graph, layer, x):
    name = layer.name
    if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
        raise errors.UserError(f"the ONNX export takes stride-1 convolutions; {name} is not")
    kernel, *bias = layer.get_weights()
    height, width = kernel.shape[:2]
    pads = ([(height - 1) // 2, (width - 1) // 2, height // 2, width // 2]
            if layer.padding == "same" else [0, 0, 0, 0])
    inputs = [graph.nchw(x), graph.weight(f"{name}_kernel", kernel.transpose(3, 2, 0, 1))]
    if bias:
        inputs.append(graph.weight(f"{name}_bias", bias[0]))
    x = graph.node("Conv", inputs, hint=name, kernel_shape=[height, width], pads=pads)
    return _activation(graph, x, layer.activation, name)


def _batch_norm(graph, layer, x):
    gamma = layer.gamma if layer.scale else np.ones(layer.moving_mean.shape)
    beta = layer.beta if layer.center else np.zeros(layer.moving_mean.shape)
    values = [keras.ops.convert_to_numpy(v) for v in (gamma, beta, layer.moving_mean,
                                                     layer.moving_variance)]
    inputs = [graph.nchw(x)] + [graph.weight(f"{layer.name}_{part}", value) for part, value in
                                 zip(("scale", "bias", "mean", "variance"), values, strict=True)]
    return graph.node("BatchNormalization", inputs, hint=layer.name, epsilon=layer.epsilon)


def _relu(graph, layer, x):
    if layer.max_value is not None or layer.negative_slope or layer.threshold:
        raise errors.UserError(f"the ONNX export takes plain ReLUs; {layer.name} is not")
    return graph.node("Relu", [x])


def _lrn(graph, layer, x):
    size = 2 * layer.depth_radius + 1  # ONNX divides α by the window: α = α' · n
    return graph.node("LRN", [graph.nchw(x)], hint=layer.name, size=size,
                      alpha=layer.effective_alpha * size, beta=layer.beta, bias=layer.bias)


def _max_pool(graph, layer, x):
    if layer.padding != "valid":
        raise errors.UserError(f"the ONNX export takes max-pooling without padding; {layer.name} "
                               "is not")
    return graph.node("MaxPool", [graph.nchw(x)], hint=layer.name,
                      kernel_shape=list(layer.pool_size), strides=list(layer.strides))


def _flatten(graph, layer, x):
    if graph.layout == "NCHW":  # Keras flattens (height, width, channels)
        x, graph.layout = graph.node("Transpose", [x], perm=[0, 2, 3, 1]), "NHWC"
    graph.layout = "NC"
    return graph.node("Flatten", [x], hint=layer.name, axis=1)


def _global_average(graph, layer, x):
    x = graph.node("GlobalAveragePool", [graph.nchw(x)], hint=layer.name)
    graph.layout = "NC"
    return graph.node("Flatten", [x], axis=1)


def _dense(graph, layer, x):
    kernel, *bias = layer.get_weights()
    inputs = [x, graph.weight(f"{layer.name}_kernel", kernel)]
    if bias:
        inputs.append(graph.weight(f"{layer.name}_bias", bias[0]))
    x = graph.node("Gemm", inputs, hint=layer.name)
    return _activation(graph, x, layer.activation, layer.name)


# Each kind of layer a net of build_vgg holds, and the function writing its operators.
_WRITERS = (
    (keras.layers.Normalization, _normalization), (keras.layers.Conv2D, _conv),
    (keras.layers.BatchNormalization, _batch_norm), (keras.layers.ReLU, _relu),
    (keras.layers.Activation, lambda graph, layer, x: _activation(graph, x, layer.activation,
                                                                   layer.name)),
    (vgg_layers.LocalResponseNormalization, _lrn), (keras.layers.MaxPooling2D, _max_pool),
    (keras.layers.Flatten, _flatten), (keras.layers.GlobalAveragePooling2D, _global_average),
    (keras.layers.Dense, _dense),
)
