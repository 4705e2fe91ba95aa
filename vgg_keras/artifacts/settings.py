"""The settings that name a net besides a path to one, declared once for the programs that take
them (``vgg-evaluate``, ``vgg-export``; ``pipelines.foundation.settings``): a net of Table 1 with
published weights (``--config``, ``--weights``, parsed once into a ``published.Weights``) and the
side of the crops a net reads (``--crop_size``). Free of TensorFlow and Keras.
"""

import dataclasses

from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras.nets import configs
from vgg_keras.nets import published


def parse_weights(text, flag="--weights"):
    """The ``published.Weights`` of ``KIND`` or ``KIND=PATH``, its path checked to be of a
    filesystem this TensorFlow reads (not that it exists).

    Raises:
        UserError: naming the forms that work, or the filesystem.
    """
    with errors.user_input():
        weights = published.parse(text, flag)
    if weights.path is not None:
        storage.check_filesystem(weights.path, f"{flag}={weights.kind}=")
    return weights


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublishedSettings:
    """A net with published ImageNet weights, and the crops a net reads."""

    config: str = setting("D", "With --weights: the net (A, B, D, E or a -BN variant).")
    weights: published.Weights | None = setting(
        None, "A net with published ImageNet weights, with --config: paper (D, E: the authors' "
              "weights as keras.applications publishes them), torchvision or timm (A, B, D, E "
              "and their BN variants: timm's copy on the Hugging Face Hub), downloaded once "
              "into the library's cache; or KIND=PATH for a file (.h5, .safetensors, or .pth "
              "with torch installed). vgg-evaluate fuses it with the --model ones, if any; "
              "vgg-export exports it instead of --model.", parse=parse_weights, text=str)
    crop_size: int | None = setting(None, "The side of the crops the net reads (default: a "
                                          "model's own input; for --weights, the crop the "
                                          "published weights were trained on).",
                                    check=at_least(1))

    def __post_init__(self):
        declared.parse_given(self, "weights")

    def check_weights(self, check_files=True):
        """Refuses ``weights`` that name no published file of ``config``, or (with
        ``check_files``) a file that is not there.

        Raises:
            UserError: one line naming the net, the weights and what works.
        """
        if not self.weights:
            return
        with errors.user_input():
            configs.resolve_config(self.config)
            published.check(self.weights, self.config)
        path = self.weights.path
        if path and check_files and not storage.exists(path):
            raise errors.UserError(f"--weights={self.weights}: {path} does not exist (give the "
                                   "kind alone to download the published file)")
