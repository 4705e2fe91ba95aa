"""Damaged shards, every kind, through both routes: sizes known (our manifest: checked before
reading) and unknown (slim's shards: every record accounted for). Each either stops with an
error naming the shard, or with skip_corrupt is left out or skipped, counted and logged; a
record's CRC failure, which TensorFlow reports without a file name, is traced to its shard."""

import os
import pathlib
import shutil
import sys
import textwrap

import pytest
import tensorflow as tf

from pipelines import dataset_info
from pipelines import inputs
from pipelines import shard_integrity
from tests import programs
from tests.conftest import write_shards

ROOT = pathlib.Path(__file__).resolve().parents[1]
VICTIM = "train-00001-of-00004"
DAMAGES = {
    # TensorFlow: "truncated record at N" (a cut inside a record).
    "truncated": lambda content: content[: len(content) * 2 // 3],
    # TensorFlow reads this one silently, as a shorter file: a cut at a record boundary.
    "cut_at_a_record": lambda content: content[:_first_record_end(content)],
    # TensorFlow: "corrupted record at N" (the record's CRC).
    "flipped_byte": lambda content: content[:3000] + bytes([content[3000] ^ 0xFF]) +
    content[3001:],
}


def _first_record_end(content):
    length = int.from_bytes(content[:8], "little")
    return 8 + 4 + length + 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("integrity"), train_per_class=8,
                        val_per_class=2, size_range=(56, 90))


def _copy(data, folder, damage, manifest=True):
    folder.mkdir(parents=True)
    for path in data.iterdir():
        if path.is_file() and (manifest or path.name != "dataset_info.json"):
            shutil.copy(path, folder / path.name)
    victim = folder / VICTIM
    victim.write_bytes(DAMAGES[damage](victim.read_bytes()))
    return folder, victim


def _read_all(data, corrupt_counter=None, **overrides):
    arguments = dict(batch_size=1, scale=(56, 72), crop_size=48, repeat=False, seed=1,
                     deterministic=True, num_classes=1000)
    arguments.update(overrides)
    return sum(int(x.shape[0]) for x, _ in inputs.make_train_dataset(
        data, inputs.InputConfig(**arguments), corrupt_counter=corrupt_counter))


def test_tensorflow_names_no_file_and_misses_a_cut_at_a_record(shards, tmp_path):
    """The facts the design rests on (checked, so that a TensorFlow that changes them is
    noticed)."""
    data, _ = shards
    for damage, expected in (("truncated", "truncated record at"),
                             ("flipped_byte", "corrupted record at")):
        folder, victim = _copy(data, tmp_path / damage, damage)
        with pytest.raises(tf.errors.DataLossError) as raised:
            sum(1 for _ in tf.data.TFRecordDataset(str(victim)))
        assert expected in raised.value.message and VICTIM not in raised.value.message
    folder, victim = _copy(data, tmp_path / "cut", "cut_at_a_record")
    assert sum(1 for _ in tf.data.TFRecordDataset(str(victim))) == 1  # no error at all


@pytest.mark.parametrize("damage", ["truncated", "cut_at_a_record"])
def test_known_sizes_refuse_a_short_shard_before_reading(shards, tmp_path, damage):
    data, manifest = shards
    folder, victim = _copy(data, tmp_path / "data", damage)
    size = os.path.getsize(victim)
    expected = next(s["size_bytes"] for s in manifest["splits"]["train"]["shards"]
                    if s["file"] == VICTIM)
    with pytest.raises(ValueError, match=f"shard {victim} is {size:,} bytes, its manifest says "
                                         f"{expected:,}: it is truncated or was replaced: "
                                         "convert it again"):
        inputs.make_train_dataset(folder, inputs.InputConfig(batch_size=1, scale=(56, 72),
                                                             crop_size=48))
    counter = shard_integrity.make_corrupt_counter()
    read = _read_all(folder, skip_corrupt=True, corrupt_counter=counter)
    in_victim = next(s["num_examples"] for s in manifest["splits"]["train"]["shards"]
                     if s["file"] == VICTIM)
    assert int(counter.numpy()) == 1
    assert read == manifest["splits"]["train"]["num_examples"] - in_victim


def test_known_sizes_trace_a_failed_crc_to_its_shard(shards, tmp_path):
    data, manifest = shards
    folder, victim = _copy(data, tmp_path / "data", "flipped_byte")
    with pytest.raises(tf.errors.DataLossError) as raised:
        _read_all(folder)
    info = dataset_info.read_info(folder)
    error = shard_integrity.explain(raised.value, info.split_files("train"),
                                    info.expected_shards(), show_progress=False)
    assert str(error).startswith(f"shard {victim} has another sha256 than its manifest "
                                 "records: it is corrupt or was replaced: convert it again")
    with pytest.raises(ValueError, match=f"shard {victim} has another sha256"):
        inputs.make_train_dataset(folder, inputs.InputConfig(
            batch_size=1, scale=(56, 72), crop_size=48, verify_shards=True))  # before reading
    counter = shard_integrity.make_corrupt_counter()
    read = _read_all(folder, skip_corrupt=True, corrupt_counter=counter)
    assert int(counter.numpy()) == 1  # its rest skipped and counted
    assert read < manifest["splits"]["train"]["num_examples"]


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte"])
def test_unknown_sizes_account_for_every_record(shards, tmp_path, damage):
    data, manifest = shards
    folder, victim = _copy(data, tmp_path / "slim", damage, manifest=False)
    assert dataset_info.read_info(folder).format == "slim"
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        _read_all(folder)
    assert f"corrupt or truncated TFRecord shard {victim}: only" in str(raised.value)
    counter = shard_integrity.make_corrupt_counter()
    read = _read_all(folder, skip_corrupt=True, corrupt_counter=counter)
    assert int(counter.numpy()) == 1
    assert 0 < read < manifest["splits"]["train"]["num_examples"]


def test_a_cut_at_a_record_without_metadata_is_what_no_reader_can_see(shards, tmp_path):
    """Without sizes, a shard cut at a record boundary reads as a complete, shorter file:
    documented (BUILD.md), and the reason our manifest records sizes."""
    data, manifest = shards
    folder, _ = _copy(data, tmp_path / "slim", "cut_at_a_record", manifest=False)
    in_victim = next(s["num_examples"] for s in manifest["splits"]["train"]["shards"]
                     if s["file"] == VICTIM)
    assert _read_all(folder) == manifest["splits"]["train"]["num_examples"] - in_victim + 1


@pytest.mark.slow
def test_a_left_out_shard_is_logged_on_standard_error(shards, tmp_path):
    data, _ = shards
    folder, victim = _copy(data, tmp_path / "data", "truncated")
    script = tmp_path / "read.py"
    script.write_text(textwrap.dedent(f"""
        from pipelines import inputs
        dataset = inputs.make_train_dataset({str(folder)!r}, inputs.InputConfig(
            batch_size=1, scale=(56, 72), crop_size=48, repeat=False, skip_corrupt=True))
        print(sum(1 for _ in dataset))
    """))
    result = programs.run([sys.executable, str(script)], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"WARNING: left out shard {victim}: it is " in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "read.py"]  # no stray file


def test_the_manifest_records_every_shards_size(shards):
    data, manifest = shards
    for split in ("train", "validation"):
        for shard in manifest["splits"][split]["shards"]:
            assert shard["size_bytes"] == os.path.getsize(data / shard["file"])
