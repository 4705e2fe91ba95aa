"""``--recipe`` and its pieces, each held to its contract with numbers: the recipes' defaults
under the flags given; mixup's and cutmix's labels; label smoothing's loss; the EMA's formula;
weight decay on batch norm and biases; RandomResizedCrop's range; the auto-augment ops against
Pillow's; repeated augmentation's copies on different replicas."""

import dataclasses
import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

from pipelines import augment
from pipelines import auto_augment
from pipelines import inputs
from tests.conftest import build_tiny
from tools import program
from vgg_keras.training import ema
from vgg_keras.training import recipes
from vgg_keras.training import run_config
from vgg_keras.training import steps

PATHS = dict(data_dir="/data", model_dir="/models/run")


class _Flag:
    """A flag as absl holds it: its value (the default unless given) and whether it was
    given."""

    def __init__(self, value, present):
        self.value, self.present = value, present


def _from_flags(*arguments):
    """vgg-train's settings of ``arguments`` (``--name=value``), read as ``tools.program`` reads
    its flags, and checked."""
    given = dict(argument[2:].split("=", 1) for argument in
                 ["--data_dir=/data", "--model_dir=/models/run", *arguments])
    holders = {}
    for field in dataclasses.fields(run_config.TrainConfig):
        if not field.metadata.get("flag"):
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        text = field.metadata.get("text")
        if text and default is not None:
            default = text(default)
        value = given.get(field.name, default)
        kind = program._base_type(field.type)
        if field.name in given and kind in (int, float) and not text:
            value = kind(value)  # absl parses a number flag's text
        holders[field.name] = _Flag(value, field.name in given)
    settings = program.settings_from_flags(run_config.TrainConfig, holders)
    settings.validate(check_files=False)
    return settings


def test_paper_is_the_default_and_sets_nothing():
    assert recipes.recipe_values("paper", "D") == {}
    assert run_config.TrainConfig(**PATHS) == run_config.TrainConfig.for_recipe("paper", **PATHS)
    assert _from_flags() == run_config.TrainConfig(**PATHS)


def test_the_simple_recipe_is_torchvisions_vgg_command():
    plain = run_config.TrainConfig.for_recipe("torchvision_simple", config="D", **PATHS)
    bn = run_config.TrainConfig.for_recipe("torchvision_simple", config="D-BN", **PATHS)
    assert (plain.learning_rate, bn.learning_rate) == (0.01, 0.1)
    assert (plain.batch_size, plain.train_epochs, plain.lr_schedule, plain.lr_step_epochs) == (
        256, 90, "step", (30, 60))
    assert (plain.weight_decay, plain.norm_weight_decay, plain.val_resize_size) == (1e-4, 1e-4,
                                                                                    256)
    assert plain.random_resized_crop == recipes.RANDOM_RESIZED_CROP and plain.train_crop == 224


def test_flags_given_win_over_the_recipe_and_the_rest_is_the_recipes():
    cfg = _from_flags("--recipe=torchvision", "--config=D-BN", "--label_smoothing=0",
                      "--train_epochs=3", "--random_resized_crop=0.25,1")
    assert (cfg.label_smoothing, cfg.train_epochs) == (0.0, 3)  # given, even at the default
    assert cfg.random_resized_crop == (0.25, 1.0, 3 / 4, 4 / 3)
    assert (cfg.learning_rate, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.model_ema, cfg.ra_reps,
            cfg.train_crop, cfg.val_resize_size, cfg.auto_augment) == (
        0.5, 0.2, 1.0, True, 4, 176, 232, "ta_wide")


@pytest.mark.parametrize("arguments, message", [
    (["--recipe=fast"], "recipe"),
    (["--random_resized_crop=0.5,0.1"], "--random_resized_crop must be"),
    (["--optimizer=adamw", "--norm_weight_decay=0.3"], "--norm_weight_decay must be 0 or"),
    (["--val_resize_size=100"], "--val_resize_size=100 is smaller than the 224"),
    (["--mixup_alpha=-1"], "mixup_alpha must be >= 0"),
    (["--random_erase=2"], "random_erase must be in [0, 1]"),
])
def test_a_bad_recipe_setting_is_one_line(arguments, message):
    with pytest.raises(Exception, match=message.replace("[", r"\[").replace("]", r"\]")):
        _from_flags(*arguments)


def _one_hot(labels, classes=5):
    return tf.one_hot(labels, classes)


