"""A model dir holds one run: a command that would change it is refused before anything is
written, naming each setting, unless --allow_changed_settings makes the change deliberate;
settings that change only how a run runs may change; the data is compared by content."""

import json
import pathlib
import shutil
import sys

import pytest

from tests import programs
from tests.conftest import TINY_FLAGS
from tests.conftest import TINY_RUN as TINY
from tests.conftest import write_shards
from vgg_keras.training import loop
from vgg_keras.training import run_config
from vgg_keras.training import run_identity

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("identity"), train_per_class=8, val_per_class=2,
                        size_range=(40, 56))[0]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A model dir holding a finished one-epoch run (2 steps of 16)."""
    model_dir = tmp_path_factory.mktemp("run")
    loop.train(_config(data, model_dir))
    return model_dir


def _config(data, model_dir, **overrides):
    arguments = dict(TINY, data_dir=str(data), model_dir=str(model_dir), train_epochs=1,
                     distribution_strategy="one_device")
    arguments.update(overrides)
    return run_config.TrainConfig(**arguments)


def _tree(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_run_json_records_the_defining_settings_and_the_data(trained, data):
    recorded = json.loads((trained / "run.json").read_text())
    assert recorded["settings"]["batch_size"] == 16 and recorded["settings"]["scale"] == [36, 48]
    assert not set(run_identity.CHANGEABLE) & set(recorded["settings"])
    assert recorded["data"]["format"] == "vgg" and recorded["data"]["shards"] == 6
    assert recorded["data"]["num_examples"] == {"train": 32, "validation": 8}
    assert recorded["changes"] == []


def test_a_changed_batch_size_is_refused_naming_it_and_the_model_dir_is_untouched(trained,
                                                                                  data):
    before = _tree(trained)
    flags = [*TINY_FLAGS, f"--data_dir={data}", f"--model_dir={trained}", "--train_epochs=1",
             "--distribution_strategy=one_device"]
    result = programs.run([sys.executable, "-m", "tools.train", *flags, "--batch_size=8"],
                          cwd=ROOT, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()[-3:]  # after TensorFlow's start-up lines
    assert lines == [
        f"vgg-train: --model_dir={trained} holds a run with other settings (its run.json):",
        "  --batch_size=16 there, --batch_size=8 now",
        "Give a new --model_dir to start another run, or --allow_changed_settings to change "
        "this one deliberately (recorded in its run.json and the log)."]
    assert "Traceback" not in result.stderr
    assert _tree(trained) == before


def test_every_differing_setting_is_named(trained, data):
    with pytest.raises(run_identity.ChangedSettings) as refused:
        loop.train(_config(data, trained, learning_rate=0.02, scale=(40, 48), train_epochs=2,
                           lr_schedule="cosine", deterministic=True))
    assert str(refused.value).splitlines()[1:-1] == [
        "  --train_epochs=1 there, --train_epochs=2 now",
        "  --learning_rate=0.002 there, --learning_rate=0.02 now",
        "  --lr_schedule=plateau there, --lr_schedule=cosine now",
        "  --scale=36,48 there, --scale=40,48 now",
        "  --nodeterministic there, --deterministic now"]


def test_settings_of_how_a_run_runs_may_change(trained, data):
    summary = loop.train(_config(data, trained, backup_steps=7, steps_per_execution=2,
                                 progress="live", skip_corrupt=True, verify_shards=True))
    assert summary["steps"] == 2  # accepted: a finished run, nothing to do


def test_the_data_is_compared_by_content_not_path(trained, data, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert loop.train(_config(moved, trained))["steps"] == 2  # the same run: finished
    other = write_shards(tmp_path / "other", train_per_class=9, val_per_class=2,
                         size_range=(40, 56))[0]
    with pytest.raises(run_identity.ChangedSettings, match=r"(?m)^  data vgg \(32 train, 8 "
                       r"validation; 6 shards, names and sizes sha256 \w{12}\) there, data vgg "
                       r"\(36 train, 8 validation;"):
        loop.train(_config(other, trained))


def test_allow_changed_settings_lets_a_change_through_and_records_it(data, tmp_path, capfd):
    loop.train(_config(data, tmp_path))
    capfd.readouterr()
    summary = loop.train(_config(data, tmp_path, train_epochs=2, learning_rate=0.001,
                                 allow_changed_settings=True))
    out = capfd.readouterr().out
    assert summary["steps"] == 4 and summary["resumed_from_step"] == 2
    assert (f"settings changed deliberately (--allow_changed_settings), recorded in "
            f"{tmp_path / 'run.json'}: --train_epochs=1 → --train_epochs=2; "
            "--learning_rate=0.002 → --learning_rate=0.001") in out
    assert "resumed at step 2 from checkpoints/latest/ (epoch 1)" in out
    recorded = json.loads((tmp_path / "run.json").read_text())
    assert recorded["settings"]["train_epochs"] == 2
    assert recorded["changes"][0]["settings"] == {
        "train_epochs": {"there": 1, "now": 2}, "learning_rate": {"there": 0.002, "now": 0.001}}
    # The changed run is now the run: the same command again is not refused.
    assert loop.train(_config(data, tmp_path, train_epochs=2, learning_rate=0.001))["steps"] == 4


def test_a_run_that_never_saved_a_checkpoint_may_start_over(data, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(
        {"version": 1, "settings": {"batch_size": 99}, "data": {}, "changes": []}))
    assert loop.train(_config(data, tmp_path))["resumed_from_step"] == 0
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["batch_size"] == 16
