"""Start-up at ImageNet scale reads metadata, not images: an ImageNet-shaped folder (1,024 + 128
shards, a manifest claiming 1,281,167 + 50,000 images, a few real records) and a tfds-shaped one
train their first step with the epoch size their metadata states (a count of the records would
find a few dozen); slim's shards without metadata are counted once, cached, or taken from
--train_examples, and the run says which."""

import json
import shutil

import pytest
import tensorflow as tf

from pipelines import imagenet_labels
from pipelines import inputs
from pipelines import schema
from pipelines.foundation import errors
from tests.conftest import write_shards
from tests.conftest import write_tfds_metadata
from vgg_keras.training import data as run_data
from vgg_keras.training import loop
from vgg_keras.training import run_config

IMAGENET = {"train": 1_281_167, "validation": 50_000}
SHARDS = {"train": 1024, "validation": 128}
TINY = dict(config="A", width=0.125, fc_units=16, crop_size=32, scale=(36, 40), batch_size=4,
            train_steps=1, init="glorot", seed=0, progress="epochs",
            distribution_strategy="one_device")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A few real shards (4 ImageNet classes, labels 1..4) to take records from."""
    return write_shards(tmp_path_factory.mktemp("real"), train_per_class=3, val_per_class=1,
                        size_range=(40, 48), train_shards=2, validation_shards=1)[0]


def _records(folder, split):
    return [raw.numpy() for shard in sorted(folder.glob(f"{split}-*"))
            for raw in tf.data.TFRecordDataset(str(shard))]


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _imagenet_shaped(root, real):
    """Our layout at ImageNet's size: the real records in the first shards, the other shards
    empty, a manifest claiming ImageNet's counts."""
    root.mkdir()
    splits = {}
    for split, count in SHARDS.items():
        records = _records(real, split)
        shards = []
        for index in range(count):
            name = schema.shard_name(split, index, count)
            _write(root / name, records[index * 4:(index + 1) * 4])
            shards.append({"file": name, "num_examples": IMAGENET[split] // count,
                           "sha256": ""})
        splits[split] = {"num_examples": IMAGENET[split], "shards": shards}
    (root / schema.MANIFEST).write_text(json.dumps({
        "num_classes": 1000, "labels": list(imagenet_labels.synsets()),
        "label_text": list(imagenet_labels.synset_names()), "label_offset": 1,
        "splits": splits}))
    return root


def _tfds_shaped(root, real):
    """tfds's imagenet2012 layout: its own dataset_info.json (our manifest's name), its keys
    and 0-based labels."""
    folder = root / "imagenet2012" / "5.1.0"
    folder.mkdir(parents=True)
    for split, count in SHARDS.items():
        examples = []
        for raw in _records(real, split):
            features = tf.train.Example.FromString(raw).features.feature
            examples.append(tf.train.Example(features=tf.train.Features(feature={
                "image": features[schema.ENCODED],
                "label": tf.train.Feature(int64_list=tf.train.Int64List(
                    value=[features[schema.LABEL].int64_list.value[0] - 1])),
                "file_name": features[schema.FILENAME]})).SerializeToString())
        for index in range(count):
            _write(folder / f"imagenet2012-{split}.tfrecord-{index:05d}-of-{count:05d}",
                   examples[index * 4:(index + 1) * 4])
    write_tfds_metadata(folder, {split: [IMAGENET[split] // SHARDS[split] + (
        i < IMAGENET[split] % SHARDS[split]) for i in range(SHARDS[split])] for split in SHARDS},
                        imagenet_labels.synsets())
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["imagenet_shaped", "tfds_shaped"])
def test_start_up_takes_the_epoch_size_from_metadata(real, tmp_path, capsys, layout):
    make = _imagenet_shaped if layout == "imagenet_shaped" else _tfds_shaped
    data = make(tmp_path / "data", real)
    summary = loop.train(run_config.TrainConfig(data_dir=str(data),
                                                model_dir=str(tmp_path / "model"), **TINY))
    assert summary["train_examples"] == IMAGENET["train"]  # counted, it would be 12
    assert summary["num_classes"] == 1000 and summary["steps"] == 1
    assert summary["label_offset"] == (1 if layout == "imagenet_shaped" else 0)
    recipe = capsys.readouterr().out.splitlines()[0]
    assert recipe.startswith("recipe: config A; global batch 4 (4 per replica × 1 replicas")
    assert "1,281,167 training images (from its metadata), 1000 classes" in recipe
    assert "320,291 steps per epoch" in recipe
    assert not (tmp_path / "model" / "train_examples.json").exists()


