"""vgg-evaluate: top-1/top-5 error of a model, or a fusion of models, with the paper's test
protocols (§3.2, §4), printed in the shape of its Tables 3–7.

    vgg-evaluate --model=/models/d-s256 --data_dir=/data/imagenet-tfrecords \
        --protocols=single,dense,multicrop,dense+multicrop --output_dir=/tmp/eval
    vgg-evaluate --model=/models/d-multi --model=/models/e-multi --scales=256,384,512 ...
"""


from absl import app
from absl import flags

from pipelines import storage
from vgg_keras import protocols
from vgg_keras import settings

from . import program

_MODEL = flags.DEFINE_multi_string("model", None, "Keras file, vgg-train model dir, checkpoint "
                                   "or export; repeat to fuse several models (§4.4), each at "
                                   "its own training scale's test scales.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shards with a validation split.")
_PROTOCOLS = flags.DEFINE_list("protocols", [protocols.SINGLE], "Comma list of "
                               f"{', '.join(protocols.PROTOCOLS)} (single: the centre crop; "
                               "center is its other name).")
_SCALES = flags.DEFINE_list("scales", None, "Test scales Q for every model (default: from the "
                            "training scale as §4.2: S-32,S,S+32 for a fixed S; Smin,mid,Smax "
                            "for jitter).")
_TRAIN_SCALE = flags.DEFINE_string("train_scale", None, "S or Smin,Smax every model was trained "
                                   "at (default: each model's own, from summary.json beside it "
                                   "or its export's metadata).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where results.json, results.csv and "
                                  "per_class_accuracy.csv go.")
_LABEL_OFFSET = flags.DEFINE_integer("label_offset", None, "Subtracted from stored labels "
                                     "(default: 1 for our/slim shards, 0 for tfds).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Default: from the data's metadata.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Network inputs per replica and step: "
                                   "centre crops (single), crops (multi-crop: 50 per image), or "
                                   "whole images with their mirrors (dense: 2 per image).")
# Where it computes: the same settings as vgg-train's, declared once (vgg_keras.settings).
_DISTRIBUTION = program.define_settings_flags(settings.DistributionSettings, __name__)
_CROP_SIZE = flags.DEFINE_integer("crop_size", None, "Default: the model's training crop.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", None, "Evaluate only the first N images.")
_VERIFY_SHARDS = flags.DEFINE_bool("verify_shards", False, "Compare every shard's sha256 with "
                                   "the manifest first (sizes are always compared).")


def _ints(values, name):
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise app.UsageError(f"--{name} must be integers, got {values}") from None
    if not numbers or min(numbers) < 1:
        raise app.UsageError(f"--{name} must be positive integers, got {values}")
    return numbers


def check_flags():
    """The flags' values parsed and checked; returns ``(scales, train_scale)``."""
    if not _MODEL.value or not _DATA_DIR.value:
        raise app.UsageError("--model and --data_dir are required")
    for what, path in [*(("--model", m) for m in _MODEL.value), ("--data_dir", _DATA_DIR.value),
                       ("--output_dir", _OUTPUT_DIR.value)]:
        if path:
            storage.check_filesystem(path, what)
    if _BATCH_SIZE.value < 1:
        raise app.UsageError("--batch_size must be >= 1")
    scales = _ints(_SCALES.value, "scales") if _SCALES.value else None
    train_scale = None
    if _TRAIN_SCALE.value:
        values = _ints(_TRAIN_SCALE.value.split(","), "train_scale")
        if len(values) > 2:
            raise app.UsageError("--train_scale is S or Smin,Smax")
        train_scale = (values[0], values[-1])
    return scales, train_scale


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    scales, train_scale = check_flags()
    where = program.settings_from_flags(settings.DistributionSettings, _DISTRIBUTION)
    settings.check_settings(where)
    if where.distribution_strategy == "tpu":
        from vgg_keras.training import run_config

        run_config.check_tpu_paths({"--data_dir": _DATA_DIR.value})
    from vgg_keras import evaluation
    from vgg_keras.training import distribution

    strategy = distribution.make_strategy(where.distribution_strategy, where.num_gpus,
                                          where.cpu_replicas, where.tpu)
    results = evaluation.evaluate(
        _MODEL.value, _DATA_DIR.value, protocols=_PROTOCOLS.value, scales=scales,
        train_scale=train_scale, crop_size=_CROP_SIZE.value, label_offset=_LABEL_OFFSET.value,
        num_classes=_NUM_CLASSES.value, output_dir=_OUTPUT_DIR.value,
        max_images=_MAX_IMAGES.value, batch_size=_BATCH_SIZE.value,
        verify_shards=_VERIFY_SHARDS.value, strategy=strategy)
    print(evaluation.format_table(results))
    return 0


def run():
    program.run(main, "vgg-evaluate")


if __name__ == "__main__":
    run()
