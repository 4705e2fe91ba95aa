"""Perceptual losses on a VGG's layer taps (``feature_model``), what ImageNet-trained VGGs are most
used for beyond classification: a content (feature) loss, the mean squared difference of the
activations of chosen layers (Johnson et al. 2016), and a style loss, the mean squared
difference of their Gram matrices (Gatys et al. 2016). Backend-neutral (``keras.ops``): they run
under TensorFlow, JAX or PyTorch as the nets do.

Every function takes the taps of two batches of images as ``{layer name: [b, h, w, c]}`` and
returns one loss per image, ``[b]``, each layer's term weighted (default 1).
"""

import keras
from keras import ops


def gram_matrix(features):
    """``[b, h, w, c]`` → ``[b, c, c]``: the channels' correlations over the positions,
    normalised by their number (h·w), as in Gatys et al."""
    shape = ops.shape(features)
    flat = ops.reshape(features, (shape[0], shape[1] * shape[2], shape[3]))
    positions = ops.cast(shape[1] * shape[2], flat.dtype)
    return ops.einsum("bnc,bnd->bcd", flat, flat) / positions


def content_loss(target, generated, weights=None):
    """Σ over layers of weight × the mean squared difference of the two images' activations."""
    return _weighted(target, generated, weights, lambda features: features)


def style_loss(target, generated, weights=None):
    """Σ over layers of weight × the mean squared difference of the two images' Gram matrices."""
    return _weighted(target, generated, weights, gram_matrix)


def _weighted(target, generated, weights, transform):
    total = 0.0
    for name, features in target.items():
        difference = transform(features) - transform(generated[name])
        per_image = ops.mean(ops.square(difference), axis=tuple(range(1, len(difference.shape))))
        total = total + (weights or {}).get(name, 1.0) * per_image
    return total


class PerceptualLoss(keras.losses.Loss):
    """``content_weight`` × the content loss on ``content_layers`` + ``style_weight`` × the
    style loss on ``style_layers``, both through ``extractor`` (``feature_model(net,
    layers)``, which must tap every layer named). ``y_true`` is the target image (content and
    style from the same image here; combine two of these for two targets), ``y_pred`` the
    generated one, both as the net takes them (uint8-range RGB)."""

    def __init__(self, extractor, content_layers=(), style_layers=(), content_weight=1.0,
                 style_weight=1.0, name="perceptual_loss", **keywords):
        super().__init__(name=name, **keywords)
        self.extractor, self.content_weight, self.style_weight = (extractor, content_weight,
                                                                  style_weight)
        self.content_layers, self.style_layers = tuple(content_layers), tuple(style_layers)

    def call(self, y_true, y_pred):
        target, generated = self.extractor(y_true), self.extractor(y_pred)
        loss = 0.0
        if self.content_layers:
            loss = loss + self.content_weight * content_loss(
                {n: target[n] for n in self.content_layers}, generated)
        if self.style_layers:
            loss = loss + self.style_weight * style_loss(
                {n: target[n] for n in self.style_layers}, generated)
        return loss


# Neural style transfer as keras-io's example does it (Gatys et al.; fchollet's "Neural style
# transfer" on VGG19): the content of block5_conv2, the style of the first convolution of
# every block.
CONTENT_LAYERS = ("block5_conv2",)
STYLE_LAYERS = tuple(f"block{block}_conv1" for block in range(1, 6))


def total_variation(images):
    """The mean squared difference of neighbouring pixels, per image ``[b]``: what keeps a
    generated image smooth."""
    down = images[:, 1:, :-1, :] - images[:, :-1, :-1, :]
    right = images[:, :-1, 1:, :] - images[:, :-1, :-1, :]
    return ops.mean(ops.square(down) + ops.square(right), axis=(1, 2, 3))


def style_transfer_loss(generated, content, style, images, *, content_weight=1.0,
                        style_weight=1.0, variation_weight=0.0):
    """One image's loss of style transfer, per image ``[b]``: ``content_weight`` × the content
    loss against ``content``'s taps on ``CONTENT_LAYERS`` + ``style_weight`` × the style loss
    against ``style``'s taps on ``STYLE_LAYERS`` (averaged over them) + ``variation_weight`` ×
    the total variation of ``images``, whose taps are ``generated`` (``feature_model(net,
    STYLE_LAYERS + CONTENT_LAYERS)`` of each)."""
    content_terms = content_loss({n: content[n] for n in CONTENT_LAYERS}, generated)
    style_terms = style_loss({n: style[n] for n in STYLE_LAYERS}, generated,
                             {n: 1.0 / len(STYLE_LAYERS) for n in STYLE_LAYERS})
    return (content_weight * content_terms + style_weight * style_terms
            + variation_weight * total_variation(images))
