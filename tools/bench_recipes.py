"""Benchmark of each ``--recipe``'s training input against the paper's, on the same shards and
cores, in one run: the pipelines ``vgg-train`` builds for each recipe (``TrainConfig.for_recipe``
→ ``input_config`` → ``make_train_dataset``), timed in alternating rounds, the best round of
each counting.

- paper: §3.1's scale jitter S ∈ [256, 512], a 224 crop of the window decoded, flip;
- torchvision_simple: RandomResizedCrop 224 (area 0.08–1), flip;
- torchvision: RandomResizedCrop 176, flip, TrivialAugmentWide, random erasing 0.1, mixup 0.2 /
  cutmix 1.0 per batch (one-hot labels), repeated augmentation ×4.

    python -m tools.bench_recipes --num_images=3000 --batches=40
    python -m tools.bench_recipes --pieces      # and the torchvision recipe without each piece
    python -m tools.bench_recipes --shard_dir=/data/imagenet-tfrecords
"""

import dataclasses
import os
import pathlib

from absl import app
from absl import flags

from tools import bench_pipeline

# The shards, scratch folder, batch and rounds are bench_pipeline's flags (--shard_dir,
# --work_dir, --num_images, --batch_size, --batches, --repeats): the same shards for both.
_PIECES = flags.DEFINE_bool("pieces", False, "Also time the torchvision recipe's pipeline "
                            "without each of its pieces, in the same rounds.")
_CONFIG = flags.DEFINE_string("config", "D-BN", "The net the recipes are for (their learning "
                              "rates differ with batch norm; their inputs do not).")

RECIPES = ("paper", "torchvision_simple", "torchvision")


def recipe_input(recipe, info, batch, num_classes):
    """The ``InputConfig`` of ``vgg-train --recipe=RECIPE`` on these shards."""
    from vgg_keras.training import run_config

    cfg = run_config.TrainConfig.for_recipe(
        recipe, config=_CONFIG.value, data_dir=str(info.location), model_dir="/tmp/unused",
        batch_size=batch, shuffle_buffer=bench_pipeline.SHUFFLE_BUFFER,
        scale=(256, 512) if recipe == "paper" else (256, 256))
    return cfg.input_config(num_classes)


def without_pieces():
    """The torchvision recipe's input without each of its pieces, by name."""
    return {"without TrivialAugmentWide": dict(auto_augment="none"),
            "without mixup/cutmix": dict(mixup_alpha=0.0, cutmix_alpha=0.0),
            "without random erasing": dict(random_erase=0.0),
            "without repeated augmentation": dict(ra_reps=1),
            "RandomResizedCrop and flip only": dict(auto_augment="none", mixup_alpha=0.0,
                                                    cutmix_alpha=0.0, random_erase=0.0,
                                                    ra_reps=1)}


def main(argv):
    del argv
    from pipelines import dataset_info

    given = flags.FLAGS  # bench_pipeline's flags, read by name
    shards = pathlib.Path(given.shard_dir) if given.shard_dir else bench_pipeline.make_shards(
        pathlib.Path(given.work_dir), given.num_images)
    info = dataset_info.read_info(shards)
    batch, batches, repeats = given.batch_size, given.batches, given.repeats
    from pipelines import inputs

    configs = {name: recipe_input(name, info, batch, info.num_classes) for name in RECIPES}
    if _PIECES.value:
        for name, changes in without_pieces().items():
            configs[f"torchvision {name}"] = dataclasses.replace(configs["torchvision"],
                                                                 **changes)
    datasets = {name: inputs.make_train_dataset(info, config)
                for name, config in configs.items()}
    best = bench_pipeline.best_rates(datasets, batch, batches, repeats)
    cores = os.cpu_count()
    print(f"{len(info.split_files('train'))} shards in {info.location}; batch {batch}; {cores} "
          f"cores; best of {repeats} rounds of {batches} batches")
    for name, rate in best.items():
        print(f"--recipe={name:<52}{rate:>8.0f} images/s  ({rate / cores:.0f} per core)  "
              f"{rate / best['paper']:.2f} × paper")
    print(f"torchvision / paper = {best['torchvision'] / best['paper']:.2f}   (target >= 0.9)")


if __name__ == "__main__":
    app.run(main)
