"""vgg-explain: where a net looks. Per image an overlay PNG (the map over the photo, with the
class and its probability) and the raw map (.npy); a contact sheet; explain.csv.

    vgg-explain --model=/models/vgg16 cat.jpg dog.jpg
    vgg-explain --model=/models/vgg16 --image_dir=photos --method=grad_cam_plus_plus
    vgg-explain --config=D --weights=paper --method=class_map --test_scale=384 street.jpg
    vgg-explain --model=/models/mine --data_dir=/data/mine --max_images=64 --class=tabby

--model takes what vgg-evaluate takes (a model dir, a checkpoint, a .keras file), or --config with
--weights for published weights by name. Methods: grad_cam (default), grad_cam_plus_plus,
class_map (§3.2: the dense net's class-score map over the whole image at Q),
integrated_gradients, smoothgrad, occlusion.
"""

import sys

from vgg_keras.explain import config as explain_config

from . import program

SETTINGS = program.Settings(explain_config.ExplainConfig, __name__)


def check_flags():
    SETTINGS.read(("image.jpg",), check_files=False)


def main(argv):
    config = SETTINGS.read(argv[1:])
    from vgg_keras.explain import job

    job.explain(config, show_progress=sys.stderr.isatty() or None)
    return 0


def run():
    program.run(main, "vgg-explain")


if __name__ == "__main__":
    run()
