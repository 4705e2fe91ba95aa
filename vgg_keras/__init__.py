"""VGG ConvNets of Simonyan & Zisserman (2014), "Very Deep Convolutional Networks for
Large-Scale Image Recognition", as Keras models.

The package root holds the nets and needs only Keras (any backend; TensorFlow is not imported).
Training, evaluation and export, which need TensorFlow, live in their own submodules.

The names below are loaded on first use: ``import vgg_keras`` (and so the command-line tools,
whose flags are defined from ``vgg_keras.training.run_config`` before any Keras is needed) does
not pay for importing Keras and its backend. Yet after ``import vgg_keras``, Keras loads every
model this package saved (``keras.models.load_model("MODEL_DIR/model.keras")``): our layers are
registered with Keras the moment Keras is imported, or at once if it already is.
"""

import importlib
import importlib.abc
import importlib.util
import sys

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
    "load_timm_weights": "torch_weights",
    "load_torchvision_weights": "torch_weights",
    "build_pretrained": "pretrained",
    "load_model": "artifacts",
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


def _register_layers():
    """Our layers' classes, registered with Keras by importing them (``layers`` decorates them
    with ``keras.saving.register_keras_serializable``): Keras finds them by name in saved models."""
    importlib.import_module("vgg_keras.layers")


class _RegisterWhenKerasIsImported(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as Python would, and registers our layers once its module has run.

    Python has no hook that runs after another package's import; this finder, first on
    ``sys.meta_path`` until Keras is imported, is the standard way to make one. It removes itself
    before looking Keras up, so it runs once and never stands between Python and any other
    module."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def run_then_register(module):
            run_module(module)
            _register_layers()

        spec.loader.exec_module = run_then_register  # this spec's own loader object only
        return spec


if "keras" in sys.modules:
    _register_layers()
elif importlib.util.find_spec("keras") is not None:
    sys.meta_path.insert(0, _RegisterWhenKerasIsImported())
