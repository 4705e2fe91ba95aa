"""Benchmark of one training step of the full nets on an accelerator: images/s and the fraction
of the device's peak FLOP/s, for configs A and D at 224×224, in float32 and bfloat16 mixed
precision.

Runs under any Keras backend; meant for ``KERAS_BACKEND=jax`` on a GPU (JAX with CUDA is what
the lent GPU machines carry; TensorFlow is not needed: the nets are backend-neutral). The step
is SGD with momentum on softmax cross-entropy, compiled whole (``jax.jit`` of Keras'
``stateless_call`` and ``stateless_apply``, the pattern of Keras' own JAX training loop guide),
on a synthetic uint8 batch resident on the device, so that only the net is measured.

    KERAS_BACKEND=jax python -m tools.bench_gpu --configs=A,D --batch_sizes=64,128
    KERAS_BACKEND=jax python -m tools.bench_gpu --peak_tflops=989   # a device not in the table

FLOPs per image are ``vgg_keras.count_flops`` (forward; a training step counts 3×: forward,
and backward twice as much).
"""

import os
import time

from absl import app
from absl import flags

from . import program

_CONFIGS = flags.DEFINE_list("configs", ["A", "D"], "Configurations to time.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64", "128"], "Batch sizes to time.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "float32 and/or bfloat16 "
                            "(mixed precision: bfloat16 compute, float32 weights).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input side (the paper's 224).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps, after the warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (the first one compiles).")
_PEAK_TFLOPS = flags.DEFINE_float("peak_tflops", None, "The device's dense peak in TFLOP/s "
                                  "for the dtype measured (default: from the table below, by "
                                  "device name).")

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (≈ 2 × forward)
# Dense peak TFLOP/s by device name fragment: (float32 through TF32 tensor cores, bfloat16).
# JAX lets XLA use TF32 for float32 matmuls on these GPUs by default.
PEAK_TFLOPS = {"H200": (494.7, 989.4), "H100": (494.7, 989.4), "A100": (156.0, 312.0)}


def device_description():
    """(the platform and name of the first device Keras computes on, peak table entry)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        name = f"{device.platform}: {getattr(device, 'device_kind', str(device))}"
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        name = "gpu" if gpus else "cpu"
    else:
        name = keras.backend.backend()
    peak = next((value for key, value in PEAK_TFLOPS.items() if key in name), None)
    return name, peak


def make_step(model, learning_rate=0.01):
    """A compiled training step ``step(state, images, labels) -> (loss, state)`` and its first
    state, for the JAX backend."""
    import jax
    import keras

    optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def loss_of(trainable, non_trainable, images, labels):
        predictions, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                          training=True)
        return loss_fn(labels, predictions), non_trainable

    gradient = jax.value_and_grad(loss_of, has_aux=True)

    @jax.jit
    def step(state, images, labels):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = gradient(trainable, non_trainable, images, labels)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads,
                                                                   trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    return step, state


def time_step(config, batch_size, dtype, image_size, steps, warmup):
    """Images/s of the training step of ``config``; and the loss, to show it ran."""
    import jax
    import keras
    import numpy as np

    import vgg_keras

    keras.mixed_precision.set_global_policy("float32" if dtype == "float32" else
                                            "mixed_bfloat16")
    try:
        model = vgg_keras.build_vgg(config, 1000, input_shape=(image_size, image_size, 3),
                                    weight_init=vgg_keras.WeightInit(seed=0))
        step, state = make_step(model)
        rng = np.random.default_rng(0)
        images = jax.device_put(rng.integers(0, 256, (batch_size, image_size, image_size, 3),
                                             np.uint8))
        labels = jax.device_put(rng.integers(0, 1000, batch_size).astype("int32"))
        for _ in range(warmup):
            loss, state = step(state, images, labels)
        jax.block_until_ready(loss)
        started = time.perf_counter()
        for _ in range(steps):
            loss, state = step(state, images, labels)
        jax.block_until_ready(loss)
        seconds = time.perf_counter() - started
        flops = vgg_keras.count_flops(model) * TRAIN_FLOPS_PER_FORWARD
        return steps * batch_size / seconds, flops, float(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import keras

    if keras.backend.backend() != "jax":
        raise app.UsageError(f"run it with KERAS_BACKEND=jax (the backend is "
                             f"{keras.backend.backend()})")
    for dtype in _DTYPES.value:
        if dtype not in ("float32", "bfloat16"):
            raise app.UsageError(f"--dtypes takes float32 and bfloat16, got {dtype!r}")
    name, peaks = device_description()
    print(f"device {name}; Keras {keras.__version__} on {keras.backend.backend()}; "
          f"{os.cpu_count()} host cores; {_STEPS.value} timed steps after {_WARMUP.value}")
    print(f"{'config':<7}{'batch':>6}{'dtype':>10}{'images/s':>11}{'TFLOP/s':>10}"
          f"{'of peak':>9}{'loss':>8}")
    for config in _CONFIGS.value:
        for batch_size in (int(b) for b in _BATCH_SIZES.value):
            for dtype in _DTYPES.value:
                rate, flops, loss = time_step(config, batch_size, dtype, _IMAGE_SIZE.value,
                                              _STEPS.value, _WARMUP.value)
                achieved = rate * flops / 1e12
                peak = _PEAK_TFLOPS.value or (peaks[dtype == "bfloat16"] if peaks else None)
                share = f"{100 * achieved / peak:.1f}%" if peak else "-"
                print(f"{config:<7}{batch_size:>6}{dtype:>10}{rate:>11.1f}{achieved:>10.3g}"
                      f"{share:>9}{loss:>8.3f}", flush=True)


if __name__ == "__main__":
    program.run(main, "tools.bench_gpu", tensorflow=False)
