"""Benchmark of the deployed formats: for VGG-16 (config D) at 224, full size and narrow, the size
on disk, the latency of one image and the images/s of batches of 16 through Keras, the
SavedModel, ONNX Runtime, LiteRT (XNNPACK) and OpenVINO, each in fp32 and, where it has one,
int8; and how often each one's top-1 is the float Keras net's, on the same cores and images.

    python -m tools.bench_deploy                       # D at widths 1 and 0.125
    python -m tools.bench_deploy --widths=0.125 --num_images=64
    python -m tools.bench_deploy --weights=torchvision=vgg16.safetensors --widths=1

The images are photo-like JPEGs (~375x500, ~110 KB) through the client's preprocessing
(``vgg_keras.preprocess_image``: shorter side 256, centre 224). A narrow net is first trained
``--train_steps`` on those photos (10 classes); full size, without ``--weights``, D has random
weights, whose probabilities are nearly flat: its top-1 agreement is a lower bound of what
trained weights give (a flat output turns on small differences). Every runtime uses all cores
(its default); times are the best of ``--rounds``.
"""

import os
import pathlib
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from pipelines import synthetic

_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_deploy", "Scratch folder.")
_WIDTHS = flags.DEFINE_list("widths", ["1", "0.125"], "Width multipliers of D measured.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 32, "Images whose top-1 is compared.")
_CALIBRATION = flags.DEFINE_integer("calibration_images", 32, "int8 calibration images (the "
                                    "training split of the generated shards).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Batch of the throughput measurement.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed repetitions; the best counts.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Published weights for D (width 1 only), "
                               "instead of random weights: KIND (paper, torchvision, timm; "
                               "fetched once into the cache) or KIND=PATH.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 150, "Narrow nets (width < 1) are trained "
                                    "this many steps on the generated photos first, so that "
                                    "their outputs, and the top-1 agreement, mean something.")
CROP, Q = 224, 256


def _crops(work, count):
    """The client's crops of ``count`` photo-like JPEGs, and the shards for calibration."""
    from pipelines.foundation import storage
    from vgg_keras.serving import client

    # Photo-like JPEGs in class folders, converted: the calibration reads the training split.
    shards = synthetic.photo_like_shards(work, 2 * max(count, _CALIBRATION.value),
                                         {"train": 1, "validation": 1}, validation_fraction=0.5)
    files = sorted((work / "images").rglob("*.jpg"))[:count]
    return np.stack([client.preprocess_image(storage.read_bytes(str(f)), Q, CROP)
                     for f in files]), shards


def _net(width, shards, work):
    import vgg_keras

    if width < 1 and _TRAIN_STEPS.value:
        from vgg_keras.artifacts import loading
        from vgg_keras.training import loop
        from vgg_keras.training import run_config

        model_dir = work / f"trained_{width:g}"
        loop.train(run_config.TrainConfig(
            data_dir=str(shards), model_dir=str(model_dir), config="D", width=width,
            fc_units=max(64, int(4096 * width)), scale=(Q, Q), batch_size=16, init="glorot",
            dropout=0.0, learning_rate=0.01, lr_schedule="cosine", seed=0,
            train_steps=_TRAIN_STEPS.value, progress="epochs"))
        return loading.load_model(str(model_dir))
    if _WEIGHTS.value and width == 1:
        from vgg_keras.nets import pretrained
        from vgg_keras.nets import published

        weights = published.parse(_WEIGHTS.value)
        return pretrained.build_pretrained("D", weights.kind, weights.path)
    return vgg_keras.build_vgg("D", width=width,
                               head=vgg_keras.Head(fc_units=max(64, int(4096 * width))),
                               weight_init=vgg_keras.WeightInit(seed=0))


def _runners(model, fp32, int8):
    """``{name: (function of uint8 crops, files)}`` for every runtime and precision."""
    import tensorflow as tf

    from vgg_keras.artifacts import runtimes

    keras_net = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    loaded = tf.saved_model.load(fp32)  # kept: its functions need its variables
    found = {"Keras (TensorFlow)": (lambda x: keras_net(x).numpy(), None),
             "SavedModel": (lambda x: loaded.classify_crops(tf.constant(x)).numpy(),
                            [os.path.join(fp32, "saved_model.pb"),
                             os.path.join(fp32, "variables")])}
    for folder, precision in ((fp32, "fp32"), (int8, "int8")):
        for name, file, extra in (("ONNX Runtime", "model.onnx", None),
                                  ("LiteRT", "model.tflite", None),
                                  ("OpenVINO", "model.xml", "model.bin")):
            files = [os.path.join(folder, file)] + ([os.path.join(folder, extra)] if extra
                                                    else [])
            found[f"{name} {precision}"] = (runtimes.Runtime(files[0]), files)
    return found


def _size(files):
    if files is None:
        return None
    total = 0
    for path in files:
        if os.path.isdir(path):
            total += sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())
        else:
            total += os.path.getsize(path)
    return total