def test_mixup_labels_are_the_lambda_mix_and_sum_to_one():
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3)), tf.uint8)
    labels = _one_hot([0, 1, 2, 3, 4, 0])
    for seed in range(10):
        mixed, mixed_labels, lam = augment.mixup(images, labels, 0.2, tf.constant([seed, 1]))
        lam = float(lam)
        expected = lam * labels + (1 - lam) * tf.roll(labels, 1, axis=0)
        np.testing.assert_allclose(mixed_labels, expected, atol=1e-6)
        np.testing.assert_allclose(tf.reduce_sum(mixed_labels, 1), 1.0, atol=1e-6)
        blend = lam * images.numpy() + (1 - lam) * np.roll(images.numpy(), 1, axis=0)
        assert np.abs(mixed.numpy().astype(float) - blend).max() <= 0.5 + 1e-4


def test_cutmix_label_weight_is_the_pasted_areas_share():
    # Each image one grey level of its own: the pasted pixels are those of the image before.
    images = tf.constant(np.arange(6)[:, None, None, None] * 40 * np.ones((6, 20, 30, 3)),
                         tf.uint8)
    labels = _one_hot([0, 1, 2, 3, 4, 0])
    shares = []
    for seed in range(20):
        pasted, mixed_labels, lam = augment.cutmix(images, labels, 1.0, tf.constant([seed, 2]))
        share = float(np.mean(pasted.numpy()[1] == images.numpy()[0]))  # image 1 got image 0's
        shares.append(share)
        assert float(lam) == pytest.approx(1 - share, abs=1e-6)
        np.testing.assert_allclose(mixed_labels[1], (1 - share) * labels[1] + share * labels[0],
                                   atol=1e-6)
        np.testing.assert_allclose(tf.reduce_sum(mixed_labels, 1), 1.0, atol=1e-6)
    assert min(shares) < 0.2 and max(shares) > 0.3  # boxes of many sizes


def test_mix_batch_chooses_mixup_or_cutmix_per_batch():
    images = tf.constant(np.arange(4)[:, None, None, None] * 60 * np.ones((4, 16, 16, 3)),
                         tf.uint8)
    kinds = set()
    for seed in range(16):
        mixed, _ = augment.mix_batch(images, tf.constant([0, 1, 2, 3]), 4, 0.2, 1.0,
                                     tf.constant([seed, 3]))
        values = set(np.unique(mixed.numpy()[1]))
        kinds.add("cutmix" if values <= {0, 60} else "mixup")
    assert kinds == {"mixup", "cutmix"}


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_loss_equals_keras_categorical_crossentropy(smoothing):
    probabilities = tf.nn.softmax(tf.random.stateless_normal([8, 5], [1, 2]))
    labels = tf.constant([0, 1, 2, 3, 4, 0, 1, 2])
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    ours = tf.reduce_mean(steps.loss_of(labels, probabilities, smoothing))
    assert float(ours) == pytest.approx(float(keras_loss(_one_hot(labels), probabilities)),
                                        rel=1e-6)
    soft = augment.mixup(tf.zeros([8, 4, 4, 3], tf.uint8), _one_hot(labels), 0.4, [0, 4])[1]
    ours = tf.reduce_mean(steps.loss_of(soft, probabilities, smoothing))
    assert float(ours) == pytest.approx(float(keras_loss(soft, probabilities)), rel=1e-6)


def test_ema_equals_its_formula_after_n_steps():
    model = build_tiny("A-BN")
    cfg = types.SimpleNamespace(model_ema_steps=2, model_ema_decay=0.9, batch_size=4,
                                warmup_epochs=1.0)
    average = ema.WeightsEMA(model, tf.distribute.get_strategy(), cfg, steps_per_epoch=2,
                             total_steps=20)
    decay = ema.effective_decay(0.9, 4, 2, 10)
    assert decay == pytest.approx(1 - 0.1 * 4 * 2 / 10)
    rng = np.random.default_rng(0)
    expected = None
    for step in range(1, 11):
        model.set_weights([w + rng.normal(size=w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        if not average.due(step):
            continue
        average.update(step)
        current = [w.numpy() for w in ema._averaged(model)]
        # Copies until the warm-up's end (step 2), then the decayed average.
        expected = current if step <= 2 else [decay * e + (1 - decay) * c
                                              for e, c in zip(expected, current, strict=True)]
    assert int(average.updates.numpy()) == 5
    for ours, theirs in zip(ema._averaged(average.model), expected, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-5)


def _still(seed=1):
    """A tiny BN net without random layers (dropout, colour shift): two copies step alike."""
    import vgg_keras

    return build_tiny("A-BN", num_classes=4, head=vgg_keras.Head(fc_units=16, dropout=0.0),
                      preprocessing=vgg_keras.Preprocessing(color_shift_stddev=0.0))


def _one_step(model_weights, weight_decay, norm_weight_decay):
    model = _still()
    model.set_weights(model_weights)
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    optimizer.build(model.trainable_variables)
    step = steps.make_train_steps(model, optimizer, tf.distribute.get_strategy(), 4,
                                  weight_decay=weight_decay,
                                  regularization=steps.Regularization(
                                      norm_weight_decay=norm_weight_decay))
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)), tf.uint8)
    dataset = iter(tf.data.Dataset.from_tensors((images, tf.constant([0, 1, 2, 3]))).repeat())
    step(dataset, tf.constant(1))
    norm = {id(v) for v in steps.norm_variables(model)}
    return ({v.path: v.numpy() for v in model.trainable_variables if id(v) in norm},
            {v.path: v.numpy() for v in model.trainable_variables if id(v) not in norm})


