"""``--recipe``: named sets of defaults over ``vgg-train``'s settings.

- ``paper``: §3.1 as the paper trained (SGD 0.9, weight decay 5e-4 on kernels, dropout, ÷10 on
  plateau, scale jitter, the PCA colour shift). The default: nothing else changes.
- ``torchvision_simple``: the recipe behind torchvision's VGG weights (references/
  classification/README.md: ``train.py --model vgg16 --lr 1e-2``; the -BN nets "with the default
  parameters", lr 0.1): 90 epochs of 32 × 8, SGD 0.9, ÷10 every 30 epochs, weight decay 1e-4 on
  every parameter, RandomResizedCrop 224 + flip, resize 256 / centre crop 224 at test.
- ``torchvision``: the 2021 reference recipe (pytorch/vision#3995; the ResNet-50 command of
  references/classification/README.md): batch 1024, lr 0.5, cosine after 5 linear warm-up
  epochs, 600 epochs, TrivialAugmentWide, random erasing 0.1, label smoothing 0.1, mixup 0.2,
  cutmix 1.0, weight decay 2e-5 and none on normalisation layers, train crop 176 / test resize
  232 (FixRes), EMA of the weights (0.99998 every 32 steps), repeated augmentation ×4.

A recipe only sets defaults: every piece stays a setting of its own, and a flag given on the
command line (or a keyword given to ``TrainConfig.for_recipe``) wins over the recipe. ``run.json``
records the recipe and every resulting setting.

Free of TensorFlow and Keras, as ``run_config`` is.
"""

import dataclasses

from pipelines import input_config
from pipelines.foundation import errors
from pipelines.foundation.settings import above
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras.nets import configs

RECIPES = ("paper", "torchvision_simple", "torchvision")
AUTO_AUGMENTS = input_config.AUTO_AUGMENTS
OPTIMIZERS = ("sgd", "sgd_nesterov", "adamw")
# torchvision's RandomResizedCrop: the crop's share of the image's area, and its aspect ratio.
RANDOM_RESIZED_CROP = (0.08, 1.0, 3 / 4, 4 / 3)
_UNIT = (lambda value: 0 <= value <= 1, "in [0, 1]")


def mean_colour(normalization):
    """The RGB colour random erasing fills with: the mean the net subtracts (torchvision erases
    to 0 after normalising, which is that mean), rounded."""
    if normalization == "torchvision":
        return tuple(round(255 * m) for m in (0.485, 0.456, 0.406))
    return (124, 117, 104)  # §2.1's mean RGB, (123.68, 116.78, 103.94) rounded


def parse_random_resized_crop(text):
    """``--random_resized_crop``: 'none' (§3.1's crop); 'default' (torchvision's: area 0.08–1,
    ratio 3/4–4/3); 'SMIN,SMAX' (area, torchvision's ratios); or 'SMIN,SMAX,RMIN,RMAX'."""
    text = str(text).strip().lower()
    if text in ("", "none", "off"):
        return None
    if text in ("default", "on", "torchvision"):
        return RANDOM_RESIZED_CROP
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 2:
        values += RANDOM_RESIZED_CROP[2:]
    if (len(values) != 4 or not 0 < values[0] <= values[1] <= 1
            or not 0 < values[2] <= values[3]):
        raise errors.UserError(
            "--random_resized_crop must be none, default (area 0.08,1 and ratio 3/4,4/3), "
            f"SMIN,SMAX (0 < SMIN <= SMAX <= 1) or SMIN,SMAX,RMIN,RMAX; got {text!r}")
    return values