def _best(function, inputs, rounds):
    function(inputs)  # warm-up: first-call allocations and compilation
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function(inputs)
        best = min(best, time.perf_counter() - started)
    return best


def measure(width, crops, shards, work):
    from vgg_keras.serving import export
    from vgg_keras.serving import formats
    from vgg_keras.serving.config import ServingSettings

    model = _net(width, shards, work)
    classes = dict(data_dir=str(shards)) if model.output.shape[-1] != 1000 else {}
    started = time.perf_counter()
    fp32 = export.export_model(model, str(work / "exports"), ServingSettings(
        model_name=f"d_{width}", format=formats.FORMATS, test_scale=Q, **classes))
    converted = time.perf_counter() - started
    int8 = export.export_model(model, str(work / "exports"), ServingSettings(
        model_name=f"d_{width}_int8", format=formats.TENSOR_FORMATS, precision="int8",
        calibration_data=str(shards), calibration_images=_CALIBRATION.value, test_scale=Q,
        **classes))
    quantized = time.perf_counter() - started - converted
    rows = []
    reference = None
    for name, (run, files) in _runners(model, fp32, int8).items():
        top1 = np.concatenate([run(crops[i:i + _BATCH.value]).argmax(1)
                               for i in range(0, len(crops), _BATCH.value)])
        reference = top1 if reference is None else reference
        latency = _best(run, crops[:1], _ROUNDS.value * 3)
        batch = _best(run, crops[:_BATCH.value], _ROUNDS.value)
        rows.append((name, _size(files), 1000 * latency, len(crops[:_BATCH.value]) / batch,
                     float((top1 == reference).mean())))
    return rows, converted, quantized


def main(argv):
    del argv
    from pipelines.foundation import tf_runtime

    tf = tf_runtime.start()  # TensorFlow's own log lines off, as in the programs
    work = pathlib.Path(_WORK_DIR.value)
    work.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(work)  # the converters' scratch beside the exports
    crops, shards = _crops(work, _NUM_IMAGES.value)
    print(f"{len(crops)} photo-like JPEGs at Q={Q}, crop {CROP}; {os.cpu_count()} cores; "
          f"TensorFlow {tf.__version__}; best of {_ROUNDS.value} rounds; batch "
          f"{_BATCH.value}; int8 calibrated on {_CALIBRATION.value} images")
    for width in (float(w) for w in _WIDTHS.value):
        rows, converted, quantized = measure(width, crops, shards, work)
        source = (_WEIGHTS.value if _WEIGHTS.value and width == 1 else
                  f"trained {_TRAIN_STEPS.value} steps on the photos" if width < 1 else
                  "random weights")
        print(f"\nD at width {width:g} ({source}); export of every format {converted:.0f} s, "
              f"int8 formats {quantized:.0f} s")
        print(f"{'runtime':<22}{'size (MB)':>10}{'batch 1 (ms)':>14}"
              f"{f'batch {_BATCH.value} (img/s)':>19}{'top-1 = Keras':>15}")
        keras_rate = rows[0][3]
        for name, size, latency, rate, agreement in rows:
            shown = "-" if size is None else f"{size / 1e6:.1f}"
            print(f"{name:<22}{shown:>10}{latency:>14.1f}{rate:>19.2f}{agreement:>15.3f}"
                  f"   ({rate / keras_rate:.2f}× Keras)")


if __name__ == "__main__":
    app.run(main)
