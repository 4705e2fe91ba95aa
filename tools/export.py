"""vgg-export: writes a trained net as a SavedModel that TF Serving loads as it is (image bytes
in, top-k classes out), with the preprocessing of the paper's test protocol inside.

    vgg-export --model=/models/vgg16 --export_dir=/serving --model_name=vgg16
    tensorflow_model_server --rest_api_port=8501 --model_name=vgg16 \
        --model_base_path=/serving/vgg16

    # A net with published weights, no training run: ImageNet's 1,000 classes.
    vgg-export --config=D-BN --weights=torchvision=vgg16_bn.safetensors \
        --export_dir=/serving --model_name=vgg16_bn

Each run writes the next version (/serving/vgg16/1, 2, ...) and never overwrites one.
A SavedModel is a program: load only exports you trust.
"""


from absl import app
from absl import flags
from absl import logging

from pipelines import errors
from pipelines import storage
from vgg_keras import artifacts
from vgg_keras import configs
from vgg_keras import export
from vgg_keras import pretrained
from vgg_keras import protocols

from . import program

_MODEL = flags.DEFINE_string("model", None, "vgg-train model dir, Keras file from it, or "
                             "checkpoint (MODEL_DIR/checkpoints/best/ckpt-N).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Base folder of the exports.")
_MODEL_NAME = flags.DEFINE_string("model_name", "vgg", "Sub-folder of --export_dir, and the "
                                  "model's name in TF Serving.")
_EVAL_MODE = flags.DEFINE_enum("eval_mode", protocols.SINGLE,
                               [*protocols.SERVED, *protocols.ALIASES],
                               "The protocol served: single: shorter side to Q, the centre crop "
                               "(center is its other name); dense: the whole image at Q through "
                               "the fully convolutional net, with its mirror (§3.2).")
_TEST_SCALE = flags.DEFINE_integer("test_scale", None, "Q (default: from the training scale in "
                                   "summary.json: S, or (Smin+Smax)/2).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes returned per image.")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", export.DEFAULT_MAX_PIXELS, "Images whose header "
                                   "declares more pixels are refused before decoding.")
_MIN_SIDE = flags.DEFINE_integer("min_side", export.DEFAULT_MIN_SIDE, "Images with a shorter "
                                 "side below this are refused.")
_FULL_PROBABILITIES = flags.DEFINE_bool("full_probabilities", False, "Also return every "
                                        "class's probability.")
_CONFIG = flags.DEFINE_string("config", "D", "With --weights: the net (A, B, D, E or a -BN "
                              "variant).")
_WEIGHTS = flags.DEFINE_string("weights", None, "Instead of --model, a net with published "
                               "weights: keras_applications=PATH (D, E), torchvision=PATH or "
                               "timm=PATH (.safetensors, or .pth with torch installed).")
_CROP_SIZE = flags.DEFINE_integer("crop_size", 224, "With --weights: the input side the "
                                  "weights were trained at (their fc1 reads its map).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shards whose dataset_info.json names the "
                                "classes (default: as recorded by vgg-train).")


def check_flags():
    """The flags' values checked, reading no file."""
    if not _EXPORT_DIR.value or bool(_MODEL.value) == bool(_WEIGHTS.value):
        raise app.UsageError("--export_dir is required, with --model (a trained net) or "
                             "--config and --weights (a net with published weights)")
    if _WEIGHTS.value:
        kind, _, path = _WEIGHTS.value.partition("=")
        if kind not in pretrained.WEIGHT_KINDS or not path:
            raise app.UsageError(f"--weights must be KIND=PATH, KIND one of "
                                 f"{', '.join(pretrained.WEIGHT_KINDS)}; got {_WEIGHTS.value!r}")
        storage.check_filesystem(path, "--weights")
        with errors.user_input():
            configs.resolve_config(_CONFIG.value)
    for flag in (_MODEL, _EXPORT_DIR, _DATA_DIR):
        if flag.value:
            storage.check_filesystem(flag.value, f"--{flag.name}")
    if _TEST_SCALE.value is not None and _TEST_SCALE.value < 1:
        raise app.UsageError("--test_scale must be positive")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    check_flags()
    logging.set_verbosity(logging.WARNING)  # TensorFlow's notes while saving (a line per file)
    settings = dict(model_name=_MODEL_NAME.value, eval_mode=_EVAL_MODE.value,
                    test_scale=_TEST_SCALE.value, top_k=_TOP_K.value,
                    max_pixels=_MAX_PIXELS.value, min_side=_MIN_SIDE.value,
                    full_probabilities=_FULL_PROBABILITIES.value, data_dir=_DATA_DIR.value)
    if _MODEL.value:
        path = export.export_saved_model(_MODEL.value, _EXPORT_DIR.value, **settings)
    else:
        kind, _, weights = _WEIGHTS.value.partition("=")
        with storage.local_copy(weights) as local, errors.user_input():
            model = pretrained.build_pretrained(
                _CONFIG.value, kind, local, input_shape=(_CROP_SIZE.value, _CROP_SIZE.value, 3))
        path = export.export_model(model, _EXPORT_DIR.value, source=f"{kind}={weights}",
                                   **settings)
    metadata = artifacts.read_metadata(path)
    print(f"exported {metadata['config']} ({metadata['num_classes']} classes, eval mode "
          f"{metadata['eval_mode']}, Q={metadata['test_scale']}, top {metadata['top_k']}) "
          f"to {path}")
    return 0


def run():
    program.run(main, "vgg-export")


if __name__ == "__main__":
    run()
