"""Benchmark of one training step: our net and loop vs. keras.applications, same batch.

Ours: ``build_vgg`` (uint8 input, mean subtraction and colour shift layers, dropout) trained by
``vgg_keras.training.steps``' distributed step function, with the paper's weight decay.
Reference: ``keras.applications.VGG16`` (or VGG19 for E) compiled with the same SGD (momentum
0.9, weight decay 5e-4) and loss, ``train_on_batch`` on the same images already preprocessed.
Same process, same synthetic batch, alternating rounds; the ratio says whether our builder,
layers and strategy add anything to the step.

With ``--xla``, the reference is our own step without XLA and ours is the same step with
``enable_xla`` (what ``vgg-train --enable_xla`` runs); ``--cpu_replicas=2`` runs both under
MirroredStrategy over 2 logical CPU devices, each replica with half the batch.

    python -m tools.bench_train --configs=A,D --batch_size=8 --steps=3
    python -m tools.bench_train --configs=A,D --batch_size=8 --steps=3 --xla --cpu_replicas=2
    python -m tools.bench_train --configs=A,D --batch_size=8 --steps=3 --before=/tmp/before_tree

With ``--before=TREE`` (a checkout of another version), this script and that checkout's own run
alternately, each in a process of its own, and our step's images/s are compared: ours / before.
"""

import functools
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags

_CONFIGS = flags.DEFINE_list("configs", ["A", "D"], "Configurations (reference: VGG16 for D, "
                             "VGG19 for E, our own builder without our loop otherwise).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per step.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds; the best of each counts.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input side.")
_XLA = flags.DEFINE_bool("xla", False, "Compare our step with XLA (ours) against our step "
                         "without (reference), instead of against keras.applications.")
_CPU_REPLICAS = flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into N logical devices "
                                     "and train on N replicas (MirroredStrategy).")

_BEFORE = flags.DEFINE_string("before", None, "A checkout of another version: our step's "
                              "images/s here and there, in alternating processes.")

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (≈ 2 × forward) per image
H100_BF16_DENSE_FLOPS = 989e12
PIPELINE_IMAGES_PER_CORE = 730  # tools/bench_pipeline.py on this machine (BENCHMARKS.md)


@functools.cache
def _strategy():
    """One strategy for every net of the run: the collective keys of two MirroredStrategy
    objects in one process collide (a net's all-reduce would meet another net's)."""
    import tensorflow as tf

    if _CPU_REPLICAS.value == 1:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])


def _ours(config, images, labels, enable_xla=False):
    import tensorflow as tf

    import vgg_keras
    from vgg_keras.training import model as run_model
    from vgg_keras.training import run_config
    from vgg_keras.training import steps as run_steps

    strategy = _strategy()
    with strategy.scope():
        model = vgg_keras.build_vgg(config, input_shape=images.shape[1:],
                                    weight_init=vgg_keras.WeightInit(seed=0))
        optimizer = run_model.make_optimizer(run_config.TrainConfig(
            data_dir="", model_dir="", learning_rate=1e-3))
        optimizer.build(model.trainable_variables)
    steps = run_steps.make_train_steps(model, optimizer, strategy, len(labels),
                                       weight_decay=5e-4, enable_xla=enable_xla)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    return lambda count: float(steps(iterator, tf.constant(count))), model


def _reference(config, images, labels):
    import keras

    import vgg_keras

    if config in ("D", "E"):
        model = getattr(keras.applications, {"D": "VGG16", "E": "VGG19"}[config])(
            weights=None, input_shape=images.shape[1:])
        inputs = keras.applications.vgg16.preprocess_input(images.astype("float32"))
    else:  # no keras.applications net: our builder, compiled and fitted by Keras itself
        model = vgg_keras.build_vgg(config, input_shape=images.shape[1:],
                                    weight_init=vgg_keras.WeightInit(seed=0))
        inputs = images
    # The same optimizer: SGD with momentum and weight decay (Keras applies it decoupled;
    # the work per weight is the same as ours).
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9,
                                                 weight_decay=5e-4),
                  loss="sparse_categorical_crossentropy")

    def run(count):
        for _ in range(count):
            loss = model.train_on_batch(inputs, labels)
        return float(loss)

    return run, model


