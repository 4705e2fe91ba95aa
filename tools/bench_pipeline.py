"""Benchmark of the training input pipeline against the JPEG-decode limit and slim's
``vgg_preprocessing``, on the same shards and cores, in one run.

- ours: ``pipelines.make_train_dataset`` (scale jitter S ∈ [256, 512], crop-before-decode);
- limit: the same reading, parsing and parallelism, but each image only fully decoded;
- reference: slim's ``vgg_preprocessing``: decode the whole image, resize it to shorter side S
  (float32), random 224 crop and flip, subtract the mean; same reading and parallelism.

    python -m tools.bench_pipeline --num_images=3000
"""

import os
import pathlib
import shutil
import time

import numpy as np
from absl import app
from absl import flags

from tools import generate_images

_SHARD_DIR = flags.DEFINE_string("shard_dir", None, "Shards of our converter to read instead "
                                 "of generated ones.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_pipeline", "Scratch folder; the "
                                "generated shards are kept there between runs.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 3000, "Images to generate.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches timed per pipeline (after warm-up).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds; pipelines alternate each round "
                                "and the best round of each counts.")

SHUFFLE_BUFFER = 1000  # the same for all three pipelines

GPU_TRAINING_IMAGES_PER_SECOND = {
    # VGG-16 training step ≈ 3 × 30.94 GFLOPs (forward + backward) per 224² image; an H100
    # SXM reaches ~989 dense bf16 TFLOP/s at peak. At 40% of peak: ~4,300 images/s per GPU.
    "H100 (bf16, 40% of peak)": 0.40 * 989e12 / (3 * 30.94e9),
}


def make_shards(work, count):
    """Converts ``count`` generated ImageNet-like JPEGs into 16 shards, unless already there."""
    from pipelines import convert
    from pipelines import sources

    shards = work / "shards"
    if (shards / "dataset_info.json").exists():
        return shards
    shutil.rmtree(shards, ignore_errors=True)
    generate_images.write_photo_like_jpegs(work / "images", count)
    convert.convert(sources.find_image_folder(work / "images"), shards,
                    num_shards={"train": 16}, num_workers=os.cpu_count(), progress=False)
    return shards


def _reference_pipeline(files, batch_size, scale=(256, 512), crop=224):
    """slim's vgg_preprocessing.preprocess_for_train, step for step."""
    import tensorflow as tf

    from pipelines import inputs

    parse = inputs._parser("vgg", 1, 10)
    rgb_mean = tf.constant([123.68, 116.78, 103.94])

    def slim_vgg_preprocessing(record, path):
        encoded, label, _ = parse(record, path)
        image = tf.io.decode_jpeg(encoded, channels=3)
        s = tf.random.uniform([], scale[0], scale[1] + 1, dtype=tf.int32)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        size = tf.cast(tf.round(shape * tf.cast(s, tf.float32) / tf.reduce_min(shape)), tf.int32)
        image = tf.image.resize(image, size, method="bilinear")  # float32, as slim keeps it
        image = tf.image.random_crop(image, [crop, crop, 3])
        image = tf.image.random_flip_left_right(image)
        return image - rgb_mean, label

    return _pipeline(files, slim_vgg_preprocessing, batch_size)


def _limit_pipeline(files, batch_size):
    import tensorflow as tf

    from pipelines import inputs

    parse = inputs._parser("vgg", 1, 10)

    def decode_only(record, path):
        encoded, label, _ = parse(record, path)
        image = tf.io.decode_jpeg(encoded, channels=3)
        return tf.shape(image), label  # every pixel decoded; nothing else done

    return _pipeline(files, decode_only, batch_size)


def _pipeline(files, function, batch_size):
    import tensorflow as tf

    from pipelines import inputs

    records = inputs._records(files, input_context=None, shuffle=True, seed=None,
                              deterministic=False, skip_corrupt=False, corrupt_counter=None,
                              cycle_length=16)
    # Exactly make_train_dataset's structure and options: only the per-image function differs.
    dataset = records.shuffle(SHUFFLE_BUFFER).repeat().map(
        function, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return dataset.with_options(inputs._options(False))


def measure(dataset, batch_size, batches, warmup=10):
    """Images/s of ``batches`` batches, after ``warmup`` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    from pipelines import inputs

    work = pathlib.Path(_WORK_DIR.value)
    shards = pathlib.Path(_SHARD_DIR.value) if _SHARD_DIR.value else make_shards(
        work, _NUM_IMAGES.value)
    files, _, _ = inputs.resolve_files(shards)
    batch = _BATCH_SIZE.value
    pipelines = {
        "ours: scale jitter, crop-before-decode": inputs.make_train_dataset(
            shards, batch_size=batch, scale=(256, 512), crop_size=224,
            shuffle_buffer=SHUFFLE_BUFFER),
        "limit: parse + full decode only": _limit_pipeline(files, batch),
        "reference: slim vgg_preprocessing": _reference_pipeline(files, batch),
    }
    best = {name: 0.0 for name in pipelines}
    for _ in range(_REPEATS.value):
        for name, dataset in pipelines.items():
            best[name] = max(best[name], measure(dataset, batch, _BATCHES.value))
    cores = os.cpu_count()
    print(f"{len(files)} shards in {shards}; batch {batch}; {cores} cores; best of "
          f"{_REPEATS.value} rounds of {_BATCHES.value} batches")
    for name, rate in best.items():
        print(f"{name:<42}{rate:>8.0f} images/s  ({rate / cores:.0f} per core)")
    ours, limit, reference = best.values()
    print(f"ours / limit     = {ours / limit:.2f}   (target >= 0.95)")
    print(f"ours / reference = {ours / reference:.2f}   (target >= 1.9)")
    for gpu, rate in GPU_TRAINING_IMAGES_PER_SECOND.items():
        need = 8 * rate / (ours / cores)
        print(f"feeding 8 × {gpu} ≈ {8 * rate:,.0f} images/s needs ≈ {np.ceil(need):.0f} "
              "cores of this machine for the input pipeline")


if __name__ == "__main__":
    app.run(main)
