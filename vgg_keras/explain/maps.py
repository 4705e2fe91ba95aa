"""Where a net looks: maps over the image of how much each place counts for a class, for any of
our nets as built or loaded (uint8 or float input, batch norm or plain, any width, published
weights):

- ``class_map``: §3.2's own — the net made fully convolutional (``heads.to_conv_head``) gives, on
  an image larger than its crop, a class-score map with the weights it was trained with;
- ``grad_cam`` (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhyay et al. 2018): a conv tap's
  channels weighted by the class score's gradient (by default the last convolution's, after its
  ReLU);
- ``integrated_gradients`` (Sundararajan et al. 2017) and ``smoothgrad`` (Smilkov et al. 2017):
  attributions to the pixels;
- ``occlusion`` (Zeiler & Fergus 2014): the class probability's drop as a patch of the mean
  colour slides over the image, the occluded copies in batches.

Each returns NumPy arrays, a map per image; the gradients are taken through a float32 twin of
the net that shares its weights (``features.feature_model``'s route), so a uint8 net has them.
A class is the top class by default, or an index for all images, or one per image. The
functions of a batch are the ``BatchMaps`` methods, which ``vgg-explain`` runs on every replica
(``compute.replicas``).
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from vgg_keras.nets import builder
from vgg_keras.nets import heads
from vgg_keras.nets.features import feature_model

SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE = 25, 0.15  # Smilkov et al.: 10-20 % of the range
# Integrated gradients: the trapezoidal rule on 64 intervals, halved until the attributions
# are complete within 1 % (a random or small net's path crosses many ReLUs: 1,024 and more).
IG_STEPS, IG_MAX_STEPS = 64, 4096
MEAN_COLOUR = builder.RGB_MEAN  # §2.1's mean RGB: an occluding patch says nothing


def last_conv(model):
    """The name of the backbone's last convolution (``block5_conv3`` of D)."""
    names = [layer.name for layer in model.layers
             if layer.name.startswith("block") and "_conv" in layer.name
             and hasattr(layer, "kernel")]
    if not names:
        raise ValueError(f"{model.name} has no convolution to take a map from")
    return names[-1]


def _classes(class_index, count, probabilities):
    """The class of each of ``count`` images: the top one, or ``class_index`` (one for all, or
    one per image)."""
    if class_index is None:
        return np.argmax(probabilities, axis=-1).astype(np.int32)
    return np.broadcast_to(np.asarray(class_index, np.int32), (count,)).copy()


def _upsampled(maps, size):
    """``[n, h, w]`` maps resized bilinearly to ``size`` ``(H, W)``."""
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


