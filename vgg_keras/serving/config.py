"""What an export serves, and what ``vgg-export`` exports, declared once
(``pipelines.foundation.settings``): ``vgg-export`` derives its flags from these declarations,
and ``export.export_saved_model`` and ``export.export_model`` take ``ServingSettings`` as one
object. A net with published weights is named as ``vgg-evaluate`` names one
(``PublishedSettings``).
"""

import dataclasses

from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import settings as artifact_settings
from vgg_keras.serving import versions

# The formats and precisions (``formats`` holds their code), named without TensorFlow.
FORMATS = ("saved_model", *layout.TENSOR_FORMATS)
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_MAX_PIXELS = 40_000_000  # above the largest ImageNet image (~ 33 MP); ~120 MB decoded
DEFAULT_MIN_SIDE = 32


def _format_list(value):
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))


def _join(values):
    return ",".join(values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServingSettings:
    """How an export serves: its name, the protocol and test scale, what a request may hold,
    what it answers, and whose classes it names."""

    model_name: str = setting("vgg", "Sub-folder of --export_dir, and the model's name in TF "
                                     "Serving.")
    eval_mode: str = setting(protocols.SINGLE, "The protocol served: single: shorter side to Q, "
                             "the centre crop (center is its other name); dense: the whole "
                             "image at Q through the fully convolutional net, with its mirror "
                             "(§3.2).", choices=(*protocols.SERVED, *protocols.ALIASES))
    test_scale: int | None = setting(None, "Q (default: from the training scale in "
                                           "summary.json: S, or (Smin+Smax)/2).",
                                     check=at_least(1))
    top_k: int = setting(5, "Classes returned per image.", check=at_least(1))
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, "Images whose header declares more pixels are "
                                                  "refused before decoding.", check=at_least(1))
    min_side: int = setting(DEFAULT_MIN_SIDE, "Images with a shorter side below this are "
                                              "refused.", check=at_least(1))
    full_probabilities: bool = setting(False, "Also return every class's probability.")
    data_dir: str | None = setting(None, "Shards whose dataset_info.json names the classes "
                                         "(default: as recorded by vgg-train).")
    format: tuple = setting(("saved_model",), "Comma list of saved_model (TF Serving), onnx "
                            "(ONNX Runtime, Triton), litert (.tflite), openvino (IR), written "
                            "into one version folder.", parse=_format_list, text=_join)
    precision: str = setting("fp32", "Of the tensor formats: fp32, fp16 (weights), int8 (full "
                                     "integer, calibrated on --calibration_data; OpenVINO's "
                                     "from the int8 ONNX model).", choices=PRECISIONS)
    calibration_data: str | None = setting(None, "With --precision=int8: shards whose training "
                                                 "split calibrates the activations.")
    calibration_images: int = setting(500, "Images of --calibration_data's training split "
                                           "read for int8 calibration (test-time "
                                           "preprocessing).", check=at_least(1))
    max_batch_size: int = setting(64, "Triton's max_batch_size in config.pbtxt (with onnx).",
                                  check=at_least(1))

    def check(self):
        """Raises ``UserError`` for a value that cannot work, reading no file."""
        declared.check_settings(self)
        versions.check_model_name(self.model_name)
        for flag, path in (("--data_dir", self.data_dir),
                           ("--calibration_data", self.calibration_data)):
            if path:
                storage.check_filesystem(path, flag)
        if not self.format or any(f not in FORMATS for f in self.format):
            raise errors.UserError(f"--format must be a comma list of {', '.join(FORMATS)}; "
                                   f"got {_join(self.format)!r}")
        if self.precision != "fp32" and "saved_model" in self.format:
            raise errors.UserError(f"--precision={self.precision} is for the tensor formats: "
                                   "the SavedModel is fp32; give --format among onnx, litert, "
                                   "openvino")
        if self.precision == "int8" and not self.calibration_data:
            raise errors.UserError("--precision=int8 needs --calibration_data=DATA_DIR (shards "
                                   "whose training split calibrates the activations)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportConfig(ServingSettings, artifact_settings.PublishedSettings):
    """``vgg-export``: a trained net (``model``), or a net with published weights (``config``
    and ``weights``: ``PublishedSettings``), served as ``ServingSettings`` say, written under
    ``export_dir``."""

    export_dir: str = setting(help="Base folder of the exports.")
    model: str | None = setting(None, "vgg-train model dir, Keras file from it, or checkpoint "
                                      "(MODEL_DIR/checkpoints/best/ckpt-N).")

    def serving(self):
        """The ``ServingSettings`` part."""
        names = {field.name for field in dataclasses.fields(ServingSettings)}
        return ServingSettings(**{name: getattr(self, name) for name in names})

    def validate(self, check_files=True):
        """Raises ``UserError`` for a value that cannot work; with ``check_files``, for a model
        or weights file that is not there."""
        self.check()
        if bool(self.model) == bool(self.weights):
            raise errors.UserError("--export_dir is required, with --model (a trained net) or "
                                   "--config and --weights (a net with published weights)")
        if self.model and self.crop_size:
            raise errors.UserError(f"--crop_size={self.crop_size} is for --weights: a trained "
                                   f"net reads the crops it was built for (--model={self.model})")
        for name in ("model", "export_dir"):
            if getattr(self, name):
                storage.check_filesystem(getattr(self, name), f"--{name}")
        if check_files:
            storage.check_folder(self.export_dir, "--export_dir")
        self.check_weights(check_files)
        if self.model and check_files and not layout.exists(self.model):
            raise errors.UserError(f"{self.model} does not exist: give --model a vgg-train model "
                                   "dir, a Keras file or a checkpoint, or --weights=KIND=PATH "
                                   "a published weights file")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """``vgg-predict``: the export whose serving signature classifies the images, and how the
    answers are printed."""

    model: str = setting(help="Export folder (EXPORT_DIR/<model_name> or one of its versions), "
                              "a model.onnx, model.tflite or model.xml in a version, or a "
                              "vgg-train model dir, checkpoint or Keras file.")
    json: bool = setting(False, "Print one JSON object per image instead of a table.")

    def validate(self, images):
        """Raises ``UserError`` for paths of no filesystem TensorFlow reads, or no image."""
        if not images:
            raise errors.UserError("usage: vgg-predict --model=EXPORT_DIR/<model_name> IMAGE...")
        for what, path in [("--model", self.model), *(("an image", p) for p in images)]:
            storage.check_filesystem(path, what)
