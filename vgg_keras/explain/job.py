"""``vgg-explain``'s job: a net (what ``vgg-evaluate`` takes: a run dir, a checkpoint, a ``.keras``
file, or ``--config --weights`` by name), images (paths, a folder, or a split of ``--data_dir``),
a method, and per image an overlay PNG (the map over the photo, with the class name and
probability) and the raw map (``.npy``); one contact sheet PNG for the batch; ``explain.csv``
(image, class, probability, the map's peak and its share of mass in the top 10 % of pixels).

Images are read as the evaluation reads them (``pipelines.preprocessing.test_image``: shorter side
to Q), then the net's centre crop for every method but ``class_map``, which takes the whole image
at Q (§3.2's dense evaluation). Every method but the class map runs on every local replica
(``compute.replicas``), a share of each batch each; the class map, one image at a time (sizes
differ), on one.
"""

import csv
import dataclasses
import io
import os

import numpy as np

from pipelines import preprocessing
from pipelines.foundation import errors
from pipelines.foundation import progress
from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.compute import distribution
from vgg_keras.compute import replicas
from vgg_keras.explain import maps
from vgg_keras.explain import pictures

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
CSV_FILE, SHEET_FILE = "explain.csv", "contact_sheet.png"
SHEET_IMAGES = 36  # the contact sheet's images: the first ones


@dataclasses.dataclass
class Explained:
    """One image's result: its name, the image the map covers, the map, the class."""

    name: str
    image: np.ndarray
    heat: np.ndarray
    class_index: int
    class_name: str
    probability: float


def explain(config, *, show_progress=None):
    """Runs ``config`` (an ``ExplainConfig``), streaming: the images read, explained and
    written a batch at a time (memory holds one batch, and the contact sheet's first
    ``SHEET_IMAGES``). Returns the ``Explained`` of every image, its image and map kept only
    for the sheet's.

    Raises:
        UserError: for a model, image or class that cannot be explained, in one line.
    """
    strategy = distribution.make_strategy(config.distribution_strategy, config.num_gpus,
                                          config.cpu_replicas, config.tpu)
    with strategy.scope():
        model, source, classes = _load(config)
    batch_maps = maps.BatchMaps(model, config.layer)
    runner = replicas.ReplicaRunner(strategy)
    folder = _folder_images(config)  # listed once: a bucket's listing can take minutes
    meter = progress.Progress(_expected(config, folder), label="explained", unit="images",
                              show=show_progress)
    storage.makedirs(config.output_dir)
    results, rows = [], []
    for chunk in _chunks(_images(config, folder, int(model.inputs[0].shape[1])),
                         config.batch_size):
        for result in _explain_chunk(config, batch_maps, runner, chunk, classes):
            rows.append(_write_one(config, result))
            if len(results) >= SHEET_IMAGES:  # written: only the sheet's stay in memory
                result = dataclasses.replace(result, image=None, heat=None)
            results.append(result)
        meter.update(len(results))
    meter.close()
    if not results:
        raise errors.UserError("no image to explain: give image paths, --image_dir or "
                               "--data_dir")
    _write_summary(config, results, rows, source)
    return results


def _expected(config, folder):
    """The images the job will read, at most (for its progress line)."""
    return len(config.images) + len(folder) + (config.max_images if config.data_dir else 0)


def _folder_images(config):
    """The names of ``--image_dir``'s image files, at most ``--max_images``, in order; the other
    files reported."""
    if not config.image_dir:
        return []
    names = sorted(storage.listdir(config.image_dir))
    chosen = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    if len(chosen) < len(names):
        print(f"vgg-explain: {len(names) - len(chosen)} files of {config.image_dir} are not "
              f"images by their name ({', '.join(sorted(set(names) - set(chosen))[:3])}"
              f"{', ...' if len(names) - len(chosen) > 3 else ''}): skipped", flush=True)
    return chosen[:config.max_images]


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _load(config):
    """``(model, its description, (synsets, names))``."""
    if config.weights:
        model, weights, _ = loading.load_published(config.weights, config.config,
                                                   crop_size=config.crop_size)
        return model, weights.describe(), None
    if layout.export_of(config.model) or layout.is_tensor_file(config.model):
        raise errors.UserError(f"--model={config.model} is an export: vgg-explain needs the "
                               "Keras net (a vgg-train model dir, a checkpoint or a .keras file, "
                               "or --config with --weights) to take its gradients")
    model, source = loading.load_model_and_source(config.model)
    return model, source.describe(), layout.read_classes(config.model)


