r"""vgg-convert: ImageNet (the official archives, an extracted copy) or any folder of class
sub-folders → sharded TFRecords and ``dataset_info.json``.

    vgg-convert --raw_data_dir=/data/imagenet --output_dir=/data/imagenet-tfrecords
    vgg-convert --image_folder=/data/flowers --validation_fraction=0.1 \
        --output_dir=/data/flowers-tfrecords

Bad inputs are skipped and listed with their reason; ``--strict`` makes any of them an error
(exit status 1) once the conversion is written.
"""

import logging
import os
import sys

from absl import app

from pipelines import conversion
from pipelines import schema

from . import program

# A flag for every setting of a conversion, as its config declares it.
SETTINGS = program.Settings(conversion.ConvertConfig, __name__)


check_flags = SETTINGS.check_flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    log = logging.getLogger("vgg_keras.convert")  # the converter's notes, as lines of its own
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    manifest = conversion.run_conversion(config)
    print(conversion.summarize(manifest))
    print(f"manifest: {os.path.join(config.output_dir, schema.MANIFEST)}")
    if config.strict and manifest["skipped"]:
        print(f"--strict: {len(manifest['skipped'])} inputs were skipped", file=sys.stderr)
        return 1
    return 0


def run():
    program.run(main, "vgg-convert", tensorflow=False)


if __name__ == "__main__":
    run()