class BatchMaps:
    """The maps of one net on batches of images at its input size: each method a function of
    one batch (and the classes), traced once per shape."""

    def __init__(self, model, layer=None):
        self.model, self.layer = model, layer or last_conv(model)
        names = [layer.name for layer in model.layers]
        self.conv_head = "flatten" not in names
        # A float32 twin: the tap, and the logits before the softmax (the class score S^c).
        self.twin = feature_model(model, [self.layer, "predictions"], relu=True)
        self.size = tuple(model.inputs[0].shape[1:3])

    def scores(self, images):
        """``(tap [n, h, w, k], logits [n, classes])`` of float images; a conv head's logit map
        averaged over its places."""
        outputs = self.twin(images)
        logits = outputs["predictions"]
        if self.conv_head:
            logits = tf.reduce_mean(logits, axis=[1, 2])
        return outputs[self.layer], logits

    def probabilities(self, images):
        return tf.nn.softmax(self.scores(tf.cast(images, tf.float32))[1])

    def grad_cam(self, images, classes, plus_plus=False):
        """Grad-CAM (or ++) maps ``[n, H, W]`` in [0, 1] of the classes."""
        images = tf.cast(images, tf.float32)
        with tf.GradientTape() as tape:
            tap, logits = self.scores(images)
            score = tf.gather(logits, classes, batch_dims=1)
        grads = tape.gradient(score, tap)
        if plus_plus:  # the closed form for an exponential score (the paper's eq. 19)
            grads_2, grads_3 = grads ** 2, grads ** 3
            total = tf.reduce_sum(tap, axis=[1, 2], keepdims=True)
            denominator = 2 * grads_2 + total * grads_3
            alphas = grads_2 / tf.where(denominator != 0, denominator, tf.ones_like(denominator))
            weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=[1, 2])
        else:
            weights = tf.reduce_mean(grads, axis=[1, 2])
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", tap, weights))
        cam = cam / tf.maximum(tf.reduce_max(cam, axis=[1, 2], keepdims=True), 1e-12)
        return _upsampled(cam, tf.shape(images)[1:3])

    def _gradients(self, images, classes):
        """The gradient of each image's class probability with respect to its pixels."""
        with tf.GradientTape() as tape:
            tape.watch(images)
            probabilities = self.probabilities(images)
            score = tf.gather(probabilities, classes, batch_dims=1)
        return tape.gradient(score, images)

    def path_gradients(self, images, classes, baselines, alphas, weights):
        """``Σ weights[i] · ∇f(x₀ + alphas[i]·(x − x₀))``: the gradients of the class
        probability at points of the straight path from each baseline, weighted (a quadrature
        of integrated gradients' integral)."""
        images, baselines = tf.cast(images, tf.float32), tf.cast(baselines, tf.float32)
        alphas, weights = tf.cast(alphas, tf.float32), tf.cast(weights, tf.float32)

        def accumulate(step, total):
            point = baselines + alphas[step] * (images - baselines)
            return step + 1, total + weights[step] * self._gradients(point, classes)

        _, total = tf.while_loop(lambda step, _: step < tf.shape(alphas)[0], accumulate,
                                 (tf.constant(0), tf.zeros_like(images)))
        return total

    def smoothgrad(self, images, classes, seed, samples=SMOOTHGRAD_SAMPLES,
                   noise=SMOOTHGRAD_NOISE):
        """SmoothGrad saliency ``[n, H, W]``: the gradient averaged over ``samples`` copies
        with Gaussian noise (σ = ``noise`` × 255), its largest magnitude over the channels."""
        images = tf.cast(images, tf.float32)
        total = tf.zeros_like(images)
        for sample in range(samples):
            noisy = images + tf.random.stateless_normal(tf.shape(images), seed + sample,
                                                        stddev=noise * 255.0)
            total += self._gradients(noisy, classes)
        return tf.reduce_max(tf.abs(total / samples), axis=-1)


def _as_batch(images):
    images = np.asarray(images)
    return images[None] if images.ndim == 3 else images


def grad_cam(model, images, layer=None, class_index=None, plus_plus=False):
    """Grad-CAM maps ``[n, H, W]`` (each scaled to [0, 1]) of ``images`` (``[n, H, W, 3]`` at the
    net's input size, or one image) for their top class or ``class_index``, from ``layer``'s
    tap (default: the last convolution, after its ReLU). ``plus_plus``: Grad-CAM++."""
    images = _as_batch(images)
    maps = BatchMaps(model, layer)
    classes = _classes(class_index, len(images), maps.probabilities(images).numpy())
    return maps.grad_cam(images, classes, plus_plus).numpy()


def grad_cam_plus_plus(model, images, layer=None, class_index=None):
    """Grad-CAM++ maps: ``grad_cam(..., plus_plus=True)``."""
    return grad_cam(model, images, layer, class_index, plus_plus=True)


def integrated_gradients(model, images, baseline=None, steps=None, class_index=None):
    """Attributions ``[n, H, W, 3]`` of the class probability to each pixel; ``baseline``: an
    image (or one per image) of the same size, default black. They sum to ``f(image) −
    f(baseline)`` (completeness): with ``steps`` None, the trapezoidal rule on 64 intervals,
    halved until that holds within 1 % for every image (at most ``IG_MAX_STEPS``; the points
    already computed are kept); with ``steps``, on that many."""
    images = _as_batch(images).astype(np.float32)
    baselines = np.zeros_like(images) if baseline is None else np.broadcast_to(
        np.asarray(baseline, np.float32), images.shape)
    maps = BatchMaps(model)
    return integrate(_compiled(maps.path_gradients), _compiled(maps.probabilities), images,
                     baselines,
                     _classes(class_index, len(images), maps.probabilities(images).numpy()),
                     steps)


