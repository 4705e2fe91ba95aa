"""Every error a user can cause ends each command with one line naming the problem and the fix,
and exit status 1, with no traceback; ``--verbose`` adds the traceback. The commands run at once,
each in a process of its own (tests/programs.py)."""

import json
import os
import pathlib
import shutil
import sys

import pytest

import vgg_keras
from tests import programs
from tests.conftest import LIBRARY_LINE
from tests.conftest import write_shards

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

BIN = pathlib.Path(sys.executable).parent
CROP = 32
# vgg-train with a bug planted in its loop's control (monkeypatched): any ValueError there is ours.
BUG = """
import sys
from vgg_keras.training import epochs

def broken(*arguments):
    raise ValueError("an internal inconsistency")

epochs.plan_chunk = broken
sys.argv[0] = "vgg-train"
from vgg_keras.cli import train
train.run()
"""


def _cases(root, data, model_dir, empty):
    damaged = _damaged(root, data, model_dir)
    truncated = root / "truncated"
    shutil.copytree(data, truncated)
    victim = truncated / "train-00001-of-00004"
    victim.write_bytes(victim.read_bytes()[:-300])
    flipped = root / "flipped"
    shutil.copytree(data, flipped)
    content = bytearray((flipped / victim.name).read_bytes())
    content[2000] ^= 0xFF  # inside a record: its CRC fails, and TensorFlow names no file
    (flipped / victim.name).write_bytes(bytes(content))
    def train(name):
        return ["vgg-train", "--config=A", "--width=0.125", "--fc_units=16",
                f"--crop_size={CROP}", "--scale=36", "--batch_size=4", "--train_steps=2",
                "--num_classes=4", "--distribution_strategy=one_device",
                f"--model_dir={root / 'runs' / name}"]

    evaluate = ["vgg-evaluate", f"--model={model_dir}", f"--data_dir={data}", "--scales=40"]
    return {
        "train_label_offset": ([*train("offset"), f"--data_dir={data}", "--label_offset=5"],
                               "is outside [0, 4) after label_offset=5: shards of our converter "
                               "and slim's use --label_offset=1"),
        "evaluate_label_offset": ([*evaluate, "--num_classes=4", "--label_offset=1001"],
                                  "is outside [0, 4) after label_offset=1001"),
        "train_missing_data_dir": ([*train("missing"), f"--data_dir={root / 'nowhere'}"],
                                   f"{root / 'nowhere'} does not exist: give the folder of the "
                                   "shards"),
        "train_empty_data_dir": ([*train("empty"), f"--data_dir={empty}"],
                                 f"no shards found in {empty} (expected train-?????-of-?????"),
        "evaluate_class_counts": (evaluate, "predicts 4 classes but the data has 1000 (see "
                                            "--num_classes, --label_offset)"),
        "train_truncated_shard": ([*train("truncated"), f"--data_dir={truncated}",
                                   "--label_offset=1"],
                                  f"shard {victim} is {victim.stat().st_size:,} bytes, its "
                                  "manifest says"),
        "train_corrupt_record": ([*train("flipped"), f"--data_dir={flipped}",
                                  "--label_offset=1"],
                                 f"shard {flipped / victim.name} has another sha256 than its "
                                 "manifest records: it is corrupt or was replaced: convert it "
                                 "again"),
        "evaluate_model_dir_without_model": (
            ["vgg-evaluate", f"--model={empty}", f"--data_dir={data}", "--scales=40"],
            f"no model in {empty}: neither model.keras (a finished run) nor a checkpoint"),
        "export_model_dir_without_model": (
            ["vgg-export", f"--model={empty}", f"--export_dir={root / 'exports'}"],
            f"no model in {empty}: neither model.keras"),
        "predict_export_without_versions": (
            ["vgg-predict", f"--model={empty}", "cat.jpg"],
            f"no model in {empty}: neither model.keras (a finished run) nor a checkpoint"),
        "describe_unknown_config": (["vgg-describe", "--configs=F"],
                                    "unknown VGG configuration 'F'; valid: A, A-LRN"),
        "convert_missing_folder": (["vgg-convert", f"--raw_data_dir={root / 'nowhere'}",
                                    f"--output_dir={root / 'out'}"],
                                   f"--raw_data_dir {root / 'nowhere'} is not a folder"),
        "train_unknown_scheme": ([*train("s3"), "--data_dir=s3://bucket/imagenet"],
                                 "--data_dir s3://bucket/imagenet: TensorFlow reads no s3:// "
                                 "filesystem here; it comes with tensorflow-io"),
        "predict_unknown_scheme": (["vgg-predict", "--model=hdfs://namenode/serving/vgg16",
                                    "cat.jpg"],
                                   "--model hdfs://namenode/serving/vgg16: TensorFlow reads no "
                                   "hdfs:// filesystem here"),
        "train_tpu_with_local_paths": ([*train("tpu"), f"--data_dir={data}",
                                        "--distribution_strategy=tpu", "--tpu=local"],
                                       f"--data_dir={data}: a TPU's workers read only buckets "
                                       "(gs://...), not this machine's disk"),
        # Required flags missing: absl's usage error, one line (a scheduler must not retry).
        "train_without_model_dir": (["vgg-train", f"--data_dir={data}"],
                                    "--model_dir is required; `vgg-train --help` lists its "
                                    "flags"),
        "evaluate_without_flags": (["vgg-evaluate"], "--data_dir is required"),
        "export_without_flags": (["vgg-export"], "--export_dir is required"),
        "predict_without_flags": (["vgg-predict"], "--model is required"),
        "convert_without_flags": (["vgg-convert"], "give exactly one of --raw_data_dir and "
                                                   "--image_folder"),
        "data_service_bad_port": (["vgg-data-service", "--port=0"], "port must be >= 1"),
        # Damaged files, each named with what wrote it.
        "train_damaged_manifest": (
            [*train("damaged"), f"--data_dir={damaged['data']}"],
            f"{damaged['data'] / 'dataset_info.json'} is damaged, written by vgg-convert (or "
            "tfds), and cannot be read"),
        "train_damaged_run_json": (
            [*train("x"), f"--data_dir={data}", f"--model_dir={damaged['run']}"],
            f"{damaged['run'] / 'run.json'} is damaged, written by vgg-train, and cannot be "
            "read"),
        "evaluate_damaged_summary": (
            ["vgg-evaluate", f"--model={damaged['summary']}", f"--data_dir={data}",
             "--num_classes=4"],
            f"{damaged['summary'] / 'summary.json'} is damaged, written by vgg-train"),
        "evaluate_truncated_keras_file": (
            [*evaluate[:1], f"--model={damaged['keras']}", *evaluate[2:]],
            f"{damaged['keras'] / 'model.keras'} is not a Keras file that loads"),
        # Published weights by name, offline (HF_HUB_OFFLINE=1) with nothing in the cache.
        "export_published_weights_not_cached": (
            ["vgg-export", "--config=D-BN", "--weights=timm", f"--export_dir={root / 'exports'}"],
            f"timm weights of D-BN: model.safetensors of timm/vgg16_bn.tv_in1k is not in the "
            f"cache {root / 'hf_home' / 'hub'} and HF_HUB_OFFLINE=1 forbids downloading it: on a "
            "connected machine, `hf download timm/vgg16_bn.tv_in1k model.safetensors` puts it "
            "in that machine's cache"),
        "train_published_weights_not_cached": (
            [*train("published"), f"--data_dir={data}", "--init=torchvision"],
            "torchvision weights of A: model.safetensors of timm/vgg11.tv_in1k is not in the "
            "cache"),
        "export_weights_of_no_such_net": (
            ["vgg-export", "--config=A", "--weights=paper", f"--export_dir={root / 'exports'}"],
            "no paper weights are published for A: they exist for D, E"),
        "train_unknown_init": ([*train("init"), f"--data_dir={data}", "--init=imagenet"],
                               "--init must be auto, gaussian, glorot, paper, torchvision, timm "
                               "(published weights, downloaded once)"),
        "train_model_dir_is_a_file": (
            [*train("y"), f"--data_dir={data}", f"--model_dir={damaged['file']}"],
            f"--model_dir={damaged['file']} is a file, not a folder"),
    }


