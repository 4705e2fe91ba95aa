"""Benchmark of the training input pipeline against the JPEG-decode limit and slim's
``vgg_preprocessing``, on the same shards and cores, in one run.

- ours: ``pipelines.inputs.make_train_dataset`` (scale jitter S ∈ [256, 512],
  crop-before-decode, labels checked, shard integrity);
- limit: plain TensorFlow, none of our code: ``TFRecordDataset`` + ``parse_single_example`` +
  ``decode_jpeg`` of every image, with the same interleave, shuffle, parallelism and batching;
- reference: slim's ``vgg_preprocessing`` (decode the whole image, resize it to shorter side S
  in float32, random 224 crop and flip, subtract the mean), read the same plain way.

With ``--data_service``, also the same pipeline run by a tf.data service (a dispatcher and 1,
then 2 workers, in this process) against the local pipeline on the same cores: on one host
that measures what the service costs (serialising and sending batches), not what it scales to.

    python -m tools.bench_pipeline --num_images=3000
    python -m tools.bench_pipeline --shard_dir=/data/imagenet-tfrecords   # any shards
    python -m tools.bench_pipeline --data_service
"""

import os
import pathlib
import shutil
import time

import numpy as np
from absl import app
from absl import flags

from pipelines import synthetic

_SHARD_DIR = flags.DEFINE_string("shard_dir", None, "Shards to read instead of generated ones "
                                 "(ours, slim's or a tfds folder).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Classes of --shard_dir shards that "
                                    "carry no metadata.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_pipeline", "Scratch folder; the "
                                "generated shards are kept there between runs.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 3000, "Images to generate.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches timed per pipeline (after warm-up).")
_DATA_SERVICE = flags.DEFINE_bool("data_service", False, "Also time the pipeline through a "
                                   "local tf.data service with 1 and 2 workers.")
_SLIM = flags.DEFINE_bool("slim", False, "Read the shards as slim's: a copy without our "
                          "manifest, checked once by counting its records (as vgg-train does "
                          "for shards without metadata), then read by size as ours are.")
_BEFORE = flags.DEFINE_string("before", None, "pipelines/inputs.py of another version (a "
                              "checkout of an earlier commit): its make_train_dataset is timed in "
                              "the same rounds, on the same shards, and compared with ours.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds; pipelines alternate each round "
                                "and the best round of each counts.")

SHUFFLE_BUFFER = 1000  # the same for all three pipelines
CYCLE_LENGTH = 16  # shards read in parallel: make_train_dataset's default

GPU_TRAINING_IMAGES_PER_SECOND = {
    # VGG-16 training step ≈ 3 × 30.94 GFLOPs (forward + backward) per 224² image; an H100
    # SXM reaches ~989 dense bf16 TFLOP/s at peak. At 40% of peak: ~4,300 images/s per GPU.
    "H100 (bf16, 40% of peak)": 0.40 * 989e12 / (3 * 30.94e9),
}


def make_shards(work, count):
    """Converts ``count`` generated ImageNet-like JPEGs into 16 shards, unless already there."""
    return synthetic.photo_like_shards(work, count, {"train": 16}, num_workers=os.cpu_count())


def _plain_pipeline(files, keys, per_image, batch_size):
    """Reads ``files`` with TensorFlow alone and maps ``per_image(encoded, label)`` over them,
    structured as make_train_dataset is: interleaved shards, shuffle, repeat, parallel map."""
    import tensorflow as tf

    spec = {keys["encoded"]: tf.io.FixedLenFeature([], tf.string),
            keys["label"]: tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        features = tf.io.parse_single_example(record, spec)
        return per_image(features[keys["encoded"]], features[keys["label"]])

    dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files)).interleave(
        tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.shuffle(SHUFFLE_BUFFER).repeat().map(
        parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = False
    return dataset.with_options(options)


def _decode_only(encoded, label):
    import tensorflow as tf

    image = tf.io.decode_jpeg(encoded, channels=3)
    return tf.shape(image), label  # every pixel decoded; nothing else done


def _slim_vgg_preprocessing(encoded, label, scale=(256, 512), crop=224):
    """slim's vgg_preprocessing.preprocess_for_train, step for step."""
    import tensorflow as tf

    image = tf.io.decode_jpeg(encoded, channels=3)
    s = tf.random.uniform([], scale[0], scale[1] + 1, dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    size = tf.cast(tf.round(shape * tf.cast(s, tf.float32) / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, size, method="bilinear")  # float32, as slim keeps it
    image = tf.image.random_crop(image, [crop, crop, 3])
    image = tf.image.random_flip_left_right(image)
    return image - tf.constant([123.68, 116.78, 103.94]), label


def measure(dataset, batch_size, batches, warmup=10):
    """Images/s of ``batches`` batches, after ``warmup`` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def best_rates(datasets, batch, batches, repeats):
    """The best images/s of each dataset over ``repeats`` alternating rounds."""
    best = {name: 0.0 for name in datasets}
    for _ in range(repeats):
        for name, dataset in datasets.items():
            best[name] = max(best[name], measure(dataset, batch, batches))
    return best


def service_rates(info, batch, batches, repeats, num_classes):
    """The local pipeline against the same pipeline through a local tf.data service with 1,
    then 2 workers (each pair timed in alternating rounds)."""
    import socket

    from pipelines import data_service
    from pipelines import inputs

    def pipeline(address=None, job=None):
        return inputs.make_train_dataset(info, inputs.InputConfig(
            batch_size=batch, scale=(256, 512), crop_size=224, num_classes=num_classes,
            shuffle_buffer=SHUFFLE_BUFFER, data_service=address, data_service_job=job))

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    dispatcher = data_service.start_dispatcher(port)
    workers, rates = [], {}
    for count in (1, 2):
        workers.append(data_service.start_worker(f"localhost:{port}",
                                                 worker_address="localhost:%port%"))
        pair = {"local": pipeline(), f"service, {count} worker(s)": pipeline(
            f"grpc://localhost:{port}", f"bench_{count}")}
        rates.update({f"{name} [{count}]": rate for name, rate in
                      best_rates(pair, batch, batches, repeats).items()})
    for server in (*workers, dispatcher):
        server.stop()
    return rates


def _as_slims(shards, info):
    """The shards as slim's (no manifest: a copy of the shard files alone), checked once by
    counting their records as vgg-train does, with the sizes that check recorded; and the
    number of classes (slim's shards do not say it)."""
    from pipelines import dataset_info
    from vgg_keras.training import data as run_data

    slim = shards.parent / "slim_shards"
    if not slim.exists():
        slim.mkdir()
        for path in info.split_files("train"):
            shutil.copy(path, slim / pathlib.Path(path).name)
    slims = dataset_info.read_info(slim)
    files = slims.split_files("train")
    started = time.perf_counter()
    count, _ = run_data.count_shards(files, show_progress=False)
    print(f"slim's shards: {count} records counted (and checked) once in "
          f"{time.perf_counter() - started:.1f} s")
    return run_data.with_checked_sizes(slims, slims.shard_sizes(files)), info.num_classes


def _pipeline_before(path, info, batch):
    """``make_train_dataset`` of another version's ``pipelines/inputs.py`` (loaded beside ours;
    the modules it imports are this checkout's), called as that version takes its settings:
    keyword arguments, or one ``InputConfig``."""
    import importlib.util
    import inspect

    spec = importlib.util.spec_from_file_location("inputs_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings = dict(batch_size=batch, scale=(256, 512), crop_size=224,
                    num_classes=_NUM_CLASSES.value, shuffle_buffer=SHUFFLE_BUFFER)
    if "config" in inspect.signature(module.make_train_dataset).parameters:
        return module.make_train_dataset(info, module.InputConfig(**settings))
    return module.make_train_dataset(info, **settings)


def main(argv):
    del argv
    from pipelines import dataset_info
    from pipelines import inputs

    shards = pathlib.Path(_SHARD_DIR.value) if _SHARD_DIR.value else make_shards(
        pathlib.Path(_WORK_DIR.value), _NUM_IMAGES.value)
    info = dataset_info.read_info(shards)
    num_classes = _NUM_CLASSES.value
    if _SLIM.value:
        info, num_classes = _as_slims(shards, info)
    files = info.split_files("train")
    batch = _BATCH_SIZE.value
    pipelines = {
        "ours: scale jitter, crop-before-decode": inputs.make_train_dataset(
            info, inputs.InputConfig(batch_size=batch, scale=(256, 512), crop_size=224,
                                     num_classes=num_classes, shuffle_buffer=SHUFFLE_BUFFER)),
        "limit: plain read + parse + full decode": _plain_pipeline(
            files, info.record_keys, _decode_only, batch),
        "reference: slim vgg_preprocessing": _plain_pipeline(
            files, info.record_keys, _slim_vgg_preprocessing, batch),
    }
    if _BEFORE.value:
        pipelines[f"before: {_BEFORE.value}"] = _pipeline_before(_BEFORE.value, info, batch)
    best = best_rates(pipelines, batch, _BATCHES.value, _REPEATS.value)
    cores = os.cpu_count()
    print(f"{len(files)} shards in {info.location} ({info.format}); batch {batch}; {cores} "
          f"cores; best of {_REPEATS.value} rounds of {_BATCHES.value} batches")
    for name, rate in best.items():
        print(f"{name:<42}{rate:>8.0f} images/s  ({rate / cores:.0f} per core)")
    ours, limit, reference = list(best.values())[:3]
    print(f"ours / limit     = {ours / limit:.2f}   (target >= 0.95)")
    if _BEFORE.value:
        before = best[f"before: {_BEFORE.value}"]
        print(f"before / limit   = {before / limit:.2f};  ours / before = {ours / before:.2f}")
    print(f"ours / reference = {ours / reference:.2f}   (target >= 1.9)")
    for gpu, rate in GPU_TRAINING_IMAGES_PER_SECOND.items():
        need = 8 * rate / (ours / cores)
        print(f"feeding 8 × {gpu} ≈ {8 * rate:,.0f} images/s needs ≈ {np.ceil(need):.0f} "
              "cores of this machine for the input pipeline")
    if _DATA_SERVICE.value:
        rates = service_rates(info, batch, _BATCHES.value, _REPEATS.value, _NUM_CLASSES.value)
        print("tf.data service on this host (its workers share these cores with the client):")
        for name, rate in rates.items():
            print(f"  {name:<32}{rate:>8.0f} images/s")
        for count in (1, 2):
            ratio = rates[f"service, {count} worker(s) [{count}]"] / rates[f"local [{count}]"]
            print(f"  service with {count} worker(s) / local = {ratio:.2f}")


if __name__ == "__main__":
    app.run(main)
