"""The paper's test protocols on batches, on every replica of every worker (``vgg-evaluate``).

The validation images are split across workers (each image read and decoded by one: every
count-th record from the worker's index), and each worker's share across its replicas, a batch
per replica per step. A worker reads its images in chunks of ``chunk`` images (the bounded
buffer that keeps memory constant), rescaled to every test scale Q, and per chunk builds:
- single: the centre crops, one uniform batch after another;
- multi-crop: whole images bucketed by shape, the 5×5 grid and its mirrors cut on the device
  (``batch_size`` counts crops: 50 per image);
- dense: whole images bucketed by shape (most ImageNet images at Q share a handful of shapes),
  each with its mirror through the fully convolutional net (2 inputs per image).
Every crop is ``pipelines.preprocessing``'s and every protocol ``vgg_keras.protocols``' own. The
probabilities of each image are averaged over a model's scales, then over the models (§4.4), and
counted when its chunk is done; the counts of the workers are summed by one all-reduce at the
end.
"""

import collections
import dataclasses
import time

import numpy as np
import tensorflow as tf

from pipelines import inputs
from pipelines import preprocessing
from vgg_keras import protocols as protocol_lib
from vgg_keras.compute import distribution


def part_functions(net, conv_net, crop_size):
    """The replica functions of one model: ``{part: images → probabilities [n, classes]}``, the
    protocols' own (``protocols``): single on centre crops, multi-crop and dense on whole images
    of one shape. ``net``/``conv_net``: callables from uint8 images to probabilities
    (``as_probabilities``)."""
    parts = {protocol_lib.SINGLE: lambda crops: protocol_lib.single_probabilities(net, crops),
             protocol_lib.MULTICROP: lambda images: protocol_lib.multicrop_probabilities(
                 net, images, crop_size)}
    if conv_net is not None:
        parts[protocol_lib.DENSE] = lambda images: protocol_lib.dense_probabilities(conv_net,
                                                                                   images)
    return parts


def center_crops(images, crop_size):
    """The centre crop of each image (``preprocessing.center_crop``), as one batch."""
    return np.stack([preprocessing.center_crop(image, crop_size) for image in images])


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


@dataclasses.dataclass
class Chunk:
    """A worker's images, a chunk at a time: their ``labels`` and file ``names`` (in file order)
    and ``images`` ``{Q: [image arrays]}``, each rescaled to every test scale Q."""

    labels: list
    names: list
    images: dict


def chunk_probabilities(models, chunks, protocols, batch_size, runner, num_classes):
    """Every protocol over ``chunks`` (``image_chunks``) with batches of ``batch_size`` network
    inputs per replica: yields each chunk with ``{protocol: probabilities [n, classes]}`` of its
    images and ``{part: seconds}`` spent so far. A model's probabilities are averaged over its
    scales, then over the models (§4.4)."""
    wanted = protocol_lib.protocol_parts(protocols)
    grid_crops = 2 * protocol_lib.GRID ** 2
    per_batch = {protocol_lib.SINGLE: batch_size,
                 protocol_lib.MULTICROP: max(1, batch_size // grid_crops),
                 protocol_lib.DENSE: max(1, batch_size // 2)}
    seconds = collections.Counter()
    for chunk in chunks:
        total = Accumulator(len(chunk.labels), num_classes, wanted)
        for index, model in enumerate(models):
            weight = 1.0 / (len(model.scales) * len(models))
            for part in wanted:
                started = time.monotonic()
                jobs = []
                for q in model.scales:
                    if part == protocol_lib.SINGLE:
                        crops = center_crops(chunk.images[q], model.crop_size)
                        jobs += [(list(range(start, min(start + per_batch[part], len(crops)))),
                                  crops[start:start + per_batch[part]])
                                 for start in range(0, len(crops), per_batch[part])]
                    else:
                        jobs += buckets(chunk.images[q], per_batch[part])
                outputs = runner.run((index, part), model.functions[part],
                                     [batch for _, batch in jobs])
                for (positions, _), probabilities in zip(jobs, outputs, strict=True):
                    total.add(part, positions, probabilities, weight)
                seconds[part] += time.monotonic() - started
        combined = total.protocols()
        yield chunk, {protocol: combined[protocol] for protocol in protocols}, seconds


def image_chunks(info, config, scales, chunk):
    """This worker's images as ``Chunk``s of ``chunk`` images, each rescaled to every scale of
    ``scales`` (in file order): ``config``, an ``EvalInputConfig`` of whole images, says which
    images (``max_images``, this worker's ``shard``) and their classes."""
    streams = [_images_at(info, dataclasses.replace(config, test_scale=q)) for q in scales]
    current = Chunk([], [], {q: [] for q in scales})
    for items in zip(*streams, strict=True):
        current.labels.append(int(items[0][1]))
        current.names.append(items[0][2])
        for q, (image, _, _) in zip(scales, items, strict=True):
            current.images[q].append(image)
        if len(current.labels) == chunk:
            yield current
            current = Chunk([], [], {q: [] for q in scales})
    if current.labels:
        yield current


def _images_at(info, config):
    for image, label, name in inputs.make_eval_dataset(info, config).as_numpy_iterator():
        yield image[0], label[0], name[0].decode("utf-8", "replace")


def sum_across_workers(strategy, vector):
    """``vector`` summed over the workers of ``strategy`` (one all-reduce; itself alone)."""
    workers, _ = distribution.worker_share(strategy)
    if workers == 1:
        return vector
    local = len(strategy.extended.worker_devices)

    def value(context):  # the worker's vector on its first replica, zeros on the others
        first = context.replica_id_in_sync_group % local == 0
        return tf.constant(vector if first else np.zeros_like(vector))

    values = strategy.experimental_distribute_values_from_function(value)
    total = tf.function(lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None),
                        autograph=False)
    return np.asarray(total(values))
