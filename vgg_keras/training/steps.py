"""The distributed steps of §3.1 training: SGD on the replicas' batches with Caffe's weight decay,
and the validation step that counts top-1/top-5 hits. Public: the loop, the tests and
``tools/bench_train.py`` call them.
"""

import dataclasses

import keras
import tensorflow as tf

from pipelines.foundation import errors
from vgg_keras import protocols
from vgg_keras.nets import stats


def decayed_variables(model):
    """The variables weight decay applies to: the kernels of the convolutions and FC layers
    (not biases, not batch-norm scales and offsets)."""
    return [layer.kernel for layer in model.layers if stats.is_weight_layer(layer)]


def norm_variables(model):
    """The trainable variables that are not kernels: biases and batch norm's scales and offsets
    (``--norm_weight_decay``'s)."""
    kernels = {id(v) for v in decayed_variables(model)}
    return [v for v in model.trainable_variables if id(v) not in kernels]


@dataclasses.dataclass(frozen=True)
class Regularization:
    """What the training step adds to the plain loss and gradients beyond §3.1's weight decay:
    label smoothing ε (torchvision's ``CrossEntropyLoss(label_smoothing=ε)``, Keras'
    ``CategoricalCrossentropy(label_smoothing=ε)``), weight decay on biases and batch norm
    (``norm_weight_decay``, Caffe's convention as the kernels'), and the global gradient norm's
    clip (``clip_grad_norm``, of the gradient summed over the replicas, as torchvision clips
    after DDP's all-reduce)."""

    label_smoothing: float = 0.0
    norm_weight_decay: float = 0.0
    clip_grad_norm: float | None = None


