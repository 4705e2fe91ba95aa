"""Weights from keras.applications ``VGG16``/``VGG19`` (the paper's D and E) into our nets.

keras.applications' VGG expects ``preprocess_input(x)``: RGB → BGR, then the BGR means
(103.939, 116.779, 123.68) subtracted ("caffe" mode). Our nets take RGB and subtract
``RGB_MEAN`` themselves, so the first convolution is converted: its input channels are
reversed, and its bias absorbs the 0.001 difference between the two mean vectors (exact except
at the image border, where zero padding sees no mean; the effect there is ~1e-3 of one pixel).
"""

import os

import h5py
import keras
import numpy as np

from vgg_keras.nets import builder
from vgg_keras.nets import stats

# keras.applications.imagenet_utils.preprocess_input, mode "caffe": BGR means.
KERAS_APPLICATIONS_BGR_MEAN = (103.939, 116.779, 123.68)


def load_keras_applications_weights(model, source, *, skip_mismatch=False):
    """Loads keras.applications VGG16/VGG19 weights into a D/E model by layer name.

    Args:
        model: our net (D for VGG16, E for VGG19; dense or conv head).
        source: a keras.applications VGG model object, or the path of its ``.h5`` weights file
            (full or ``notop``); nothing is downloaded.
        skip_mismatch: leave layers missing from the source, or of other shapes (e.g.
            ``predictions`` for another number of classes), untouched instead of failing; the
            result says which, and why.

    Returns:
        ``{"loaded": [layer names], "skipped": [layer names], "problems": {skipped layer:
        why}}``.

    Raises:
        ValueError: if a weight layer of ``model`` has no counterpart of the same shape in the
            source and ``skip_mismatch`` is false.
    """
    weights = _read_source(source)
    loaded, skipped, problems = [], [], {}
    first_conv = _first_conv_name(model)
    for layer in model.layers:
        if not stats.is_weight_layer(layer):
            continue
        values = weights.get(layer.name)
        if values is None:
            problems[layer.name] = "not in the source"
            skipped.append(layer.name)
            continue
        kernel, bias = values
        expected = tuple(layer.kernel.shape)
        if kernel.size == np.prod(expected) and kernel.shape != expected:
            kernel = kernel.reshape(expected)  # FC weights into a conv head
        if kernel.shape != expected or bias.shape != tuple(layer.bias.shape):
            problems[layer.name] = f"source kernel {kernel.shape}, model {expected}"
            skipped.append(layer.name)
            continue
        if layer.name == first_conv:
            kernel, bias = bgr_to_rgb_first_conv(kernel, bias)
        layer.set_weights([kernel, bias])
        loaded.append(layer.name)
    if problems and not skip_mismatch:
        raise ValueError("keras.applications weights do not fit "
                         f"{model.name}: " + "; ".join(f"{n}: {p}" for n, p in problems.items()))
    return {"loaded": loaded, "skipped": skipped, "problems": problems}


def bgr_to_rgb_first_conv(kernel, bias):
    """Converts a first-layer conv from BGR ``preprocess_input`` input to our RGB input."""
    rgb_kernel = kernel[:, :, ::-1, :]
    mean_shift = np.asarray(builder.RGB_MEAN[::-1]) - np.asarray(KERAS_APPLICATIONS_BGR_MEAN)
    # keras: W·(x_bgr − m_keras); ours: W·(x_bgr − m_ours) + b', so b' = b + Σ W·(m_ours − m_keras)
    rgb_bias = bias + np.einsum("hwcf,c->f", kernel, mean_shift)
    return rgb_kernel.astype(kernel.dtype), rgb_bias.astype(bias.dtype)


def _first_conv_name(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer.name
    raise ValueError(f"{model.name} has no convolution")


def _read_keras_3_file(path, layers):
    """A Keras 3 ``.weights.h5`` of keras.applications' VGG16 or VGG19 names its layers by class
    (``conv2d_7``), not as the model does: Keras reads it back into that model (told by its
    number of convolutions, with or without the top), whose layers carry the names."""
    convs = sum(name.startswith("conv2d") for name in layers)
    top = any(name.startswith("dense") for name in layers)
    architectures = {13: keras.applications.VGG16, 16: keras.applications.VGG19}
    if convs not in architectures:
        raise ValueError(f"{path} holds {convs} convolutions: not keras.applications' VGG16 "
                         "(13) or VGG19 (16)")
    model = architectures[convs](include_top=top, weights=None,
                                 input_shape=builder.DEFAULT_INPUT_SHAPE if top else (32, 32, 3))
    model.load_weights(path)
    return _read_source(model)


def _read_source(source):
    """Returns ``{layer name: (kernel, bias)}`` from a model or a keras.applications .h5 file."""
    if isinstance(source, keras.Model):
        return {
            layer.name: tuple(layer.get_weights())
            for layer in source.layers
            if len(layer.get_weights()) == 2
        }
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no keras.applications weights file at {path}: keras.applications.VGG16("
            "weights=\"imagenet\") downloads it once on a connected machine, into "
            "~/.keras/models/")
    with h5py.File(path, "r") as h5:
        # Weights-only files keep layers at the root; whole-model files under model_weights.
        group = h5["model_weights"] if "model_weights" in h5 else h5
        if "layer_names" not in group.attrs:
            if "layers" in h5:  # Keras 3's save_weights
                return _read_keras_3_file(path, h5["layers"])
            raise ValueError(f"{path} is not a Keras HDF5 weights file (no 'layer_names')")
        result = {}
        for raw_name in group.attrs["layer_names"]:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            layer_group = group[name]
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in layer_group.attrs["weight_names"]]
            if len(names) == 2:
                result[name] = tuple(np.asarray(layer_group[n]) for n in names)
        return result
