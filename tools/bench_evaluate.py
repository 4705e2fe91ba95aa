"""Benchmark of the test protocols: images/s of each (single, dense, multi-crop) on one replica and
on 2 logical CPU replicas, on the same images and cores: a narrow VGG-16 (config D, 1/8 of the
widths) at Q = 256 with the crops of §2.1, on ImageNet-like JPEGs. Shows the cost ratio dense :
multi-crop too, the paper's argument for dense evaluation (§3.2).

    python -m tools.bench_evaluate --num_images=48
    git worktree add /tmp/before_tree <commit>
    python -m tools.bench_evaluate --num_images=48 --before=/tmp/before_tree

Each measurement runs in a process of its own (logical devices are set before TensorFlow
starts), in alternating rounds; with ``--before``, the same measurement of the code in another
checkout (its own ``tools/bench_evaluate.py --cpu_replicas=1``) alternates with ours, and the
ratio ours / before is printed.
"""

import json
import os
import pathlib
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
                                 "replicas only, printing JSON (the measuring child).")
_BEFORE = flags.DEFINE_string("before", None, "A checkout of another version, measured the same "
                              "way in the same rounds.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds; the best of each counts.")
PROTOCOLS = ("single", "dense", "multicrop")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_data(work, count):
    """ImageNet-like JPEGs converted to shards, most of them in the validation split."""
    return synthetic.photo_like_shards(work, 2 * count, {"train": 1, "validation": 2},
                                       validation_fraction=0.6)


def rates(model, shards, strategy):
    """Images/s of each protocol."""
    from vgg_keras.evaluation import config as eval_config
    from vgg_keras.evaluation import evaluator

    found = {}
    for protocol in PROTOCOLS:
        config = eval_config.EvalConfig(model=(str(model),), data_dir=str(shards),
                                       protocols=(protocol,), scales=(256,),
                                       max_images=_NUM_IMAGES.value,
                                       batch_size=_BATCH_SIZE.value)
        results = evaluator.evaluate(config, strategy=strategy, progress=False)
        found[protocol] = results[protocol]["num_images"] / results["settings"]["seconds"]
    return found


def _measure(tree, replicas, work):
    """The rates of the code in ``tree`` on ``replicas`` logical CPU replicas (a child)."""
    environment = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    child = subprocess.run([sys.executable, "-m", "tools.bench_evaluate",
                            f"--cpu_replicas={replicas}", f"--work_dir={work}",
                            f"--num_images={_NUM_IMAGES.value}",
                            f"--batch_size={_BATCH_SIZE.value}"], capture_output=True, text=True,
                           cwd=tree, env=environment)
    if child.returncode:
        raise RuntimeError(f"the measurement in {tree} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    work = pathlib.Path(_WORK_DIR.value)
    model = work / "model.keras"
    if _REPLICAS.value:
        from vgg_keras.compute import distribution

        strategy = distribution.make_strategy("mirrored", cpu_replicas=_REPLICAS.value)
        print(json.dumps(rates(model, work / "shards", strategy)))
        return
    import vgg_keras

    make_data(work, _NUM_IMAGES.value)
    vgg_keras.build_vgg("D", 10, width=_WIDTH.value, head=vgg_keras.Head(fc_units=512),
                        weight_init=vgg_keras.WeightInit(seed=0)).save(model)
    runs = {"1 replica": (ROOT, 1), "2 replicas": (ROOT, 2)}
    if _BEFORE.value:
        runs["before, 1 replica"] = (pathlib.Path(_BEFORE.value).resolve(), 1)
    best = {name: dict.fromkeys(PROTOCOLS, 0.0) for name in runs}
    for _ in range(_ROUNDS.value):
        for name, (tree, replicas) in runs.items():
            for protocol, rate in _measure(tree, replicas, work).items():
                best[name][protocol] = max(best[name][protocol], rate)
    one, two = best["1 replica"], best["2 replicas"]
    print(f"config D at width {_WIDTH.value}, Q = 256, {_NUM_IMAGES.value} images, batch "
          f"{_BATCH_SIZE.value} inputs per replica, best of {_ROUNDS.value} rounds; images/s:")
    header = f"{'protocol':<12}{'1 replica':>11}{'2 replicas':>12}{'ratio':>7}"
    print(header + (f"{'before':>9}{'ours/before':>13}" if _BEFORE.value else ""))
    for protocol in PROTOCOLS:
        line = (f"{protocol:<12}{one[protocol]:>11.2f}{two[protocol]:>12.2f}"
                f"{two[protocol] / one[protocol]:>7.2f}")
        if _BEFORE.value:
            before = best["before, 1 replica"][protocol]
            line += f"{before:>9.2f}{one[protocol] / before:>13.2f}"
        print(line)
    print(f"dense is {one['dense'] / one['multicrop']:.1f}× faster than multi-crop (50 crops); "
          f"single-crop {one['single'] / one['dense']:.1f}× faster than dense")


if __name__ == "__main__":
    app.run(main)