def _compiled(method):
    """``method`` as one graph, traced once per input shape (its loop of gradients in it)."""
    return tf.function(method, reduce_retracing=True, autograph=False)


def integrate(path_gradients, probabilities, images, baselines, classes, steps=None):
    """Integrated gradients by the trapezoidal rule, refined by halving its intervals (each
    refinement adds the midpoints: T₂ₙ = Tₙ/2 + Σ midpoints / 2n) until complete within 1 %."""
    count = steps or IG_STEPS
    points = np.arange(count + 1) / count
    weights = np.full(count + 1, 1.0 / count)
    weights[[0, -1]] /= 2
    total = np.asarray(path_gradients(images, classes, baselines, points, weights))
    rows = np.arange(len(images))
    change = (np.asarray(probabilities(images))[rows, classes]
              - np.asarray(probabilities(baselines))[rows, classes])
    while steps is None and count < IG_MAX_STEPS:
        sums = ((images - baselines) * total).reshape(len(images), -1).sum(axis=1)
        if np.all(np.abs(sums - change) <= np.maximum(0.01 * np.abs(change), 1e-6)):
            break
        midpoints = (2 * np.arange(count) + 1) / (2 * count)
        total = total / 2 + np.asarray(path_gradients(
            images, classes, baselines, midpoints, np.full(count, 1.0 / (2 * count))))
        count *= 2
    return (images - baselines) * total


def smoothgrad(model, images, samples=SMOOTHGRAD_SAMPLES, noise=SMOOTHGRAD_NOISE,
               class_index=None, seed=0):
    """SmoothGrad saliency maps ``[n, H, W]``."""
    images = _as_batch(images)
    maps = BatchMaps(model)
    classes = _classes(class_index, len(images), maps.probabilities(images).numpy())
    compiled = _compiled(lambda batch, chosen, key: maps.smoothgrad(batch, chosen, key, samples,
                                                                    noise))
    return compiled(images, classes, tf.constant([seed, 0], tf.int32)).numpy()


def occlusion_batches(image, patch, stride, fill=MEAN_COLOUR):
    """The occluded copies of ``image`` (a ``patch``-square of ``fill`` at every ``stride``)
    and each patch's ``(top, left)``."""
    height, width = image.shape[:2]
    places = [(top, left) for top in range(0, max(height - patch, 0) + 1, stride)
              for left in range(0, max(width - patch, 0) + 1, stride)]
    copies = np.repeat(image[None], len(places), axis=0)
    for copy, (top, left) in zip(copies, places, strict=True):
        copy[top:top + patch, left:left + patch] = np.round(fill).astype(image.dtype)
    return copies, places


def occlusion(model, image, patch=None, stride=None, class_index=None, batch_size=64):
    """The drop of the class probability when a patch of the mean colour covers each place,
    averaged over the patches that cover a pixel: ``[H, W]``. ``patch``: default an eighth of
    the image's side; ``stride``: default half the patch."""
    image = np.asarray(image)
    maps = BatchMaps(model)
    cls = class_index if class_index is not None else int(
        np.argmax(maps.probabilities(image[None]).numpy()[0]))

    def probabilities(batch):
        return np.concatenate([maps.probabilities(batch[start:start + batch_size]).numpy()
                               for start in range(0, len(batch), batch_size)])

    return occlusion_map(probabilities, image, int(cls), patch, stride)


