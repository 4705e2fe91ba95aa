"""Every error a user can cause ends each command with one line naming the problem and the fix,
and exit status 1, with no traceback; ``--verbose`` adds the traceback. The commands run at once,
each in a process of its own (tests/programs.py)."""

import json
import pathlib
import shutil
import sys

import pytest

import vgg_keras
from tests import programs
from tests.conftest import write_shards

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

BIN = pathlib.Path(sys.executable).parent
CROP = 32
# vgg-train with a bug planted in its loop's control (monkeypatched): any ValueError there is ours.
BUG = """
import sys
from vgg_keras.training import loop

def broken(*arguments):
    raise ValueError("an internal inconsistency")

loop.plan_chunk = broken
sys.argv[0] = "vgg-train"
from vgg_keras.cli import train
train.run()
"""


def _cases(root, data, model_dir, empty):
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
            f"no Keras model at {empty / 'model.keras'}: give a vgg-train model dir whose run "
            "has finished"),
        "export_model_dir_without_model": (
            ["vgg-export", f"--model={empty}", f"--export_dir={root / 'exports'}"],
            f"no Keras model at {empty / 'model.keras'}"),
        "predict_export_without_versions": (
            ["vgg-predict", f"--model={empty}", "cat.jpg"],
            f"{empty} is neither a SavedModel nor a folder of numbered versions: give an export"),
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
    }


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Runs every case at once; returns {case: (command, expected text, process result)}."""
    root = tmp_path_factory.mktemp("cli_errors")
    data, _ = write_shards(root, train_per_class=2, val_per_class=1, size_range=(40, 50))
    model_dir = root / "model"
    model_dir.mkdir()
    vgg_keras.build_vgg("A", 4, input_shape=(CROP, CROP, 3), width=0.125, fc_units=8).save(
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
    processes = {name: programs.start(
        [sys.executable, *command] if command[0].endswith(".py") else
        [BIN / command[0], *command[1:]], cwd=root) for name, (command, _) in cases.items()}
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
         "train_unknown_scheme", "predict_unknown_scheme", "train_tpu_with_local_paths"]


@pytest.mark.parametrize("case", CASES)
def test_a_users_error_is_one_line_and_exit_status_1(ran, case):
    command, expected, returncode, stderr = ran[case]
    assert returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{command[0]}: ") and expected in last, last


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
