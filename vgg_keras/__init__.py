"""VGG ConvNets of Simonyan & Zisserman (2014), "Very Deep Convolutional Networks for
Large-Scale Image Recognition", as Keras models.

The package root holds the nets and needs only Keras (any backend; TensorFlow is not imported).
Training, evaluation and export, which need TensorFlow, live in their own submodules.
"""

from vgg_keras.builder import RGB_MEAN
from vgg_keras.builder import build_preprocessing
from vgg_keras.builder import build_vgg
from vgg_keras.builder import to_conv_head
from vgg_keras.configs import CLASSIFIER
from vgg_keras.configs import CONFIGS
from vgg_keras.configs import config_names
from vgg_keras.configs import resolve_config
from vgg_keras.initializers import FROM_A_LAYERS
from vgg_keras.initializers import PAPER_INIT_STDDEV
from vgg_keras.initializers import initialize_from_a
from vgg_keras.layers import LocalResponseNormalization
from vgg_keras.layers import PCAColorShift
from vgg_keras.stats import count_flops
from vgg_keras.stats import count_parameters
from vgg_keras.stats import count_weight_layers
from vgg_keras.weights import load_keras_applications_weights

__version__ = "0.1.0"

__all__ = [
    "CLASSIFIER",
    "CONFIGS",
    "FROM_A_LAYERS",
    "LocalResponseNormalization",
    "PAPER_INIT_STDDEV",
    "PCAColorShift",
    "RGB_MEAN",
    "build_preprocessing",
    "build_vgg",
    "config_names",
    "count_flops",
    "count_parameters",
    "count_weight_layers",
    "initialize_from_a",
    "load_keras_applications_weights",
    "resolve_config",
    "to_conv_head",
]
