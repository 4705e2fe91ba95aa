"""Benchmark of the test protocols: images/s of each, for a narrow VGG-16 (config D, 1/8 of the
widths) at Q = 256 with 224 crops, on the same images and cores. Shows the cost ratio
dense : multi-crop, the paper's argument for dense evaluation (§3.2).

    python -m tools.bench_evaluate --num_images=40
"""

import pathlib
import shutil

from absl import app
from absl import flags

from pipelines import synthetic

_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_evaluate", "Scratch folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 40, "Validation images evaluated.")
_WIDTH = flags.DEFINE_float("width", 0.125, "Width multiplier of the net.")


def make_data(work, count):
    """ImageNet-like JPEGs converted to shards, all in the validation split."""
    from pipelines import convert
    from pipelines import sources

    shards = work / "shards"
    if not (shards / "dataset_info.json").exists():
        shutil.rmtree(shards, ignore_errors=True)
        synthetic.write_photo_like_jpegs(work / "images", 2 * count)
        plan = sources.find_image_folder(work / "images", validation_fraction=0.6)
        convert.convert(plan, shards, num_shards={"train": 1, "validation": 2}, num_workers=1,
                        progress=False)
    return shards


def main(argv):
    del argv
    import vgg_keras
    from vgg_keras import evaluation

    work = pathlib.Path(_WORK_DIR.value)
    shards = make_data(work, _NUM_IMAGES.value)
    model = vgg_keras.build_vgg("D", 10, width=_WIDTH.value, fc_units=512, seed=0)
    model.save(work / "model.keras")
    rates = {}
    for protocol in ("single", "dense", "multicrop"):
        results = evaluation.evaluate([str(work / "model.keras")], shards, protocols=(protocol,),
                                      scales=[256], max_images=_NUM_IMAGES.value, progress=False)
        rates[protocol] = results[protocol]["num_images"] / results["settings"]["seconds"]
    print(f"config D at width {_WIDTH.value}, Q = 256, 224 crops, {_NUM_IMAGES.value} images")
    for protocol, rate in rates.items():
        print(f"{protocol:<12}{rate:>9.2f} images/s")
    print(f"dense is {rates['dense'] / rates['multicrop']:.1f}× faster than multi-crop "
          f"(50 crops); single-crop is {rates['single'] / rates['dense']:.1f}× faster than dense")


if __name__ == "__main__":
    app.run(main)
