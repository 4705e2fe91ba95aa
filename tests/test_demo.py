"""The demo's pipeline end to end, with smaller settings, on a fresh folder: every artefact. The
demo runs here, its commands each in a process forked from the suite's fork server
(tests/programs.py): the same programs with the same arguments, less nine imports of
TensorFlow; `python -m tools.demo` itself runs as a program below (its flags, its refusal)."""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest
import tensorflow as tf

from tests import programs
from vgg_keras.artifacts import layout

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _forked(command, show):
    """``tools.demo.run_process``'s contract, through the fork server: the command's output
    and error, line by line, then its exit status."""
    output = tempfile.NamedTemporaryFile(suffix=".out", delete=False)
    output.close()
    try:
        result = programs.start(command, cwd=ROOT, stdout=output.name,
                                stderr=subprocess.STDOUT).wait(900)
        for line in result.stdout.splitlines(keepends=True):
            show(line)
    finally:
        os.remove(output.name)
    return result.returncode


def test_demo_runs_every_tool_and_writes_every_artefact(tmp_path, capsys):
    from tools import demo

    out = tmp_path / "demo_output"
    (out / "stale").mkdir(parents=True)  # what an earlier run left: a rerun starts afresh
    (out / ".vgg_keras_demo").touch()
    config = demo.DemoConfig(output_dir=str(out), train_per_class=6, val_per_class=2,
                             train_epochs=2, width=0.125, fc_units=32, crop_size=32,
                             scale="36,44", batch_size=16, new_per_class=8, new_epochs=1,
                             describe_configs=("A",))
    try:
        demo.run_demo(config, run_command=_forked)
    except SystemExit as failed:
        pytest.fail(f"{failed}\n{capsys.readouterr().out[-3000:]}")
    stdout = capsys.readouterr().out
    commands = [line for line in stdout.splitlines() if line.startswith("$ ")]
    tools = ("vgg-describe", "tools.generate_images", "vgg-convert", "vgg-train", "vgg-evaluate",
             "vgg-export", "vgg-predict", "vgg-explain", "tools.generate_images", "vgg-convert",
             "vgg-train", "vgg-train")
    assert len(commands) == len(tools)
    for tool, command in zip(tools, commands, strict=True):
        assert tool in command, command
    assert "oneDNN custom operations" not in stdout  # TensorFlow's start-up chatter is hidden
    assert not (out / "stale").exists()

    raw = out / "raw"
    assert (raw / "ILSVRC2012_img_train.tar").stat().st_size > 0
    labels = (raw / "validation_labels.txt").read_text().split()
    assert len(labels) == 10 * 2 + 9  # two per class, and the planted problem files

    manifest = json.loads((out / "data" / "dataset_info.json").read_text())
    assert len(list((out / "data").glob("train-?????-of-00004"))) == 4
    assert len(list((out / "data").glob("validation-?????-of-00002"))) == 2
    assert manifest["splits"]["validation"]["num_examples"] == 20 + 4  # 4 repaired kept
    assert len(manifest["skipped"]) == 10 and len(manifest["repaired"]) == 8

    model = out / "model"
    summary = json.loads((model / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["scale"] == [36, 44]
    assert summary["class_synsets"] == sorted(set(labels))
    for name in ("model.keras", "best.keras", "training_log.csv"):
        assert (model / name).stat().st_size > 0, name
    assert list((model / "logs").glob("events.out.tfevents.*"))
    png = (model / "training_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    width, height = (int.from_bytes(png[offset:offset + 4], "big") for offset in (16, 20))
    assert (width, height) == (1000, 400)

    results = json.loads((out / "eval" / "results.json").read_text())
    for protocol in ("single", "dense", "multicrop"):
        assert results[protocol]["num_images"] == 24 and 0 <= results[protocol]["top1_error"] <= 1
    version = out / "export" / "vgg_demo" / "1"
    assert (version / "saved_model.pb").exists() and (version / layout.WARMUP_FILE).exists()
    assert layout.read_metadata(str(version))["synsets"] == summary["class_synsets"]
    images = sorted((out / "images").glob("ILSVRC2012_val_*.JPEG"))
    assert len(images) == 2
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    top = serve(images=tf.constant([images[0].read_bytes()]))["synsets"][0, 0].numpy().decode()
    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"image"')]
    assert [item["image"] for item in printed] == [str(image) for image in images]
    assert printed[0]["predictions"][0]["synset"] == top

    # The second act: the net fine-tuned on new classes, and trained from scratch alike.
    # Where the net looks: Grad-CAM of six validation images, a contact sheet of them.
    rows = (out / "explain" / "explain.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and (out / "explain" / "contact_sheet.png").stat().st_size > 1000
    assert len(list((out / "explain").glob("*.grad_cam.png"))) == 6
    assert "--init=model=" in commands[10] and "--trainable_from=block4_conv1" in commands[10]
    assert "--init=glorot" in commands[11]
    fine_tuned = json.loads((out / "model_fine_tuned" / "summary.json").read_text())
    scratch = json.loads((out / "model_scratch" / "summary.json").read_text())
    assert fine_tuned["num_classes"] == scratch["num_classes"] == 5
    assert fine_tuned["steps"] == scratch["steps"] and fine_tuned["trainable_from"]
    assert fine_tuned["init"]["new"] == ["predictions"]  # fc1 and fc2 fit: loaded
    report = (out / "report.txt").read_text()
    assert report in stdout
    for text in ("conversion", "10 skipped", "training", "images/s", "single", "dense",
                 "multicrop", str(version), "prediction", "contact_sheet.png", "own classes",
                 "fine-tuned from the net above, blocks 1-3 frozen", "the same net from scratch",
                 "total"):
        assert text in report, text
    assert re.search(r"^machine +\S.*, \d+ cores$", report, re.MULTILINE), report


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    result = programs.run([sys.executable, "-m", "tools.demo", f"--output_dir={tmp_path}"],
                          cwd=ROOT, timeout=300)
    assert result.returncode != 0
    assert "holds files the demo did not write" in result.stderr
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_commands_tensorflow_chatter_is_hidden_and_its_own_lines_shown(capsys):
    from tools import demo

    chatter = ("I0000 00:00:1796616100.335485    1610 cudart_stub.cc:31] Could not find cuda "
               "drivers on your machine, GPU will not be used.")
    output = demo.run_shown([sys.executable, "-c", f"print({chatter!r}); print('ours')"])
    shown = [line for line in capsys.readouterr().out.splitlines() if line]
    assert shown[0].startswith("$ ") and shown[1:] == ["ours"] and "cudart_stub" in output
    with pytest.raises(SystemExit, match="failed with exit status 3"):
        demo.run_shown([sys.executable, "-c", "raise SystemExit(3)"])