def exclude_from_decay(optimizer, model, norm_weight_decay):
    """An optimizer with weight decay of its own (AdamW) leaves biases and batch norm alone
    unless ``norm_weight_decay``; call before it is built."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "weight_decay", None) and not norm_weight_decay:
        inner.exclude_from_weight_decay(var_list=norm_variables(model))


def loss_of(labels, probabilities, label_smoothing=0.0):
    """The cross-entropy of each example: ``labels`` class indices ``[b]`` or rows of class
    weights ``[b, classes]`` (mixup, cutmix), smoothed by ``label_smoothing``."""
    if labels.shape.rank == 1 and not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    if labels.shape.rank == 1:
        labels = tf.one_hot(labels, tf.shape(probabilities)[-1], dtype=probabilities.dtype)
    return keras.losses.categorical_crossentropy(tf.cast(labels, probabilities.dtype),
                                                 probabilities,
                                                 label_smoothing=label_smoothing)


def make_train_steps(model, optimizer, strategy, global_batch, *, weight_decay=0.0,
                     enable_xla=False, images_seen=None, learning_rate_multipliers=None,
                     regularization=None):
    """A function ``train_steps(iterator, count)`` running ``count`` training steps on a
    distributed iterator of ``(images, labels)``; returns their mean loss.

    Weight decay is Caffe's (§3.1): ``gradient += λ·w`` on kernels, added to the gradients
    directly (one multiply-add per weight; an L2 term in the loss costs autodiff a pass over
    every weight and ~30% of a small-batch CPU step). Each replica adds ``λ·w / replicas``,
    as the replicas' gradients are summed. Regularisation losses the model carries
    (``model.losses``) are added to the loss, so a model built with
    ``build_vgg(weight_init=WeightInit(weight_decay=...))`` must be trained with
    ``weight_decay=0`` here: one mechanism per model, never both.

    Args:
        model, optimizer: built inside ``strategy.scope()``, the optimizer's slots too.
        strategy: the ``tf.distribute`` strategy.
        global_batch: images per step over all replicas (the loss is their mean).
        weight_decay: λ.
        enable_xla: compile each replica's forward and backward pass with XLA (the
            cross-replica sums and the optimizer's update stay outside the compiled cluster).
        images_seen: an int64 variable (sync-on-read) that each replica adds its images to.
        learning_rate_multipliers: ``{variable path: m}``: those variables' updates (gradient
            and decay, as Caffe's ``lr_mult``) scaled by m, e.g. a fine-tuned net's new head.
        regularization: a ``Regularization`` (label smoothing, decay of biases and batch norm,
            the gradient's clip); labels may be class indices or rows of class weights.

    Raises:
        ValueError: if the model carries kernel regularisers and ``weight_decay`` is set.
    """
    _check_one_weight_decay(model, weight_decay)
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    # Batch-norm moving statistics: each replica updates its copy from its own share of the
    # batch; averaging them after every step keeps the replicas identical (and, for the
    # mean, equals the moving average of the global batch mean).
    moving = [v for v in model.non_trainable_variables if "/moving_" in v.path]
    regularization = regularization or Regularization()
    gradients_of = _replica_gradients(model, optimizer, replicas, global_batch,
                                      (weight_decay, regularization), learning_rate_multipliers)
    if enable_xla:
        gradients_of = _compiled_per_replica(gradients_of)

    def replica_step(images, labels):
        loss, gradients = gradients_of(images, labels)
        if regularization.clip_grad_norm:
            gradients = _clipped(gradients, regularization.clip_grad_norm, optimizer, replicas)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        if replicas > 1 and moving:
            # Each value read on its variable's device: under MultiWorkerMirroredStrategy a
            # tensor of the step has no device of its own, and the all-reduce would have no
            # destination ("destinations can not be empty").
            values = []
            for variable in moving:
                with tf.device(variable.value.device):
                    values.append(tf.identity(variable.value))
            averaged = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.MEAN, values)
            for variable, value in zip(moving, averaged, strict=True):
                variable.assign(value)
        if images_seen is not None:
            images_seen.assign_add(tf.cast(tf.shape(labels)[0], tf.int64))
        return loss

    # An explicit while loop rather than AutoGraph's conversion of a Python loop: AutoGraph
    # needs the source file, and falls back to a broken graph when it cannot read it (a
    # package installed without sources, or edited while a run is going).
    @tf.function(autograph=False)
    def train_steps(iterator, count):
        def body(index, total):
            loss = strategy.run(replica_step, args=next(iterator))
            return index + 1, total + strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)

        start = (tf.zeros_like(count), tf.constant(0.0))
        _, total = tf.while_loop(lambda index, _: index < count, body, start)
        return total / tf.cast(count, tf.float32)

    return train_steps


def _clipped(gradients, clip_norm, optimizer, replicas):
    """The replicas' gradients summed, clipped to the global norm ``clip_norm`` (of the
    unscaled loss's gradient under float16), and handed back as each replica's equal share:
    the optimizer's own sum then gives the clipped gradient."""
    context = tf.distribute.get_replica_context()
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients) if replicas > 1 \
        else gradients
    loss_scale = getattr(optimizer, "dynamic_scale", None)
    scale = 1.0 if loss_scale is None else tf.cast(loss_scale, tf.float32)
    unscaled = [tf.cast(g, tf.float32) / scale for g in total]
    clipped, _ = tf.clip_by_global_norm(unscaled, clip_norm)
    return [tf.cast(g * scale / replicas, t.dtype) for g, t in zip(clipped, total, strict=True)]


