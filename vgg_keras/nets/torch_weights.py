"""The published ImageNet weights of PyTorch's VGGs into our nets: torchvision's
``vgg11/13/16/19`` and ``vgg11_bn/13_bn/16_bn/19_bn`` files, and timm's ``vgg*.tv_in1k`` (the
same weights under timm's names), for configs A, B, D, E and their BN variants. C and A-LRN
have no published weights. (Which files, and their accuracy: ``published``.)

What a port must get right, each done here and held by a test:
- convolution kernels: torch's ``[out, in, h, w]`` become Keras' ``[h, w, in, out]``;
- the first FC layer: torchvision's ``classifier.0.weight`` is ``[4096, 25088]`` over a
  channels-first flatten (C·H·W) of the ``512×7×7`` map, Keras' ``Flatten`` of a channels-last
  map is H·W·C: the rows are permuted, or the net is silently wrong; timm stores fc1 and fc2 as
  convolutions (``pre_logits.fc1.weight`` ``[4096, 512, 7, 7]``, ``pre_logits.fc2.weight``
  ``[4096, 4096, 1, 1]``) and the classifier as ``head.fc``;
- batch norm: ``weight``, ``bias``, ``running_mean`` and ``running_var`` are Keras' gamma, beta,
  moving mean and moving variance (``num_batches_tracked`` is a counter: not a weight); torch
  adds ε = 1e-5 to the variance, Keras 1e-3 by default: the net's BN layers take torch's ε;
- the input: these weights expect RGB / 255 minus (0.485, 0.456, 0.406) divided by (0.229,
  0.224, 0.225), which a net carries when built with ``normalization="torchvision"``; a net
  with the paper's mean-RGB subtraction is refused.

Read with NumPy alone: ``.safetensors`` through the ``safetensors`` package; ``.pth`` / ``.bin``
(torch's pickles) only where torch is installed (it is no dependency of ours).
"""

import os

import keras
import numpy as np

from vgg_keras.nets import builder
from vgg_keras.nets import published
from vgg_keras.nets import stats

TORCH_BN_EPSILON = published.TORCH_BN_EPSILON
_FC = ("fc1", "fc2", "predictions")
_TORCHVISION_FC = {"fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6"}
_TIMM_FC = {"fc1": "pre_logits.fc1", "fc2": "pre_logits.fc2", "predictions": "head.fc"}
_COUNTERS = ("num_batches_tracked",)


def load_torchvision_weights(model, source, *, skip_mismatch=False):
    """Loads torchvision's VGG weights (``vgg16_bn-6c64b313.pth`` or its ``.safetensors``) into
    ``model``, an A, B, D or E net (BN or not, as the file) built with
    ``normalization="torchvision"``. Returns ``{"loaded", "skipped"}`` layer names and
    ``{"problems": {skipped layer: why}}``.

    Args:
        model: our net (any head; a conv head takes fc1 as a 7×7 convolution).
        source: a file path, or ``{key: array}`` already read.
        skip_mismatch: leave layers whose shapes differ (another class count) untouched and
            list them, instead of failing.

    Raises:
        ValueError: one line naming the problem: a net without weights to load (C, A-LRN), the
            paper's normalisation, a missing, extra or misshapen tensor, an unreadable file.
    """
    return _load(model, source, skip_mismatch, _TORCHVISION_FC, "torchvision")


def load_timm_weights(model, source, *, skip_mismatch=False):
    """Loads timm's ``vgg*.tv_in1k`` weights (its ``model.safetensors``) into ``model``: the
    same as ``load_torchvision_weights``, under timm's names (fc1 and fc2 as convolutions)."""
    return _load(model, source, skip_mismatch, _TIMM_FC, "timm")


def read_tensors(source):
    """``{key: numpy array}`` of a ``.safetensors`` file (NumPy alone), a torch ``.pth`` /
    ``.bin`` file (torch, if installed), or a dict given as it is.

    Raises:
        ValueError: for a file neither can read, or a ``.pth`` without torch installed.
    """
    if isinstance(source, dict):
        return {key: np.asarray(value) for key, value in source.items()}
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path}")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except (SafetensorError, ValueError, OSError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error})") from None
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: reading PyTorch's .pth/.bin files needs torch (pip install "
                         "torch), or give the weights as .safetensors (timm's model.safetensors, "
                         "or the .pth converted with safetensors.torch.save_file)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path} is not a readable PyTorch weights file ({error})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {key: value.float().numpy() if value.is_floating_point() else value.numpy()
            for key, value in state.items()}


