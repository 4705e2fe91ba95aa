"""vgg-predict: the top classes of images, through an export's own serving signature (the
SavedModel's ``serving_default``, as TF Serving would run it).

    vgg-predict --model=/serving/vgg16 cat.jpg dog.png
    vgg-predict --model=/serving/vgg16/3 --json photos/*.jpg

--model is a version folder or the base folder of the versions (the latest is used). Images that
fail (unreadable file, not an image, too large or small) are reported, the others still
predicted; the exit status is 1 if any failed.
"""

import json
import sys

from vgg_keras import artifacts
from vgg_keras.serving import config as serving_config

from . import program

# A flag for every setting of vgg-predict, as its config declares it.
SETTINGS = program.Settings(serving_config.PredictConfig, __name__)


def main(argv):
    paths = argv[1:]
    config = SETTINGS.read(paths)
    import tensorflow as tf

    location = artifacts.resolve_export(config.model)
    signature = tf.saved_model.load(location).signatures["serving_default"]
    missing = {"classes", "synsets", "labels", "scores"} - set(signature.structured_outputs)
    if missing:
        print(f"vgg-predict: {location} is not a vgg-export export (its serving_default "
              f"returns no {', '.join(sorted(missing))})", file=sys.stderr)
        return 1
    failed = 0
    from vgg_keras.serving import graph

    for path, predictions, error in graph.predict_files(signature, paths):
        if error:
            failed += 1
            print(f"vgg-predict: {path}: {error}", file=sys.stderr)
        elif config.json:
            print(json.dumps({"image": path, "predictions": predictions}))
        else:
            print(path)
            for rank, item in enumerate(predictions, 1):
                print(f"  {rank}. {item['score']:.4f}  {item['synset']:<10} {item['label']}")
    return 1 if failed else 0


def run():
    program.run(main, "vgg-predict")


if __name__ == "__main__":
    run()
