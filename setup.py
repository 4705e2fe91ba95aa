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
]
TEST_REQUIRES = [
    "pytest==9.2.0",
    "jax[cpu]==0.10.2",  # the nets must run under KERAS_BACKEND=jax, without TensorFlow
    "ruff==0.17.6",
]
# One console script per tool: the name users type, and the module whose main() it runs.
CONSOLE_SCRIPTS = [
    "vgg-convert = tools.convert_imagenet:run",
    "vgg-data-service = tools.data_service:run",
    "vgg-describe = tools.describe:run",
    "vgg-evaluate = tools.evaluate:run",
    "vgg-export = tools.export:run",
    "vgg-predict = tools.predict:run",
    "vgg-train = tools.train:run",
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
    packages=setuptools.find_packages(include=["vgg_keras*", "pipelines*", "tools*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "gpu": ["tensorflow[and-cuda]==2.21.0"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