def _damaged(root, data, model_dir):
    """A copy of the data whose manifest is cut short, and model dirs with a run.json, a
    summary.json or a model.keras damaged; a file where a folder belongs."""
    found = {name: root / "damaged" / name for name in ("data", "run", "summary", "keras")}
    shutil.copytree(data, found["data"])
    manifest = found["data"] / "dataset_info.json"
    manifest.write_text(manifest.read_text()[:200])
    found["run"].mkdir()
    (found["run"] / "run.json").write_text('{"version": 1, "settings": {')
    for name in ("summary", "keras"):
        shutil.copytree(model_dir, found[name])
    (found["summary"] / "summary.json").write_text("{\"scale\": [40, 4")
    keras_file = found["keras"] / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:5000])
    found["file"] = root / "damaged" / "a_file"
    found["file"].write_text("not a folder")
    return found


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Runs every case at once; returns {case: (command, expected text, process result)}."""
    root = tmp_path_factory.mktemp("cli_errors")
    data, _ = write_shards(root, train_per_class=2, val_per_class=1, size_range=(40, 50))
    model_dir = root / "model"
    model_dir.mkdir()
    vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125,
                        head=vgg_keras.Head(fc_units=8)).save(
        model_dir / "model.keras")
    (model_dir / "summary.json").write_text(json.dumps({"scale": [40, 40]}))
    empty = root / "empty"
    empty.mkdir()
    cases = _cases(root, data, model_dir, empty)
    cases["verbose"] = (["vgg-describe", "--configs=F", "--verbose"], "unknown VGG configuration")
    # A bug: a ValueError raised inside the training loop, not by a check of the user's input.
    (root / "bug.py").write_text(BUG)
    cases["bug"] = ([str(root / "bug.py"), "--config=A", "--width=0.125", "--fc_units=16",
                     f"--crop_size={CROP}", "--scale=36", "--batch_size=4", "--train_steps=2",
                     "--distribution_strategy=one_device", f"--data_dir={data}",
                     f"--model_dir={root / 'runs' / 'bug'}"], "an internal inconsistency")
    offline = dict(os.environ, HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="1")
    processes = {name: programs.start(
        [sys.executable, *command] if command[0].endswith(".py") else
        [BIN / command[0], *command[1:]], cwd=root, env=offline)
        for name, (command, _) in cases.items()}
    results = {}
    for name, process in processes.items():
        result = process.wait(timeout=900)
        results[name] = (cases[name][0], cases[name][1], result.returncode, result.stderr)
    return results


CASES = ["train_label_offset", "evaluate_label_offset", "train_missing_data_dir",
         "train_empty_data_dir", "evaluate_class_counts", "train_truncated_shard",
         "train_corrupt_record",
         "evaluate_model_dir_without_model", "export_model_dir_without_model",
         "predict_export_without_versions", "describe_unknown_config", "convert_missing_folder",
         "train_unknown_scheme", "predict_unknown_scheme", "train_tpu_with_local_paths",
         "train_without_model_dir", "evaluate_without_flags", "export_without_flags",
         "predict_without_flags", "convert_without_flags", "data_service_bad_port",
         "train_damaged_manifest", "train_damaged_run_json", "evaluate_damaged_summary",
         "evaluate_truncated_keras_file", "train_model_dir_is_a_file",
         "export_published_weights_not_cached", "train_published_weights_not_cached",
         "export_weights_of_no_such_net", "train_unknown_init"]


@pytest.mark.parametrize("case", CASES)
def test_a_users_error_is_one_line_and_exit_status_1(ran, case):
    command, expected, returncode, stderr = ran[case]
    assert returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith(f"{command[0]}: ") and expected in lines[-1], lines[-1]
    assert not [line for line in lines if LIBRARY_LINE.match(line)], stderr[-3000:]


def test_a_bug_keeps_its_traceback_and_asks_to_be_reported(ran):
    _, _, returncode, stderr = ran["bug"]
    assert returncode == 2, stderr[-3000:]
    assert "Traceback (most recent call last)" in stderr
    assert "ValueError: an internal inconsistency" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vgg-train: this is a bug in vgg_keras, not something you did: "
                           "please report it") and "--train_steps=2" in last, last


def test_verbose_adds_the_traceback(ran):
    _, _, returncode, stderr = ran["verbose"]
    assert returncode == 1 and "Traceback (most recent call last)" in stderr
    assert stderr.strip().splitlines()[-1].startswith("vgg-describe: unknown VGG configuration")
