"""The tensor formats of an export (``vgg-export --format``): the net as ONNX (ONNX Runtime,
Triton's onnxruntime backend), LiteRT (phones; XNNPACK) and OpenVINO IR (OpenVINO Model Server),
written beside the SavedModel into the version folder each server reads, at fp32, fp16 or
full-integer int8.

Every tensor format takes what a client has after ``client.preprocess_image`` (decode, shorter
side to Q, centre crop): uint8 RGB ``[batch, crop, crop, 3]``, the batch free, the net's
normalisation inside; and gives float32 class probabilities ``[batch, classes]`` (``INPUT``,
``OUTPUT``). The classes and the client's preprocessing are in the export's metadata.

How each is made, and why by that road:

* ONNX: written layer by layer (``onnx_graph``: tf2onnx holds some 45 copies of the weights
  and runs out of memory on VGG-16 at 24 GB). fp16: ONNX Runtime's own float16 converter, the
  uint8 input and float32 output kept. int8: ONNX Runtime's static quantization (QDQ, int8
  per-channel weights, uint8 activations calibrated on the given images): full integer
  wherever ONNX Runtime has an int8 kernel (convolutions, matrix products, pooling).
* LiteRT: TensorFlow's LiteRT converter, from a SavedModel of the tensor signature
  (``write_tensor_saved_model``; from concrete functions its int8 calibration fails on a
  ``READ_VARIABLE`` node). fp16: float16 weights (computed in float32 on a CPU).
  int8: full integer (``TFLITE_BUILTINS_INT8``: every op int8), calibrated on the given images;
  the uint8 input stays as it is and the probabilities come out as float32.
* OpenVINO: converted from the ONNX model (the graph ONNX Runtime runs). fp16: weights
  compressed to fp16. int8: from the int8 ONNX model, whose QDQ pairs OpenVINO runs as int8
  (OpenVINO's own quantizer, NNCF, would be a further heavy dependency for the same result).
  On CPUs with bf16 units OpenVINO computes in bf16 unless compiled with
  ``INFERENCE_PRECISION_HINT=f32``, which the metadata names and ``runtimes`` passes.
"""

import contextlib
import logging
import os
import tempfile

import numpy as np
import tensorflow as tf

from pipelines.foundation import errors
from pipelines.foundation import tf_runtime
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import runtimes
from vgg_keras.nets import builder
from vgg_keras.serving import config
from vgg_keras.serving import graph
from vgg_keras.serving import onnx_graph

FORMATS, PRECISIONS = config.FORMATS, config.PRECISIONS
SAVED_MODEL = FORMATS[0]
ONNX, LITERT, OPENVINO = layout.ONNX, layout.LITERT, layout.OPENVINO
TENSOR_FORMATS = layout.TENSOR_FORMATS
# The file each server looks for in a version folder (OpenVINO's weights: model.bin beside).
FILES = dict(zip(TENSOR_FORMATS, layout.TENSOR_FILES, strict=True))
OPENVINO_WEIGHTS = "model.bin"
INPUT, OUTPUT = onnx_graph.INPUT, onnx_graph.OUTPUT
CALIBRATION_BATCH = 16
check_packages = runtimes.check_packages


class TensorModule(tf.Module):
    """The net alone on uint8 crops: ``probabilities(images)``, the one signature every tensor
    format is converted from."""

    def __init__(self, model):
        super().__init__(name="vgg_tensor")
        crop_size = builder.crop_size_of(model)
        net = protocols.as_probabilities(model)
        self._variables = [variable.value for variable in model.variables]
        self.probabilities = tf.function(
            lambda images: {OUTPUT: net(images)}, autograph=False,
            input_signature=[tf.TensorSpec([None, crop_size, crop_size, 3], tf.uint8,
                                          name=INPUT)])


def write_tensor_saved_model(model, folder):
    """The tensor signature of ``model`` as a SavedModel in ``folder`` (its
    ``serving_default``)."""
    module = TensorModule(model)
    tf.saved_model.save(module, folder, signatures={"serving_default": module.probabilities})
    return folder


def write_formats(model, folder, formats, precision="fp32", calibration=None):
    """Writes each of ``formats`` (``TENSOR_FORMATS``) of ``model`` into ``folder`` at
    ``precision``; ``calibration``: uint8 crops ``[n, crop, crop, 3]`` for int8.

    Returns:
        ``{format: metadata}``: its files, input, output, precision and how to run it.
    """
    check_packages(formats)
    if precision == "int8" and (calibration is None or not len(calibration)):
        raise errors.UserError("--precision=int8 needs calibration images: give "
                               "--calibration_data=DATA_DIR (shards with a training split)")
    with tempfile.TemporaryDirectory(prefix="vgg-tensor-") as scratch:
        onnx_file = None
        if ONNX in formats or OPENVINO in formats:
            onnx_file = os.path.join(folder if ONNX in formats else scratch, FILES[ONNX])
            _onnx(model, onnx_file, precision, calibration, scratch)
        if LITERT in formats:
            source = write_tensor_saved_model(model, os.path.join(scratch, "saved_model"))
            _litert(source, os.path.join(folder, FILES[LITERT]), precision, calibration)
        if OPENVINO in formats:
            _openvino(onnx_file, os.path.join(folder, FILES[OPENVINO]), precision)
    found = entries(formats, builder.crop_size_of(model), int(model.output.shape[-1]),
                    precision)
    if LITERT in formats:
        _litert_names(os.path.join(folder, FILES[LITERT]), found[LITERT])
    return found