def _slim_copy(real, tmp_path):
    """The shards alone, without the manifest: slim's layout."""
    data = tmp_path / "slim"
    data.mkdir()
    for shard in real.glob("*-of-*"):
        shutil.copy(shard, data / shard.name)
    return data


def test_shards_without_metadata_are_counted_once_then_cached(real, tmp_path, capfd):
    data = _slim_copy(real, tmp_path)
    cfg = run_config.TrainConfig(data_dir=str(data), model_dir=str(tmp_path / "model"),
                                 num_classes=1000, **TINY)
    first = run_data.read_run_data(cfg, show_progress=None)
    cache = tmp_path / "model" / "train_examples.json"
    assert first.num_train == 12 and first.train_examples_from == (
        f"counted once in 2 shards without metadata, cached in {cache}")
    assert "(slim's shards, no metadata): 12 training images (counted once" in first.describe()
    progress = capfd.readouterr().err
    assert "counting training records (no metadata): 2/2 shards (100%)" in progress
    assert "12 records" in progress
    again = run_data.read_run_data(cfg)
    assert again.num_train == 12 and again.train_examples_from.startswith("counted before")
    given = run_data.read_run_data(run_config.TrainConfig(
        **dict(vars(cfg), train_examples=1_281_167)))
    assert (given.num_train, given.train_examples_from) == (1_281_167,
                                                            "given by --train_examples")
    # Other shards under the same name: the cache no longer fits, and they are counted again.
    shard = data / "train-00001-of-00002"
    shard.write_bytes(shard.read_bytes() + shard.read_bytes())
    assert run_data.read_run_data(cfg).num_train == 18


def test_counted_slim_shards_are_read_by_size_as_ours(real, tmp_path):
    """Counting reads every record through TensorFlow's checks: the shards are checked once,
    their sizes recorded, and the input then compares sizes before reading, as for ours."""
    data = _slim_copy(real, tmp_path)
    cfg = run_config.TrainConfig(data_dir=str(data), model_dir=str(tmp_path / "model"),
                                 num_classes=1000, **TINY)
    for _ in range(2):  # counted, then from the cache
        checked = run_data.read_run_data(cfg).info
        assert checked.format == "slim"
        assert {name: entry["size_bytes"] for name, entry in checked.shards["train"].items()} \
            == {shard.name: shard.stat().st_size for shard in data.glob("train-*")}
    # A shard cut after the count: refused by name before reading, as ours are.
    victim = data / "train-00001-of-00002"
    size = victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"shard {victim} is {size - 100:,} bytes, the count "
                                         f"of its records says {size:,}"):
        inputs.make_train_dataset(checked, inputs.InputConfig(batch_size=4, scale=(36, 40),
                                                              crop_size=32, num_classes=1000))
    # The cache no longer fits the cut shard: it is counted again, and the cut found by name.
    with pytest.raises(errors.UserError, match=f"shard {victim} is damaged \\(.*\\): convert it "
                                               "again, or pass --skip_corrupt"):
        run_data.read_run_data(cfg)
    skipped = run_data.read_run_data(run_config.TrainConfig(**dict(vars(cfg),
                                                                  skip_corrupt=True)))
    assert skipped.num_train == 6 and "train" not in skipped.info.shards  # accounted instead


def test_no_class_count_or_too_small_a_split_is_refused(real, tmp_path):
    data = _slim_copy(real, tmp_path)
    cfg = run_config.TrainConfig(data_dir=str(data), model_dir=str(tmp_path / "m"), **TINY)
    with pytest.raises(ValueError, match="--num_classes is needed: the shards in .* carry no "
                                         "metadata"):
        run_data.read_run_data(cfg)
    with pytest.raises(ValueError, match="has 12 images, fewer than one batch of "
                                         "--batch_size=16: lower --batch_size"):
        run_data.read_run_data(run_config.TrainConfig(**dict(vars(cfg), num_classes=4,
                                                             batch_size=16)))
