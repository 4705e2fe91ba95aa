"""Where a net looks (``vgg-explain``): ``maps`` computes class maps (§3.2's dense evaluation),
Grad-CAM and Grad-CAM++, integrated gradients, SmoothGrad and occlusion for any of our nets;
``job`` runs them over a folder or a split on every replica and writes overlays, raw maps, a
contact sheet and ``explain.csv``.
"""

from vgg_keras.explain.maps import BatchMaps  # noqa: F401 - the API
from vgg_keras.explain.maps import class_map  # noqa: F401
from vgg_keras.explain.maps import class_scores  # noqa: F401
from vgg_keras.explain.maps import grad_cam  # noqa: F401
from vgg_keras.explain.maps import grad_cam_plus_plus  # noqa: F401
from vgg_keras.explain.maps import integrated_gradients  # noqa: F401
from vgg_keras.explain.maps import occlusion  # noqa: F401
from vgg_keras.explain.maps import smoothgrad  # noqa: F401