def _replica_gradients(model, optimizer, replicas, global_batch, decays, multipliers):
    """A function ``(images, labels) → (loss, gradients)`` of one replica, weight decay and the
    learning-rate multipliers in its gradients: the computation XLA compiles, without the
    cross-replica sums. ``decays``: ``(λ of the kernels, Regularization)``."""
    weight_decay, regularization = decays
    variables = model.trainable_variables
    decayed = {id(v) for v in decayed_variables(model)}
    decay = [(weight_decay if id(v) in decayed else regularization.norm_weight_decay) / replicas
             for v in variables]
    multipliers = [(multipliers or {}).get(v.path, 1.0) for v in variables]

    def gradients_of(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = loss_of(labels, probabilities, regularization.label_smoothing)
            loss = tf.reduce_sum(per_example) / global_batch  # the global mean, summed later
            if model.losses:  # regularisers a model brings along (then weight_decay is 0)
                loss += tf.add_n(model.losses) / replicas
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if any(decay):
            # Under float16 the gradients are of the scaled loss: scale the decay alike.
            loss_scale = getattr(optimizer, "dynamic_scale", None)
            scale = 1.0 if loss_scale is None else tf.cast(loss_scale, tf.float32)
            gradients = [g + tf.cast(rate * scale * v.value, g.dtype) if rate else g
                         for g, v, rate in zip(gradients, variables, decay, strict=True)]
        gradients = [g * m if m != 1.0 else g for g, m in zip(gradients, multipliers,
                                                               strict=True)]
        return loss, gradients

    return gradients_of


def _compiled_per_replica(function):
    """``function`` compiled with XLA, once per replica.

    XLA requires the variables a compiled cluster reads and writes (the weights, batch norm's
    statistics, dropout's random state) to be on its own device. One
    ``tf.function(jit_compile=True)`` shared by the replicas is traced once and run on every
    device, so the replica on device 1 would read device 0's copies (TensorFlow: "Trying to
    access resource ... located in device CPU:1 from device CPU:0"); a function per replica is
    traced in that replica's context and reads its own. The cross-replica sums (gradients, batch
    norm's statistics) cannot be inside a nested function (``merge_call``), so the caller
    keeps them outside.
    """
    compiled = {}

    def per_replica(*args):
        context = tf.distribute.get_replica_context()
        replica = tf.get_static_value(context.replica_id_in_sync_group) if context else 0
        key = (None if replica is None else int(replica), args[0].device)
        if key not in compiled:
            compiled[key] = tf.function(function, jit_compile=True, autograph=False)
        return compiled[key](*args)

    return per_replica


def _check_one_weight_decay(model, weight_decay):
    regularized = [layer.name for layer in model.layers
                   if getattr(layer, "kernel_regularizer", None) is not None]
    if weight_decay and regularized:
        raise ValueError(
            f"{model.name} carries weight decay already (kernel regularisers on "
            f"{', '.join(regularized[:3])}{', ...' if len(regularized) > 3 else ''}: built with "
            f"WeightInit(weight_decay=...)), and the training step would add "
            f"weight_decay={weight_decay} on top: build it without weight_decay, or train it "
            "with weight_decay=0")


def make_eval_step(model, strategy, num_classes):
    """A function ``eval_step(batch)`` returning the top-1 hits, top-5 hits and images of a
    distributed ``(images, labels)`` batch, summed over the replicas."""
    top = min(5, num_classes)

    def replica_step(images, labels):
        probabilities = model(images, training=False)
        top1, top5 = protocols.top_k_hits(labels, probabilities, top)
        return (tf.reduce_sum(tf.cast(top1, tf.int64)), tf.reduce_sum(tf.cast(top5, tf.int64)),
                tf.cast(tf.shape(labels)[0], tf.int64))

    @tf.function(autograph=False)
    def eval_step(batch):
        results = strategy.run(replica_step, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return eval_step


def evaluate_top_k(eval_step, dataset):
    """Returns (top-1 accuracy, top-5 accuracy, images) over a distributed eval dataset.

    Raises:
        ValueError: if the dataset holds no images.
    """
    correct1 = correct5 = count = 0
    for batch in dataset:
        top1, top5, images = eval_step(batch)
        correct1, correct5, count = correct1 + int(top1), correct5 + int(top5), count + int(images)
    if not count:
        raise errors.UserError("the validation split holds no images")
    return correct1 / count, correct5 / count, count


def random_streams(model):
    """The states of the model's random streams (dropout, colour shift), by position.

    ``tf.train.Checkpoint`` does not see Keras' seed generators: without these, a resumed run
    would restart every random stream and diverge from an uninterrupted one.
    """
    states = [v.value for v in model.variables if stats.is_random_state(v)]
    return {f"stream_{index}": state for index, state in enumerate(states)}


def weights_finite(model):
    """Whether every trainable weight is finite."""
    return all(bool(tf.reduce_all(tf.math.is_finite(v.value))) for v in model.trainable_weights)
