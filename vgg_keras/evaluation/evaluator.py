"""``vgg-evaluate``: the paper's test protocols (§3.2, §4) — single-scale centre crop, dense
(fully convolutional, flip-averaged), multi-crop (5×5 grid × 2 flips per scale), dense +
multi-crop — over one or several test scales Q, for one model or a fusion of several (§4.4);
top-1/top-5 errors in the shape of Tables 3–7.

What each protocol computes is ``protocols``'; ``batches`` streams the validation split through
them on every replica, a bounded chunk of images at a time, with only running counts kept, so
that the 50,000 ImageNet validation images take constant memory.
"""

import time

import numpy as np
import tensorflow as tf

from pipelines import dataset_info
from pipelines import input_config
from pipelines import shard_integrity
from pipelines.foundation import errors
from pipelines.foundation import progress as progress_lines
from vgg_keras import protocols as protocol_lib
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import loading
from vgg_keras.compute import distribution
from vgg_keras.compute import replicas
from vgg_keras.evaluation import batches as batches_lib
from vgg_keras.evaluation import results as results_lib
from vgg_keras.nets import builder
from vgg_keras.nets import configs
from vgg_keras.nets import heads

PROGRESS_INTERVAL = 30.0  # seconds between progress lines off a terminal


def evaluate(config, *, strategy=None, progress=None):
    """Evaluates one model, or the fusion of several, with the paper's protocols, on every
    replica of ``strategy`` (of every worker).

    Args:
        config: an ``EvalConfig``: the models (Keras files, ``vgg-train`` model dirs,
            checkpoints or exports; several are fused, their softmax averaged, §4.4), the data,
            protocols, test scales (default: each model's ``protocols.default_scales`` of its
            training scale, §4.2, or an export's own Q), where the results go.
        strategy: a ``tf.distribute`` strategy (``distribution.make_strategy``); default: the
            current one (one device).
        progress: True for a live progress line, False for none, None (default) for a live
            line on a terminal and otherwise a line every ``PROGRESS_INTERVAL`` seconds.

    Returns:
        ``{protocol: {"top1_error", "top5_error", "num_images"}}`` plus ``"settings"``.

    Raises:
        UserError: for an unknown protocol, missing scales, or models whose classes differ
            from the data's.
    """
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    evaluation = Evaluation(config, strategy)
    started = time.monotonic()  # the evaluation's own time, the models loaded
    scores = {p: results_lib.Scores(evaluation.num_classes) for p in config.protocols}
    meter = progress_lines.Progress(evaluation.images(), label="evaluated", show=progress,
                                    interval=PROGRESS_INTERVAL)
    done, predictions, classes = 0, [], evaluation.class_names()
    for chunk, probabilities, seconds in evaluation.probabilities():
        for protocol, rows in probabilities.items():
            scores[protocol].add(rows, chunk.labels)
            if config.output_dir:
                predictions += results_lib.prediction_rows(protocol, chunk.names, chunk.labels,
                                                           rows, classes)
        done += len(chunk.labels)
        meter.update(done, extra=_times(seconds, done))
    meter.close()
    _sum_workers(strategy, scores)
    results = {p: s.result() for p, s in scores.items()}
    results["settings"] = evaluation.settings(time.monotonic() - started)
    if config.output_dir:
        part = None if evaluation.workers == 1 else (
            f"worker{evaluation.worker}-of-{evaluation.workers}")
        results_lib.write_predictions(config.output_dir, predictions, part)
        if evaluation.worker == 0:
            results_lib.write_results(config.output_dir, results, scores, classes)
    return results