def _load(model, source, skip_mismatch, fc_keys, kind):
    name = model.name.removeprefix("vgg_").upper().replace("_", "-")
    if name.removesuffix("-BN") in ("C", "A-LRN"):
        raise ValueError(f"{model.name}: {kind} publishes no weights for config "
                         f"{name.removesuffix('-BN')} (only A, B, D, E and their BN variants)")
    if builder.normalization_of(model) != "torchvision":
        raise ValueError(f"{model.name} subtracts the paper's mean RGB; {kind}'s weights expect "
                         "torchvision's mean/std: build it with normalization=\"torchvision\"")
    tensors = read_tensors(source)
    names = {layer.name for layer in model.layers}
    flat_map = (tuple(model.get_layer("flatten").input.shape[1:]) if "flatten" in names
                else None)
    used, loaded, skipped, problems, keys = set(), [], [], {}, {}
    for layer, key, convert in _plan(model, fc_keys):
        arrays, missing = _gather(tensors, key, layer)
        used |= {f"{key}.{part}" for part in arrays}
        if missing:
            raise ValueError(f"{kind} weights for {model.name}: no {key}.{missing} in the file "
                             "(a file of another configuration?)")
        values = convert(layer, arrays, flat_map)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            problems[layer.name] = f"file {[v.shape for v in values]}, model {expected}"
            keys[layer.name] = key
            skipped.append(layer.name)
            continue
        layer.set_weights(values)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = TORCH_BN_EPSILON
        loaded.append(layer.name)
    extra = sorted(k for k in tensors if k not in used and k.rsplit(".", 1)[-1] not in _COUNTERS)
    if extra:
        raise ValueError(f"{kind} weights for {model.name}: {extra[0]} in the file fits no layer "
                         f"({len(extra)} such keys; a file of another configuration?)")
    if problems and not skip_mismatch:
        raise ValueError(f"{kind} weights do not fit {model.name}: "
                         + "; ".join(f"{n} ({keys[n]}): {p}" for n, p in problems.items()))
    return {"loaded": loaded, "skipped": skipped, "problems": problems}


def _plan(model, fc_keys):
    """``[(layer, torch key, converter)]``: the convolutions and batch norms as
    ``features.<i>``, numbered as torchvision's ``nn.Sequential`` numbers its conv, [BN], ReLU
    and max-pool modules, then the FC layers by ``fc_keys``."""
    plan, index = [], 0
    for layer in model.layers:
        if layer.name in _FC:
            if stats.is_weight_layer(layer):
                plan.append((layer, fc_keys[layer.name], _fc))
        elif isinstance(layer, keras.layers.Conv2D):
            plan.append((layer, f"features.{index}", _conv))
            # Without batch norm our conv applies its ReLU itself; torch's is a module of its own.
            index += 1 if layer.activation is keras.activations.linear else 2
        elif isinstance(layer, keras.layers.BatchNormalization):
            plan.append((layer, f"features.{index}", _batch_norm))
            index += 1
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.MaxPooling2D)):
            index += 1
    return plan


def _gather(tensors, key, layer):
    """The arrays of ``key`` a layer needs, and the first part missing (or None)."""
    parts = (("weight", "bias", "running_mean", "running_var")
             if isinstance(layer, keras.layers.BatchNormalization) else ("weight", "bias"))
    arrays = {part: tensors[f"{key}.{part}"] for part in parts if f"{key}.{part}" in tensors}
    missing = next((part for part in parts if part not in arrays), None)
    return arrays, missing


def _conv(layer, arrays, flat_map):
    return [np.transpose(arrays["weight"], (2, 3, 1, 0)), arrays["bias"]]


def _batch_norm(layer, arrays, flat_map):
    return [arrays["weight"], arrays["bias"], arrays["running_mean"], arrays["running_var"]]


def _fc(layer, arrays, flat_map):
    """An FC layer's ``[out, in]`` (torchvision) or ``[out, in, k, k]`` (timm's convolutions)
    into our Dense kernel ``[in, out]`` or our conv head's ``[k, k, in, out]``. fc1 reads the
    last map flattened: torch flattens it C·H·W, our ``Flatten`` H·W·C."""
    weight, expected = arrays["weight"], tuple(layer.kernel.shape)
    if weight.ndim == 2 and layer.name == "fc1":  # torchvision: the C·H·W flatten, regrouped
        channels = expected[2] if isinstance(layer, keras.layers.Conv2D) else flat_map[-1]
        side = int(round((weight.shape[1] // max(channels, 1)) ** 0.5))
        if side * side * channels == weight.shape[1]:
            weight = weight.reshape(weight.shape[0], channels, side, side)
    if weight.ndim == 4:  # [out, C, k, k] → [k, k, C, out]
        kernel = np.transpose(weight, (2, 3, 1, 0))
        if isinstance(layer, keras.layers.Dense):  # flattened H·W·C, as our Flatten reads it
            kernel = kernel.reshape(-1, kernel.shape[-1])
        return [kernel, arrays["bias"]]
    kernel = weight.T  # [in, out]
    if isinstance(layer, keras.layers.Conv2D):  # fc2 and predictions as 1×1 convolutions
        kernel = kernel.reshape(1, 1, *kernel.shape)
    return [kernel, arrays["bias"]]