def test_norm_weight_decay_zero_leaves_batch_norm_and_biases_to_the_gradient():
    weights = _still().get_weights()
    plain_norm, plain_kernels = _one_step(weights, 0.0, 0.0)
    norm, kernels = _one_step(weights, 0.5, 0.0)
    assert any(".gamma" in p or "gamma" in p for p in norm) and any("bias" in p for p in norm)
    for path in norm:  # decay on kernels only: biases and batch norm as without decay
        np.testing.assert_allclose(norm[path], plain_norm[path], rtol=1e-6, atol=1e-7)
    assert all(not np.allclose(kernels[p], plain_kernels[p]) for p in kernels)
    decayed_norm, _ = _one_step(weights, 0.5, 0.5)
    assert any(not np.allclose(decayed_norm[p], plain_norm[p]) for p in decayed_norm)


def test_random_resized_crop_windows_cover_the_requested_range():
    area, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    windows = np.array([augment.resized_crop_window(tf.constant([300, 400]), area, ratio,
                                                    tf.constant([seed, 5])).numpy()
                        for seed in range(300)])
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= 300).all() and (x + w <= 400).all()
    shares, ratios = h * w / (300 * 400), w / h
    assert shares.min() >= 0.08 * 0.97 and shares.max() <= 1.0
    assert ratios.min() >= 0.75 * 0.97 and ratios.max() <= 4 / 3 * 1.03
    assert shares.min() < 0.15 and shares.max() > 0.85  # the whole range, not a corner of it
    assert ratios.min() < 0.8 and ratios.max() > 1.25
    # No window of 90-100 % of the area fits a 10×1000 strip in the ratio range: the centre,
    # clamped to the largest ratio.
    y, x, h, w = augment.resized_crop_window(tf.constant([10, 1000]), (0.9, 1.0), ratio,
                                             tf.constant([0, 0])).numpy()
    assert (h, w) == (10, 13) and x == (1000 - 13) // 2 and y == 0


def _photo(seed=0, shape=(24, 32)):
    rng = np.random.default_rng(seed)
    gradient = np.linspace(20, 220, shape[1])[None, :, None] * np.ones((*shape, 3))
    return np.clip(gradient + rng.normal(0, 25, (*shape, 3)), 0, 255).astype(np.uint8)


def _op(name, image, value):
    """Op ``name`` at ``value`` on one image (a batch of one)."""
    return auto_augment._apply(name, tf.constant(image)[None], tf.constant([value]))[0].numpy()


@pytest.mark.parametrize("name, value, pillow, tolerance", [
    ("equalize", 0.0, ImageOps.equalize, 0),
    ("auto_contrast", 0.0, ImageOps.autocontrast, 0),
    ("posterize", 3.0, lambda image: ImageOps.posterize(image, 3), 0),
    ("solarize", 128.0, lambda image: ImageOps.solarize(image, 128), 0),
    ("brightness", 0.5, lambda image: ImageEnhance.Brightness(image).enhance(1.5), 1),
    ("color", -0.6, lambda image: ImageEnhance.Color(image).enhance(0.4), 1),
    ("contrast", 0.7, lambda image: ImageEnhance.Contrast(image).enhance(1.7), 1),
    ("sharpness", 0.9, lambda image: ImageEnhance.Sharpness(image).enhance(1.9), 1),
])
def test_colour_ops_equal_pillows(name, value, pillow, tolerance):
    """torchvision's ops are PIL's (its tensor ops reproduce them); Pillow is the reference."""
    image = _photo()
    ours = _op(name, image, value)
    theirs = np.asarray(pillow(Image.fromarray(image)))
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    # Pillow rounds its blends where torchvision's tensor ops (and these) truncate: within one
    # grey level there; the same pixels elsewhere.
    assert difference.max() <= tolerance


