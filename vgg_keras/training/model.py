"""The net of a run (§3.1 initialisation: N(0, σ²) for net A, Glorot's for deeper nets, from a
trained net A, from keras.applications weights, or from an earlier run) and its optimizer."""

import keras

from vgg_keras import artifacts
from vgg_keras import builder
from vgg_keras import configs
from vgg_keras import initializers
from vgg_keras import weights as vgg_weights
from vgg_keras.training import run_config


def build_model(cfg, num_classes):
    """Builds and initialises the net of ``cfg`` (call inside the strategy's scope).

    The model carries no weight decay: the training step applies it (``steps``).
    """
    kind, path = run_config.parse_init(cfg.init)
    if kind == "auto":  # §3.1: net A from N(0, σ²); deeper nets trainable with Glorot's init
        kind = "gaussian" if configs.resolve_config(cfg.config)[0].startswith("A") else "glorot"
    model = builder.build_vgg(
        cfg.config, num_classes, input_shape=(cfg.crop_size, cfg.crop_size, 3),
        dropout=cfg.dropout, width=cfg.width, fc_units=cfg.fc_units,
        init="gaussian" if kind == "gaussian" else "glorot", init_stddev=cfg.init_stddev,
        seed=cfg.seed)
    if kind == "from_a":
        initializers.initialize_from_a(model, path)
    elif kind == "keras_applications":
        vgg_weights.load_keras_applications_weights(model, path, skip_mismatch=True)
    elif kind == "model":
        model.set_weights(artifacts.load_model(path).get_weights())
    return model


def make_optimizer(cfg):
    """SGD with momentum (§3.1); float16 wraps it in dynamic loss scaling. Weight decay is not
    the optimizer's: the training step adds Caffe's λ·w to the kernels' gradients."""
    optimizer = keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    if cfg.dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