def _images(config, folder, crop):
    """``(name, uint8 image)`` of every image: at Q, cropped to the net's input unless the
    method takes the whole image. A file that is not an image is reported and skipped."""
    import tensorflow as tf

    for name, encoded in _encoded(config, folder):
        try:
            image = preprocessing.test_image(tf.constant(encoded), config.test_scale).numpy()
        except tf.errors.InvalidArgumentError as error:
            print(f"vgg-explain: {name}: not an image ({errors.one_line(error)}): skipped",
                  flush=True)
            continue
        if config.method != "class_map":
            image = preprocessing.center_crop(image, crop)
        yield name, image


def _encoded(config, folder):
    """``(name, bytes)`` of the images given: paths, the folder's image files (``folder``: their
    names), a split."""
    for path in config.images:
        yield path, storage.read_bytes(path)
    for name in folder:
        yield name, storage.read_bytes(os.path.join(config.image_dir, name))
    if config.data_dir:
        yield from _split_images(config)


def _split_images(config):
    from pipelines import dataset_info
    from pipelines import inputs

    info = dataset_info.read_info(config.data_dir)
    parse = inputs.parser_of(info, None, None)
    files, _ = inputs.pipeline_files(info.split_files(config.split))
    records = inputs.read_records(files, info.expected_shards()).take(config.max_images)
    for record, path in records:
        encoded, _, filename = parse(record, path)
        yield filename.numpy().decode() or "image", encoded.numpy()


def _explain_chunk(config, batch_maps, runner, chunk, classes):
    """The ``Explained`` of a chunk of ``(name, image)``."""
    if config.method == "class_map":
        return [_class_map(config, batch_maps.model, name, image, classes)
                for name, image in chunk]
    images = np.stack([image for _, image in chunk])
    if config.method in ONE_PASS:  # the probabilities come with the maps
        fixed = None
        if config.class_name not in (None, "top"):
            count = int(batch_maps.model.outputs[0].shape[-1])
            fixed = int(_chosen_classes(config, np.zeros((1, count)), classes)[0])
        probabilities, heat = _one_pass_heat(config, batch_maps, runner, images, fixed)
        chosen = _chosen_classes(config, probabilities, classes)
    else:
        probabilities = _on_replicas(runner, "probabilities", batch_maps.probabilities, images)
        chosen = _chosen_classes(config, probabilities, classes)
        heat = _batch_heat(config, batch_maps, runner, images, chosen)
    return [Explained(name, image, heat[index], int(chosen[index]),
                      _class_name(classes, chosen[index]),
                      float(probabilities[index, chosen[index]]))
            for index, (name, image) in enumerate(chunk)]


def _on_replicas(runner, key, function, images):
    """``function`` of ``images`` split over the local replicas, its results (an array or a
    tuple of them) in order."""
    count = len(runner.devices or [None])
    parts = [part for part in np.array_split(images, min(count, len(images))) if len(part)]
    results = runner.run(key, function, parts)
    if isinstance(results[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*results, strict=True))
    return np.concatenate(results)


# The methods whose pass over a batch gives its probabilities too: one forward pass, not two.
ONE_PASS = ("grad_cam", "grad_cam_plus_plus", "smoothgrad")


def _one_pass_heat(config, batch_maps, runner, images, fixed):
    """``(probabilities [n, classes], maps [n, H, W])`` of a batch for a ``ONE_PASS`` method,
    on every replica, each image's class its top one or ``fixed``."""
    import tensorflow as tf

    method = config.method
    seed = tf.constant([0, 0], tf.int32)

    def both(batch):
        probabilities = batch_maps.probabilities(batch)
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if fixed is not None:
            classes = tf.fill(tf.shape(classes), fixed)
        if method == "smoothgrad":
            return probabilities, batch_maps.smoothgrad(batch, classes, seed)
        return probabilities, batch_maps.grad_cam(batch, classes, method == "grad_cam_plus_plus")

    return _on_replicas(runner, method, both, images)


def _batch_heat(config, batch_maps, runner, images, chosen):
    """The maps ``[n, H, W]`` of a batch for integrated gradients or occlusion, on every
    replica; each replica takes the class of each of its images from the images themselves
    (top) or ``--class``: one trace for every chunk."""
    import tensorflow as tf

    fixed = config.class_name not in (None, "top")

    def classes_of(batch):
        top = tf.argmax(batch_maps.probabilities(batch), axis=-1, output_type=tf.int32)
        return tf.fill(tf.shape(top), int(chosen[0])) if fixed else top

    def probabilities(batch):  # of a NumPy batch, on every replica
        return _on_replicas(runner, "probabilities", batch_maps.probabilities, batch)

    method = config.method
    if method == "integrated_gradients":
        def path_gradients(batch, classes, baselines, points, weights):
            del classes, baselines  # each replica's own; the baseline is black
            return _on_replicas(runner, f"path_{len(points)}_{points[0]:g}",
                                lambda part: batch_maps.path_gradients(
                                    part, classes_of(part), tf.zeros_like(part, tf.float32),
                                    points, weights), batch)

        attributions = maps.integrate(path_gradients, probabilities, images.astype(np.float32),
                                      np.zeros(images.shape, np.float32), chosen, config.steps)
        return np.abs(attributions).sum(axis=-1)
    return np.stack([maps.occlusion_map(probabilities, image, int(cls))
                     for image, cls in zip(images, chosen, strict=True)])


