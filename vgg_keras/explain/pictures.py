"""The pictures of ``vgg-explain``: a map over its photo (matplotlib's ``jet`` colours, half
transparent, the class and probability written on it), and a contact sheet of several. PNG
bytes, drawn with Pillow (the map's colours from matplotlib's colour map, no figure)."""

import io

import numpy as np
from PIL import Image
from PIL import ImageDraw

from vgg_keras.nets import configs

THUMBNAIL, COLUMNS = configs.CROP_SIZE, 6  # a cell of the sheet: the net's crop


def _coloured(heat):
    """A map as RGB uint8 in ``jet``, scaled to its own range."""
    from matplotlib import colormaps

    low, high = float(np.min(heat)), float(np.max(heat))
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    return (colormaps["jet"](scaled)[..., :3] * 255).astype(np.uint8)


def overlay_image(image, heat, label, size=None):
    """``image`` (uint8 ``[H, W, 3]``) with ``heat`` over it, scaled to ``size`` across (its
    own by default), and ``label`` written on it at that size."""
    photo = Image.fromarray(np.asarray(image, np.uint8))
    picture = Image.blend(photo, Image.fromarray(_coloured(heat)), alpha=0.5)
    if size:
        scale = size / max(picture.size)  # up or down
        picture = picture.resize((max(1, round(picture.width * scale)),
                                  max(1, round(picture.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((2, 2), label)
    draw.rectangle((0, 0, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((2, 2), label, fill=(255, 255, 255))
    return picture


def _png(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def overlay(image, heat, label):
    """The overlay as PNG bytes."""
    return _png(overlay_image(image, heat, label))


def contact_sheet(items):
    """PNG bytes of the overlays of ``items`` (``(image, heat, label)``), ``COLUMNS`` a row,
    each scaled to ``THUMBNAIL`` pixels across."""
    rows = -(-len(items) // COLUMNS)
    sheet = Image.new("RGB", (THUMBNAIL * min(COLUMNS, len(items)), THUMBNAIL * rows), "white")
    for index, (image, heat, label) in enumerate(items):
        picture = overlay_image(image, heat, label, size=THUMBNAIL)
        sheet.paste(picture, (THUMBNAIL * (index % COLUMNS), THUMBNAIL * (index // COLUMNS)))
    return _png(sheet)
