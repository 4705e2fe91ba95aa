"""The converter's guarantees, each proven on files the project's generator writes."""

import collections
import hashlib
import io
import json
import os
import pathlib
import signal
import sys
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf

from pipelines import convert
from pipelines import dataset_info
from pipelines import imagenet_labels
from pipelines import schema
from pipelines import sources
from pipelines import synthetic
from tests import programs
from tests.conftest import LIBRARY_LINE

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARDS = {"train": 3, "validation": 2}
SYNSETS = imagenet_labels.synsets()


def generate(root, layout, size_range=(64, 160), **overrides):
    arguments = dict(layout=layout, synsets=synthetic.DEFAULT_SYNSETS[:5],
                     train_per_class=6, val_per_class=3, seed=7,
                     style=synthetic.ImageStyle(size_range=size_range))
    arguments.update(overrides)
    return synthetic.write_dataset(root, **arguments)


def run_convert(plan, output, **overrides):
    arguments = dict(num_shards=SHARDS, num_workers=1, seed=0)
    arguments.update(overrides)
    return convert.convert(plan, output, **arguments)


BOX_KEYS = (schema.BBOX_XMIN, schema.BBOX_YMIN, schema.BBOX_XMAX, schema.BBOX_YMAX,
            schema.BBOX_LABEL)


def read_records(output, split):
    """Returns every record of a split's shards as a dict (boxes as arrays, every other feature
    as its one value), with the shard it came from; read with protobuf alone."""
    records = []
    for shard in sorted(pathlib.Path(output).glob(schema.shard_pattern(split))):
        for raw in tf.data.TFRecordDataset(str(shard)):
            features = tf.train.Example.FromString(raw.numpy()).features.feature
            record = {}
            for key, feature in features.items():
                values = list(getattr(feature, feature.WhichOneof("kind")).value)
                if key in BOX_KEYS:
                    record[key] = np.array(values)
                else:
                    assert len(values) == 1, key
                    record[key] = values[0]
            record["shard"] = shard.name
            records.append(record)
    return records


def shard_digests(output):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(output).glob("*-?????-of-?????"))}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("archives")
    files = generate(root, "archives")
    output = root / "out"
    manifest = run_convert(sources.find_imagenet(root), output)
    return root, files, output, manifest


def check_round_trip(files, output, manifest, member_bytes, label_of):
    """Every good or repaired input is one record with its label and file name; good JPEGs
    are byte-identical; every bad input is skipped with its reason; the counts reconcile."""
    by_split = {split: read_records(output, split) for split in manifest["splits"]}
    skipped = {(s["split"], s["path"]): s for s in manifest["skipped"]}
    repaired = {(r["split"], r["path"]): r for r in manifest["repaired"]}
    for split, records in by_split.items():
        found = collections.Counter(r[schema.FILENAME].decode() for r in records)
        assert max(found.values()) == 1, "a file was written twice"
        index = {r[schema.FILENAME].decode(): r for r in records}
        expected = [f for f in files if f.split == split]
        for generated in expected:
            name = os.path.basename(generated.path)
            if generated.kind in synthetic.SKIPPED_KINDS:
                assert name not in index
                assert (split, generated.path) in skipped, generated
                continue
            record = index[name]
            assert record[schema.LABEL] == label_of(generated.synset)
            assert record[schema.SYNSET].decode() == generated.synset
            image = tf.io.decode_jpeg(record[schema.ENCODED], channels=3)
            assert image.shape == (record[schema.HEIGHT], record[schema.WIDTH], 3)
            tf.image.decode_and_crop_jpeg(record[schema.ENCODED], [0, 0, 8, 8], channels=3)
            if generated.kind == synthetic.GOOD:
                assert record[schema.ENCODED] == member_bytes(generated)
                assert (split, generated.path) not in repaired
            else:
                assert (split, generated.path) in repaired
        info = manifest["splits"][split]
        assert info["num_examples"] == len(records)
        assert info["num_inputs"] == len(expected) == info["num_examples"] + info["num_skipped"]
        per_class_skipped = collections.Counter(
            s["synset"] for s in manifest["skipped"] if s["split"] == split)
        for synset in {f.synset for f in expected}:
            inputs = sum(1 for f in expected if f.synset == synset)
            assert inputs == info["per_class"][synset] + per_class_skipped[synset]
        shard_counts = collections.Counter(r["shard"] for r in records)
        for shard in info["shards"]:
            assert shard["num_examples"] == shard_counts[shard["file"]]
            digest = hashlib.sha256((output / shard["file"]).read_bytes()).hexdigest()
            assert shard["sha256"] == digest


