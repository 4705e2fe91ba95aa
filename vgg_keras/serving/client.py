"""What a client of an export's tensor formats does before it sends an image: the single-crop
protocol's preprocessing (§3.2), the same function ``vgg-evaluate`` runs
(``pipelines.preprocessing``) and ``vgg-predict`` calls.
"""

import numpy as np

from pipelines import preprocessing


def preprocess_image(encoded, test_scale, crop_size):
    """An encoded image (JPEG, PNG, GIF or BMP bytes) as the tensor formats take it: decoded to
    RGB, its shorter side rescaled to Q (``test_scale``, bilinear), the central ``crop_size``
    square: uint8 ``[crop_size, crop_size, 3]``. An export's ``vgg_metadata.json`` gives both
    numbers (``test_scale``, ``crop_size``); stack the crops of several images into a batch.

    Raises:
        tf.errors.InvalidArgumentError: for bytes that are no image.
        ValueError: for a crop larger than Q.
    """
    if crop_size > test_scale:
        raise ValueError(f"crop {crop_size} is larger than the test scale Q={test_scale}")
    image = preprocessing.test_image(encoded, test_scale)
    return np.asarray(preprocessing.center_crop(image, crop_size))
