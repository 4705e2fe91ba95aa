"""The paper's test protocols on batches, on every replica of every worker (``vgg-evaluate``).

The validation images are split across workers (each image read and decoded by one: every
count-th record from the worker's index), and each worker's share across its replicas, a batch
per replica per step. A worker reads its images in chunks of ``buffer`` images (the bounded
buffer that keeps memory constant), rescaled to every test scale Q, and per chunk builds:
- single: the centre crops, one uniform batch after another;
- multi-crop: whole images bucketed by shape, the 5×5 grid and its mirrors cut on the device
  (``batch_size`` counts crops: 50 per image);
- dense: whole images bucketed by shape (most ImageNet images at Q share a handful of shapes),
  each with its mirror through the fully convolutional net (2 inputs per image).
The probabilities of each image are summed, weighted as the one-image reference path averages
them (over a model's scales, then over the models), and counted when its chunk is done; the
counts of the workers are summed by one all-reduce at the end.
"""

import collections
import time

import numpy as np
import tensorflow as tf

from pipelines import inputs
from vgg_keras import protocols as protocol_lib

CHUNK_IMAGES = 256  # the images a worker holds at once, at every scale (the bounded buffer)


def worker_share(strategy):
    """``(number of workers, this worker's index)`` of ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 1, 0
    spec = resolver.cluster_spec().as_dict()
    workers = sorted((job, index) for job in ("chief", "worker") for index in
                     range(len(spec.get(job, []))))
    return len(workers), workers.index((resolver.task_type, resolver.task_id))


class ReplicaRunner:
    """Runs a function of one batch on every local replica at once: batches R at a time (a
    replica with no batch left gets an empty one), each on its own device."""

    def __init__(self, strategy):
        self.strategy = strategy
        try:
            self.devices = list(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: one device, the current one
            self.devices = None
        self._steps = {}

    def run(self, key, function, batches):
        """``function`` on each of ``batches`` (NumPy arrays), its results as NumPy arrays in
        the same order; ``key`` names the function for its compiled step."""
        if self.devices is None:
            if key not in self._steps:
                self._steps[key] = tf.function(function, reduce_retracing=True)
            return [np.asarray(self._steps[key](tf.constant(batch))) for batch in batches]
        if key not in self._steps:
            self._steps[key] = tf.function(
                lambda values: self.strategy.run(function, args=(values,)),
                reduce_retracing=True)
        step, replicas, results = self._steps[key], len(self.devices), []
        for start in range(0, len(batches), replicas):
            group = batches[start:start + replicas]
            padded = group + [group[0][:0]] * (replicas - len(group))
            outputs = self.strategy.experimental_local_results(step(self._distribute(padded)))
            results += [np.asarray(output) for output in outputs[:len(group)]]
        return results

    def _distribute(self, batches):
        def value(context):
            index = context.replica_id_in_sync_group % len(self.devices)
            with tf.device(self.devices[index]):
                return tf.identity(tf.constant(batches[index]))

        return self.strategy.experimental_distribute_values_from_function(value)


def part_functions(net, conv_net, crop_size, grid=protocol_lib.GRID):
    """The replica functions of one model: ``{part: images → probabilities [n, classes]}``.
    ``net``/``conv_net``: callables from uint8 images to probabilities (``as_probabilities``)."""
    def single(crops):
        return net(crops)

    def multicrop(images):  # [n, H, W, 3], one shape
        crops = batch_multi_crops(images, crop_size, grid)  # [n, 2·grid², c, c, 3]
        count = tf.shape(crops)[1]
        flat = tf.reshape(crops, [-1, crop_size, crop_size, 3])
        probabilities = net(flat)
        return tf.reduce_mean(tf.reshape(probabilities, [tf.shape(images)[0], count, -1]), 1)

    def dense(images):  # each image and its mirror, as protocols.dense_probabilities
        pair = tf.concat([images, tf.reverse(images, axis=[2])], axis=0)
        probabilities = conv_net(pair)
        return tf.reduce_mean(tf.reshape(probabilities, [2, tf.shape(images)[0], -1]), 0)

    parts = {protocol_lib.SINGLE: single, protocol_lib.MULTICROP: multicrop}
    if conv_net is not None:
        parts[protocol_lib.DENSE] = dense
    return parts


def batch_multi_crops(images, crop_size, grid):
    """``preprocessing.multi_crops`` of a batch of images of one shape: ``[n, 2·grid², crop,
    crop, 3]``, the same crops in the same order for each image."""
    from pipelines import preprocessing

    shape = tf.shape(images)
    rows = preprocessing.grid_offsets(shape[1], crop_size, grid)
    cols = preprocessing.grid_offsets(shape[2], crop_size, grid)
    offsets = tf.stack([tf.repeat(rows, grid), tf.tile(cols, [grid])], axis=1)
    crops = tf.map_fn(
        lambda offset: images[:, offset[0]:offset[0] + crop_size,
                              offset[1]:offset[1] + crop_size],
        offsets, fn_output_signature=tf.TensorSpec([None, crop_size, crop_size, 3], tf.uint8))
    crops = tf.transpose(crops, [1, 0, 2, 3, 4])  # [n, grid², c, c, 3]
    return tf.concat([crops, tf.reverse(crops, axis=[3])], axis=1)


def center_crops(images, crop_size):
    """The centre crop of each image, as ``preprocessing.center_crop`` cuts it."""
    crops = []
    for image in images:
        top, left = (image.shape[0] - crop_size) // 2, (image.shape[1] - crop_size) // 2
        crops.append(image[top:top + crop_size, left:left + crop_size])
    return np.stack(crops)


def buckets(images, per_batch):
    """``[(positions, batch)]``: the images grouped by shape, ``per_batch`` at most each."""
    by_shape = collections.defaultdict(list)
    for position, image in enumerate(images):
        by_shape[image.shape].append(position)
    found = []
    for positions in by_shape.values():
        for start in range(0, len(positions), per_batch):
            chosen = positions[start:start + per_batch]
            found.append((chosen, np.stack([images[p] for p in chosen])))
    return found


class Accumulator:
    """The summed probabilities of a chunk's images, per protocol part, and the time each part
    took."""

    def __init__(self, count, num_classes, parts):
        self.sums = {part: np.zeros((count, num_classes), np.float64) for part in parts}
        self.seconds = collections.Counter()

    def add(self, part, positions, probabilities, weight):
        self.sums[part][positions] += weight * probabilities

    def protocols(self):
        """``{protocol: [n, classes]}``: the parts, and dense+multicrop their mean (§4.3)."""
        return protocol_lib.combine(self.sums)


def score_batched(models, stream, scores, protocols, batch_size, runner, meter, keep=None):
    """Every protocol over ``stream`` (chunks of ``(labels, {Q: [images]})``) with the batches
    of ``batch_size`` network inputs per replica; adds each image to ``scores`` (and its
    probabilities to ``keep``, a dict of lists, if given). Returns the seconds per part."""
    wanted = protocol_lib.protocol_parts(protocols)
    grid_crops = 2 * protocol_lib.GRID ** 2
    per_batch = {protocol_lib.SINGLE: batch_size,
                 protocol_lib.MULTICROP: max(1, batch_size // grid_crops),
                 protocol_lib.DENSE: max(1, batch_size // 2)}
    seconds, done = collections.Counter(), 0
    for labels, images in stream:
        total = Accumulator(len(labels), scores[protocols[0]].class_total.size, wanted)
        for index, model in enumerate(models):
            weight = 1.0 / (len(model.scales) * len(models))
            for part in wanted:
                started = time.monotonic()
                jobs = []
                for q in model.scales:
                    if part == protocol_lib.SINGLE:
                        crops = center_crops(images[q], model.crop_size)
                        jobs += [(list(range(start, min(start + per_batch[part], len(crops)))),
                                  crops[start:start + per_batch[part]])
                                 for start in range(0, len(crops), per_batch[part])]
                    else:
                        jobs += buckets(images[q], per_batch[part])
                outputs = runner.run((index, part), model.functions[part],
                                     [batch for _, batch in jobs])
                for (positions, _), probabilities in zip(jobs, outputs, strict=True):
                    total.add(part, positions, probabilities, weight)
                seconds[part] += time.monotonic() - started
        combined = total.protocols()
        for protocol in protocols:
            for row, label in zip(combined[protocol], labels, strict=True):
                scores[protocol].add(row, label)
            if keep is not None:
                keep.setdefault(protocol, []).append(combined[protocol])
        done += len(labels)
        meter.update(done, extra=_times(seconds, done))
    return seconds


def _times(seconds, done):
    return "; ".join(f"{part} {1000 * s / max(done, 1):.1f} ms/image"
                     for part, s in seconds.items())


def image_chunks(data, scales, chunk=CHUNK_IMAGES, max_images=None, shard=None):
    """``(labels, {Q: [image arrays]})`` of this worker's images, ``chunk`` at a time, each
    rescaled to every scale of ``scales`` (in file order)."""
    streams = [_images_at(data, q, max_images, shard) for q in scales]
    labels, images = [], {q: [] for q in scales}
    for items in zip(*streams, strict=True):
        labels.append(int(items[0][1]))
        for q, (image, _) in zip(scales, items, strict=True):
            images[q].append(image)
        if len(labels) == chunk:
            yield labels, images
            labels, images = [], {q: [] for q in scales}
    if labels:
        yield labels, images


def _images_at(data, scale, max_images, shard):
    dataset = inputs.make_eval_dataset(
        data["info"], mode=inputs.WHOLE_IMAGES, scale=scale,
        label_offset=data["label_offset"], num_classes=data["num_classes"],
        verify_shards=data["verify_shards"], max_images=max_images, shard=shard)
    for image, label, _ in dataset.as_numpy_iterator():
        yield image[0], label[0]


def sum_across_workers(strategy, vector):
    """``vector`` summed over the workers of ``strategy`` (one all-reduce; itself alone)."""
    workers, _ = worker_share(strategy)
    if workers == 1:
        return vector
    local = len(strategy.extended.worker_devices)

    def value(context):  # the worker's vector on its first replica, zeros on the others
        first = context.replica_id_in_sync_group % local == 0
        return tf.constant(vector if first else np.zeros_like(vector))

    values = strategy.experimental_distribute_values_from_function(value)
    total = tf.function(lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None))
    return np.asarray(total(values))