def _time(run, steps):
    run(1)  # compile
    start = time.perf_counter()
    run(steps)
    return time.perf_counter() - start


def _ours_in(tree):
    """``{config: our step's images/s}`` of the bench run in the checkout ``tree``, one round."""
    arguments = [f"--configs={','.join(_CONFIGS.value)}", f"--batch_size={_BATCH_SIZE.value}",
                 f"--steps={_STEPS.value}", "--rounds=1", f"--image_size={_IMAGE_SIZE.value}",
                 f"--cpu_replicas={_CPU_REPLICAS.value}", f"--xla={_XLA.value}"]
    child = subprocess.run([sys.executable, "-m", "tools.bench_train", *arguments], cwd=tree,
                           capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2"))
    if child.returncode:
        raise RuntimeError(f"the bench in {tree} failed:\n{child.stderr[-3000:]}")
    return {match.group(1): float(match.group(2)) for match in
            re.finditer(r"^([\w-]+): ours ([\d.]+) images/s", child.stdout, re.MULTILINE)}


def before_and_after():
    """Our step against another checkout's, alternating processes; prints ours / before."""
    trees = {"ours": pathlib.Path(__file__).resolve().parents[1],
             "before": pathlib.Path(_BEFORE.value).resolve()}
    best = {name: {} for name in trees}
    for _ in range(_ROUNDS.value):
        for name, tree in trees.items():
            for config, rate in _ours_in(tree).items():
                best[name][config] = max(best[name].get(config, 0.0), rate)
    print(f"our training step, batch {_BATCH_SIZE.value} at {_IMAGE_SIZE.value}, best of "
          f"{_ROUNDS.value} alternating rounds: this checkout against {trees['before']}")
    for config in _CONFIGS.value:
        ours, before = best["ours"][config], best["before"][config]
        print(f"{config}: ours {ours:.2f} images/s, before {before:.2f} images/s, ours / before "
              f"{ours / before:.2f}")


def main(argv):
    del argv
    if _BEFORE.value:
        before_and_after()
        return
    import tensorflow as tf

    import vgg_keras

    if _CPU_REPLICAS.value > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * _CPU_REPLICAS.value)

    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 1000, batch).astype("int32")
    against = "ours without XLA" if _XLA.value else "keras.applications"
    print(f"batch {batch} at {size}×{size} on {_CPU_REPLICAS.value} replica(s), "
          f"{_STEPS.value} steps per round, best of {_ROUNDS.value} rounds; reference: "
          f"{against}")
    for config in _CONFIGS.value:
        ours, model = _ours(config, images, labels, enable_xla=_XLA.value)
        reference, _ = (_ours(config, images, labels) if _XLA.value else
                        _reference(config, images, labels))
        best = {"ours": float("inf"), "reference": float("inf")}
        for _ in range(_ROUNDS.value):
            best["ours"] = min(best["ours"], _time(ours, _STEPS.value))
            best["reference"] = min(best["reference"], _time(reference, _STEPS.value))
        rates = {k: _STEPS.value * batch / v for k, v in best.items()}
        flops = vgg_keras.count_flops(vgg_keras.build_vgg(config)) * TRAIN_FLOPS_PER_FORWARD
        print(f"{config}: ours {rates['ours']:.2f} images/s, reference "
              f"{rates['reference']:.2f} images/s, ratio {rates['ours'] / rates['reference']:.2f}"
              f"{'' if _XLA.value else ' (target >= 0.95)'}; "
              f"{flops * rates['ours'] / 1e9:.0f} GFLOP/s achieved")
        for fraction in (0.4, 0.6):
            per_gpu = fraction * H100_BF16_DENSE_FLOPS / flops
            cores = 8 * per_gpu / PIPELINE_IMAGES_PER_CORE
            print(f"   8 × H100 bf16 at {fraction:.0%} of peak: ≈ {8 * per_gpu:,.0f} images/s, "
                  f"input pipeline ≈ {cores:.0f} cores")


if __name__ == "__main__":
    app.run(main)
