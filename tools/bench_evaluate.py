"""Benchmark of the test protocols: images/s of each (single, dense, multi-crop), batched against
the one-image reference path, and on 2 logical CPU replicas against 1, in one run on the same
images and cores: a narrow VGG-16 (config D, 1/8 of the widths) at Q = 256 with 224 crops, on
ImageNet-like JPEGs. Shows the cost ratio dense : multi-crop too, the paper's argument for
dense evaluation (§3.2).

    python -m tools.bench_evaluate --num_images=48

The 2-replica figures come from a process of their own (logical devices are set before
TensorFlow starts), run between the rounds of this one.
"""

import json
import pathlib
import shutil
import subprocess
import sys

from absl import app
from absl import flags

from pipelines import synthetic

_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_evaluate", "Scratch folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 48, "Validation images evaluated.")
_WIDTH = flags.DEFINE_float("width", 0.125, "Width multiplier of the net.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Network inputs per replica and step.")
_REPLICAS = flags.DEFINE_integer("cpu_replicas", None, "Measure on this many logical CPU "
                                 "replicas only, printing JSON (the 2-replica child).")
PROTOCOLS = ("single", "dense", "multicrop")


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


def rates(model, shards, strategy=None, one_image=False):
    """Images/s of each protocol."""
    from vgg_keras import evaluation

    found = {}
    for protocol in PROTOCOLS:
        results = evaluation.evaluate([str(model)], shards, protocols=(protocol,), scales=[256],
                                      max_images=_NUM_IMAGES.value, progress=False,
                                      batch_size=_BATCH_SIZE.value, strategy=strategy,
                                      one_image=one_image)
        found[protocol] = results[protocol]["num_images"] / results["settings"]["seconds"]
    return found


def main(argv):
    del argv
    work = pathlib.Path(_WORK_DIR.value)
    model = work / "model.keras"
    if _REPLICAS.value:
        from vgg_keras.training import distribution

        strategy = distribution.make_strategy("mirrored", cpu_replicas=_REPLICAS.value)
        print(json.dumps(rates(model, work / "shards", strategy)))
        return
    import vgg_keras

    shards = make_data(work, _NUM_IMAGES.value)
    vgg_keras.build_vgg("D", 10, width=_WIDTH.value, fc_units=512, seed=0).save(model)
    one_image = rates(model, shards, one_image=True)
    batched = rates(model, shards)
    child = subprocess.run([sys.executable, "-m", "tools.bench_evaluate", "--cpu_replicas=2",
                            f"--work_dir={work}", f"--num_images={_NUM_IMAGES.value}",
                            f"--batch_size={_BATCH_SIZE.value}"], capture_output=True, text=True,
                           check=True, cwd=pathlib.Path(__file__).resolve().parents[1])
    two = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"config D at width {_WIDTH.value}, Q = 256, 224 crops, {_NUM_IMAGES.value} images, "
          f"batch {_BATCH_SIZE.value} inputs per replica; images/s:")
    print(f"{'protocol':<12}{'one image':>11}{'batched':>9}{'ratio':>7}{'2 replicas':>12}"
          f"{'ratio':>7}")
    for protocol in PROTOCOLS:
        print(f"{protocol:<12}{one_image[protocol]:>11.2f}{batched[protocol]:>9.2f}"
              f"{batched[protocol] / one_image[protocol]:>7.2f}{two[protocol]:>12.2f}"
              f"{two[protocol] / batched[protocol]:>7.2f}")
    print(f"batched: dense is {batched['dense'] / batched['multicrop']:.1f}× faster than "
          f"multi-crop (50 crops); single-crop {batched['single'] / batched['dense']:.1f}× faster "
          "than dense")


if __name__ == "__main__":
    app.run(main)
