"""The one dataset reader: our manifest, slim's bare shards, tfds's metadata (told apart from ours
by content), patterns and lists; class names by label offset; clear errors."""

import shutil

import pytest

from pipelines import dataset_info
from pipelines import imagenet_labels
from tests.conftest import write_shards
from tests.conftest import write_tfds_metadata


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("info"), train_per_class=3, val_per_class=2,
                        size_range=(40, 50))


def _copy(data, folder, pattern):
    folder.mkdir(parents=True, exist_ok=True)
    for shard in data.glob(pattern):
        shutil.copy(shard, folder / shard.name)
    return folder


def test_our_manifest(shards):
    data, manifest = shards
    info = dataset_info.read_info(data)
    assert info.format == "vgg" and info.num_classes == 1000 and info.label_offset == 1
    assert info.num_examples == {split: manifest["splits"][split]["num_examples"]
                                 for split in ("train", "validation")}
    assert [p.rsplit("/", 1)[1] for p in info.split_files("train")] == [
        f"train-0000{i}-of-00004" for i in range(4)]
    assert info.split_files("val") == info.split_files("validation")
    assert sorted(info.shards["train"]) == [f"train-0000{i}-of-00004" for i in range(4)]
    assert info.record_keys["encoded"] == "image/encoded"
    assert dataset_info.read_manifest(data) == manifest


def test_class_names_follow_the_label_offset(shards):
    data, manifest = shards
    info = dataset_info.read_info(data)
    synsets, names = info.class_names(4, 1)
    assert synsets == manifest["labels"][:4] and names == manifest["label_text"][:4]
    assert names[0].startswith("tench")
    synsets, names = info.class_names(5, 0)  # label 0 is reserved in our shards
    assert synsets[0] == names[0] == "background" and synsets[1:] == manifest["labels"][:4]
    with pytest.raises(ValueError, match="output 1000 of 1001 has no class"):
        info.class_names(1001, 1)


def test_bare_shards_are_slims(shards, tmp_path):
    data, _ = shards
    folder = _copy(data, tmp_path, "validation-*")
    info = dataset_info.read_info(folder)
    assert info.format == "slim" and info.num_classes is None and info.num_examples == {}
    assert info.label_offset == 1 and dataset_info.read_manifest(folder) is None
    synsets, names = info.class_names(1000, 1)  # no label map: 1,000 outputs are ImageNet's
    assert synsets == list(imagenet_labels.synsets()) and len(set(names)) == 1000
    assert info.class_names(7, 1) is None
    assert dataset_info.count_records(info.split_files("validation")) == 8


def test_tfds_metadata_is_told_apart_from_ours_by_content(shards, tmp_path):
    """A tfds folder's dataset_info.json has our manifest's name: its content decides."""
    data, _ = shards
    folder = _copy(data, tmp_path / "imagenet2012" / "5.1.0", "validation-*")
    for shard in sorted(folder.glob("validation-*")):
        shard.rename(folder / shard.name.replace("validation-", "imagenet2012-validation."
                                                 "tfrecord-"))
    write_tfds_metadata(folder, {"train": [640, 641], "validation": [4, 4]},
                        imagenet_labels.synsets())
    info = dataset_info.read_info(folder)
    assert info.format == "tfds" and info.label_offset == 0 and info.num_classes == 1000
    assert info.num_examples == {"train": 1281, "validation": 8}
    assert info.synsets[0] == "n01440764" and info.names[0].startswith("tench")
    assert len(info.split_files("validation")) == 2
    with pytest.raises(FileNotFoundError, match="no train shards in .* found splits: "
                                                "\\['validation'\\]"):
        info.split_files("train")


def test_patterns_and_lists(shards):
    data, _ = shards
    pattern = dataset_info.read_info(str(data / "train-0000[01]-of-00004"))
    assert len(pattern.split_files("train")) == 2 and pattern.num_classes == 1000
    listed = dataset_info.read_info([data / "validation-00001-of-00002"])
    assert listed.split_files("validation") == [str(data / "validation-00001-of-00002")]
    assert dataset_info.read_info(listed) is listed


def test_no_shards_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards found in .*\\(expected "
                                                "train-\\?\\?\\?\\?\\?-of-\\?\\?\\?\\?\\?"):
        dataset_info.read_info(tmp_path)
