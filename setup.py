"""vgg-keras: the VGG ConvNets of Simonyan & Zisserman (2014) for TensorFlow/Keras."""

import pathlib
import re

import setuptools

_ROOT = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_ROOT / "vgg_keras" / "__init__.py").read_text()).group(1)

# Pinned to versions known to install and pass the tests together (Python 3.10–3.12).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-datasets==4.9.10",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "h5py==3.14.0",
    "pillow==13.0.0",  # the converter inspects, validates and repairs images with it
    "tensorboard==2.21.0",  # tf.summary needs it; TensorFlow no longer installs it
    "matplotlib==3.11.2",  # the training curve, MODEL_DIR/training_curve.png
    "tensorflow-serving-api==2.21.0",  # the PredictionLog protos of the export's warm-up file
    "safetensors==0.8.0",  # PyTorch's published VGG weights, read with NumPy alone
    "huggingface_hub==2.4.0",  # fetches and caches timm's copies of them by name
]
# vgg-export's tensor formats (--format=onnx,litert,openvino) and their runtimes, which
# vgg-evaluate and vgg-predict run them with: pip install 'vgg-keras[deploy]'.
DEPLOY_REQUIRES = [
    "onnx==1.23.2",  # the ONNX graph is written with its helper (vgg_keras/serving/onnx_graph.py)
    "onnxruntime==1.32.0",  # runs ONNX; its quantizer makes the int8 models, its converter fp16
    "ai-edge-litert==2.3.0",  # runs .tflite (TensorFlow's converter writes it)
    "openvino==2026.4.1",
]
TEST_REQUIRES = [
    *DEPLOY_REQUIRES,
    "tritonclient==2.73.0",  # Triton's ModelConfig protobuf: config.pbtxt parsed as Triton does
    "ml-dtypes==0.5.4",  # the newest tritonclient admits; TensorFlow, JAX and onnx accept it
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",  # make test runs the suite on 2 workers
    "jax[cpu]==0.10.2",  # the nets must run under KERAS_BACKEND=jax, without TensorFlow
    "ruff==0.17.6",
    "setuptools==80.9.0",  # tests/test_packaging.py builds the wheel offline with these
    "wheel==0.45.1",
]
# One console script per tool: the name users type, and the module whose main() it runs. The
# programs live in tools/ (python -m tools.train from a checkout) and are installed as
# vgg_keras.cli: the distribution owns no top-level "tools", a name other projects use.
CLI_PACKAGE = "vgg_keras.cli"
CONSOLE_SCRIPTS = [
    f"vgg-convert = {CLI_PACKAGE}.convert_imagenet:run",
    f"vgg-data-service = {CLI_PACKAGE}.data_service:run",
    f"vgg-describe = {CLI_PACKAGE}.describe:run",
    f"vgg-evaluate = {CLI_PACKAGE}.evaluate:run",
    f"vgg-export = {CLI_PACKAGE}.export:run",
    f"vgg-predict = {CLI_PACKAGE}.predict:run",
    f"vgg-explain = {CLI_PACKAGE}.explain:run",
    f"vgg-train = {CLI_PACKAGE}.train:run",
]

setuptools.setup(
    name="vgg-keras",
    version=_VERSION,
    description="VGG ConvNets (Simonyan & Zisserman, 2014): train, evaluate and export with "
                "TensorFlow/Keras",
    long_description=(_ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[*setuptools.find_packages(include=["vgg_keras*", "pipelines*"]), CLI_PACKAGE],
    package_dir={CLI_PACKAGE: "tools"},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "deploy": DEPLOY_REQUIRES,
                    "gpu": ["tensorflow[and-cuda]==2.21.0"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