def occlusion_map(probabilities, image, cls, patch=None, stride=None):
    """``occlusion``'s map of one image, the probabilities of a batch given by
    ``probabilities`` (a function of a NumPy batch: one device, or every replica)."""
    patch = patch or max(1, min(image.shape[:2]) // 8)
    stride = stride or max(1, patch // 2)
    copies, places = occlusion_batches(image, patch, stride)
    drops = probabilities(image[None])[0, cls] - probabilities(copies)[:, cls]
    total, count = np.zeros(image.shape[:2], np.float32), np.zeros(image.shape[:2], np.float32)
    for drop, (top, left) in zip(drops, places, strict=True):
        total[top:top + patch, left:left + patch] += drop
        count[top:top + patch, left:left + patch] += 1
    return total / np.maximum(count, 1)


_DENSE = weakref.WeakKeyDictionary()  # each net's dense twin, made once


def _dense_net(model):
    """``(the net's per-place posteriors model, its window (crop), its stride)``: the FC net
    made fully convolutional (the same weights, copied once: a net trained further after a
    first map must be explained anew), or a conv-head net as it is."""
    if model not in _DENSE:
        _DENSE[model] = _make_dense_net(model)
    return _DENSE[model]


def _make_dense_net(model):
    names = [layer.name for layer in model.layers]
    conv = heads.to_conv_head(model) if "flatten" in names else model
    if "score_map" not in [layer.name for layer in conv.layers]:
        raise ValueError(f"{model.name} has no classifier to make a class map of")
    crop = model.inputs[0].shape[1] or conv.get_layer("fc1").kernel.shape[0] * 32
    grid = conv.get_layer("fc1").kernel.shape[0]  # the last pooling's places at the crop
    dense = keras.Model(conv.inputs, conv.get_layer("score_map").output)
    return (tf.function(dense, reduce_retracing=True, autograph=False), dense.inputs[0].dtype,
            int(crop), int(crop) // int(grid))


def class_scores(model, image, stride=None):
    """§3.2's class-score map of one image at its own size: the posteriors ``[h, w, classes]``
    of the net made fully convolutional (its FC layers as convolutions, the same weights), one
    per window of the crop's size, the windows ``stride`` pixels apart. The net's own stride
    (32: its five poolings) is one pass; a divisor of it shifts the image and interleaves the
    passes (OverFeat's shift-and-stitch), so place ``(r, c)`` is the window at ``(r·stride,
    c·stride)``."""
    dense, dtype, _, step = _dense_net(model)
    stride = stride or step
    if step % stride:
        raise ValueError(f"stride {stride} must divide the net's own stride {step}")
    shifts = step // stride
    image = np.asarray(image)
    grids = [[dense(tf.cast(image[None, i * stride:, j * stride:], dtype))
              .numpy()[0] for j in range(shifts)] for i in range(shifts)]
    rows = min(g.shape[0] for line in grids for g in line)
    cols = min(g.shape[1] for line in grids for g in line)
    stitched = np.zeros((rows * shifts, cols * shifts, grids[0][0].shape[-1]), np.float32)
    for i in range(shifts):
        for j in range(shifts):
            stitched[i::shifts, j::shifts] = grids[i][j][:rows, :cols]
    return stitched


def class_map(model, image, class_index=None, stride=None):
    """The map of ``class_index`` (default: the top class of the posteriors averaged over the
    windows, the dense evaluation's answer) over ``image`` ``[H, W, 3]``: each pixel the mean
    posterior of the windows that cover it (``class_scores``' windows, ``stride`` apart);
    ``[H, W]``."""
    image = np.asarray(image)
    grid = class_scores(model, image, stride)
    _, _, crop, step = _dense_net(model)
    stride = stride or step
    cls = int(np.argmax(grid.mean(axis=(0, 1)))) if class_index is None else int(class_index)
    height, width = image.shape[:2]
    total, count = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for row in range(grid.shape[0]):
        for col in range(grid.shape[1]):
            top, left = row * stride, col * stride
            total[top:top + crop, left:left + crop] += grid[row, col, cls]
            count[top:top + crop, left:left + crop] += 1
    # The last pixels no window reaches (a side not a whole number of strides): the nearest.
    covered = ((grid.shape[0] - 1) * stride + crop, (grid.shape[1] - 1) * stride + crop)
    heat = total[:covered[0], :covered[1]] / np.maximum(count[:covered[0], :covered[1]], 1)
    return np.pad(heat, [(0, height - heat.shape[0]), (0, width - heat.shape[1])], mode="edge")
