"""Triton's model repository of an export base: ``config.pbtxt`` (protobuf text of Triton's
``ModelConfig``) for its ONNX Runtime backend (``model.onnx``) or, with OpenVINO alone, its
OpenVINO backend (``model.xml``), the labels file it names, and the warm-up requests Triton runs
before it serves (``warmup/``: raw uint8 crops of the export's own warm-up images, in row-major
order, as Triton reads an ``input_data_file``)::

    EXPORT_DIR/<model_name>/config.pbtxt, labels.txt, warmup/image_0, warmup/image_1
    EXPORT_DIR/<model_name>/<version>/model.onnx (or model.xml + model.bin)
"""

import os

import numpy as np

from pipelines.foundation import storage
from vgg_keras.artifacts import layout

LABELS_FILE = "labels.txt"
WARMUP_DIR = "warmup"  # where Triton looks for a warm-up's input_data_file
INSTANCES = 1  # model instances Triton starts (on a GPU where it has one, else on the CPU)


def backend_of(formats):
    """``(config line, model file)`` of the Triton backend that serves a version of ``formats``
    (ONNX Runtime where there is ONNX, else OpenVINO), or None."""
    if layout.ONNX in formats:
        return 'platform: "onnxruntime_onnx"', "model.onnx"
    if layout.OPENVINO in formats:
        return 'backend: "openvino"', "model.xml"
    return None


def write_repository(base, metadata, settings, crops):
    """Writes ``config.pbtxt``, the labels and the warm-up crops (``crops``: uint8 ``[n, crop,
    crop, 3]``) of the base ``base``, each file whole."""
    storage.write_atomic(os.path.join(base, LABELS_FILE), "".join(
        f"{label}\n" for label in metadata["labels"]))
    storage.makedirs(os.path.join(base, WARMUP_DIR))
    names = [f"image_{index}" for index in range(len(crops))]
    for name, crop in zip(names, crops, strict=True):
        storage.write_atomic(os.path.join(base, WARMUP_DIR, name),
                             np.ascontiguousarray(crop, np.uint8).tobytes())
    storage.write_atomic(os.path.join(base, layout.TRITON_CONFIG), config_text(
        settings.model_name, metadata, settings.format, settings.max_batch_size, names))


def config_text(model_name, metadata, formats, max_batch_size, warmup_files=()):
    """Triton's ``config.pbtxt`` of the model: its backend and file, the tensors (their names
    and dtypes from ``metadata``'s formats), dynamic batching up to ``max_batch_size``, one
    instance, the newest version only, and a warm-up request per file of ``warmup_files``."""
    backend, file = backend_of(formats)
    entry = metadata["formats"][layout.ONNX if layout.ONNX in formats else layout.OPENVINO]
    crop, classes = metadata["crop_size"], metadata["num_classes"]
    tensor_input, tensor_output = entry["input"]["name"], entry["output"]["name"]
    warmups = "".join(
        f'  {{\n    name: "{name}"\n    batch_size: 1\n    inputs {{\n'
        f'      key: "{tensor_input}"\n      value {{\n        data_type: TYPE_UINT8\n'
        f"        dims: [ {crop}, {crop}, 3 ]\n"
        f'        input_data_file: "{name}"\n      }}\n    }}\n  }},\n'
        for name in warmup_files)
    return (f'name: "{model_name}"\n{backend}\ndefault_model_filename: "{file}"\n'
            f"max_batch_size: {int(max_batch_size)}\n"
            f'input [\n  {{\n    name: "{tensor_input}"\n    data_type: TYPE_UINT8\n'
            f"    dims: [ {crop}, {crop}, 3 ]\n  }}\n]\n"
            f'output [\n  {{\n    name: "{tensor_output}"\n    data_type: TYPE_FP32\n'
            f'    dims: [ {classes} ]\n    label_filename: "{LABELS_FILE}"\n  }}\n]\n'
            f"instance_group [\n  {{\n    count: {INSTANCES}\n    kind: KIND_AUTO\n  }}\n]\n"
            "version_policy {\n  latest {\n    num_versions: 1\n  }\n}\n"
            "dynamic_batching { }\n"
            + (f"model_warmup [\n{warmups.rstrip(',' + chr(10))}\n]\n" if warmups else ""))
