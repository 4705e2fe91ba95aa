"""Where a net looks (``vgg-explain``): ``maps`` computes class maps (§3.2's dense evaluation),
Grad-CAM and Grad-CAM++, integrated gradients, SmoothGrad and occlusion for any of our nets;
``job`` runs them over a folder or a split on every replica and writes overlays, raw maps, a
contact sheet and ``explain.csv``.
"""

__all__ = ["BatchMaps", "class_map", "class_scores", "grad_cam", "grad_cam_plus_plus",
           "integrated_gradients", "occlusion", "smoothgrad"]


def __getattr__(name):
    """The functions of ``maps``, imported on first use (not by ``import vgg_keras.explain``:
    ``vgg-explain`` checks its flags before TensorFlow starts)."""
    if name not in __all__:
        raise AttributeError(f"module 'vgg_keras.explain' has no attribute {name!r}")
    from vgg_keras.explain import maps

    return getattr(maps, name)
