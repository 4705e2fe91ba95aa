r"""vgg-train: trains a VGG net (§3.1 of the paper) on TFRecords from vgg-convert.

    # VGG-16 (config D) as the paper trained it: batch 256, SGD 0.9, lr 1e-2 ÷10 on plateau,
    # weight decay 5e-4, dropout 0.5, 74 epochs, S = 256, on every visible GPU.
    vgg-train --config=D --data_dir=/data/imagenet-tfrecords --model_dir=/models/vgg16

    # A narrow net on the CPU, MirroredStrategy over 2 logical devices.
    vgg-train --config=A --data_dir=demo_output/data --model_dir=/tmp/a --width=0.125 \
        --fc_units=256 --crop_size=64 --scale=72,96 --batch_size=32 --cpu_replicas=2

Killed, it resumes from MODEL_DIR/backup/ when run again with the same command. SIGTERM (a
preemptible machine taken away) or Ctrl-C stops it after the current step with a backup of
that step; it exits with 143 (SIGTERM) or 130 (SIGINT), and the same command resumes there.
A command that would change the run MODEL_DIR holds is refused (--allow_changed_settings).
"""

import os
import sys

from absl import app

from vgg_keras.artifacts import layout
from vgg_keras.training import run_config

from . import program

# A flag for every setting of a run, as run_config declares it (name, default, help, choices).
SETTINGS = program.Settings(run_config.TrainConfig, __name__)


check_flags = SETTINGS.check_flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = SETTINGS.read()
    from vgg_keras.training import loop
    from vgg_keras.training import preemption

    try:
        summary = loop.train(cfg)
    except preemption.Stopped as stopped:
        print(f"vgg-train: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    print(f"done: {summary['steps']} steps, val top-1 {summary['val_top1']:.4f}, top-5 "
          f"{summary['val_top5']:.4f}, {summary['images_per_second']:.1f} images/s on "
          f"{summary['replicas']} replicas; "
          f"{os.path.join(cfg.model_dir, layout.SUMMARY_FILE)}")
    return 0


def run():
    program.run(main, "vgg-train")


if __name__ == "__main__":
    run()