def test_archives_round_trip(archives):
    root, files, output, manifest = archives

    def member_bytes(generated):
        tar_name = "ILSVRC2012_img_train.tar" if generated.split == "train" else \
            "ILSVRC2012_img_val.tar"
        with tarfile.open(root / tar_name) as tar:
            if generated.split == "validation":
                return tar.extractfile(generated.path).read()
            inner_name, member = generated.path.split("/", 1)
            inner = tarfile.open(fileobj=tar.extractfile(inner_name))
            return inner.extractfile(member).read()

    check_round_trip(files, output, manifest, member_bytes, lambda s: SYNSETS.index(s) + 1)


def test_imagenet_labels_are_tfds_labels_plus_one(archives):
    _, _, output, manifest = archives
    assert manifest["labels"] == list(SYNSETS) and manifest["label_offset"] == 1
    assert manifest["label_text"][1] == "goldfish, Carassius auratus"
    record = read_records(output, "train")[0]
    synset = record[schema.SYNSET].decode()
    assert record[schema.LABEL] == SYNSETS.index(synset) + 1
    assert record[schema.TEXT].decode() == imagenet_labels.synset_names()[SYNSETS.index(synset)]
    # Partial archives still use the full label list: 1000 classes, most of them empty.
    assert manifest["num_classes"] == 1000
    assert sum(1 for n in manifest["splits"]["train"]["per_class"].values() if n) == 5


def test_manifest_names_each_skipped_and_repaired_input(archives):
    _, files, _, manifest = archives
    bad = sorted((f.split, f.path) for f in files if f.kind in synthetic.SKIPPED_KINDS)
    assert sorted((s["split"], s["path"]) for s in manifest["skipped"]) == bad
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    kinds = {f.path: f.kind for f in files}
    for path, reason in reasons.items():
        expected = {"empty": "empty file", "not_image": "not an image",
                    "truncated": "truncated or corrupt JPEG", "bomb_jpeg": "decompression bomb",
                    "bomb_png": "decompression bomb"}[kinds[path]]
        assert reason.startswith(expected)
    assert len(manifest["repaired"]) == 2 * len(synthetic.REPAIRED_KINDS)
    assert manifest["settings"]["num_shards"] == {"train": 3, "validation": 2}


def test_images_are_shuffled_across_shards(archives):
    _, _, output, _ = archives
    per_shard = collections.defaultdict(set)
    for record in read_records(output, "train"):
        per_shard[record["shard"]].add(record[schema.LABEL])
    assert len(per_shard) == 3 and all(len(labels) >= 4 for labels in per_shard.values())


def test_extracted_layout_round_trip(tmp_path):
    files = generate(tmp_path, "extracted")
    output = tmp_path / "out"
    manifest = run_convert(sources.find_imagenet(tmp_path), output)
    assert manifest["source"]["train"] == "train/" and manifest["source"]["validation"] == "val/"
    check_round_trip(files, output, manifest, lambda f: (tmp_path / f.path).read_bytes(),
                     lambda s: SYNSETS.index(s) + 1)


def test_image_folder_round_trip_and_split_by_class(tmp_path):
    files = generate(tmp_path / "data", "image_folder", synsets=("cat", "dog", "fox"))
    (tmp_path / "data" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "README.md").write_text("top-level file")
    plan = sources.find_image_folder(tmp_path / "data", validation_fraction=0.3)
    output = tmp_path / "out"
    manifest = run_convert(plan, output)
    assert manifest["labels"] == ["cat", "dog", "fox"]
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["cat/notes.txt"].startswith("not an image (unrecognised data")
    assert reasons["README.md"] == "not inside a class folder"
    split_of = {}
    for split in ("train", "validation"):
        for record in read_records(output, split):
            split_of[record[schema.FILENAME].decode()] = split
    stored = [f for f in files if f.kind not in synthetic.SKIPPED_KINDS]
    assert len(split_of) == len(stored)
    for synset in ("cat", "dog", "fox"):  # round(0.3 n) of each class's n images that convert,
        mine = sorted((f for f in stored if f.path.startswith(synset + "/")),  # by name's hash
                      key=lambda f: (sources.hash_fraction(f.path), f.path))
        held = min(len(mine) - 1, max(1, round(0.3 * len(mine))))
        assert [split_of[os.path.basename(f.path)] for f in mine] == (
            ["validation"] * held + ["train"] * (len(mine) - held)), synset
        assert manifest["splits"]["validation"]["per_class"][synset] == held
    again = run_convert(sources.find_image_folder(tmp_path / "data", 0.3), tmp_path / "out2")
    assert shard_digests(output) == shard_digests(tmp_path / "out2")
    assert again["splits"] == manifest["splits"]


