"""VGG ConvNets of Simonyan & Zisserman (2014), "Very Deep Convolutional Networks for
Large-Scale Image Recognition", as Keras models.

The package root holds the nets and needs only Keras (any backend; TensorFlow is not imported).
Training, evaluation and export, which need TensorFlow, live in their own submodules.

The names below are loaded on first use: ``import vgg_keras`` (and so the command-line tools,
whose flags are defined from ``vgg_keras.training.run_config`` before any Keras is needed) does
not pay for importing Keras and its backend.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "RGB_MEAN": "builder",
    "build_preprocessing": "builder",
    "build_vgg": "builder",
    "to_conv_head": "builder",
    "CLASSIFIER": "configs",
    "CONFIGS": "configs",
    "PAPER_INIT_STDDEV": "configs",
    "config_names": "configs",
    "resolve_config": "configs",
    "FROM_A_LAYERS": "initializers",
    "initialize_from_a": "initializers",
    "LocalResponseNormalization": "layers",
    "PCAColorShift": "layers",
    "count_flops": "stats",
    "count_parameters": "stats",
    "count_weight_layers": "stats",
    "feature_model": "features",
    "load_keras_applications_weights": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vgg_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vgg_keras.{_EXPORTS[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