def _class_map(config, model, name, image, classes):
    mean = maps.class_scores(model, image).mean(axis=(0, 1))
    chosen = _chosen_classes(config, mean[None], classes)[0]
    heat = maps.class_map(model, image, int(chosen))
    return Explained(name, image, heat, int(chosen), _class_name(classes, chosen),
                     float(mean[chosen]))


def _chosen_classes(config, probabilities, classes):
    """The class of each image: ``--class`` top (its top class), an index, or a name."""
    wanted = config.class_name
    if wanted in (None, "top"):
        return probabilities.argmax(axis=-1).astype(np.int32)
    count = probabilities.shape[-1]
    if str(wanted).isdigit():
        index = int(wanted)
    else:
        synsets, names = classes or _imagenet(count)
        matches = [i for i, (s, n) in enumerate(zip(synsets, names, strict=True))
                   if wanted.lower() in (s.lower(), n.lower())]
        if not matches:
            raise errors.UserError(f"--class={wanted}: no class of the net is named so (its "
                                   f"classes: {', '.join(names[:5])}, ...); give an index or top")
        index = matches[0]
    if not 0 <= index < count:
        raise errors.UserError(f"--class={wanted}: the net has {count} classes (0 to "
                               f"{count - 1})")
    return np.full(len(probabilities), index, np.int32)


def _imagenet(count):
    from pipelines import imagenet_labels

    synsets = imagenet_labels.synsets()
    if len(synsets) != count:
        raise errors.UserError(f"the net has {count} classes and records no names: give --class "
                               "as an index")
    return synsets, imagenet_labels.class_names(synsets)


def _class_name(classes, index):
    if classes is None:
        return str(index)
    return classes[1][index]


def _write_one(config, result):
    """One image's overlay and raw map, written; its row of ``explain.csv``."""
    stem = os.path.splitext(os.path.basename(result.name))[0]
    overlay = pictures.overlay(result.image, result.heat,
                               f"{_short(result.class_name)} {result.probability:.1%}")
    storage.write_atomic(os.path.join(config.output_dir, f"{stem}.{config.method}.png"), overlay)
    buffer = io.BytesIO()
    np.save(buffer, result.heat.astype(np.float32))
    storage.write_atomic(os.path.join(config.output_dir, f"{stem}.{config.method}.npy"),
                         buffer.getvalue())
    peak = np.unravel_index(np.argmax(result.heat), result.heat.shape)
    return {"image": result.name, "class": result.class_index, "class_name": result.class_name,
            "probability": f"{result.probability:.6f}", "peak_y": int(peak[0]),
            "peak_x": int(peak[1]), "top10_mass": f"{top_mass(result.heat):.4f}"}


def _write_summary(config, results, rows, source):
    """The contact sheet (the first ``SHEET_IMAGES``) and ``explain.csv``, written."""
    shown = [r for r in results if r.image is not None]
    storage.write_atomic(os.path.join(config.output_dir, SHEET_FILE),
                         pictures.contact_sheet([(r.image, r.heat, f"{_short(r.class_name)} "
                                                  f"{r.probability:.0%}") for r in shown]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    storage.write_atomic(os.path.join(config.output_dir, CSV_FILE), text.getvalue().encode())
    print(f"explained {len(results)} images with {config.method} of {source}: "
          f"{os.path.join(config.output_dir, CSV_FILE)}, {SHEET_FILE} (the first "
          f"{len(shown)})", flush=True)


def _short(name):
    """A class's first name (ImageNet's "tiger shark, Galeocerdo cuvieri": "tiger shark")."""
    return name.split(",")[0]


def top_mass(heat, share=0.1):
    """The share of a map's (positive) mass in its top ``share`` of pixels."""
    values = np.sort(np.maximum(heat, 0).ravel())[::-1]
    total = values.sum()
    if total <= 0:
        return 0.0
    return float(values[:max(1, int(round(share * values.size)))].sum() / total)
