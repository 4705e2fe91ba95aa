"""The whole job end to end on a small generated dataset, with the real commands as a user types
them: vgg-describe (the six nets), a generated ImageNet-layout dataset → vgg-convert →
vgg-train (a narrow net A on small inputs, scale jitter, MirroredStrategy over 2 logical CPU
devices) → vgg-evaluate (single, dense, multi-crop) → vgg-export → vgg-predict on two images →
vgg-explain (Grad-CAM of six validation images); then a table of what happened.

    python -m tools.demo                       # what `make demo` runs: everything in demo_output/
    python -m tools.demo --output_dir=/tmp/d --train_per_class=8 --train_epochs=2   # a quick look

Every run starts afresh: OUTPUT_DIR is emptied first, if the demo wrote it (a folder holding
anything else is refused).
"""

import collections
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

from absl import app

from pipelines import dataset_info
from pipelines.foundation import settings as declared
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting
from vgg_keras.artifacts import layout

from . import program


def _names(value):
    return tuple(name.strip() for name in str(value).split(",") if name.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """What the demo generates and how it trains; the defaults are `make demo`'s."""

    output_dir: str = setting("demo_output", "Everything goes here; deleted and rewritten by "
                                             "every run.")
    train_per_class: int = setting(40, "Training images per class.", check=at_least(1))
    val_per_class: int = setting(10, "Validation images per class.", check=at_least(1))
    train_epochs: int = setting(40, "Training epochs.", check=at_least(1))
    width: float = setting(0.25, "Width multiplier of net A.",
                           check=(lambda value: value > 0, "> 0"))
    fc_units: int = setting(256, "Units of fc1 and fc2.", check=at_least(1))
    crop_size: int = setting(64, "Training crop (the paper's 224, scaled).", check=at_least(1))
    scale: str = setting("72,96", "Scale jitter [Smin, Smax] (the paper's [256, 512], scaled).")
    batch_size: int = setting(32, "Global batch (16 per replica).", check=at_least(2))
    new_per_class: int = setting(30, "Second act: images per new class (30% held out for "
                                     "validation).", check=at_least(4))
    new_epochs: int = setting(8, "Second act: epochs of fine-tuning, and of training from "
                                 "scratch.", check=at_least(1))
    describe_configs: tuple | None = setting(None, "The nets vgg-describe lists (default: the "
                                                   "six of Table 1).", parse=_names,
                                             text=",".join)
    learning_rate: float = setting(0.005, "SGD learning rate (after a 2-epoch warm-up, then "
                                          "cosine decay).", check=(lambda value: value > 0,
                                                                   "> 0"))

    def validate(self):
        declared.check_settings(self)


MODEL_NAME = "vgg_demo"
# The second act's classes: drawn as new scenes (other colours, the same shapes).
NEW_CLASSES = ("kite", "lantern", "teapot", "tulip", "yacht")
NUM_CLASSES = 10  # synthetic.DEFAULT_SYNSETS: ImageNet's first ten, labels 1..10
VAL_LABELS = "validation_labels.txt"
MARKER = ".vgg_keras_demo"  # a folder holding it was written by the demo: a rerun may empty it


# TensorFlow's chatter: C++ logs written before its log level applies (CPU features, "no CUDA
# driver") and INFO lines of its Python side; hidden so that what each tool says can be read.
# Warnings stay.
_NOISE = re.compile(r"^([IWE]0000 00:00:|I\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log "
                    r"messages before|To enable the following instructions)")


def run_process(command, show):
    """Runs ``command`` in a process of its own, passing each line of its output (and error) to
    ``show`` as it comes; returns its exit status."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, bufsize=1)
    for line in process.stdout:
        show(line)
    return process.wait()


def run_shown(command, run_command=run_process):
    """Runs one command as a user would type it (printed first) with ``run_command``, showing
    its output; stops the demo if it fails. Returns its output."""
    print(f"\n$ {shlex.join(command)}", flush=True)
    lines = []

    def show(line):
        lines.append(line)
        if not _NOISE.match(line):
            print(line, end="", flush=True)

    status = run_command(command, show)
    if status:
        raise SystemExit(f"demo: `{command[0]}` failed with exit status {status}")
    return "".join(lines)


def _tool(name):
    """The console script installed beside this Python (the venv's bin/)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def _extract_validation_images(raw, folder, count):
    """Takes the first ``count`` validation images out of the archive, as a user's files."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    with tarfile.open(os.path.join(raw, "ILSVRC2012_img_val.tar")) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            data = tar.extractfile(member).read()
            if len(paths) < count and data[:3] == b"\xff\xd8\xff" and len(data) > 2000:
                path = os.path.join(folder, member.name)
                with open(path, "wb") as file:
                    file.write(data)
                paths.append(path)
    return paths


def _start_afresh(output_dir):
    """Empties OUTPUT_DIR, but only if the demo wrote it (its marker file is there)."""
    marker = os.path.join(output_dir, MARKER)
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not os.path.exists(marker):
        raise SystemExit(f"demo: {output_dir} holds files the demo did not write; give a new or "
                         "empty --output_dir")
    shutil.rmtree(output_dir, ignore_errors=True)
    os.makedirs(output_dir)
    open(marker, "w").close()


def run_demo(config, run_command=run_process):
    """Runs every step of ``config`` (a ``DemoConfig``), each command with ``run_command(command,
    show)`` (default: a process of its own); returns the final report (also printed)."""
    config.validate()
    output_dir = config.output_dir
    started = time.monotonic()
    _start_afresh(output_dir)
    raw, data = os.path.join(output_dir, "raw"), os.path.join(output_dir, "data")
    model_dir, eval_dir = os.path.join(output_dir, "model"), os.path.join(output_dir, "eval")
    export_dir = os.path.join(output_dir, "export")
    timings = {}

    def step(name, command):
        begun = time.monotonic()
        result = run_shown(command, run_command)
        timings[name] = time.monotonic() - begun
        return result

    step("describe", [_tool("vgg-describe"), *([f"--configs={','.join(config.describe_configs)}"]
                                              if config.describe_configs else [])])
    step("generate", [sys.executable, "-m", "tools.generate_images", f"--output_dir={raw}",
                      "--layout=archives", f"--train_per_class={config.train_per_class}",
                      f"--val_per_class={config.val_per_class}", f"--val_label_file={VAL_LABELS}"])
    step("convert", [_tool("vgg-convert"), f"--raw_data_dir={raw}", f"--output_dir={data}",
                     f"--val_labels={os.path.join(raw, VAL_LABELS)}", "--train_shards=4",
                     "--validation_shards=2", "--num_workers=2"])
    step("train", [_tool("vgg-train"), "--config=A", f"--data_dir={data}",
                   f"--model_dir={model_dir}", f"--num_classes={NUM_CLASSES}", "--label_offset=1",
                   f"--width={config.width}", f"--fc_units={config.fc_units}",
                   f"--crop_size={config.crop_size}", f"--scale={config.scale}",
                   f"--batch_size={config.batch_size}", f"--train_epochs={config.train_epochs}",
                   f"--learning_rate={config.learning_rate}", "--warmup_epochs=2",
                   "--lr_schedule=cosine", "--init=glorot", "--cpu_replicas=2", "--seed=0",
                   "--deterministic"])
    low, high = (int(v) for v in config.scale.split(","))
    step("evaluate", [_tool("vgg-evaluate"), f"--model={model_dir}", f"--data_dir={data}",
                      "--protocols=single,dense,multicrop", f"--scales={(low + high) // 2}",
                      f"--num_classes={NUM_CLASSES}", "--label_offset=1",
                      f"--output_dir={eval_dir}"])
    step("export", [_tool("vgg-export"), f"--model={model_dir}", f"--export_dir={export_dir}",
                    f"--model_name={MODEL_NAME}"])
    images = _extract_validation_images(raw, os.path.join(output_dir, "images"), 2)
    predictions = step("predict", [_tool("vgg-predict"),
                                   f"--model={os.path.join(export_dir, MODEL_NAME)}", "--json",
                                   *images])
    step("explain", [_tool("vgg-explain"), f"--model={model_dir}", f"--data_dir={data}",
                     "--max_images=6", f"--test_scale={(low + high) // 2}",
                     f"--output_dir={os.path.join(output_dir, 'explain')}"])
    _second_act(config, model_dir, step)
    report = _report(output_dir, raw, predictions, timings,
                     time.monotonic() - started)
    print(report)
    with open(os.path.join(output_dir, "report.txt"), "w") as file:
        file.write(report + "\n")
    return report


def _second_act(config, model_dir, step):
    """Your own classes: new generated classes in class folders, converted; the trained net
    fine-tuned on them with its first three blocks frozen, and the same net trained from
    scratch for as many steps."""
    output_dir = config.output_dir
    raw, data = os.path.join(output_dir, "raw_new"), os.path.join(output_dir, "data_new")
    step("generate_new", [sys.executable, "-m", "tools.generate_images", f"--output_dir={raw}",
                          "--layout=image_folder", f"--classes={','.join(NEW_CLASSES)}",
                          f"--scene_offset={NUM_CLASSES}",
                          f"--train_per_class={config.new_per_class}", "--val_per_class=0",
                          "--noproblems"])
    step("convert_new", [_tool("vgg-convert"), f"--image_folder={raw}",
                         "--validation_fraction=0.3", f"--output_dir={data}", "--train_shards=2",
                         "--validation_shards=1", "--num_workers=2"])
    common = [_tool("vgg-train"), "--config=A", f"--data_dir={data}", f"--width={config.width}",
              f"--fc_units={config.fc_units}", f"--crop_size={config.crop_size}",
              f"--scale={config.scale}", f"--batch_size={config.batch_size}",
              f"--train_epochs={config.new_epochs}", f"--learning_rate={config.learning_rate}",
              "--lr_schedule=cosine", "--cpu_replicas=2", "--seed=0", "--deterministic"]
    step("fine_tune", [*common, f"--model_dir={os.path.join(output_dir, 'model_fine_tuned')}",
                       f"--init=model={model_dir}", "--trainable_from=block4_conv1",
                       "--head_learning_rate_multiplier=10"])
    step("scratch", [*common, f"--model_dir={os.path.join(output_dir, 'model_scratch')}",
                     "--init=glorot"])


def _report(output_dir, raw, predict_stdout, timings, seconds):
    """The final table: conversion, training, evaluation, export, predictions."""
    manifest = dataset_info.read_manifest(os.path.join(output_dir, "data"))
    summary = layout.read_summary(os.path.join(output_dir, "model"))
    with open(os.path.join(output_dir, "eval", "results.json")) as file:
        results = json.load(file)
    with open(os.path.join(raw, VAL_LABELS)) as file:
        truth = file.read().split()
    splits = manifest["splits"]
    reasons = collections.Counter(record["reason"].split(":")[0]
                                  for record in manifest["skipped"])
    lines = ["", "=" * 72, "vgg_keras demo: summary", "=" * 72,
             f"{'conversion':<22}train {splits['train']['num_examples']} and validation "
             f"{splits['validation']['num_examples']} images in "
             f"{len(splits['train']['shards']) + len(splits['validation']['shards'])} shards; "
             f"{len(manifest['repaired'])} repaired",
             f"{'':<22}{len(manifest['skipped'])} skipped: "
             + "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())),
             f"{'training':<22}config {summary['config']}, {summary['epochs']:.0f} epochs, "
             f"{summary['replicas']} replicas, {summary['images_per_second']:.1f} images/s, "
             f"final loss {summary['final_loss']:.3f}",
             f"{'':<22}curve: {os.path.join(output_dir, 'model', layout.CURVE_FILE)}",
             f"{'evaluation':<22}{'protocol':<12}{'top-1 err':>10}{'top-5 err':>10}"
             f"{'images':>8}   (Q = {','.join(str(q) for q in results['settings']['scales'])})"]
    for protocol in ("single", "dense", "multicrop"):
        row = results[protocol]
        lines.append(f"{'':<22}{protocol:<12}{100 * row['top1_error']:>9.1f}%"
                     f"{100 * row['top5_error']:>9.1f}%{row['num_images']:>8}")
    lines.append(f"{'explain':<22}Grad-CAM of 6 validation images: "
                 f"{os.path.join(output_dir, 'explain', 'contact_sheet.png')}")
    lines.append(f"{'export':<22}"
                 f"{layout.find_export(os.path.join(output_dir, 'export', MODEL_NAME))}")
    for line in predict_stdout.splitlines():  # vgg-predict --json: one object per image
        if not line.startswith("{"):
            continue  # what TensorFlow printed while loading
        result = json.loads(line)
        image, top = os.path.basename(result["image"]), result["predictions"][0]
        true = truth[int(image.split("_")[-1].split(".")[0]) - 1]
        lines.append(f"{'prediction':<22}{image}: {top['synset']} ({top['label'].split(',')[0]})"
                     f" p={top['score']:.4f}; true class {true}")
    fine_tuned = layout.read_summary(os.path.join(output_dir, "model_fine_tuned"))
    scratch = layout.read_summary(os.path.join(output_dir, "model_scratch"))
    lines.append(f"{'own classes':<22}{len(NEW_CLASSES)} new classes, "
                 f"{fine_tuned['train_examples']} training images, {fine_tuned['steps']} steps "
                 "each; validation top-1 error (centre crop):")
    lines.append(f"{'':<22}fine-tuned from the net above, blocks 1-3 frozen "
                 f"{100 * (1 - fine_tuned['val_top1']):>6.1f}%")
    lines.append(f"{'':<22}the same net from scratch                    "
                 f"{100 * (1 - scratch['val_top1']):>6.1f}%")
    lines.append(f"{'time':<22}" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
                 + f"; total {seconds:.0f} s")
    lines.append(f"{'machine':<22}{program.machine()}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_demo(SETTINGS.read())


if __name__ == "__main__":
    # The flags are defined only when the demo runs as a program: the test suite imports this
    # module (run_demo) beside programs whose flags have the same names (--width, --fc_units).
    SETTINGS = program.Settings(DemoConfig, __name__)
    program.run(main, "demo", tensorflow=False)