def test_equalize_of_a_batch_equals_pillows_per_image_with_flat_channels():
    """One histogram count for a batch: each channel of each image still its own table; a
    channel of one value (and one of two) left as Pillow leaves it."""
    photos = [_photo(seed) for seed in range(3)]
    photos[1][..., 2] = 77
    photos[2][..., 0] = np.where(np.arange(32) < 5, 10, 200)[None, :]
    ours = auto_augment._apply("equalize", tf.constant(np.stack(photos)), tf.zeros([3])).numpy()
    for mine, photo in zip(ours, photos, strict=True):
        assert (mine == np.asarray(ImageOps.equalize(Image.fromarray(photo)))).all()


def test_geometric_ops_move_pixels_as_told():
    image = _photo(shape=(17, 17))
    rotated = _op("rotate", image, 90.0)
    assert (rotated == np.rot90(image, k=-1)).all() or (rotated == np.rot90(image)).all()
    shifted = _op("translate_x", image, 5.7)
    assert (shifted[:, 5:] == image[:, :-5]).all() and (shifted[:, :5] == 0).all()
    sheared = _op("shear_x", image, 0.0)
    assert (sheared == image).all()


@pytest.mark.parametrize("name", auto_augment.WARPS)
def test_warps_equal_tensorflows_projective_transform(name):
    """The warps' XLA gather moves every pixel where TensorFlow's
    ``ImageProjectiveTransformV3`` (nearest, black fill: torchvision's ``F.affine``) does, at
    magnitudes of both signs over each op's range, on a share of 5 (padded to 8)."""
    images = tf.constant(np.stack([_photo(seed, (31, 45)) for seed in range(5)]))
    top = auto_augment._top("ta_wide", name, 31.0, 45.0)
    for values in (np.linspace(-top, top, 5), np.linspace(0.13, 0.9, 5) * top):
        matrices = auto_augment._matrix(name, tf.constant(values, tf.float32), 31.0, 45.0)
        ours = auto_augment._warp(images, matrices).numpy()
        theirs = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=matrices, output_shape=[31, 45], fill_value=0.0,
            interpolation="NEAREST", fill_mode="CONSTANT").numpy()
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("policy", ["ta_wide", "rand_augment"])
def test_auto_augment_draws_every_op_and_is_a_function_of_its_seed(policy):
    """One image at a time, and a batch: each image its own op (the batch split by op)."""
    image = tf.constant(_photo(1))
    results = [auto_augment.augment(image, policy, tf.constant([seed, 7])).numpy()
               for seed in range(40)]
    again = auto_augment.augment(image, policy, tf.constant([3, 7])).numpy()
    assert (again == results[3]).all()
    assert all(r.shape == image.shape and r.dtype == np.uint8 for r in results)
    assert len({r.tobytes() for r in results}) > 25  # ops and magnitudes vary per image
    batch = tf.constant(np.stack([_photo(seed) for seed in range(16)]))
    augmented = auto_augment.augment_batch(batch, policy, tf.constant([5, 7])).numpy()
    assert augmented.shape == batch.shape
    changed = [not (a == b).all() for a, b in zip(augmented, batch.numpy(), strict=True)]
    assert 8 <= sum(changed) < 16 or policy == "rand_augment"  # identity and no-ops stay


def test_magnitudes_are_torchvisions():
    top = [float(auto_augment.magnitude("ta_wide", name, 30, 100, 200))
           for name in ("shear_x", "translate_x", "rotate", "brightness", "posterize",
                        "solarize")]
    assert top == pytest.approx([0.99, 32.0, 135.0, 0.99, 2.0, 0.0])
    nine = [float(auto_augment.magnitude("rand_augment", name, 9, 100, 200))
            for name in ("shear_x", "translate_x", "rotate", "color", "posterize")]
    assert nine == pytest.approx([0.09, 150 / 331 * 200 * 0.3, 9.0, 0.27, 7.0])


def test_random_erase_fills_a_rectangle_with_the_mean_colour():
    image = tf.constant(_photo(2, (40, 50)))
    erased = [augment.random_erase(image, 1.0, (124, 117, 104), tf.constant([s, 9])).numpy()
              for s in range(20)]
    for result in erased:
        changed = np.any(result != image.numpy(), axis=-1)
        rows, cols = np.nonzero(changed)
        box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.9 and 0.02 * 0.8 <= box.size / 2000 <= 0.33 * 1.1
        assert (result[changed] == (124, 117, 104)).all()
    kept = augment.random_erase(image, 0.0, (0, 0, 0), tf.constant([0, 9])).numpy()
    assert (kept == image.numpy()).all()


