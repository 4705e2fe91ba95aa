"""The test protocols computed the slow, obvious way, as the paper states them, to hold the
batched, distributed implementation (``vgg_keras.protocols``, ``vgg_keras.evaluation``) to: one
image at a time, crops cut with NumPy, each Keras model called on them itself."""

import numpy as np

import vgg_keras
from pipelines import inputs

GRID = 5  # §3.2: a 5×5 grid of crops and their mirrors


def center_crop(image, crop):
    top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
    return image[top:top + crop, left:left + crop]


def grid_crops(image, crop, grid=GRID):
    """The grid's crops row by row, then the same crops mirrored."""
    height, width = image.shape[:2]
    crops = [image[top:top + crop, left:left + crop]
             for top in np.round(np.linspace(0, height - crop, grid)).astype(int)
             for left in np.round(np.linspace(0, width - crop, grid)).astype(int)]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def image_parts(model, conv_model, image, crop, parts):
    """``{protocol: probabilities}`` of one image at one scale, for ``parts``."""
    def predict(net, batch):  # the model called on the batch itself, in inference mode
        return np.asarray(net(np.asarray(batch), training=False))

    views = {"single": lambda: predict(model, center_crop(image, crop)[None])[0],
             "multicrop": lambda: predict(model, grid_crops(image, crop)).mean(axis=0),
             "dense": lambda: predict(conv_model, np.stack([image, image[:, ::-1]])).mean(axis=0)}
    return {part: views[part]() for part in parts}


def probabilities(models, data, protocols, *, label_offset, num_classes):
    """``({protocol: [images, classes]}, labels)``: every image of the validation split in file
    order; ``models``: ``[(keras model, [test scales])]``, fused by averaging (§4.4); each
    model's probabilities averaged over its scales."""
    scales = sorted({q for _, qs in models for q in qs})
    images = {q: [(image[0].numpy(), int(label[0])) for image, label, _ in
                  inputs.make_eval_dataset(data, mode=inputs.WHOLE_IMAGES, test_scale=q,
                                           label_offset=label_offset, num_classes=num_classes)]
              for q in scales}
    parts = {"dense", "multicrop"} if "dense+multicrop" in protocols else set()
    parts |= set(protocols) - {"dense+multicrop"}
    conv = [vgg_keras.to_conv_head(model) if "dense" in parts else None for model, _ in models]
    rows, labels = {p: [] for p in protocols}, [label for _, label in images[scales[0]]]
    for index in range(len(labels)):
        per_model = []
        for (model, qs), conv_model in zip(models, conv, strict=True):
            crop = int(model.input.shape[1])
            found = [image_parts(model, conv_model, images[q][index][0], crop, parts)
                     for q in qs]
            per_model.append({k: np.mean([p[k] for p in found], axis=0) for k in parts})
        fused = {k: np.mean([p[k] for p in per_model], axis=0) for k in parts}
        if "dense+multicrop" in protocols:
            fused["dense+multicrop"] = (fused["dense"] + fused["multicrop"]) / 2
        for protocol in protocols:
            rows[protocol].append(fused[protocol])
    return {p: np.stack(r) for p, r in rows.items()}, labels
