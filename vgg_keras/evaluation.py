"""The paper's test protocols (§3.2, §4): single-scale centre crop, dense (fully convolutional,
flip-averaged), multi-crop (5×5 grid × 2 flips per scale), dense + multi-crop, over one or
several test scales Q, for one model or a fusion of several (§4.4); top-1/top-5 errors.

Evaluation streams: one image at a time (at every scale, through every model), with only
running counts kept, so that the 50,000 ImageNet validation images take constant memory.
"""

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import pipelines
from pipelines import inputs
from pipelines import preprocessing
from vgg_keras import builder

PROTOCOLS = ("single", "dense", "multicrop", "dense+multicrop")
GRID = 5  # §3.2: "5 × 5 regular grid with 2 flips"


def load_model(path):
    """Loads a Keras file, a ``vgg-train`` model dir (its ``model.keras``), a checkpoint of
    such a dir (``MODEL_DIR/checkpoints/best/ckpt-N``) into the dir's architecture, or a
    SavedModel: a ``vgg-export`` export (its version folder or base folder) or any SavedModel
    whose ``serving_default`` maps a batch of images to class probabilities."""
    saved_model = _saved_model_path(path)
    if saved_model:
        return _saved_model(saved_model)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no Keras model at {path}")
        return keras.models.load_model(path, compile=False)
    if os.path.exists(path + ".index"):  # a checkpoint prefix inside a model dir
        model = keras.models.load_model(os.path.join(model_dir_of(path), "model.keras"),
                                        compile=False)
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        return model
    raise FileNotFoundError(f"{path} is neither a .keras file, a model dir nor a checkpoint")


def model_dir_of(path):
    """The folder of a model's ``summary.json``: the model dir itself, the folder of a Keras
    file, or the model dir of a checkpoint (``MODEL_DIR/checkpoints/best/ckpt-N``)."""
    if os.path.isdir(path):
        return path
    if os.path.exists(path + ".index"):
        return os.path.dirname(os.path.dirname(os.path.dirname(path)))
    return os.path.dirname(path)


def _saved_model_path(path):
    """The SavedModel at ``path`` (or the newest numbered version under it), or None."""
    if not os.path.isdir(path):
        return None
    from vgg_keras import export  # export imports this module

    return export.find_export(path)


def _saved_model(path):
    """A SavedModel wrapped as a Keras model (no layers of its own: single-crop and multi-crop
    work, dense evaluation needs the Keras model). ``vgg-export``'s exports are read through
    their ``classify_crops`` function (uint8 crops to probabilities); other SavedModels through
    a ``serving_default`` that returns class probabilities only."""
    loaded = tf.saved_model.load(path)
    if hasattr(loaded, "classify_crops"):
        function = loaded.classify_crops
        spec = function.concrete_functions[0].structured_input_signature[0][0]
        endpoint = "classify_crops"
    else:
        signature = loaded.signatures["serving_default"]
        spec = list(signature.structured_input_signature[1].values())[0]
        if len(signature.structured_outputs) != 1:
            raise ValueError(f"{path}: serving_default returns "
                             f"{sorted(signature.structured_outputs)}; evaluation needs a "
                             "signature returning class probabilities only")
        endpoint = "serving_default"
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
    probabilities = keras.layers.TFSMLayer(path, call_endpoint=endpoint)(inputs)
    if isinstance(probabilities, dict):
        probabilities = list(probabilities.values())[0]
    return keras.Model(inputs, probabilities, name=os.path.basename(os.path.normpath(path)))


