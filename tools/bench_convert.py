"""Benchmark of the converter against the JPEG-decode limit and slim's decode-and-re-encode.

On the same ImageNet-like JPEGs (shorter side 240–500, about 100 KB) and cores, in one run:
- converter: ``pipelines.convert`` with ``--num_workers`` processes, steady state (from the
  first shard's start to the last shard's end; the one-off start of the workers, which import
  TensorFlow, is reported apart);
- limit: the same number of processes that only read and fully decode every image once;
- reference: one thread that decodes and re-encodes every image (slim's approach).

    python -m tools.bench_convert --num_images=3000 --num_workers=2
"""

import io
import json
import multiprocessing
import os
import pathlib
import shutil
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image

from pipelines import synthetic

IMAGENET_TRAIN_IMAGES = 1_281_167

_IMAGE_DIR = flags.DEFINE_string("image_dir", None, "Folder of <class>/<image> JPEGs to use "
                                 "instead of generated ones.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/vgg_bench_convert", "Scratch folder; "
                                "generated images are kept there between runs.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 3000, "Images to generate.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", os.cpu_count(), "Processes.")
_IMAGES_PER_SHARD = flags.DEFINE_integer("images_per_shard", 500, "Shard size (ImageNet's "
                                         "1024 training shards hold ~1,250 images each).")
_BEFORE = flags.DEFINE_string("before", None, "A checkout of an earlier commit: its converter "
                              "runs on the same images, alternating with ours (each in a "
                              "process of its own), and the steady-state rates are compared.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "With --before: alternating rounds of each.")


def _decode(path):
    with Image.open(path) as image:
        image.load()
    return 1


def _noop(_):
    return 0


def measure_limit(paths, workers):
    """Images/s of ``workers`` processes that read and fully decode every image once."""
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_noop, range(workers))  # started before the clock
        start = time.perf_counter()
        pool.map(_decode, paths, chunksize=16)
        return len(paths) / (time.perf_counter() - start)


def measure_reference(paths):
    """Images/s of one thread that decodes and re-encodes every image (slim's approach)."""
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=95)
    return len(paths) / (time.perf_counter() - start)


def measure_converter(image_folder, output, workers, images_per_shard):
    """Returns (steady-state images/s, end-to-end seconds, start-up seconds)."""
    from pipelines import convert
    from pipelines import shard_writer
    from pipelines import sources

    shutil.rmtree(output, ignore_errors=True)
    plan = sources.find_image_folder(image_folder)
    start = time.time()
    shards = max(workers, round(len(plan.entries["train"]) / images_per_shard))
    manifest = convert.convert(plan, output, num_shards={"train": shards},
                               num_workers=workers, progress=False)
    end = time.time()
    reports = [json.loads(p.read_text())
               for p in pathlib.Path(output, shard_writer.STATE_DIR).glob("train-*.json")]
    # Each worker's span from its first shard's start to its last shard's end: the slowest
    # is the conversion's critical path, without the workers' one-off start.
    spans = {}
    for report in reports:
        first, last = spans.get(report["worker"], (report["started"], report["finished"]))
        spans[report["worker"]] = (min(first, report["started"]), max(last, report["finished"]))
    busy = max(last - first for first, last in spans.values())
    images = manifest["splits"]["train"]["num_inputs"]
    return images / busy, end - start, min(first for first, _ in spans.values()) - start


_MEASURE_IN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tools import bench_convert
rate, total, startup = bench_convert.measure_converter(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                                       int(sys.argv[5]))
print(json.dumps(rate))
"""


def measure_converter_of(tree, image_folder, output, workers, images_per_shard):
    """``measure_converter`` of the checkout ``tree``, in a process of its own."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _MEASURE_IN, str(tree), str(image_folder),
                             str(output), str(workers), str(images_per_shard)],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_with_before(before, folder, work, workers, images_per_shard, rounds):
    """Best steady-state images/s of ours and of ``before``'s converter, alternating."""
    ours = pathlib.Path(__file__).resolve().parents[1]
    best = {"ours": 0.0, "before": 0.0}
    for _ in range(rounds):
        for name, tree in (("ours", ours), ("before", before)):
            rate = measure_converter_of(tree, folder, work / f"out_{name}", workers,
                                        images_per_shard)
            best[name] = max(best[name], rate)
    return best


def main(argv):
    del argv
    workers = _NUM_WORKERS.value
    work = pathlib.Path(_WORK_DIR.value)
    folder = pathlib.Path(_IMAGE_DIR.value) if _IMAGE_DIR.value else work / "images"
    paths = (sorted(folder.rglob("*.[jJ][pP]*[gG]")) if _IMAGE_DIR.value
             else synthetic.write_photo_like_jpegs(folder, _NUM_IMAGES.value))
    sizes = [p.stat().st_size for p in paths]
    shorter = [min(Image.open(p).size) for p in paths[:200]]
    print(f"{len(paths)} JPEGs, mean {np.mean(sizes) / 1e3:.0f} KB, shorter side "
          f"{min(shorter)}–{max(shorter)}; {workers} worker processes; {os.cpu_count()} cores")
    converter, total, startup = measure_converter(folder, work / "out", workers,
                                                  _IMAGES_PER_SHARD.value)
    limit = measure_limit(paths, workers)
    reference = measure_reference(paths)
    print(f"{'':<38}{'images/s':>10}")
    print(f"{'converter (steady state)':<38}{converter:>10.0f}")
    print(f"{'limit: read + decode only':<38}{limit:>10.0f}")
    print(f"{'reference: decode + re-encode, 1 thread':<38}{reference:>10.0f}")
    print(f"converter / limit     = {converter / limit:.2f}   (target >= 0.8)")
    print(f"converter / reference = {converter / reference:.2f}   (target >= 3)")
    print(f"end to end {total:.1f} s for {len(paths)} images, of which {startup:.1f} s worker "
          "start-up")
    if _BEFORE.value:
        best = compare_with_before(_BEFORE.value, folder, work, workers, _IMAGES_PER_SHARD.value,
                                   _ROUNDS.value)
        print(f"ours {best['ours']:.0f} vs before ({_BEFORE.value}) {best['before']:.0f} "
              f"images/s, best of {_ROUNDS.value} alternating rounds each: ours / before = "
              f"{best['ours'] / best['before']:.2f}")
    print(f"projected for ImageNet's {IMAGENET_TRAIN_IMAGES:,} training images: "
          f"{IMAGENET_TRAIN_IMAGES / converter / 3600:.1f} h with {workers} workers "
          f"({converter / workers:.0f} images/s per worker)")


if __name__ == "__main__":
    app.run(main)