def random_resized_crop_text(value):
    if value is None:
        return "none"
    return ",".join(f"{v:g}" for v in value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipeSettings:
    """The recipe, and the pieces beyond the paper's that a recipe sets (each its own flag)."""

    recipe: str = setting("paper", "A named set of defaults: paper (§3.1), torchvision_simple "
                                   "(torchvision's VGG weights), torchvision (its 2021 "
                                   "reference recipe). Flags given win over it.",
                          choices=RECIPES)
    random_resized_crop: tuple | None = setting(
        None, "torchvision's crop instead of §3.1's: none, default (area 0.08–1, ratio "
              "3/4–4/3), SMIN,SMAX or SMIN,SMAX,RMIN,RMAX; only the window is decoded.",
        parse=parse_random_resized_crop, text=random_resized_crop_text)
    auto_augment: str = setting("none", "ta_wide (TrivialAugmentWide) or rand_augment (2 ops at "
                                        "magnitude 9), per image in the input.",
                                choices=AUTO_AUGMENTS)
    random_erase: float = setting(0.0, "Probability of erasing a random rectangle (to the mean "
                                       "colour) of each crop.", check=_UNIT)
    mixup_alpha: float = setting(0.0, "Mixup's Beta(α, α) (0: off); with --cutmix_alpha each "
                                      "batch gets one of the two.", check=at_least(0))
    cutmix_alpha: float = setting(0.0, "CutMix's Beta(α, α) (0: off).", check=at_least(0))
    label_smoothing: float = setting(0.0, "Label smoothing ε of the loss.",
                                     check=(lambda value: 0 <= value < 1, "in [0, 1)"))
    optimizer: str = setting("sgd", "sgd, sgd_nesterov or adamw (decoupled weight decay).",
                             choices=OPTIMIZERS)
    norm_weight_decay: float = setting(0.0, "Weight decay on batch-norm parameters and biases "
                                            "(the paper's and Caffe's: none).",
                                       check=at_least(0))
    model_ema: bool = setting(False, "Keep an exponential moving average of the weights; "
                                     "validation, model.keras and exports use it.")
    model_ema_decay: float = setting(0.99998, "The EMA's decay per image-epoch unit, as "
                                              "torchvision's --model-ema-decay.",
                                     check=(lambda value: 0 < value < 1, "in (0, 1)"))
    model_ema_steps: int = setting(32, "Steps between EMA updates.", check=at_least(1))
    train_crop_size: int | None = setting(None, "Training crop (FixRes: smaller than "
                                                "--crop_size, the net's test input); default "
                                                "--crop_size. A recipe's is for 224 crops, "
                                                "scaled to --crop_size.", check=at_least(32))
    val_resize_size: int | None = setting(None, "Shorter side of validation images before the "
                                                "centre crop (default: Q from --scale, §4.1); "
                                                "a recipe's scaled as its train crop.",
                                          check=at_least(32))
    ra_reps: int = setting(1, "Repeated augmentation: each image this many times per epoch "
                              "(differently augmented, on different replicas).",
                           check=at_least(1))
    clip_grad_norm: float | None = setting(None, "Clip the global gradient norm to this.",
                                           check=above(0))
    normalization: str | None = setting(None, "Input normalisation: paper (mean RGB "
                                              "subtracted) or torchvision (mean/std); default: "
                                              "paper, or what --init's weights need.",
                                        choices=configs.NORMALIZATIONS)
    color_shift_stddev: float = setting(0.1, "σ of §3.1's PCA colour shift (0: off).",
                                        check=at_least(0))


def _simple(batch_norm):
    # references/classification/README.md, "VGG": --lr 1e-2 for the plain nets; the -BN nets
    # with train.py's defaults (lr 0.1). The rest is train.py's defaults: batch 32 per GPU on 8,
    # 90 epochs, StepLR(30, 0.1), weight decay 1e-4 on every parameter (norm_weight_decay None),
    # RandomResizedCrop + flip, resize 256 / crop 224, bilinear.
    return dict(batch_size=256, train_epochs=90, learning_rate=0.1 if batch_norm else 0.01,
                momentum=0.9, weight_decay=1e-4, norm_weight_decay=1e-4, lr_schedule="step",
                lr_step_epochs=(30, 60), random_resized_crop=RANDOM_RESIZED_CROP,
                val_resize_size=256, normalization="torchvision", color_shift_stddev=0.0,
                bn_momentum=0.9, dropout=0.5)


def _reference(batch_norm):
    # The ResNet-50 command of references/classification/README.md (pytorch/vision#3995). Its
    # lr 0.5 is for nets with batch norm; a plain VGG diverges there, so the plain nets take a
    # tenth, the ratio of the simple recipe (not torchvision's: it trained no VGG this way).
    return dict(batch_size=1024, train_epochs=600, learning_rate=0.5 if batch_norm else 0.05,
                momentum=0.9, weight_decay=2e-5, norm_weight_decay=0.0, lr_schedule="cosine",
                warmup_epochs=5.0, auto_augment="ta_wide", random_erase=0.1,
                label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0,
                random_resized_crop=RANDOM_RESIZED_CROP, train_crop_size=176,
                val_resize_size=232, model_ema=True, model_ema_decay=0.99998,
                model_ema_steps=32, ra_reps=4, normalization="torchvision",
                color_shift_stddev=0.0, bn_momentum=0.9, dropout=0.5)


def recipe_values(name, config):
    """The settings recipe ``name`` sets for net ``config`` (``{}`` for the paper's: its
    defaults are the settings' own).

    Raises:
        UserError: for an unknown recipe.
    """
    if name not in RECIPES:
        raise errors.UserError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    if name == "paper":
        return {}
    try:
        batch_norm = configs.resolve_config(config)[2]
    except ValueError:
        batch_norm = False  # the net's own check names the mistake
    return (_simple if name == "torchvision_simple" else _reference)(batch_norm)


def with_recipe(values, given):
    """``values`` (every setting of a run, by name) with the recipe's defaults in place of the
    settings not in ``given`` (those the user set)."""
    recipe = recipe_values(values.get("recipe") or "paper", values.get("config", "A"))
    crop = values.get("crop_size") or configs.CROP_SIZE
    for name in ("train_crop_size", "val_resize_size"):
        # The recipe's sizes are for 224 crops: for other crops, in the same proportion (a
        # net's five poolings need at least 32 pixels).
        if name in recipe and crop != configs.CROP_SIZE:
            recipe[name] = max(32, round(recipe[name] * crop / configs.CROP_SIZE))
    return {**values, **{name: value for name, value in recipe.items() if name not in given}}


def describe(cfg):
    """The pieces beyond §3.1 a run uses, in words (for the recipe line of its log)."""
    parts = []
    if cfg.random_resized_crop:
        low, high, ratio_low, ratio_high = cfg.random_resized_crop
        parts.append(f"random resized crop (area {low:g}–{high:g}, ratio "
                     f"{ratio_low:.3g}–{ratio_high:.3g})")
    if cfg.auto_augment != "none":
        parts.append(cfg.auto_augment)
    for name, label in (("random_erase", "random erasing p"), ("mixup_alpha", "mixup α"),
                        ("cutmix_alpha", "cutmix α"), ("label_smoothing", "label smoothing"),
                        ("clip_grad_norm", "gradient norm clipped at")):
        if getattr(cfg, name):
            parts.append(f"{label} {getattr(cfg, name):g}")
    if cfg.ra_reps > 1:
        parts.append(f"repeated augmentation ×{cfg.ra_reps}")
    if cfg.model_ema:
        parts.append(f"EMA {cfg.model_ema_decay:g} every {cfg.model_ema_steps} steps")
    if cfg.train_crop_size and cfg.train_crop_size != cfg.crop_size:
        parts.append(f"train crop {cfg.train_crop_size} (FixRes)")
    if cfg.recipe == "paper" and not parts:
        return ""
    return f"--recipe={cfg.recipe}" + (f": {'; '.join(parts)}" if parts else "")