def test_image_folder_with_train_and_val_folders(tmp_path):
    for split, count in (("train", 4), ("val", 2)):
        generate(tmp_path / "data" / split, "image_folder", synsets=("a", "b"),
                 train_per_class=count, val_per_class=0, problems=False)
    generate(tmp_path / "data" / "val", "image_folder", synsets=("zebra",), train_per_class=1,
             val_per_class=0, problems=False)
    plan = sources.find_image_folder(tmp_path / "data")
    manifest = run_convert(plan, tmp_path / "out")
    assert manifest["labels"] == ["a", "b"]
    assert manifest["splits"]["train"]["num_examples"] == 8
    assert manifest["splits"]["validation"]["num_examples"] == 4
    assert [s["reason"] for s in manifest["skipped"]] == ["unknown class 'zebra'"]


@pytest.mark.slow
def test_same_shards_whatever_the_number_of_workers(tmp_path, archives, capfd):
    root, _, output, _ = archives
    capfd.readouterr()
    run_convert(sources.find_imagenet(root), tmp_path / "two", num_workers=2)
    assert shard_digests(tmp_path / "two") == shard_digests(output)
    # The worker processes start TensorFlow as quietly as the program: none of its lines.
    printed = capfd.readouterr()
    assert not [line for line in (printed.out + printed.err).splitlines()
                if LIBRARY_LINE.match(line)], printed.err[-2000:]
    run_convert(sources.find_imagenet(root), tmp_path / "seed", seed=1)
    assert shard_digests(tmp_path / "seed") != shard_digests(output)


def test_other_conversion_in_output_dir_is_refused(tmp_path, archives):
    root, _, _, _ = archives
    run_convert(sources.find_imagenet(root), tmp_path / "out")
    with pytest.raises(ValueError, match="holds shards of a different conversion"):
        run_convert(sources.find_imagenet(root), tmp_path / "out", seed=5)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "train-00000-of-00001").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds shards of an unknown conversion"):
        run_convert(sources.find_imagenet(root), tmp_path / "foreign")


def test_missing_layout_error_names_what_was_expected(tmp_path):
    (tmp_path / "something.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"holds neither ILSVRC2012_img_train.tar / "
                                                r"ILSVRC2012_img_val.tar nor train/ and val/"):
        sources.find_imagenet(tmp_path)


def test_val_labels_file_and_unlabelled_validation_files(tmp_path):
    root = tmp_path / "raw"
    (root / "val").mkdir(parents=True)
    pixels = synthetic.draw_scene(1, np.random.default_rng(0), 40, 50)
    for name in ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG",
                 "ILSVRC2012_val_00000009.JPEG", "photo.JPEG"):
        (root / "val" / name).write_bytes(synthetic.encode(pixels))
    labels = tmp_path / "labels.txt"
    labels.write_text("n01443537\nn99999999\nn01440764\n")
    manifest = run_convert(sources.find_imagenet(root, val_labels=labels), tmp_path / "out")
    records = read_records(tmp_path / "out", "validation")
    assert [(r[schema.FILENAME].decode(), r[schema.LABEL]) for r in records] == [
        ("ILSVRC2012_val_00000001.JPEG", 2)]
    assert {s["path"]: s["reason"] for s in manifest["skipped"]} == {
        "val/ILSVRC2012_val_00000002.JPEG":
            "unknown synset 'n99999999' in the validation label list",
        "val/ILSVRC2012_val_00000009.JPEG":
            "no validation label for file number 9 (the label list has 3)",
        "val/photo.JPEG": "not an ILSVRC2012_val_NNNNNNNN.JPEG name: no validation label",
    }


def _image(seed):
    return synthetic.encode(
        synthetic.draw_scene(seed, np.random.default_rng(seed), 48, 64))


