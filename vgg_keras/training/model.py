"""The net of a run: built, initialised (§3.1: N(0, σ²) for net A, Glorot's for deeper nets, or
from a trained net A; or, to fine-tune, from published ImageNet weights (the paper's as
keras.applications publishes them, torchvision's or timm's; by name, fetched into the cache, or a
file), or any earlier run: every layer whose shape fits), frozen below ``--trainable_from``; and
its optimizer."""

import dataclasses

import keras

from pipelines.foundation import errors
from vgg_keras.artifacts import loading
from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import heads
from vgg_keras.nets import initializers
from vgg_keras.nets import stats
from vgg_keras.training import run_config


@dataclasses.dataclass(frozen=True)
class Init:
    """Where a run's first weights came from: ``source`` (a file, or None for random ones), the
    weight layers ``loaded`` from it and the ``new`` ones, freshly initialised, why each new
    one was not loaded (``problems``: ``{layer: reason}``, not recorded), and for published
    weights fetched by name, what they were (``weights``: ``published.Weights.to_json``: the
    repository or URL, revision and hash)."""

    source: str | None
    loaded: tuple
    new: tuple
    problems: dict = dataclasses.field(default_factory=dict, compare=False)
    weights: dict | None = None

    def describe(self):
        if not self.loaded:
            return f"init: every weight layer new ({len(self.new)})"
        return (f"init: loaded {len(self.loaded)} layers from {self.source} "
                f"({', '.join(self.loaded)}); new: {', '.join(self.new) or 'none'}")

    def to_json(self):
        recorded = {"source": self.source, "loaded": list(self.loaded), "new": list(self.new)}
        return {**recorded, "weights": self.weights} if self.weights else recorded

    @classmethod
    def from_json(cls, value):
        return cls(value["source"], tuple(value["loaded"]), tuple(value["new"]),
                   weights=value.get("weights"))


def build_initialized_model(cfg, num_classes, resumed=False):
    """Builds, initialises and freezes the net of ``cfg`` (call inside the strategy's scope);
    returns ``(model, Init)``. A ``resumed`` run builds it with random weights, which its
    checkpoint replaces (the ``--init`` file need not exist any more). The model carries no
    weight decay: the training step applies it (``steps``)."""
    init = cfg.init
    with errors.user_input():  # the nets judge the run's settings and its --init file
        model = build_model(cfg, num_classes)
        layers = weight_layers(model)
        if resumed or init.kind in run_config.INITS:
            result = Init(None, (), tuple(layers))
        elif init.kind == "from_a":
            loaded = initializers.initialize_from_a(model, loading.load_model(init.path))
            result = Init(init.path, tuple(n for n in layers if n in loaded),
                          tuple(n for n in layers if n not in loaded))
        elif init.published:
            result = _load_published(model, cfg)
        else:
            result = load_fitting_layers(model, loading.load_model(init.path), init.path)
    freeze_below(model, cfg.trainable_from)
    if result.source and not resumed:
        check_init(model, result, cfg)
    return model, result


def build_model(cfg, num_classes):
    """The net of ``cfg``, freshly initialised: §3.1's N(0, σ²) for net A (``--init=auto``),
    Glorot's for the deeper nets; built as published weights named by ``--init`` need it (their
    input normalisation, batch norm's ε), on every start of the run."""
    kind = cfg.init.kind
    if kind == "auto":  # §3.1: net A from N(0, σ²); deeper nets trainable with Glorot's init
        kind = "gaussian" if configs.resolve_config(cfg.config)[0].startswith("A") else "glorot"
    needs = cfg.init.needs
    batch_norm = builder.batch_norm_of(cfg.config, None)
    if batch_norm:
        epsilon = needs.bn_epsilon if needs and needs.bn_epsilon else batch_norm.epsilon
        batch_norm = builder.BatchNorm(cfg.bn_momentum, epsilon)
    return builder.build_vgg(
        cfg.config, num_classes, input_shape=(cfg.crop_size, cfg.crop_size, 3),
        head=heads.Head(fc_units=cfg.fc_units, dropout=cfg.dropout), width=cfg.width,
        batch_norm=batch_norm,
        weight_init=initializers.WeightInit("gaussian" if kind == "gaussian" else "glorot",
                                            cfg.init_stddev, seed=cfg.seed),
        preprocessing=builder.Preprocessing(normalization=normalization_of(cfg),
                                            color_shift_stddev=cfg.color_shift_stddev))


def normalization_of(cfg):
    """The run's input normalisation: what ``--init``'s published weights were trained with
    (they need it, whatever the recipe says: ``normalization_note``), else ``--normalization``,
    else the paper's."""
    needs = cfg.init.needs
    return (needs.normalization if needs and needs.normalization
            else cfg.normalization or "paper")


def normalization_note(cfg):
    """A line when ``--normalization`` was set and ``--init``'s weights need another, or
    None."""
    needs = cfg.init.needs
    if cfg.normalization and needs and needs.normalization not in (None, cfg.normalization):
        return (f"note: --init={cfg.init} was trained with the {needs.normalization} "
                f"normalisation, which the net keeps (not --normalization={cfg.normalization})")
    return None


def _load_published(model, cfg):
    """``Init`` of the published weights ``--init`` names, loaded into the run's net (every
    layer that fits: ``loading.load_published``)."""
    _, weights, report = loading.load_published(cfg.init, cfg.config, model=model)
    return Init(weights.describe(), tuple(report["loaded"]), tuple(report["skipped"]),
                report["problems"], weights.to_json() if weights.fetched else None)