def entries(names, crop, classes, precision):
    """What the metadata says of each format of ``names`` (``FORMATS``), in ``FORMATS``'
    order: its files, precision and, for the tensor formats, input and output."""
    found = {}
    for name in FORMATS:
        if name == SAVED_MODEL and name in names:
            found[name] = {"files": [layout.SAVED_MODEL_FILE, "variables/"],
                           "precision": "fp32", "signatures": list(graph.SIGNATURES)}
        elif name in names:
            found[name] = {
                "files": [FILES[name]] + ([OPENVINO_WEIGHTS] if name == OPENVINO else []),
                "precision": precision,
                "input": {"name": INPUT, "dtype": "uint8", "shape": [None, crop, crop, 3]},
                "output": {"name": OUTPUT, "dtype": "float32", "shape": [None, classes]}}
            if name == OPENVINO:
                found[name]["compile"] = dict(runtimes.OPENVINO_COMPILE)
            if name == LITERT:  # its signature runner's keys; the tensors' names: _litert_names
                found[name]["signature"] = "serving_default"
                found[name]["input"]["signature_key"] = INPUT
                found[name]["output"]["signature_key"] = OUTPUT
    return found


def _litert_names(path, entry):
    """The names LiteRT's interpreter gives the file's input and output tensors (its converter
    names them after the signature: ``serving_default_images:0``), into ``entry``."""
    from ai_edge_litert import interpreter as litert

    with tf_runtime.native_lines():
        details = litert.Interpreter(model_path=path)
    entry["input"]["name"] = details.get_input_details()[0]["name"]
    entry["output"]["name"] = details.get_output_details()[0]["name"]


@contextlib.contextmanager
def _quiet(*loggers):
    """The converters' INFO lines off (they log every pass through Python's logging)."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _onnx(model, path, precision, calibration, scratch):
    proto = onnx_graph.onnx_model(model)
    if precision == "fp16":
        from onnxruntime.transformers import float16

        proto = float16.convert_float_to_float16(proto, keep_io_types=True)
    if precision != "int8":
        _save_onnx(proto, path)
        return
    from onnxruntime import quantization

    float_path = os.path.join(scratch, "float.onnx")
    _save_onnx(proto, float_path)
    with _quiet("root"):
        quantization.quantize_static(
            float_path, path, _CalibrationReader(calibration),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8)


def _save_onnx(proto, path):
    import onnx

    onnx.save(proto, path)


class _CalibrationReader:
    """ONNX Runtime's calibration data reader over the crops, a batch at a time."""

    def __init__(self, crops):
        self._batches = iter([crops[i:i + CALIBRATION_BATCH]
                              for i in range(0, len(crops), CALIBRATION_BATCH)])

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT: batch}

    def rewind(self):  # part of the reader interface; one pass is all calibration takes
        pass


def _litert(source, path, precision, calibration):
    converter = tf.lite.TFLiteConverter.from_saved_model(source)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([crop[None]] for crop in calibration)
        converter.inference_output_type = tf.float32
    with _quiet("absl", "tensorflow"), tf_runtime.native_lines():
        flatbuffer = converter.convert()
    with open(path, "wb") as file:  # a local staging folder (export.py uploads it)
        file.write(flatbuffer)


def _openvino(onnx_file, path, precision):
    import openvino

    model = openvino.convert_model(onnx_file)
    openvino.save_model(model, path, compress_to_fp16=precision == "fp16")


def calibration_crops(data_dir, count, test_scale, crop_size):
    """The first ``count`` images of the training split of ``data_dir`` with the test-time
    preprocessing (shorter side to Q, centre crop): uint8 ``[n, crop, crop, 3]``."""
    from pipelines import inputs

    dataset = inputs.make_eval_dataset(data_dir, inputs.EvalInputConfig(
        test_scale=test_scale, crop_size=crop_size, batch_size=64, split="train",
        max_images=count))
    crops = [images for images, _, _ in dataset.as_numpy_iterator()]
    return np.concatenate(crops) if crops else np.zeros((0, crop_size, crop_size, 3), np.uint8)
