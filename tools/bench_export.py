"""Benchmark of the export's serving signature: ``serving_default`` on JPEG bytes (decoding,
rescaling and cropping inside the graph) vs. the bare Keras model on pre-decoded 224×224
crops, same process, same images, same cores. Full-size VGG-16 (config D, 1000 classes,
random weights) with Q = 256.

    python -m tools.bench_export --rounds=3

Prints the latency at batch 1, the throughput at batch 32, and the share of the bare model's
time that the in-graph decoding and preprocessing add. The two paths run alternately, so that
a slow spell of the machine hits both.
"""

import pathlib
import shutil
import statistics
import time

from absl import app
from absl import flags

from pipelines import synthetic

_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_export", "Scratch folder.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed calls per path and batch size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch of the throughput measurement.")
_LATENCY_CALLS = flags.DEFINE_integer("latency_calls", 10, "Timed batch-1 calls per path.")
_CONFIG = flags.DEFINE_string("config", "D", "Net to export.")
TEST_SCALE = 256


def _timed(function, argument):
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


def _compare(serve, bare, encoded, crops, calls):
    """Alternating timed calls; returns (serving seconds, bare seconds) medians."""
    serve(encoded), bare(crops)  # trace and warm up
    serving, plain = [], []
    for _ in range(calls):
        serving.append(_timed(serve, encoded))
        plain.append(_timed(bare, crops))
    return statistics.median(serving), statistics.median(plain)


def main(argv):
    del argv
    import tensorflow as tf

    import vgg_keras
    from pipelines import preprocessing
    from vgg_keras.serving import export
    from vgg_keras.serving.config import ServingSettings

    work = pathlib.Path(_WORK_DIR.value)
    paths = synthetic.write_photo_like_jpegs(work / "images", _BATCH_SIZE.value)
    encoded = [path.read_bytes() for path in paths]
    crops = tf.stack([preprocessing.center_crop(preprocessing.rescale_shorter_side(
        preprocessing.decode(data), TEST_SCALE), 224) for data in encoded])
    model = vgg_keras.build_vgg(_CONFIG.value, 1000, weight_init=vgg_keras.WeightInit(seed=0))
    model_file = work / "model.keras"
    model.save(model_file)
    shutil.rmtree(work / "export", ignore_errors=True)
    location = export.export_saved_model(str(model_file), str(work / "export"),
                                         ServingSettings(test_scale=TEST_SCALE))
    signature = tf.saved_model.load(location).signatures["serving_default"]
    serve = lambda images: signature(images=images)["classes"].numpy()  # noqa: E731
    forward = tf.function(lambda images: model(images, training=False))
    bare = lambda images: forward(images).numpy()  # noqa: E731

    one = _compare(serve, bare, tf.constant(encoded[:1]), crops[:1], _LATENCY_CALLS.value)
    many = _compare(serve, bare, tf.constant(encoded), crops, _ROUNDS.value)
    sizes = [tuple(preprocessing.decode(data).shape[:2]) for data in encoded]
    mean_pixels = statistics.mean(h * w for h, w in sizes)
    print(f"config {_CONFIG.value}, 1000 classes, Q={TEST_SCALE}, 224 crops; "
          f"{len(encoded)} JPEGs of {mean_pixels / 1e3:.0f} K pixels on average")
    print(f"{'':<28}{'serving_default':>16}{'bare model':>12}{'overhead':>10}")
    print(f"{'latency, batch 1 (ms)':<28}{1e3 * one[0]:>16.1f}{1e3 * one[1]:>12.1f}"
          f"{100 * (one[0] / one[1] - 1):>9.1f}%")
    size = len(encoded)
    print(f"{f'throughput, batch {size} (img/s)':<28}{size / many[0]:>16.2f}"
          f"{size / many[1]:>12.2f}{100 * (many[0] / many[1] - 1):>9.1f}%")


if __name__ == "__main__":
    app.run(main)