def _special_member(tar, name, kind):
    info = tarfile.TarInfo(name)
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    tar.addfile(info)


def test_archive_problems_are_reported_and_never_extracted(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    good = [(f"n01440764_{i}.JPEG", _image(i)) for i in range(6)]
    damaged = bytearray(synthetic.make_tar(good))
    with tarfile.open(fileobj=io.BytesIO(bytes(damaged))) as tar:
        header = tar.getmember("n01440764_2.JPEG").offset
    damaged[header : header + 512] = b"\x7fgarbage!" * 56 + b"\x7f" * 8  # a corrupt header
    cut = synthetic.make_tar([(f"n01443537_{i}.JPEG", _image(i)) for i in range(4)])
    with tarfile.open(fileobj=io.BytesIO(cut)) as tar:
        cut = cut[: tar.getmember("n01443537_3.JPEG").offset_data + 500]  # inside the last member
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        synthetic.add_member(tar, "n01440764.tar", bytes(damaged))
        synthetic.add_member(tar, "n01443537.tar", cut)
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w", format=tarfile.USTAR_FORMAT) as odd:
            synthetic.add_member(odd, "../../escape.JPEG", _image(9))
            synthetic.add_member(odd, "/tmp/absolute.JPEG", _image(10))
            _special_member(odd, "link.JPEG", "symlink")
            _special_member(odd, "device.JPEG", "device")
        synthetic.add_member(tar, "n01484850.tar", inner.getvalue())
        synthetic.add_member(tar, "n00000000.tar", synthetic.make_tar(good[:1]))
        synthetic.add_member(tar, "README.txt", b"hello")
    output = tmp_path / "out"
    manifest = run_convert(sources.find_imagenet(root), output)
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["n01484850.tar/link.JPEG"] == "link member (to '/etc/passwd'), not a file"
    assert reasons["n01484850.tar/device.JPEG"] == "device or FIFO member, not a file"
    assert reasons["n00000000.tar/n01440764_0.JPEG"] == "unknown synset 'n00000000'"
    assert reasons["README.txt"] == "not a per-synset .tar member"
    assert reasons["n01440764.tar"].startswith("corrupt data at bytes")
    assert reasons["n01443537.tar/n01443537_3.JPEG"].startswith(
        "truncated archive member: declares")
    names = {r[schema.FILENAME].decode(): r for r in read_records(output, "train")}
    # The corrupt stretch took one member; the members after it are kept.
    kept = sorted(n for n in names if n.startswith("n01440764_"))
    assert kept == [f"n01440764_{i}.JPEG" for i in (0, 1, 3, 4, 5)]
    assert {"n01443537_0.JPEG", "n01443537_1.JPEG", "n01443537_2.JPEG"} <= set(names)
    assert "escape.JPEG" in names and "absolute.JPEG" in names  # converted, not extracted
    assert not (tmp_path / "escape.JPEG").exists() and not pathlib.Path(
        "/tmp/absolute.JPEG").exists()
    written = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
    assert {p for p in written if not p.startswith(".convert_state/")} == {
        "dataset_info.json", "train-00000-of-00003", "train-00001-of-00003",
        "train-00002-of-00003"}


def test_bounding_boxes(tmp_path):
    files = generate(tmp_path / "raw", "extracted", problems=False, train_per_class=2,
                     val_per_class=1)
    first = next(f for f in files if f.split == "train")
    stem = os.path.splitext(os.path.basename(first.path))[0]
    width, height = tf.io.decode_jpeg((tmp_path / "raw" / first.path).read_bytes()).shape[1::-1]
    (tmp_path / "boxes" / first.synset).mkdir(parents=True)
    (tmp_path / "boxes" / first.synset / f"{stem}.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size>"
        f"<object><name>{first.synset}</name><bndbox><xmin>0</xmin><ymin>{height // 2}</ymin>"
        f"<xmax>{width + 40}</xmax><ymax>{height}</ymax></bndbox></object></annotation>")
    (tmp_path / "boxes" / "broken.xml").write_text("<annotation><size>")
    from pipelines import bbox

    boxes, problems = bbox.read_boxes(tmp_path / "boxes")
    manifest = run_convert(sources.find_imagenet(tmp_path / "raw"), tmp_path / "out",
                           boxes=boxes, bbox_problems=problems)
    records = {r[schema.FILENAME].decode(): r for r in read_records(tmp_path / "out", "train")}
    record = records[os.path.basename(first.path)]
    assert record[schema.BBOX_XMIN].tolist() == [0.0]
    assert record[schema.BBOX_XMAX].tolist() == [1.0]  # clamped
    assert record[schema.BBOX_YMIN][0] == pytest.approx((height // 2) / height)
    assert record[schema.BBOX_LABEL].tolist() == [record[schema.LABEL]]
    others = [r for n, r in records.items() if n != os.path.basename(first.path)]
    assert all(len(r[schema.BBOX_XMIN]) == 0 for r in others)
    assert manifest["bbox_problems"][0]["path"] == "broken.xml"


def test_max_shorter_side_is_applied_and_recorded(tmp_path):
    generate(tmp_path / "raw", "extracted", problems=False, size_range=(90, 120))
    manifest = run_convert(sources.find_imagenet(tmp_path / "raw"), tmp_path / "out",
                           max_shorter_side=80)
    records = read_records(tmp_path / "out", "train")
    assert all(min(r[schema.HEIGHT], r[schema.WIDTH]) == 80 for r in records)
    assert manifest["splits"]["train"]["num_resized"] == len(records)
    assert manifest["settings"]["max_shorter_side"] == 80


def _cli(*arguments, **kwargs):
    return programs.run([sys.executable, "-m", "tools.convert_imagenet", *arguments],
                        cwd=ROOT, timeout=600, **kwargs)


@pytest.mark.slow
def test_cli_strict_and_summary(archives, tmp_path):
    root = archives[0]
    common = [f"--raw_data_dir={root}", "--train_shards=2", "--validation_shards=1",
              "--num_workers=1"]
    result = _cli(*common, f"--output_dir={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr
    assert "train: 34 images written to 2 shards (39 inputs, 5 skipped, 4 repaired" in \
        result.stdout
    assert "empty file" in result.stdout
    manifest = json.loads((tmp_path / "a" / "dataset_info.json").read_text())
    assert manifest["arguments"]["train_shards"] == 2
    strict = _cli(*common, f"--output_dir={tmp_path / 'b'}", "--strict")
    assert strict.returncode == 1 and "--strict: 10 inputs were skipped" in strict.stderr
    assert (tmp_path / "b" / "dataset_info.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    ([], "give exactly one of --raw_data_dir and --image_folder"),
    (["--raw_data_dir=/x", "--image_folder=/y", "--output_dir=/z"], "give exactly one"),
    (["--raw_data_dir=/x"], "--output_dir is required"),
    (["--raw_data_dir=/x", "--output_dir=/z", "--train_shards=0"], "must be >= 1"),
    (["--raw_data_dir=/x", "--output_dir=/z", "--validation_fraction=0.1"],
     "--validation_fraction applies to --image_folder only"),
    (["--image_folder=/x", "--output_dir=/z", "--validation_fraction=1.5"], "must be in [0, 1)"),
    (["--raw_data_dir=/x", "--output_dir=/z", "--val_labels=/nonexistent"], "is not a file"),
])
def test_cli_rejects_bad_flags(arguments, message):
    result = _cli(*arguments)
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_shards(tmp_path, archives):
    root = archives[0]
    common = [f"--raw_data_dir={root}", "--train_shards=24", "--validation_shards=6",
              "--num_workers=1"]
    reference = tmp_path / "reference"
    assert _cli(*common, f"--output_dir={reference}").returncode == 0
    output = tmp_path / "killed"
    process = programs.start([sys.executable, "-m", "tools.convert_imagenet", *common,
                              f"--output_dir={output}"], cwd=ROOT)
    deadline = time.monotonic() + 120
    # Final names only: "train-*-of-*" would also match a shard's .tmp file.
    while time.monotonic() < deadline and len(list(output.glob("train-?????-of-?????"))) < 3:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
              for p in output.glob("*-?????-of-?????")}
    assert 3 <= len(before) < 30, "the kill came too late to interrupt the conversion"
    assert not (output / "dataset_info.json").exists()
    # Finished = renamed and reported; a shard renamed but not yet reported is redone.
    finished = [name for name in before if (output / ".convert_state" / f"{name}.json").exists()]
    assert _cli(*common, f"--output_dir={output}").returncode == 0
    assert shard_digests(output) == shard_digests(reference)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in output.glob("*-?????-of-?????")}
    assert finished and all(after[name] == before[name] for name in finished)
    manifest = json.loads((output / "dataset_info.json").read_text())
    expected = json.loads((reference / "dataset_info.json").read_text())
    assert manifest["splits"] == expected["splits"] and manifest["skipped"] == expected["skipped"]
    assert not list(output.glob("*.tmp"))


def test_fewer_images_than_shards_write_fewer_shards_never_an_empty_one(tmp_path):
    # 5 classes × 2 training and 1 validation images, the default 1,024 + 128 shards asked.
    generate(tmp_path / "raw", "extracted", train_per_class=2, val_per_class=1, problems=False)
    plan = sources.find_imagenet(tmp_path / "raw")
    manifest = convert.convert(plan, tmp_path / "out", num_workers=1, seed=0)
    names = sorted(p.name for p in (tmp_path / "out").glob("*-of-*"))
    assert names == ([f"train-{i:05d}-of-00010" for i in range(10)]
                     + [f"validation-{i:05d}-of-00005" for i in range(5)])
    for split, count in (("train", 10), ("validation", 5)):
        info = manifest["splits"][split]
        assert info["num_examples"] == count and len(info["shards"]) == count
        assert all(shard["num_examples"] == 1 for shard in info["shards"])
        assert info["shards_requested"] == schema.DEFAULT_SHARDS[split]
    assert manifest["settings"]["num_shards"] == schema.DEFAULT_SHARDS
    from pipelines import conversion

    assert ("train: 10 images written to 10 shards (not the 1024 asked: never an empty shard)"
            in conversion.summarize(manifest))


def test_skipped_inputs_never_leave_an_empty_shard(tmp_path):
    """A folder of photos with a zero-byte and a text file among them, ImageNet's shard counts
    asked (1024 / 128): the shards are planned over the inputs that convert (one image each,
    -of-N true), and a shard that ends empty all the same (an input that changed after it was
    judged) is dropped and the others renumbered."""
    generate(tmp_path / "data", "image_folder", synsets=("a", "b"), train_per_class=5,
             val_per_class=0, problems=False)
    (tmp_path / "data" / "a" / "empty.jpg").write_bytes(b"")
    (tmp_path / "data" / "b" / "notes.jpg").write_text("not an image")
    plan = sources.find_image_folder(tmp_path / "data", validation_fraction=0.2)
    imagenet = {"train": 1024, "validation": 128}
    manifest = convert.convert(plan, tmp_path / "out", num_workers=1, seed=0, num_shards=imagenet)
    for split, count in (("train", 8), ("validation", 2)):
        names = sorted(p.name for p in (tmp_path / "out").glob(f"{split}-*"))
        assert names == [f"{split}-{i:05d}-of-{count:05d}" for i in range(count)]
        assert manifest["splits"][split]["num_examples"] == count
        assert all(shard["num_examples"] == 1 for shard in manifest["splits"][split]["shards"])
        assert manifest["splits"][split]["per_class"] == {"a": count // 2, "b": count // 2}
    assert sorted(s["path"] for s in manifest["skipped"]) == ["a/empty.jpg", "b/notes.jpg"]
    # A shard that ends empty at its writing is dropped, the others renumbered.
    again = sources.find_image_folder(tmp_path / "data")
    victim = sorted(e.path for e in again.entries["train"]
                    if e.path not in ("a/empty.jpg", "b/notes.jpg"))[0]
    original = convert.judged

    def judged_then_changed(plan, *arguments, **keywords):  # the file spoils after its check
        plan = original(plan, *arguments, **keywords)
        (tmp_path / "data" / victim).write_bytes(b"x" * (tmp_path / "data" / victim).stat().st_size)
        return plan

    convert.judged = judged_then_changed
    try:
        manifest = convert.convert(again, tmp_path / "out2", num_workers=1, seed=0,
                                   num_shards=imagenet)
    finally:
        convert.judged = original
    names = sorted(p.name for p in (tmp_path / "out2").glob("train-*"))
    assert names == [f"train-{i:05d}-of-00009" for i in range(9)]
    assert [s["file"] for s in manifest["splits"]["train"]["shards"]] == names
    assert any(s["path"] == victim for s in manifest["skipped"])
    info = dataset_info.read_info(tmp_path / "out2")
    assert dataset_info.count_records(info.split_files("train")) == 9
