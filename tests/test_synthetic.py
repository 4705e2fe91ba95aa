"""The synthetic data generator: deterministic, and the layouts it promises; its CLI."""

import hashlib
import pathlib
import tarfile

import numpy as np
from PIL import Image

from pipelines import imagenet_labels
from pipelines import synthetic
from tests import programs


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        synthetic.write_dataset(tmp_path / name, train_per_class=2, val_per_class=1)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    synthetic.write_dataset(tmp_path / "c", train_per_class=2, val_per_class=1, seed=1)
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


def test_archive_layout_and_validation_numbers(tmp_path):
    files = synthetic.write_dataset(tmp_path, train_per_class=2, val_per_class=2)
    with tarfile.open(tmp_path / "ILSVRC2012_img_train.tar") as tar:
        assert sorted(tar.getnames()) == [f"{s}.tar" for s in synthetic.DEFAULT_SYNSETS]
    labels = imagenet_labels.validation_synsets()
    for record in files:
        if record.split == "validation":
            number = int(record.path[len("ILSVRC2012_val_"):-len(".JPEG")])
            assert labels[number - 1] == record.synset
    kinds = {f.kind for f in files}
    assert kinds == {synthetic.GOOD, *synthetic.REPAIRED_KINDS,
                     *synthetic.SKIPPED_KINDS}


def test_flat_validation_files_with_their_own_label_file(tmp_path):
    files = synthetic.write_dataset(tmp_path, train_per_class=1, val_per_class=3,
                                          val_label_file="labels.txt")
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    validation = sorted((f for f in files if f.split == "validation"), key=lambda f: f.path)
    assert [f.path for f in validation] == [f"ILSVRC2012_val_{n:08d}.JPEG"
                                            for n in range(1, len(labels) + 1)]
    assert [f.synset for f in validation] == labels
    assert labels[:10] != sorted(labels[:10])  # classes interleaved, as in ImageNet's list
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar") as tar:
        assert sorted(tar.getnames()) == [f.path for f in validation]


def test_scenes_are_learnable_yet_not_trivial():
    """Nearest class centroid on 8×8 thumbnails of held-out scenes: well above chance (10%)
    for all ten classes, but not perfect, so a ConvNet has something to learn."""
    rng = np.random.default_rng(0)

    def thumbnail(label):
        height, width = (int(v) for v in rng.integers(64, 160, 2))
        pixels = synthetic.draw_scene(label, rng, height, width)
        return np.asarray(Image.fromarray(pixels).resize((8, 8), Image.BILINEAR), float).ravel()

    centroids = np.stack([np.mean([thumbnail(c) for _ in range(20)], axis=0) for c in range(10)])
    correct = sum(
        int(np.argmin(((centroids - thumbnail(c)) ** 2).sum(axis=1)) == c)
        for c in range(10) for _ in range(20))
    assert 0.6 <= correct / 200 < 1.0


def test_cli_writes_a_dataset_and_counts_its_kinds(tmp_path):
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    result = programs.run([sys.executable, "-m", "tools.generate_images",
                           f"--output_dir={tmp_path}", "--layout=extracted",
                           "--train_per_class=1", "--val_per_class=1"], cwd=root,
                          timeout=300)
    assert result.returncode == 0, result.stderr
    expected = synthetic.write_dataset(tmp_path / "again", layout="extracted",
                                       train_per_class=1, val_per_class=1)
    assert result.stdout.startswith(f"wrote {len(expected)} files under {tmp_path} (extracted): ")
    assert "20 rgb" in result.stdout and "2 truncated" in result.stdout
    assert (tmp_path / "train" / synthetic.DEFAULT_SYNSETS[0]).is_dir()
