"""The tensor formats run by their own runtimes (ONNX Runtime, LiteRT, OpenVINO), so that every
artifact of ``vgg-export`` is a model ``vgg-evaluate`` and ``vgg-predict`` take: uint8 crops in,
probabilities out, as ``serving.formats`` writes them. The packages each format needs are
declared here, below the export that writes them and the loading that runs them; their names
and files are ``layout``'s.
"""

import contextlib
import os

import numpy as np

from pipelines.foundation import errors
from pipelines.foundation import storage
from pipelines.foundation import tf_runtime
from vgg_keras.artifacts import layout
from vgg_keras.artifacts.layout import LITERT
from vgg_keras.artifacts.layout import ONNX
from vgg_keras.artifacts.layout import OPENVINO

# The Python packages each format needs (``pip install 'vgg-keras[deploy]'``), by import name:
# to write it (``formats``) and to run it (here).
PACKAGES = {ONNX: ("onnx", "onnxruntime"), LITERT: ("ai_edge_litert",),
            OPENVINO: ("openvino", "onnx", "onnxruntime")}
RUNTIME_PACKAGES = {ONNX: ("onnxruntime",), LITERT: ("ai_edge_litert",), OPENVINO: ("openvino",)}
OPENVINO_COMPILE = {"INFERENCE_PRECISION_HINT": "f32"}  # else bf16 on CPUs with bf16 units


def check_packages(formats, packages=None):
    """Raises ``UserError`` naming the extra to install for a format whose packages
    (``packages``: ``PACKAGES``, what writing it needs) are missing."""
    import importlib.util

    for name in formats:
        missing = [p for p in (packages or PACKAGES).get(name, ())
                   if importlib.util.find_spec(p) is None]
        if missing:
            raise errors.UserError(f"--format={name} needs {', '.join(missing)}: pip install "
                                   "'vgg-keras[deploy]'")


class Runtime:
    """A tensor-format file loaded in its runtime: ``runtime(images)`` on uint8 crops
    ``[n, crop, crop, 3]`` gives float32 probabilities ``[n, classes]``; ``crop_size`` and
    ``num_classes`` are read from the model itself."""

    def __init__(self, path):
        self.path, self.format = str(path), layout.format_of(path)
        if self.format is None:
            raise errors.UserError(f"{path} is no ONNX (.onnx), LiteRT (.tflite) or OpenVINO "
                                   "(.xml) model")
        check_packages([self.format], RUNTIME_PACKAGES)
        with _local_files(self.path, self.format) as local:  # the runtimes read local files
            load = {ONNX: self._load_onnx, LITERT: self._load_litert,
                    OPENVINO: self._load_openvino}[self.format]
            try:
                load(local)
            except errors.UserError:
                raise
            except Exception as error:  # noqa: BLE001 - each runtime raises its own kinds
                raise errors.UserError(f"{path} does not load in its runtime "
                                       f"({errors.one_line(error)}): it is damaged or no model "
                                       "of vgg-export; export it again") from None

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != (self.crop_size, self.crop_size, 3):
            raise errors.UserError(f"{self.path} takes uint8 [batch, {self.crop_size}, "
                                   f"{self.crop_size}, 3]; got {list(images.shape)}")
        return np.asarray(self._run(images), dtype=np.float32)

    def _load_onnx(self, path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings off: the session's own lines only on errors
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        tensor = session.get_inputs()[0]
        self._shape(tensor.shape, session.get_outputs()[0].shape)
        self._run = lambda images: session.run(None, {tensor.name: images})[0]

    def _load_litert(self, path):
        from ai_edge_litert import interpreter as litert

        with tf_runtime.native_lines():  # its "Created ... XNNPACK delegate" note
            interpreter = litert.Interpreter(model_path=path)
        tensor = interpreter.get_input_details()[0]
        output = interpreter.get_output_details()[0]
        self._shape(tensor["shape_signature"], output["shape_signature"])
        size = [0]

        def run(images):
            with tf_runtime.native_lines():
                if size[0] != len(images):  # the batch is free: the tensors resized to it
                    interpreter.resize_tensor_input(tensor["index"], list(images.shape))
                    interpreter.allocate_tensors()
                    size[0] = len(images)
                interpreter.set_tensor(tensor["index"], images)
                interpreter.invoke()
            return interpreter.get_tensor(output["index"]).copy()

        self._run = run

    def _load_openvino(self, path):
        import openvino

        core = openvino.Core()
        model = core.read_model(path)
        compiled = core.compile_model(model, "CPU", OPENVINO_COMPILE)
        self._shape([d.get_length() if d.is_static else -1 for d in model.input(0)
                     .get_partial_shape()],
                    [d.get_length() if d.is_static else -1 for d in model.output(0)
                     .get_partial_shape()])
        request = compiled.create_infer_request()
        self._run = lambda images: request.infer({0: images})[compiled.output(0)]

    def _shape(self, input_shape, output_shape):
        shape = list(input_shape)
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or not isinstance(
                shape[1], (int, np.integer)) or shape[1] < 1:
            raise errors.UserError(f"{self.path} takes {shape}; vgg-evaluate and vgg-predict "
                                   "run models of uint8 [batch, crop, crop, 3]")
        self.crop_size, self.num_classes = int(shape[1]), int(list(output_shape)[-1])


@contextlib.contextmanager
def _local_files(path, kind):
    """A local path of the model file (copied from a URL where need be), with OpenVINO's weights
    (``model.bin``) beside its ``model.xml``.

    Raises:
        UserError: for an OpenVINO model whose weights file is not beside it.
    """
    if kind != OPENVINO:
        with storage.local_copy(path) as local:
            yield local
        return
    weights = path[:-len(".xml")] + ".bin"
    if not storage.exists(weights):
        raise errors.UserError(f"{path} needs its weights, {weights}, beside it: copy the "
                               "version folder whole")
    with storage.local_copy(path) as local, storage.local_copy(weights) as local_weights:
        if os.path.dirname(local) != os.path.dirname(local_weights):  # copies of URLs
            os.replace(local_weights, local[:-len(".xml")] + ".bin")
        yield local


def as_keras_model(runtime, name=None):
    """``runtime`` as a Keras model on uint8 crops (its runtime called from the graph), so
    that the evaluation's protocols run it as they run a Keras net: single and multi-crop."""
    import keras
    import tensorflow as tf

    class RuntimeNet(keras.layers.Layer):
        def call(self, images):
            probabilities = tf.numpy_function(runtime, [images], tf.float32, stateful=False)
            probabilities.set_shape([None, runtime.num_classes])
            return probabilities

        def compute_output_shape(self, input_shape):
            return (input_shape[0], runtime.num_classes)

    inputs = keras.Input(shape=(runtime.crop_size, runtime.crop_size, 3), dtype="uint8")
    probabilities = RuntimeNet(name=f"{runtime.format}_runtime")(inputs)
    return keras.Model(inputs, probabilities, name=name or os.path.basename(runtime.path))