def default_scales(train_scale):
    """§4.2: Q ∈ {S − 32, S, S + 32} for a fixed S, {Smin, (Smin + Smax)/2, Smax} for jitter."""
    low, high = train_scale
    if low == high:
        return [low - 32, low, low + 32]
    return [low, (low + high) // 2, high]


def read_train_scale(model_path):
    """The training scale recorded by vgg-train beside a model (or in an export's metadata),
    or None."""
    saved_model = _saved_model_path(model_path)
    scale = None
    if saved_model:
        from vgg_keras import export

        scale = (export.read_metadata(saved_model) or {}).get("train_scale")
    elif os.path.exists(summary := os.path.join(model_dir_of(model_path), "summary.json")):
        with open(summary) as file:
            scale = json.load(file).get("scale")
    return tuple(scale) if scale else None


class _Scores:
    """Running top-1/top-5 counts and per-class accuracy of one protocol."""

    def __init__(self, num_classes):
        self.top1 = self.top5 = self.count = 0
        self.class_total = np.zeros(num_classes, np.int64)
        self.class_correct = np.zeros(num_classes, np.int64)

    def add(self, probabilities, label):
        ranked = np.argsort(-probabilities)[:5]
        self.count += 1
        self.top1 += int(ranked[0] == label)
        self.top5 += int(label in ranked)
        self.class_total[label] += 1
        self.class_correct[label] += int(ranked[0] == label)

    def result(self):
        return {"top1_error": 1.0 - self.top1 / self.count,
                "top5_error": 1.0 - self.top5 / self.count, "num_images": self.count}


class _Net:
    """One model, its crop size and (for dense evaluation) its fully convolutional twin."""

    def __init__(self, model, crop_size, need_dense):
        self.model, self.crop_size = model, crop_size
        if need_dense and "flatten" not in [layer.name for layer in model.layers]:
            raise ValueError(f"dense evaluation of {model.name} needs its layers (a Keras file "
                             "or vgg-train model dir), not a SavedModel; use single or "
                             "multicrop")
        self.conv = builder.to_conv_head(model) if need_dense else None
        self._dense_fn = tf.function(lambda x: self.model(x, training=False))
        self._conv_fn = tf.function(lambda x: self.conv(x, training=False),
                                    reduce_retracing=True) if need_dense else None

    def crops(self, image, single, multicrop):
        """Softmax of the centre crop and the mean softmax of the 50 grid crops, at one Q."""
        batch = []
        if single:
            batch.append(preprocessing.center_crop(image, self.crop_size)[None])
        if multicrop:
            batch.append(preprocessing.multi_crops(image, self.crop_size, GRID))
        probabilities = self._dense_fn(tf.concat(batch, axis=0)).numpy()
        center = probabilities[0] if single else None
        grid = probabilities[int(single):].mean(axis=0) if multicrop else None
        return center, grid

    def predict_crops(self, images):
        """Softmax of a batch of crops."""
        return self._dense_fn(images).numpy()

    def dense(self, image):
        """§3.2: the conv net on the whole image and on its mirror, class scores averaged."""
        pair = tf.stack([image, tf.reverse(image, axis=[1])])
        return self._conv_fn(pair).numpy().mean(axis=0)


def evaluate(model_paths, data_dir, *, protocols=("single",), scales=None, train_scale=None,
             crop_size=None, label_offset=None, num_classes=None, output_dir=None,
             progress=None, max_images=None, batch_size=32):
    """Evaluates one model, or the fusion of several, with the paper's protocols.

    Args:
        model_paths: Keras files, ``vgg-train`` model dirs or checkpoints; several are fused
            (their softmax averaged, §4.4).
        data_dir: shards with a validation split (our converter's, slim's, or tfds').
        protocols: any of ``PROTOCOLS``.
        scales: test scales Q; default: ``default_scales(train_scale)`` (§4.2).
        train_scale: (Smin, Smax) the model was trained at; default: from its summary.json.
        crop_size: default: the model's input size.
        label_offset, num_classes: as for ``pipelines.make_eval_dataset``.
        output_dir: where ``results.json``, ``results.csv`` and ``per_class_accuracy.csv`` go.
        progress: print progress (default: on a terminal).
        max_images: stop after this many images (for quick looks).
        batch_size: images per batch of the single-crop protocol (the other protocols go one
            image at a time: their images differ in size, or are 50 crops already).

    Returns:
        ``{protocol: {"top1_error", "top5_error", "num_images"}}`` plus ``"settings"``.

    Raises:
        ValueError: for an unknown protocol, missing scales, or models whose classes differ
            from the data's.
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {list(protocols)}")
    models = [load_model(path) for path in model_paths]
    train_scale = train_scale or read_train_scale(model_paths[0])
    if not scales:
        if not train_scale:
            raise ValueError("give --scales, or --train_scale (no summary.json beside the "
                             "model tells it)")
        scales = default_scales(train_scale)
    _, _, data_classes = inputs.resolve_files(data_dir, "validation")
    num_classes = num_classes or data_classes
    for path, model in zip(model_paths, models, strict=True):
        if num_classes and model.output.shape[-1] != num_classes:
            raise ValueError(f"{path} predicts {model.output.shape[-1]} classes but the data "
                             f"has {num_classes} (see --num_classes, --label_offset)")
    num_classes = num_classes or models[0].output.shape[-1]
    need_dense = any("dense" in p for p in protocols)
    nets = [_Net(m, crop_size or m.input.shape[1], need_dense) for m in models]
    if min(scales) < max(net.crop_size for net in nets):
        raise ValueError(f"test scales {scales} must be at least the crop size")
    scores = {p: _Scores(num_classes) for p in protocols}
    started = time.monotonic()
    meter = _Progress(progress)
    if tuple(protocols) == ("single",):  # centre crops share a size: whole batches at once
        batches = zip(*[_center_batches(data_dir, q, net_crop, batch_size, label_offset,
                                        num_classes) for q in scales
                        for net_crop in {net.crop_size for net in nets}], strict=True)
        for batch in batches:
            labels = batch[0][1]
            probabilities = np.mean([net.predict_crops(images) for net in nets
                                     for images, _ in batch if images.shape[1] == net.crop_size],
                                    axis=0)
            for row, label in zip(probabilities, labels, strict=True):
                if max_images is None or scores["single"].count < max_images:
                    scores["single"].add(row, int(label))
            meter.update(scores["single"].count)
            if max_images is not None and scores["single"].count >= max_images:
                break
    else:
        streams = [iter(_images_at(data_dir, q, label_offset, num_classes)) for q in scales]
        for index, items in enumerate(zip(*streams, strict=True)):
            if max_images is not None and index >= max_images:
                break
            label = int(items[0][1])
            for protocol, probabilities in _protocol_scores(nets, items, protocols).items():
                scores[protocol].add(probabilities, label)
            meter.update(index + 1)
    meter.close()
    results = {p: s.result() for p, s in scores.items()}
    results["settings"] = {"models": list(model_paths), "scales": list(scales),
                           "train_scale": list(train_scale) if train_scale else None,
                           "crop_sizes": [net.crop_size for net in nets],
                           "seconds": time.monotonic() - started}
    if output_dir:
        write_results(output_dir, results, scores)
    return results


def _images_at(data_dir, scale, label_offset, num_classes):
    """(image rescaled to shorter side Q, label, file name), one image at a time, file order."""
    dataset = pipelines.make_eval_dataset(data_dir, mode="dense", scale=scale,
                                          label_offset=label_offset, num_classes=num_classes)
    for image, label, filename in dataset:
        yield image[0], label[0].numpy(), filename[0].numpy()


def _center_batches(data_dir, scale, crop_size, batch_size, label_offset, num_classes):
    dataset = pipelines.make_eval_dataset(data_dir, mode="center", scale=scale,
                                          crop_size=crop_size, batch_size=batch_size,
                                          label_offset=label_offset, num_classes=num_classes)
    for images, labels, _ in dataset:
        yield images, labels.numpy()


class _Progress:
    """Images evaluated so far: a running line on a terminal, a line per 1,000 otherwise."""

    def __init__(self, show):
        self.terminal = sys.stderr.isatty() if show is None else show
        self.started, self.last = time.monotonic(), 0

    def update(self, count):
        rate = count / max(time.monotonic() - self.started, 1e-9)
        if self.terminal:
            print(f"\r{count} images, {rate:.1f} images/s", end="", file=sys.stderr)
        elif count // 1000 > self.last // 1000:
            print(f"{count} images evaluated, {rate:.1f} images/s", file=sys.stderr, flush=True)
        self.last = count

    def close(self):
        if self.terminal:
            print(file=sys.stderr)


def _protocol_scores(nets, items, protocols):
    """Each protocol's class probabilities for one image: averaged over scales, then models."""
    single, multicrop = "single" in protocols, any("multicrop" in p for p in protocols)
    dense = any("dense" in p for p in protocols)
    sums = {}
    for net in nets:
        for image, _, _ in items:
            parts = {}
            if single or multicrop:
                parts["single"], parts["multicrop"] = net.crops(image, single, multicrop)
            if dense:
                parts["dense"] = net.dense(image)
            for name, value in parts.items():
                if value is not None:
                    sums[name] = sums.get(name, 0.0) + value
    count = len(nets) * len(items)
    averaged = {name: value / count for name, value in sums.items()}
    if "dense+multicrop" in protocols:
        averaged["dense+multicrop"] = (averaged["dense"] + averaged["multicrop"]) / 2.0
    return {p: averaged[p] for p in protocols}


def format_table(results):
    """The results in the shape of the paper's Tables 3–7."""
    settings = results["settings"]
    models = " + ".join(os.path.basename(os.path.normpath(m)) for m in settings["models"])
    train = settings["train_scale"]
    train = "-" if not train else (str(train[0]) if train[0] == train[1] else
                                   f"[{train[0]};{train[1]}]")
    test = ",".join(str(q) for q in settings["scales"])
    lines = [f"{'model':<24} {'train S':>10} {'test Q':>12} {'protocol':>16} "
             f"{'top-1 err (%)':>14} {'top-5 err (%)':>14} {'images':>7}", "-" * 104]
    for protocol in PROTOCOLS:
        if protocol in results:
            row = results[protocol]
            lines.append(f"{models[:24]:<24} {train:>10} {test:>12} {protocol:>16} "
                         f"{100 * row['top1_error']:>14.2f} {100 * row['top5_error']:>14.2f} "
                         f"{row['num_images']:>7}")
    return "\n".join(lines)


def write_results(output_dir, results, scores):
    """``results.json``, ``results.csv`` and ``per_class_accuracy.csv`` in ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump(results, file, indent=1)
    with open(os.path.join(output_dir, "results.csv"), "w") as file:
        file.write("protocol,top1_error,top5_error,num_images\n")
        for protocol, score in scores.items():
            row = score.result()
            file.write(f"{protocol},{row['top1_error']},{row['top5_error']},"
                       f"{row['num_images']}\n")
    with open(os.path.join(output_dir, "per_class_accuracy.csv"), "w") as file:
        file.write("class,protocol,images,top1_accuracy\n")
        for protocol, score in scores.items():
            for label in np.flatnonzero(score.class_total):
                accuracy = score.class_correct[label] / score.class_total[label]
                file.write(f"{label},{protocol},{score.class_total[label]},{accuracy}\n")