class Evaluation:
    """The models of an evaluation loaded on every replica, their scales and classes checked,
    and this worker's share of the images."""

    def __init__(self, config, strategy):
        self.config, self.strategy = config, strategy
        self.info = dataset_info.read_info(config.data_dir)
        need_dense = protocol_lib.DENSE in protocol_lib.protocol_parts(config.protocols)
        with strategy.scope():  # the nets' variables on every replica
            self.nets = [_Net(path, *loading.load_model_and_source(path), config.crop_size,
                              need_dense) for path in config.model or ()]
            if config.weights:
                self.nets.append(_published_net(config, need_dense))
        self.num_classes = _check_classes(self.nets, self.info, config.num_classes)
        _assign_scales(self.nets, config.scales, config.train_scale)
        self.workers, self.worker = distribution.worker_share(strategy)

    def class_names(self):
        """The name of each class (as the data's metadata names it; else its number)."""
        try:
            found = self.info.class_names(self.num_classes, self.config.label_offset)
        except errors.UserError:  # outputs the data names no class for
            found = None
        return list(found[1]) if found else [str(i) for i in range(self.num_classes)]

    def images(self):
        """How many validation images this worker evaluates (for the progress line's ETA)."""
        total, limit = self.info.num_examples.get("validation"), self.config.max_images
        if total is None:
            total = limit
        elif limit is not None:
            total = min(total, limit)
        return None if total is None else len(range(self.worker, total, self.workers))

    def probabilities(self):
        """``(chunk, {protocol: probabilities [n, classes]}, {part: seconds})`` of this worker's
        images, a chunk at a time (``batches.chunk_probabilities``)."""
        config = self.config
        images = input_config.EvalInputConfig(
            mode=input_config.WHOLE_IMAGES, num_classes=self.num_classes,
            label_offset=config.label_offset, verify_shards=config.verify_shards,
            max_images=config.max_images, shard=(self.workers, self.worker))
        scales = sorted({q for net in self.nets for q in net.scales})
        chunks = batches_lib.image_chunks(self.info, images, scales, config.chunk)
        try:
            yield from batches_lib.chunk_probabilities(
                self.nets, chunks, config.protocols, config.batch_size,
                replicas.ReplicaRunner(self.strategy), self.num_classes)
        except tf.errors.DataLossError as error:  # TensorFlow names no shard: find it
            raise shard_integrity.explain(error, self.info.split_files("validation"),
                                          self.info.expected_shards()) from error

    def settings(self, seconds):
        nets = self.nets
        train_scales = [list(net.train_scale) if net.train_scale else None for net in nets]
        published_weights = [net.weights.to_json() for net in nets
                             if net.weights and net.weights.fetched]
        return {"models": [net.path for net in nets],
                "model_files": [net.source.describe() for net in nets],
                **({"published_weights": published_weights} if published_weights else {}),
                "replicas": self.strategy.num_replicas_in_sync, "workers": self.workers,
                "batch_size": self.config.batch_size,
                "scales": sorted({q for net in nets for q in net.scales}),
                "model_scales": [net.scales for net in nets],
                "train_scale": (train_scales[0] if len(set(map(str, train_scales))) == 1
                                else None),
                "train_scales": train_scales,
                "train_crops": ["random_resized_crop" if net.resized_crops else "scale"
                                for net in nets],
                "crop_sizes": [net.crop_size for net in nets],
                "seconds": seconds}


def _times(seconds, done):
    return "; ".join(f"{part} {1000 * s / max(done, 1):.1f} ms/image"
                     for part, s in seconds.items())


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

    def __init__(self, path, model, source, crop_size, need_dense, weights=None):
        self.path, self.model, self.source, self.weights = path, model, source, weights
        self.crop_size = crop_size or builder.crop_size_of(model)
        self.scales = self.train_scale = None
        self.resized_crops = False  # trained on RandomResizedCrop, not at a scale S
        if need_dense and "flatten" not in [layer.name for layer in model.layers]:
            kind = ("an ONNX, LiteRT or OpenVINO file" if layout.is_tensor_file(source.file)
                    else "a SavedModel")
            raise errors.UserError(f"dense evaluation of {path} needs the net's layers (a Keras "
                                   "file, a vgg-train model dir or checkpoint), which "
                                   f"{source.file} ({kind}) does not hold: use single or "
                                   "multicrop on it")
        net = protocol_lib.as_probabilities(model)
        conv_net = (protocol_lib.as_probabilities(heads.to_conv_head(model)) if need_dense
                    else None)
        self.functions = batches_lib.part_functions(net, conv_net, self.crop_size)


def _published_net(config, need_dense):
    """The net of ``--config`` with the published weights of ``--weights``, at ``--crop_size``
    (default: the crop they were trained on)."""
    model, weights, _ = loading.load_published(config.weights, config.config,
                                               crop_size=config.crop_size)
    label = f"{configs.variant_name(config.config)} {config.weights}"
    return _Net(label, model, loading.ModelSource(label, "published", weights.describe()),
                None, need_dense, weights)


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
        if net.weights:  # published weights: at the Q their publishers measured them at
            recorded, served = None, net.weights.needs.test_scale_at(net.crop_size)
        else:
            recorded = layout.train_scale_of(net.path)
            served = layout.served_test_scale(net.path)
        net.train_scale = tuple(train_scale) if train_scale else recorded
        net.resized_crops = not (train_scale or net.weights) and layout.trained_with_resized_crops(
            net.path)
        validated = None if (train_scale or net.weights) else layout.recorded_test_scale(net.path)
        if scales:
            net.scales = list(scales)
        elif validated:  # the Q of its own validation (--val_resize_size, a recipe's)
            net.scales = [validated]
        elif net.train_scale:
            net.scales = protocol_lib.default_scales(net.train_scale)
        elif served:  # an export of a net with no training run here: its own Q (torchvision's
            net.scales = [served]  # tables were measured at 256 before their crop)
        else:
            raise errors.UserError(f"give --scales, or --train_scale (no summary.json beside the "
                                   f"model {net.path} tells it)")
        if min(net.scales) < net.crop_size:
            raise errors.UserError(f"test scales {net.scales} must be at least the crop size "
                                   f"{net.crop_size}")
