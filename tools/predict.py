"""vgg-predict: the top classes of images, through an export's own serving signature (the
SavedModel's ``serving_default``, as TF Serving would run it), or through the same serving graph
built in memory for a model that is not exported yet.

    vgg-predict --model=/serving/vgg16 cat.jpg dog.png
    vgg-predict --model=/serving/vgg16/3 --json photos/*.jpg
    vgg-predict --model=/models/vgg16 cat.jpg          # a model dir (or .keras, checkpoint)
    vgg-predict --model=/deploy/vgg16/1/model.onnx cat.jpg

--model is an export (a version folder or the base folder of the versions: the latest is used;
or a model.onnx, model.tflite or model.xml in a version folder, run by its own runtime on the
client's crop, vgg_keras.preprocess_image), a vgg-train model dir (a run still training: its
newest checkpoint), a checkpoint or a .keras file. Images that fail (unreadable file, not an
image, too large or small) are reported, the others still predicted; the exit status is 1 if any
failed.
"""

import json
import sys

from vgg_keras.serving import config as serving_config

from . import program

# A flag for every setting of vgg-predict, as its config declares it.
SETTINGS = program.Settings(serving_config.PredictConfig, __name__)


def main(argv):
    paths = argv[1:]
    config = SETTINGS.read(paths)
    from vgg_keras.serving import export
    from vgg_keras.serving import graph

    signature = export.serving_signature(config.model)
    failed = 0

    for path, predictions, error in graph.predict_files(signature, paths):
        if error:
            failed += 1
            print(f"vgg-predict: {path}: {error}", file=sys.stderr)
        elif config.json:
            print(json.dumps({"image": path, "predictions": predictions}))
        else:
            print(path)
            for rank, item in enumerate(predictions, 1):
                name = item["label"] if item["label"] == item["synset"] else (
                    f"{item['synset']:<10} {item['label']}")  # a run's own classes: one name
                print(f"  {rank}. {item['score']:.4f}  {name}")
    return 1 if failed else 0


def run():
    program.run(main, "vgg-predict")


if __name__ == "__main__":
    run()
