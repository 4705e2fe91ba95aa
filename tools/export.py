"""vgg-export: writes a trained net as a SavedModel that TF Serving loads as it is (image bytes
in, top-k classes out), with the preprocessing of the paper's test protocol inside; and, with
--format, as ONNX (Triton, ONNX Runtime), LiteRT and OpenVINO IR models of uint8 crops, at fp32,
fp16 or int8.

    vgg-export --model=/models/vgg16 --export_dir=/serving --model_name=vgg16
    tensorflow_model_server --rest_api_port=8501 --model_name=vgg16 \
        --model_base_path=/serving/vgg16

    vgg-export --model=/models/vgg16 --export_dir=/triton --model_name=vgg16 --format=onnx
    vgg-export --model=/models/vgg16 --export_dir=/edge --format=litert --precision=int8 \
        --calibration_data=/data/imagenet

    # A net with published weights, no training run: ImageNet's 1,000 classes; the file is
    # downloaded once into its library's cache (timm's copy of torchvision's on the Hub here).
    vgg-export --config=D-BN --weights=torchvision --export_dir=/serving --model_name=vgg16_bn
    vgg-export --config=D --weights=paper=vgg16_weights_tf_dim_ordering_tf_kernels.h5 ...

Each run writes the next version (/serving/vgg16/1, 2, ...) and never overwrites one.
A SavedModel is a program: load only exports you trust.
"""

import sys

from absl import app

from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.serving import config as serving_config

from . import program

# A flag for every setting of an export, as its config declares it.
SETTINGS = program.Settings(serving_config.ExportConfig, __name__)


check_flags = SETTINGS.check_flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    from vgg_keras.serving import export

    # Once the version is whole, a stop waits for the report: the version stays, the exit is 0.
    held = program.HeldSignals()
    if config.model:
        path = export.export_saved_model(config.model, config.export_dir, config.serving(),
                                         before_commit=held.hold)
    else:
        path = export.export_published(config.weights, config.config, config.export_dir,
                                       config.serving(), crop_size=config.crop_size,
                                       before_commit=held.hold)
    _report(path, config)
    if held.received:
        print(f"vgg-export: {held.received} came once version {path} was whole: it stays, and "
              "nothing else was left", file=sys.stderr)
    return 0


def _report(path, config):
    """The lines that say what was exported, and where each format is."""
    metadata = layout.read_metadata(path)
    source = metadata.get("source_file", metadata["source_model"])
    step = f" (the checkpoint of step {metadata['source_step']:,})" if metadata.get(
        "source_step") is not None else ""
    if metadata.get("source_averaged"):  # --model_ema: the moving average of the weights
        step = f"{step[:-1]}, its EMA weights)" if step else " (EMA weights)"
    print(f"exported {metadata['config']} from {source}{step} ({metadata['num_classes']} "
          f"classes, eval mode {metadata['eval_mode']}, Q={metadata['test_scale']}, top "
          f"{metadata['top_k']}) to {path}")
    for name, entry in metadata.get("formats", {}).items():
        shape = entry.get("input", {}).get("shape")
        takes = (f": uint8 {shape} in, probabilities out" if shape else
                 f": {', '.join(entry.get('signatures', []))}")
        print(f"  {name} ({entry['precision']}){takes}: "
              f"{', '.join(storage.join(path, file) for file in entry['files'][:1])}")
    if "calibration" in metadata:
        calibration = metadata["calibration"]
        print(f"  int8 calibrated on {calibration['images']} images of {calibration['data_dir']} "
              f"({calibration['split']} split, Q={calibration['test_scale']})")
    if {"onnx", "openvino"} & set(config.format):
        print(f"  Triton: {storage.join(storage.dirname(path), layout.TRITON_CONFIG)}")


def run():
    program.run(main, "vgg-export")


if __name__ == "__main__":
    run()
