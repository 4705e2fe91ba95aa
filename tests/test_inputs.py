"""Training and evaluation datasets: formats, labels, sharding, determinism, corrupt shards."""

import pathlib
import shutil
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from pipelines import dataset_info
from pipelines import inputs
from pipelines import schema
from pipelines import synthetic
from tests import programs
from tests.conftest import write_shards

CROP, SCALE = 48, (56, 72)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("inputs"), train_per_class=8, val_per_class=3,
                        size_range=(56, 90))


def _all_labels(manifest, split):
    labels = []
    for synset, count in manifest["splits"][split]["per_class"].items():
        labels += [manifest["labels"].index(synset)] * count
    return sorted(labels)


def _train(data, input_context=None, skip_batches=0, **overrides):
    arguments = dict(batch_size=4, scale=SCALE, crop_size=CROP, deterministic=True, seed=3)
    arguments.update(overrides)
    return inputs.make_train_dataset(data, inputs.InputConfig(**arguments),
                                     input_context=input_context, skip_batches=skip_batches)


def test_the_reader_reads_each_pipelines_share_of_the_shards_once(shards):
    data, manifest = shards
    info = dataset_info.read_info(data)
    files = info.split_files("train")
    assert inputs.pipeline_files(files) == (list(files), None)
    shares = [inputs.pipeline_files(files, tf.distribute.InputContext(2, index, 2))[0]
              for index in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(files) and not set(shares[0]) & set(shares[1])
    # Fewer shards than pipelines: each reads them all and keeps every 5th record of its own.
    assert inputs.pipeline_files(files, tf.distribute.InputContext(5, 3, 5)) == (
        list(files), (5, 3))
    counts = [sum(1 for _ in _train(data, tf.distribute.InputContext(5, index, 5),
                                    batch_size=5, repeat=False)) for index in range(5)]
    assert sum(counts) == manifest["splits"]["train"]["num_examples"]  # each image once
    for expected in (info.expected_shards(), {}):  # sizes known, or every record accounted for
        paths = [path.numpy().decode() for _, path in inputs.read_records(files, expected)]
        assert len(paths) == manifest["splits"]["train"]["num_examples"]
        assert sorted(set(paths)) == sorted(files)


def test_the_parser_gives_image_label_and_name_eagerly_and_in_tf_data(shards):
    data, _ = shards
    info = dataset_info.read_info(data)
    parse = inputs.parser_of(info, num_classes=4)  # our labels 1..4, offset 1
    record, path = next(iter(inputs.read_records(info.split_files("validation")[:1], {})))
    stored = tf.train.Example.FromString(record.numpy()).features.feature
    eager = parse(record, path)
    in_graph = next(iter(tf.data.Dataset.from_tensors((record, path)).map(parse)))
    for encoded, label, name in (eager, in_graph):
        assert encoded.numpy() == stored[schema.ENCODED].bytes_list.value[0]
        assert int(label) == stored[schema.LABEL].int64_list.value[0] - 1
        assert name.numpy() == stored[schema.FILENAME].bytes_list.value[0]


def test_train_batches_and_labels(shards):
    data, manifest = shards
    one_pass = _train(data, repeat=False, batch_size=1)
    labels = sorted(int(y[0]) for _, y in one_pass)
    assert labels == _all_labels(manifest, "train")  # every record once, label − 1
    images, batch_labels = next(iter(_train(data)))
    assert images.shape == (4, CROP, CROP, 3) and images.dtype == tf.uint8
    assert batch_labels.dtype == tf.int32


def test_deterministic_mode_repeats_itself(shards):
    data, _ = shards
    first = [x.numpy() for x, _ in _train(data).take(3)]
    second = [x.numpy() for x, _ in _train(data).take(3)]
    other = [x.numpy() for x, _ in _train(data, seed=4).take(3)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_fixed_and_jittered_scale_arguments(shards):
    data, _ = shards
    assert next(iter(_train(data, scale=56)))[0].shape == (4, CROP, CROP, 3)
    with pytest.raises(ValueError, match="crop_size 48 <= Smin <= Smax"):
        _train(data, scale=(40, 60))
    with pytest.raises(ValueError, match="crop_size 48 <= Smin <= Smax"):
        _train(data, scale=(80, 60))


def test_two_input_pipelines_cover_every_record_once(shards):
    data, manifest = shards
    names = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        found = [n.decode() for _, _, batch in inputs.make_eval_dataset(
            data, test_scale=56, crop_size=CROP, split="train", input_context=context)
                 for n in batch.numpy()]
        assert found
        names.append(found)
    assert not set(names[0]) & set(names[1])
    assert len(names[0]) + len(names[1]) == manifest["splits"]["train"]["num_examples"]
    # The training input with the same contexts: per-replica batches, disjoint shards.
    counts = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(2, pipeline, 2)
        batches = list(_train(data, batch_size=4, repeat=False, input_context=context))
        assert all(x.shape[0] == 2 for x, _ in batches)  # global 4 over 2 replicas
        counts.append(sum(int(x.shape[0]) for x, _ in batches))
    assert sum(counts) <= 32 and sum(counts) >= 32 - 2 * 1


def test_batch_not_divisible_by_replicas(shards):
    with pytest.raises(ValueError, match="global_batch_size.* 5 is not divisible by "
                                         "`num_replicas_in_sync` 2"):
        _train(shards[0], batch_size=5, input_context=tf.distribute.InputContext(1, 0, 2))


def test_num_classes_from_manifest_or_required(shards, tmp_path):
    data, _ = shards
    info = dataset_info.read_info(data)
    assert (info.format, info.num_classes) == ("vgg", 1000)
    for shard in data.glob("train-*"):
        shutil.copy(shard, tmp_path / shard.name)
    with pytest.raises(ValueError, match="num_classes is required: no dataset_info.json"):
        _train(tmp_path)
    assert next(iter(_train(tmp_path, num_classes=1000)))[0].shape[0] == 4


def test_label_offset_error_names_the_shard(shards):
    data, _ = shards
    # Our labels are 1..4 here (the first ImageNet synsets); offset 0 with 4 classes: label 4.
    dataset = _train(data, label_offset=0, num_classes=4, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        for _ in dataset:
            pass
    message = str(error.value)
    assert "is outside [0, 4) after label_offset=0" in message
    assert "train-0000" in message and "of-00004" in message


def test_eval_modes(shards):
    data, manifest = shards
    total = manifest["splits"]["validation"]["num_examples"]
    center = list(inputs.make_eval_dataset(data, mode=inputs.CENTER_CROPS, test_scale=56,
                                           crop_size=CROP, batch_size=5))
    names = [n for _, _, batch in center for n in batch.numpy()]
    assert len(names) == total and center[0][0].shape[1:] == (CROP, CROP, 3)
    again = [n for _, _, batch in inputs.make_eval_dataset(data, mode=inputs.CENTER_CROPS,
                                                           test_scale=56, crop_size=CROP)
             for n in batch.numpy()]
    assert names == again  # file order, deterministic
    records = []
    for shard in sorted(data.glob("validation-*")):
        for raw in tf.data.TFRecordDataset(str(shard)):
            records.append(tf.train.Example.FromString(raw.numpy()))
    assert names == [r.features.feature[schema.FILENAME].bytes_list.value[0] for r in records]
    dense = list(inputs.make_eval_dataset(data, mode=inputs.WHOLE_IMAGES, test_scale=64))
    assert len(dense) == total
    for image, label, _ in dense:
        assert image.shape[0] == 1 and min(image.shape[1:3]) == 64 and label.shape == (1,)
    with pytest.raises(ValueError, match="test scale Q=40 is smaller than the 48 crop"):
        inputs.make_eval_dataset(data, test_scale=40, crop_size=CROP)
    with pytest.raises(ValueError, match="mode must be one of"):
        inputs.make_eval_dataset(data, mode="tencrop")


def _write_tfds_dataset(data_dir):
    """A genuine tfds-prepared folder (tfds's own builder and writer), nothing downloaded."""
    import tensorflow_datasets as tfds

    class Imagenet2012(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("5.1.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=["n01440764", "n01443537", "n01484850"]),
                "file_name": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9), "validation": self._generate_examples(3)}

        def _generate_examples(self, count):
            rng = np.random.default_rng(count)
            for index in range(count):
                pixels = synthetic.draw_scene(index % 3, rng, 60, 70)
                yield f"{count}_{index}", {"image": pixels, "label": index % 3,
                                           "file_name": f"img_{count}_{index}.JPEG"}

    builder = Imagenet2012(data_dir=str(data_dir))
    builder.download_and_prepare()
    return pathlib.Path(builder.data_dir)


def test_tfds_prepared_folder(tmp_path):
    folder = _write_tfds_dataset(tmp_path)
    info = dataset_info.read_info(folder)
    assert info.format == "tfds" and info.num_classes == 3
    assert len(info.split_files("train")) == 1 and info.num_examples == {"train": 9,
                                                                         "validation": 3}
    assert info.synsets == ("n01440764", "n01443537", "n01484850")
    assert info.names[0].startswith("tench")
    labels = sorted(int(y[0]) for _, y in _train(folder, repeat=False, batch_size=1))
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # tfds labels are 0-based: offset 0
    _, label, names = next(iter(inputs.make_eval_dataset(folder, test_scale=56, crop_size=CROP,
                                                         batch_size=3)))
    assert sorted(n.decode() for n in names.numpy()) == [f"img_3_{i}.JPEG" for i in range(3)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        for _ in _train(folder, repeat=False, label_offset=1):
            pass


@pytest.mark.slow
def test_mirrored_strategy_feeds_each_replica(shards, tmp_path):
    """distribute_datasets_from_function on 2 logical CPU devices: each replica gets half of
    the global batch (logical devices must be set before TensorFlow starts: a subprocess)."""
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pipelines import inputs
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = strategy.distribute_datasets_from_function(
            lambda context: inputs.make_train_dataset(
                {str(shards[0])!r}, inputs.InputConfig(batch_size=6, scale=(56, 72),
                                                       crop_size=48, seed=1, deterministic=True),
                input_context=context))
        images, labels = next(iter(dataset))
        shapes = [tuple(t.shape) for t in strategy.experimental_local_results(images)]
        print(strategy.num_replicas_in_sync, shapes)
    """))
    root = pathlib.Path(__file__).resolve().parents[1]
    result = programs.run([sys.executable, str(script)], cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "2 [(3, 48, 48, 3), (3, 48, 48, 3)]"


def test_a_deterministic_pipeline_ignores_the_programs_global_seed(shards):
    """A program that set TensorFlow's global seed gets the batches of one that did not: the
    run is its --seed's alone, and a run resumed by another program continues it."""
    data, _ = shards
    plain = [x.numpy() for x, _ in _train(data).take(3)]
    tf.random.set_seed(7)
    try:
        seeded = [x.numpy() for x, _ in _train(data).take(3)]
    finally:
        tf.random.set_seed(None)
    for a, b in zip(plain, seeded, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ra_reps", [1, 3])
def test_skip_batches_resumes_a_deterministic_pipeline_exactly(shards, ra_reps):
    """With repeated augmentation, 4 batches of 4 are 5 records' 3 copies and 1 of the 6th's:
    the resumed pipeline starts at that record's second copy."""
    data, _ = shards
    full = [(x.numpy(), y.numpy()) for x, y in _train(data, ra_reps=ra_reps).take(7)]
    resumed = [(x.numpy(), y.numpy())
               for x, y in _train(data, skip_batches=4, ra_reps=ra_reps).take(3)]
    for (a, a_labels), (b, b_labels) in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a_labels, b_labels)
