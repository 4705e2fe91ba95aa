"""What an evaluation is, declared once (``pipelines.foundation.settings``): ``vgg-evaluate``
derives its flags from these declarations and ``evaluator.evaluate`` takes them as one object.
A net with published weights is named as ``vgg-export`` names one (``PublishedSettings``); where
it computes is ``DistributionSettings``', the same as ``vgg-train``'s. Free of TensorFlow and
Keras.
"""

import dataclasses

from pipelines import input_config
from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras import protocols
from vgg_keras.artifacts import layout
from vgg_keras.artifacts import settings as artifact_settings
from vgg_keras.compute import cluster
from vgg_keras.compute import settings as compute_settings

CHUNK_IMAGES = 256  # the images a worker holds at once, at every scale (the bounded buffer)


def _protocol_list(value):
    return tuple(protocols.protocol_name(p.strip()) for p in str(value).split(",") if p.strip())


def _scale_list(value):
    try:
        scales = tuple(int(q) for q in str(value).split(","))
    except ValueError:
        raise errors.UserError(f"--scales must be integers, got {value!r}") from None
    if not scales or min(scales) < 1:
        raise errors.UserError(f"--scales must be positive integers, got {value!r}")
    return scales


def _parse_train_scale(value):
    return input_config.parse_scale(value, "--train_scale")


def _join(values):
    return ",".join(str(v) for v in values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig(artifact_settings.PublishedSettings, compute_settings.DistributionSettings):
    """An evaluation: the models (several are fused, §4.4; a net with published weights among
    them: ``PublishedSettings``), the data, the protocols and scales, where the results go; and
    where it computes (``DistributionSettings``)."""

    model: tuple | None = setting(None, "Keras file, vgg-train model dir, checkpoint, export, or "
                                        "an export's ONNX, LiteRT or OpenVINO file; repeat to "
                                        "fuse several models (§4.4), each at its own training "
                                        "scale's test scales.", multiple=True)
    data_dir: str = setting(help="Shards with a validation split.")
    protocols: tuple = setting((protocols.SINGLE,), "Comma list of "
                               f"{', '.join(protocols.PROTOCOLS)} (single: the centre crop; "
                               "center is its other name).", parse=_protocol_list, text=_join)
    scales: tuple | None = setting(None, "Test scales Q for every model (default: from the "
                                         "training scale as §4.2: S-32,S,S+32 for a fixed S; "
                                         "Smin,mid,Smax for jitter).", parse=_scale_list,
                                   text=_join)
    train_scale: tuple | None = setting(None, "S or Smin,Smax every model was trained at "
                                              "(default: each model's own, from summary.json "
                                              "beside it or its export's metadata).",
                                        parse=_parse_train_scale, text=input_config.scale_text)
    output_dir: str | None = setting(None, "Where results.json, results.csv and "
                                           "per_class_accuracy.csv go.")
    label_offset: int | None = setting(None, "Subtracted from stored labels (default: 1 for "
                                             "our/slim shards, 0 for tfds).")
    num_classes: int | None = setting(None, "Default: from the data's metadata.")
    batch_size: int = setting(32, "Network inputs per replica and step: centre crops (single), "
                                  "crops (multi-crop: 50 per image), or whole images with their "
                                  "mirrors (dense: 2 per image).", check=at_least(1))
    max_images: int | None = setting(None, "Evaluate only the first N images.",
                                     check=at_least(1))
    verify_shards: bool = setting(False, "Compare every shard's sha256 with the manifest first "
                                         "(sizes are always compared).")
    chunk: int = setting(CHUNK_IMAGES, "Images a worker holds at once (the bounded buffer).",
                         check=at_least(1), flag=False)

    def validate(self, check_files=True):
        """Raises ``UserError`` for a value that cannot work; with ``check_files``, for a model
        that is not there."""
        declared.check_settings(self)
        if not self.model and not self.weights:
            raise errors.UserError("--model is required: a Keras file, a vgg-train model dir, "
                                   "a checkpoint or an export (or --config and --weights: a "
                                   "net with published weights)")
        unknown = [p for p in self.protocols if p not in protocols.PROTOCOLS]
        if unknown or not self.protocols:
            raise errors.UserError(f"protocols must be among {protocols.PROTOCOLS}, got "
                                   f"{list(self.protocols)}")
        for flag, path in [*(("--model", m) for m in self.model or ()),
                           ("--data_dir", self.data_dir),
                           ("--output_dir", self.output_dir)]:
            if path:
                storage.check_filesystem(path, flag)
        if self.output_dir and check_files:
            storage.check_folder(self.output_dir, "--output_dir")
            storage.makedirs(self.output_dir)  # one that cannot be written: refused at once
        if self.distribution_strategy == "tpu":
            compute_settings.check_tpu_paths({"--data_dir": self.data_dir})
        if self.distribution_strategy == "multi_worker" and check_files:
            cluster.read_cluster()  # TF_CONFIG there and right, before anything starts
        missing = [m for m in self.model or () if check_files and not layout.exists(m)]
        if missing:
            raise errors.UserError(f"--model={missing[0]} does not exist: give a Keras file, a "
                                   "vgg-train model dir, a checkpoint or an export")
        self.check_weights(check_files)
