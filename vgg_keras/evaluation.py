"""``vgg-evaluate``: the paper's test protocols (§3.2, §4) — single-scale centre crop, dense
(fully convolutional, flip-averaged), multi-crop (5×5 grid × 2 flips per scale), dense +
multi-crop — over one or several test scales Q, for one model or a fusion of several (§4.4);
top-1/top-5 errors in the shape of Tables 3–7.

What each protocol computes is ``protocols``'; this module streams the validation split through
it: one image at a time (at every scale, through every model), with only running counts kept,
so that the 50,000 ImageNet validation images take constant memory.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf

from pipelines import dataset_info
from pipelines import errors
from pipelines import inputs
from pipelines import progress as progress_lines
from pipelines import shard_integrity
from pipelines import storage
from vgg_keras import artifacts
from vgg_keras import builder
from vgg_keras import evaluation_batches as batches_lib
from vgg_keras import protocols as protocol_lib
from vgg_keras.training import run_config

PROTOCOLS = protocol_lib.PROTOCOLS
PROGRESS_INTERVAL = 30.0  # seconds between progress lines off a terminal


def evaluate(model_paths, data_dir, *, protocols=(protocol_lib.SINGLE,), scales=None,
             train_scale=None, crop_size=None, label_offset=None, num_classes=None,
             output_dir=None, progress=None, max_images=None, batch_size=32,
             verify_shards=False, strategy=None, one_image=False, keep_probabilities=False,
             chunk=batches_lib.CHUNK_IMAGES):
    """Evaluates one model, or the fusion of several, with the paper's protocols, on every
    replica of ``strategy`` (of every worker).

    Args:
        model_paths: Keras files, ``vgg-train`` model dirs, checkpoints or exports; several are
            fused (their softmax averaged, §4.4).
        data_dir: shards with a validation split (our converter's, slim's, or tfds').
        protocols: any of ``PROTOCOLS`` (or their other names, ``protocols.ALIASES``).
        scales: test scales Q for every model; default: each model's
            ``protocols.default_scales`` of its training scale (§4.2), or an export's own Q.
        train_scale: (Smin, Smax) to take as every model's training scale; default: each
            model's own, from its summary.json or export metadata.
        crop_size: default: each model's input size.
        label_offset, num_classes: as for ``pipelines.inputs.make_eval_dataset``.
        output_dir: where ``results.json``, ``results.csv`` and ``per_class_accuracy.csv`` go
            (written by the first worker).
        progress: True for a live progress line, False for none, None (default) for a live
            line on a terminal and otherwise a line every ``PROGRESS_INTERVAL`` seconds.
        max_images: the first N images only (for quick looks).
        batch_size: network inputs per replica and step: centre crops (single), crops
            (multi-crop: 50 per image), or whole images with their mirrors (dense: 2 per image).
        verify_shards: compare every shard's sha256 with the manifest first.
        strategy: a ``tf.distribute`` strategy (``distribution.make_strategy``); default: the
            current one (one device).
        one_image: the reference path instead: one image at a time on one device, as the
            protocols define each (the batched path gives the same counts).
        keep_probabilities: return every image's probabilities too, ``{"probabilities":
            {protocol: [images, classes]}}`` in file order (one worker; for tests).
        chunk: images a worker holds at once (the bounded buffer of the batched path).

    Returns:
        ``{protocol: {"top1_error", "top5_error", "num_images"}}`` plus ``"settings"``.

    Raises:
        UserError: for an unknown protocol, missing scales, or models whose classes differ
            from the data's.
    """
    protocols = [protocol_lib.protocol_name(p) for p in protocols]
    _check_protocols(protocols)
    info = dataset_info.read_info(data_dir)
    strategy = strategy or tf.distribute.get_strategy()
    need_dense = protocol_lib.DENSE in protocol_lib.protocol_parts(protocols)
    with strategy.scope():  # the nets' variables on every replica
        nets = [_Net(path, artifacts.load_model(path), crop_size, need_dense)
                for path in model_paths]
    num_classes = _check_classes(nets, info, num_classes)
    _assign_scales(nets, scales, train_scale)
    scores = {p: _Scores(num_classes) for p in protocols}
    data = dict(info=info, label_offset=label_offset, num_classes=num_classes,
                verify_shards=verify_shards)
    workers, worker = batches_lib.worker_share(strategy)
    started, keep = time.monotonic(), {} if keep_probabilities else None
    meter = progress_lines.Progress(_images_of(info, max_images, workers, worker),
                                    label="evaluated", show=progress, interval=PROGRESS_INTERVAL)
    try:
        if one_image:
            _score_image_by_image(nets, data, scores, protocols, max_images, meter, keep)
        else:
            all_scales = sorted({q for net in nets for q in net.scales})
            stream = batches_lib.image_chunks(data, all_scales, chunk, max_images,
                                              (workers, worker))
            batches_lib.score_batched(nets, stream, scores, protocols, batch_size,
                                      batches_lib.ReplicaRunner(strategy), meter, keep)
    except tf.errors.DataLossError as error:  # TensorFlow names no shard: find it
        raise shard_integrity.explain(error, info.split_files("validation"),
                                      info.expected_shards()) from error
    meter.close()
    _sum_workers(strategy, scores)
    results = {p: s.result() for p, s in scores.items()}
    results["settings"] = _settings(nets, time.monotonic() - started, strategy, batch_size)
    if keep is not None:
        results["probabilities"] = {p: np.concatenate(rows) for p, rows in keep.items()}
    if output_dir and worker == 0:
        write_results(output_dir, results, scores)
    return results


def _images_of(info, max_images, workers, worker):
    """How many validation images this worker evaluates (for the progress line's ETA)."""
    total = info.num_examples.get("validation")
    if total is None:
        total = max_images
    elif max_images is not None:
        total = min(total, max_images)
    return None if total is None else len(range(worker, total, workers))


def _sum_workers(strategy, scores):
    """Every protocol's counts summed over the workers (one all-reduce)."""
    vectors = [score.to_vector() for score in scores.values()]
    total = batches_lib.sum_across_workers(strategy, np.concatenate(vectors))
    position = 0
    for score, vector in zip(scores.values(), vectors, strict=True):
        score.from_vector(total[position:position + vector.size])
        position += vector.size


class _Net:
    """One model of the evaluation: its test scales, crop size and the protocols' functions
    on it (the fully convolutional twin for dense evaluation)."""

    def __init__(self, path, model, crop_size, need_dense):
        self.path, self.model = path, model
        self.crop_size = crop_size or int(model.input.shape[1])
        self.scales = self.train_scale = None
        if need_dense and "flatten" not in [layer.name for layer in model.layers]:
            raise errors.UserError(f"dense evaluation of {model.name} needs its layers (a Keras "
                                   "file or vgg-train model dir), not a SavedModel; use single or "
                                   "multicrop")
        net = protocol_lib.as_probabilities(model)
        crop = self.crop_size
        # reduce_retracing: images of every size share one graph after the second size.
        self.center = tf.function(lambda image: protocol_lib.center_probabilities(
            net, image, crop), reduce_retracing=True)
        self.multicrop = tf.function(lambda image: protocol_lib.multicrop_probabilities(
            net, image, crop), reduce_retracing=True)
        self.dense = conv_net = None
        if need_dense:
            conv_net = protocol_lib.as_probabilities(builder.to_conv_head(model))
            self.dense = tf.function(lambda image: protocol_lib.dense_probabilities(
                conv_net, image), reduce_retracing=True)
        # The batched path's replica functions (evaluation_batches).
        self.functions = batches_lib.part_functions(net, conv_net, crop)

    def parts(self, image, wanted):
        """``{protocol: probabilities}`` of one image at one scale, for the ``wanted`` parts."""
        functions = {protocol_lib.SINGLE: self.center, protocol_lib.MULTICROP: self.multicrop,
                     protocol_lib.DENSE: self.dense}
        return {part: functions[part](image).numpy() for part in wanted}


def _check_protocols(protocols):
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise errors.UserError(f"protocols must be among {PROTOCOLS}, got {list(protocols)}")


def _check_classes(nets, info, num_classes):
    """The number of classes: given, from the data's metadata, or the models' outputs; models
    and data must agree."""
    num_classes = num_classes or info.num_classes
    for net in nets:
        outputs = net.model.output.shape[-1]
        if num_classes and outputs != num_classes:
            raise errors.UserError(f"{net.path} predicts {outputs} classes but the data has "
                                   f"{num_classes} (see --num_classes, --label_offset)")
    return num_classes or nets[0].model.output.shape[-1]


def _assign_scales(nets, scales, train_scale):
    """Each model's test scales: ``scales`` for all, else §4.2's defaults of ``train_scale`` for
    all, else of each model's own recorded training scale."""
    for net in nets:
        net.train_scale = tuple(train_scale) if train_scale else artifacts.train_scale_of(
            net.path)
        served = artifacts.served_test_scale(net.path)
        if scales:
            net.scales = list(scales)
        elif net.train_scale:
            net.scales = protocol_lib.default_scales(net.train_scale)
        elif served:  # an export of a net with no training run here: its own Q (torchvision:
            net.scales = [served]  # resize 256, centre 224, as its table was measured)
        else:
            raise errors.UserError(f"give --scales, or --train_scale (no summary.json beside the "
                                   f"model {net.path} tells it)")
        if min(net.scales) < net.crop_size:
            raise errors.UserError(f"test scales {net.scales} must be at least the crop size "
                                   f"{net.crop_size}")


def _score_image_by_image(nets, data, scores, protocols, max_images, meter, keep=None):
    """The reference path: every protocol, one image at a time, on one device, each at every
    scale of every model (``protocols``' own functions)."""
    wanted = protocol_lib.protocol_parts(protocols)
    all_scales = sorted({q for net in nets for q in net.scales})
    streams = [_images_at(data, q) for q in all_scales]
    for index, items in enumerate(zip(*streams, strict=True)):
        if max_images is not None and index >= max_images:
            break
        images = dict(zip(all_scales, (image for image, _ in items), strict=True))
        per_model = [_mean_parts([net.parts(images[q], wanted) for q in net.scales])
                     for net in nets]
        combined = protocol_lib.combine(_mean_parts(per_model))
        for protocol in protocols:
            scores[protocol].add(combined[protocol], int(items[0][1]))
            if keep is not None:
                keep.setdefault(protocol, []).append(combined[protocol][None])
        meter.update(index + 1)


def _mean_parts(parts):
    return {key: np.mean([p[key] for p in parts], axis=0) for key in parts[0]}


def _images_at(data, scale):
    """(image rescaled to shorter side Q, label), one image at a time, in file order."""
    mode = protocol_lib.INPUT_MODES[protocol_lib.DENSE]  # the whole image at Q
    dataset = inputs.make_eval_dataset(data["info"], mode=mode, scale=scale,
                                       label_offset=data["label_offset"],
                                       num_classes=data["num_classes"],
                                       verify_shards=data["verify_shards"])
    for image, label, _ in dataset:
        yield image[0], label[0].numpy()


def _settings(nets, seconds, strategy, batch_size):
    train_scales = [list(net.train_scale) if net.train_scale else None for net in nets]
    workers, _ = batches_lib.worker_share(strategy)
    return {"models": [net.path for net in nets],
            "replicas": strategy.num_replicas_in_sync, "workers": workers,
            "batch_size": batch_size,
            "scales": sorted({q for net in nets for q in net.scales}),
            "model_scales": [net.scales for net in nets],
            "train_scale": train_scales[0] if len(set(map(str, train_scales))) == 1 else None,
            "train_scales": train_scales,
            "crop_sizes": [net.crop_size for net in nets],
            "seconds": seconds}


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

    def to_vector(self):
        """The counts as one vector (to sum those of several workers)."""
        return np.concatenate([[self.top1, self.top5, self.count], self.class_total,
                               self.class_correct]).astype(np.float64)

    def from_vector(self, vector):
        counts = np.rint(vector).astype(np.int64)
        self.top1, self.top5, self.count = (int(c) for c in counts[:3])
        classes = self.class_total.size
        self.class_total, self.class_correct = counts[3:3 + classes], counts[3 + classes:]

    def result(self):
        return {"top1_error": 1.0 - self.top1 / self.count,
                "top5_error": 1.0 - self.top5 / self.count, "num_images": self.count}


def format_table(results):
    """The results in the shape of the paper's Tables 3–7."""
    settings = results["settings"]
    models = " + ".join(storage.basename(m) for m in settings["models"])
    train = "+".join(run_config.scale_text(s) if s else "-" for s in dict.fromkeys(
        tuple(s) if s else None for s in settings.get("train_scales", [settings["train_scale"]])))
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
    storage.makedirs(output_dir)
    table = ["protocol,top1_error,top5_error,num_images"]
    for protocol, score in scores.items():
        row = score.result()
        table.append(f"{protocol},{row['top1_error']},{row['top5_error']},{row['num_images']}")
    per_class = ["class,protocol,images,top1_accuracy"]
    for protocol, score in scores.items():
        for label in np.flatnonzero(score.class_total):
            accuracy = score.class_correct[label] / score.class_total[label]
            per_class.append(f"{label},{protocol},{score.class_total[label]},{accuracy}")
    # The tables first, results.json last: it marks a finished evaluation.
    storage.write_atomic(os.path.join(output_dir, "results.csv"), "\n".join(table) + "\n")
    storage.write_atomic(os.path.join(output_dir, "per_class_accuracy.csv"),
                         "\n".join(per_class) + "\n")
    storage.write_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=1))
