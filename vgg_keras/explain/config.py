"""``vgg-explain``'s settings, declared once (its flags derive from them): the net, as
``vgg-evaluate`` takes it; the images; the method, tap and class; where the pictures go."""

import dataclasses

from pipelines import input_config
from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras.artifacts import settings as artifact_settings
from vgg_keras.compute import settings as compute_settings

METHODS = ("grad_cam", "grad_cam_plus_plus", "class_map", "integrated_gradients", "smoothgrad",
           "occlusion")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainConfig(artifact_settings.PublishedSettings, compute_settings.DistributionSettings):
    """What ``vgg-explain`` explains, how, and where it writes."""

    model: str | None = setting(None, "A Keras file, a vgg-train model dir (a run still "
                                      "training: its newest checkpoint) or a checkpoint; or "
                                      "--config with --weights instead.")
    images: tuple = setting((), flag=False)  # the paths given as arguments
    image_dir: str | None = setting(None, "A folder of images (files not named as images are "
                                          "reported and skipped).")
    data_dir: str | None = setting(None, "Shards (vgg-convert's, slim's, tfds's): explain the "
                                         "first --max_images of --split.")
    split: str = setting("validation", "With --data_dir: the split.")
    max_images: int = setting(16, "With --image_dir or --data_dir: at most this many images.",
                              check=at_least(1))
    method: str = setting("grad_cam", "grad_cam, grad_cam_plus_plus, class_map (§3.2's dense "
                                      "net on the whole image), integrated_gradients, "
                                      "smoothgrad or occlusion.", choices=METHODS)
    layer: str | None = setting(None, "Grad-CAM's tap (default: the last convolution, after "
                                      "its ReLU).")
    class_name: str | None = setting(None, "top (default: each image's top class), a class "
                                           "index, or a class name or synset.",
                                     flag_name="class")
    test_scale: int = setting(input_config.TEST_SCALE, "Q: each image's shorter side before "
                                                       "the net's centre crop.",
                              check=at_least(1))
    steps: int | None = setting(None, "Integrated gradients' intervals (default: 64, halved "
                                      "until complete within 1 %).", check=at_least(1))
    batch_size: int = setting(32, "Images per batch.", check=at_least(1))
    output_dir: str = setting("explain", "Where the overlays, maps, contact sheet and "
                                         "explain.csv go.")

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "images", tuple(self.images))

    def validate(self, images=(), check_files=True):
        """Refuses a wrong or missing net, no images, or a path that is not there, before
        anything heavy."""
        declared.check_settings(self)
        object.__setattr__(self, "images", tuple(images) or self.images)
        if bool(self.model) == bool(self.weights):
            raise errors.UserError("give the net: --model (a model dir, checkpoint or .keras "
                                   "file), or --config with --weights")
        if not (self.images or self.image_dir or self.data_dir):
            raise errors.UserError("give images: paths as arguments, --image_dir or --data_dir")
        if self.distribution_strategy == "multi_worker":
            raise errors.UserError("vgg-explain runs on one machine's devices (--num_gpus, "
                                   "--cpu_replicas): for more, run one per share of the images "
                                   "(each its own --output_dir)")
        self.check_weights(check_files)
        if not check_files:
            return
        for what, path in [("--model", self.model), ("--image_dir", self.image_dir),
                           ("--data_dir", self.data_dir),
                           *(("image", p) for p in self.images)]:
            if path and not storage.exists(path):
                raise errors.UserError(f"{what} {path} does not exist")