class _Context:
    """Two replicas fed by one input pipeline (MirroredStrategy on one machine)."""

    num_replicas_in_sync, num_input_pipelines, input_pipeline_id = 2, 1, 0

    def get_per_replica_batch_size(self, batch):
        return batch // 2


def test_repeated_augmentation_sends_the_copies_to_different_replicas(train_data):
    config = inputs.InputConfig(batch_size=8, crop_size=32, scale=(36, 48), deterministic=True,
                                num_classes=4, label_offset=1, ra_reps=2,
                                random_resized_crop=recipes.RANDOM_RESIZED_CROP)
    batches = list(inputs.make_train_dataset(train_data, config, input_context=_Context())
                   .take(8))
    for (first, first_labels), (second, second_labels) in zip(batches[::2], batches[1::2],
                                                                  strict=True):
        # Replica 0 takes copies 1, replica 1 copies 2, of the same images, in the same order.
        assert (first_labels.numpy() == second_labels.numpy()).all()
        assert all(not (a == b).all() for a, b in zip(first.numpy(), second.numpy(), strict=True))


def test_repeated_copies_of_a_paper_run_not_deterministic_differ(train_data):
    """§3.1's crop without seeds (its own random stream) makes each copy its own crop too."""
    config = inputs.InputConfig(batch_size=8, crop_size=32, scale=(36, 48), num_classes=4,
                                label_offset=1, ra_reps=2)
    images, labels = next(iter(inputs.make_train_dataset(train_data, config)))
    images, labels = images.numpy(), labels.numpy()
    assert (labels[0::2] == labels[1::2]).all()
    assert sum(not (a == b).all() for a, b in zip(images[0::2], images[1::2], strict=True)) >= 3


def test_run_json_records_the_recipe_and_every_setting_it_set():
    from vgg_keras.training import run_identity

    cfg = run_config.TrainConfig.for_recipe("torchvision", config="A-BN", **PATHS)
    recorded = run_identity.defining_settings(cfg)
    assert recorded["recipe"] == "torchvision"
    assert (recorded["mixup_alpha"], recorded["model_ema"], recorded["train_crop_size"],
            tuple(recorded["random_resized_crop"])) == (0.2, True, 176,
                                                        recipes.RANDOM_RESIZED_CROP)
    assert math.isclose(recorded["learning_rate"], 0.5)


def test_every_op_takes_an_empty_share_of_a_batch_in_a_pipeline():
    """A batch where no image drew an op (most batches, for some op) gives it no image."""
    images = tf.constant(np.stack([_photo(seed) for seed in range(4)]))
    for name in auto_augment.OPS:
        apply = tf.function(lambda batch, name=name: auto_augment._apply(name, batch,
                                                                         tf.zeros([0])))
        assert apply(images[:0]).shape == (0, *images.shape[1:]), name
    batches = tf.data.Dataset.from_tensors(images).repeat(40).map(
        lambda batch: auto_augment.augment_batch(batch, "ta_wide",
                                                 tf.random.uniform([2], maxval=9, dtype=tf.int64)))
    assert sum(1 for _ in batches) == 40


@pytest.mark.parametrize("policy", ["ta_wide", "rand_augment"])
def test_a_batch_of_mixed_ops_equals_each_op_alone(policy):
    """``apply_ops`` (the batch split by op, each op run once on its share) gives each image
    what its op alone gives it."""
    images = tf.constant(np.stack([_photo(seed) for seed in range(6)]))
    rng = np.random.default_rng(3)
    for number, name in enumerate(auto_augment.OPS):
        bins = tf.constant(rng.integers(0, 31, 6), tf.int32)
        negate = tf.constant(rng.random(6) < 0.5)
        mixed_ops = tf.constant([number, 0, number, 13, number, 6], tf.int32)
        fused = auto_augment.apply_ops(policy, images, mixed_ops, bins, negate).numpy()
        for index in (0, 2, 4):
            value = auto_augment.magnitude(policy, name, bins[index], 24.0, 32.0)
            if name in auto_augment._SIGNED and bool(negate[index]):
                value = -value
            alone = _op(name, images.numpy()[index], float(value))
            difference = np.abs(fused[index].astype(int) - alone.astype(int))
            assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (name, index)