def check_init(model, init, cfg):
    """Refuses an ``--init`` that leaves what matters random: one that loaded no convolution at
    all, or that did not load a layer ``--trainable_from`` freezes (it would stay random).

    Raises:
        UserError: naming the layers and why each was not loaded (the shapes that differ).
    """
    def reasons(names):
        return "; ".join(f"{name}: {init.problems.get(name, 'not loaded')}" for name in names)

    convolutions = [n for n in weight_layers(model)
                    if isinstance(model.get_layer(n), keras.layers.Conv2D)]
    if not set(convolutions) & set(init.loaded):
        raise errors.UserError(
            f"--init={cfg.init} loaded no convolution into {model.name} "
            f"({reasons(convolutions[:3])}{'; ...' if len(convolutions) > 3 else ''}): the net "
            "must be built as the weights were (--config, --width, --crop_size, batch norm)")
    if cfg.trainable_from:
        names = [layer.name for layer in model.layers]
        frozen = [n for n in weight_layers(model)
                  if names.index(n) < names.index(cfg.trainable_from)]
        random = [n for n in frozen if n not in init.loaded]
        if random:
            raise errors.UserError(
                f"--init={cfg.init} did not load {', '.join(random)}, which "
                f"--trainable_from={cfg.trainable_from} freezes: they would stay random "
                f"({reasons(random)}); build the net as the weights were, or train them "
                "(an earlier --trainable_from)")


def weight_layers(model):
    """The names of the convolutions and FC layers, in order."""
    return [layer.name for layer in model.layers if stats.is_weight_layer(layer)]


def load_fitting_layers(model, source, source_path):
    """Copies every layer of ``source`` whose name and weight shapes match one of ``model``'s
    (a batch-norm layer with its convolution); the others stay as initialised."""
    theirs = {layer.name: layer for layer in source.layers}
    loaded, problems = set(), {}
    for layer in model.layers:
        mine = layer.get_weights()
        other = theirs.get(layer.name)
        if not mine or layer.name.endswith("color_shift"):
            continue
        if other is None:
            problems[layer.name] = "not in the source"
            continue
        weights = other.get_weights()
        if [w.shape for w in weights] == [w.shape for w in mine]:
            layer.set_weights(weights)
            loaded.add(layer.name)
        else:
            problems[layer.name] = (f"source {[w.shape for w in weights]}, "
                                    f"net {[w.shape for w in mine]}")
    names = weight_layers(model)
    return Init(source_path, tuple(n for n in names if n in loaded),
                tuple(n for n in names if n not in loaded), problems)


def freeze_below(model, first_trainable):
    """Freezes every layer before ``first_trainable`` (Keras runs a frozen batch-norm layer in
    inference mode: its statistics stay too).

    Raises:
        ValueError: if the net has no such layer.
    """
    if not first_trainable:
        return
    names = [layer.name for layer in model.layers]
    if first_trainable not in names:
        raise errors.UserError(f"--trainable_from={first_trainable}: {model.name} has no such "
                               f"layer; its weight layers: {', '.join(weight_layers(model))}")
    for layer in model.layers[:names.index(first_trainable)]:
        layer.trainable = False


def training_view(model, crop_size):
    """The net as the steps train it on ``crop_size`` crops: ``model`` itself at its own input
    size; at another (FixRes: ``--train_crop_size`` below ``--crop_size``), a twin of the same
    layers and weights on that input, with torchvision's adaptive average pooling to the
    classifier's grid before ``flatten`` (``nn.AdaptiveAvgPool2d((7, 7))`` of torchvision's VGG,
    the identity at the net's own size, so that the net saved and exported has none).

    Raises:
        UserError: for a net without a classifier to pool for.
    """
    size = model.input_shape[1]
    if crop_size == size:
        return model
    names = [layer.name for layer in model.layers]
    if "flatten" not in names:
        raise errors.UserError(f"--train_crop_size={crop_size} needs a net with its FC "
                               f"classifier; {model.name} has none")
    grid = tuple(model.get_layer("flatten").input.shape[1:3])
    inputs = keras.Input((crop_size, crop_size, 3), dtype=model.inputs[0].dtype,
                         name="images")
    x = inputs
    for layer in model.layers[1:]:
        if layer.name == "flatten" and tuple(x.shape[1:3]) != grid:
            x = _adaptive_pool(x, grid)
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _adaptive_pool(x, grid):
    """PyTorch's adaptive average pooling of ``x`` to ``grid``. A 1×1 map is repeated (its
    exact adaptive average): Keras 3.15's ``AdaptiveAveragePooling2D`` fails on it."""
    if tuple(x.shape[1:3]) == (1, 1):
        return keras.layers.UpSampling2D(grid, name="fixres_pool")(x)
    return keras.layers.AdaptiveAveragePooling2D(grid, name="fixres_pool")(x)


def make_optimizer(cfg):
    """``--optimizer``: SGD with momentum (§3.1), with Nesterov's, or AdamW; float16 wraps it
    in dynamic loss scaling. SGD's weight decay is not the optimizer's: the training step adds
    Caffe's λ·w to the gradients (``steps``). AdamW's is decoupled, the optimizer's own
    (``w -= lr·λ·w``), on the kernels and, with ``--norm_weight_decay``, on batch norm and
    biases too (``steps.exclude_from_decay``)."""
    if cfg.optimizer == "adamw":
        # torchvision's AdamW: betas (0.9, 0.999), eps 1e-8; --momentum is SGD's.
        optimizer = keras.optimizers.AdamW(learning_rate=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay or None,
                                           epsilon=1e-8)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum,
                                         nesterov=cfg.optimizer == "sgd_nesterov")
    if cfg.dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
