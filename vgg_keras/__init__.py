"""VGG ConvNets of Simonyan & Zisserman (2014), "Very Deep Convolutional Networks for
Large-Scale Image Recognition", as Keras models.

The package root exposes the nets (``vgg_keras.nets``: Keras only, any backend; TensorFlow is not
imported) and reads any model back (``vgg_keras.artifacts``). Training, evaluation and serving,
which need TensorFlow, are rooms of their own (``vgg_keras.training``, ``vgg_keras.evaluation``,
``vgg_keras.serving``) over what they share: ``artifacts`` (a model from anywhere), ``compute``
(where they compute) and ``protocols`` (the paper's test protocols).

The names below are loaded on first use (the package's one table of lazy names): ``import
vgg_keras`` (and so the command-line tools, whose flags are defined before any Keras is needed)
does not pay for importing Keras and its backend. Yet after ``import vgg_keras``, Keras loads
every model this package saved (``keras.models.load_model("MODEL_DIR/model.keras")``): our
layers are registered with Keras once its module has run, or at once if it already has.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "RGB_MEAN": "nets.builder",
    "BatchNorm": "nets.builder",
    "build_backbone": "nets.builder",
    "build_classifier": "nets.builder",
    "build_preprocessing": "nets.builder",
    "build_vgg": "nets.builder",
    "Preprocessing": "nets.builder",
    "Head": "nets.heads",
    "to_conv_head": "nets.heads",
    "CLASSIFIER": "nets.configs",
    "CONFIGS": "nets.configs",
    "PAPER_INIT_STDDEV": "nets.configs",
    "config_names": "nets.configs",
    "resolve_config": "nets.configs",
    "FROM_A_LAYERS": "nets.initializers",
    "WeightInit": "nets.initializers",
    "initialize_from_a": "nets.initializers",
    "LocalResponseNormalization": "nets.layers",
    "PCAColorShift": "nets.layers",
    "count_flops": "nets.stats",
    "count_parameters": "nets.stats",
    "count_weight_layers": "nets.stats",
    "feature_model": "nets.features",
    "load_keras_applications_weights": "nets.keras_weights",
    "load_timm_weights": "nets.torch_weights",
    "load_torchvision_weights": "nets.torch_weights",
    "build_pretrained": "nets.pretrained",
    "published_weights": "nets.published",
    "load_model": "artifacts.loading",
    "decode_predictions": "artifacts.loading",
    "preprocess_image": "serving.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vgg_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vgg_keras.{_EXPORTS[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    """The public names: the nets' and loading's (``__all__``), the version, the subpackages."""
    return sorted([*_EXPORTS, "__version__",
                   *(name for name, value in globals().items()
                     if isinstance(value, type(sys)) and value.__name__.startswith(__name__))])


def _register_layers():
    """Our layers' classes, registered with Keras by importing them (``layers`` decorates them
    with ``keras.saving.register_keras_serializable``): Keras finds them by name in saved models."""
    importlib.import_module("vgg_keras.nets.layers")


class _RegisterWhenKerasIsImported(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as Python would, and registers our layers once its module has run.

    Python has no hook that runs after another package's import; this finder, first on
    ``sys.meta_path`` until Keras has been imported, is the standard way to make one. It stays
    until Keras' module has run (a ``find_spec("keras")`` that imports nothing, as TensorFlow's
    start makes, leaves it waiting for the import itself), and never stands between Python and
    any other module."""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._finding:
            return None
        self._finding = True  # the search below asks the finders again, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def run_then_register(module):
            run_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_layers()

        spec.loader.exec_module = run_then_register  # this spec's own loader object only
        return spec


if "keras" in sys.modules:
    _register_layers()
elif importlib.util.find_spec("keras") is not None:
    sys.meta_path.insert(0, _RegisterWhenKerasIsImported())
