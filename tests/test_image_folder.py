"""vgg-convert --image_folder on folders as people have them: hidden and system litter, broken
links, files that vanish or change, every image format judged by its content, photos stored
sideways, Unicode names, nested folders; and a folder without a single image."""

import io
import json
import os
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines import convert
from pipelines import images
from pipelines import schema
from pipelines import sources
from tests import programs
from tests.test_convert import read_records

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _picture(width=48, height=40, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 255, (height, width, channels), dtype=np.uint8), mode)


def _save(path, image=None, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or _picture(seed=len(str(path)))).save(path, **options)
    return path


def _sideways_jpeg(path):
    """A JPEG stored 120 wide × 60 high whose EXIF says: turn 90° to view (orientation 6), so a
    viewer shows it 60 wide × 120 high; its left half is white, its right half black."""
    pixels = np.zeros((60, 120, 3), np.uint8)
    pixels[:, :60] = 255
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    return _save(path, Image.fromarray(pixels), format="JPEG", exif=exif.tobytes())


@pytest.fixture
def messy(tmp_path):
    """A folder like the ones people have."""
    root = tmp_path / "photos"
    _save(root / "café au lait" / "a.jpg")
    _save(root / "café au lait" / "deeper" / "nested" / "b.jpg")  # nested sub-folders
    _save(root / "dog" / "c.jpg")
    _save(root / "dog" / "rgba.png", _picture(mode="RGBA"))
    _save(root / "dog" / "sixteen.png", _picture(mode="I;16"))
    _save(root / "dog" / "photo.webp", format="WEBP")
    _save(root / "dog" / "scan.tiff", format="TIFF")
    _save(root / "dog" / "frame.ppm", format="PPM")
    _save(root / "dog" / "gray.pgm", _picture().convert("L"), format="PPM")
    _save(root / "dog" / "lies.png", format="JPEG")  # a JPEG whatever its name says
    _save(tmp_path / "elsewhere" / "linked.jpg")
    (root / "dog" / "link.jpg").symlink_to(tmp_path / "elsewhere" / "linked.jpg")
    (root / "dog" / "broken.jpg").symlink_to(tmp_path / "elsewhere" / "gone.jpg")
    (root / "dog" / "notes.txt").write_text("a good boy")
    (root / "dog" / "Thumbs.db").write_bytes(b"\0" * 64)
    (root / "dog" / "._c.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    _sideways_jpeg(root / "猫" / "sideways.jpg")
    _save(root / "猫" / "e.jpg")
    _save(root / ".hidden" / "x.jpg")
    _save(root / ".ipynb_checkpoints" / "y.jpg")
    _save(root / "__MACOSX" / "dog" / "._c.jpg")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "desktop.ini").write_text("[.ShellClassInfo]")
    return root


def _records(output):
    return {record[schema.FILENAME].decode(): record for split in ("train", "validation")
            for record in read_records(output, split)}


def test_a_messy_folder_converts_what_is_data_and_says_what_was_not(messy, tmp_path):
    plan = sources.find_image_folder(messy)
    assert plan.labels == ["café au lait", "dog", "猫"]  # no .hidden, .ipynb_checkpoints, __MACOSX
    assert plan.ignored == [".DS_Store", ".hidden/", ".ipynb_checkpoints/", "__MACOSX/",
                            "desktop.ini", "dog/._c.jpg", "dog/Thumbs.db"]
    manifest = convert.convert(plan, tmp_path / "out", num_shards={"train": 2}, num_workers=1)
    assert manifest["ignored"] == plan.ignored
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"dog/broken.jpg", "dog/notes.txt"}
    assert skipped["dog/broken.jpg"].startswith("broken symbolic link (to ")
    assert skipped["dog/notes.txt"].startswith("not an image (unrecognised data")
    repaired = {r["path"]: r["reason"] for r in manifest["repaired"]}
    assert repaired == {
        "dog/rgba.png": "PNG (RGBA) data re-encoded as RGB JPEG",
        "dog/sixteen.png": "PNG (I;16) data re-encoded as RGB JPEG",
        "dog/photo.webp": "WEBP (RGB) data re-encoded as RGB JPEG",
        "dog/scan.tiff": "TIFF (RGB) data re-encoded as RGB JPEG",
        "dog/frame.ppm": "PPM (RGB) data re-encoded as RGB JPEG",
        "dog/gray.pgm": "PPM (L) data re-encoded as RGB JPEG",
        "猫/sideways.jpg": "EXIF orientation 6 applied (rotated 90°)"}
    records = _records(tmp_path / "out")
    assert sorted(records) == sorted(["a.jpg", "b.jpg", "c.jpg", "rgba.png", "sixteen.png",
                                      "photo.webp", "scan.tiff", "frame.ppm", "gray.pgm",
                                      "lies.png", "link.jpg", "sideways.jpg", "e.jpg"])
    # The JPEG named .png is stored as it was: its content is a good JPEG.
    assert records["lies.png"][schema.ENCODED] == (messy / "dog" / "lies.png").read_bytes()
    assert records["link.jpg"][schema.ENCODED] == (tmp_path / "elsewhere" /
                                                    "linked.jpg").read_bytes()
    assert records["b.jpg"][schema.LABEL] == 1 and records["e.jpg"][schema.LABEL] == 3
    # Upright: 60 wide × 120 high; turned 90° clockwise, the white left half is now on top.
    upright = records["sideways.jpg"]
    assert (upright[schema.WIDTH], upright[schema.HEIGHT]) == (60, 120)
    pixels = np.asarray(Image.open(io.BytesIO(upright[schema.ENCODED])).convert("L"))
    assert pixels.shape == (120, 60) and pixels[:50].mean() > 200 and pixels[70:].mean() < 50
    assert manifest["settings"]["exif_orientation"] == "apply"


def test_keep_stores_the_pixels_as_they_are(tmp_path):
    _sideways_jpeg(tmp_path / "in" / "a" / "sideways.jpg")
    _save(tmp_path / "in" / "b" / "x.jpg")
    manifest = convert.convert(sources.find_image_folder(tmp_path / "in"), tmp_path / "out",
                               num_shards={"train": 1}, num_workers=1, exif_orientation="keep")
    record = _records(tmp_path / "out")["sideways.jpg"]
    assert (record[schema.WIDTH], record[schema.HEIGHT]) == (120, 60)
    assert record[schema.ENCODED] == (tmp_path / "in" / "a" / "sideways.jpg").read_bytes()
    assert manifest["settings"]["exif_orientation"] == "keep" and not manifest["repaired"]


def test_the_imagenet_path_keeps_stored_orientation_by_default():
    plan = sources.Plan(["n0"], ["n0"], {"train": []}, [], {"raw_data_dir": "/x"})
    with pytest.raises(ValueError, match="no image to convert"):  # decided before that
        convert.convert(plan, "/nonexistent/out")
    data = _sideways_jpeg_bytes()
    kept = images.prepare_image(data)
    assert (kept.width, kept.height, kept.repair) == (120, 60, None)


def _sideways_jpeg_bytes():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    Image.new("RGB", (120, 60)).save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_files_that_vanish_or_change_after_indexing_are_skipped_with_their_reason(tmp_path):
    for name in ("a", "b", "c"):
        _save(tmp_path / "in" / "k" / f"{name}.jpg")
    plan = sources.find_image_folder(tmp_path / "in")
    (tmp_path / "in" / "k" / "a.jpg").unlink()
    with open(tmp_path / "in" / "k" / "b.jpg", "ab") as file:
        file.write(b"more")
    manifest = convert.convert(plan, tmp_path / "out", num_shards={"train": 1}, num_workers=1)
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    size = plan.entries["train"][1].size  # b.jpg's, when it was indexed
    assert skipped == {
        "k/a.jpg": "unreadable file: No such file or directory",
        "k/b.jpg": f"file changed since it was indexed ({size} bytes then, {size + 4} now)"}
    assert manifest["splits"]["train"]["num_examples"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_is_skipped(tmp_path):
    _save(tmp_path / "in" / "k" / "a.jpg")
    secret = _save(tmp_path / "in" / "k" / "b.jpg")
    secret.chmod(0)
    manifest = convert.convert(sources.find_image_folder(tmp_path / "in"), tmp_path / "out",
                               num_shards={"train": 1}, num_workers=1)
    assert [s["reason"] for s in manifest["skipped"]] == ["unreadable file: Permission denied"]


def _cli(*arguments):
    return programs.run([str(BIN / "vgg-convert"), *arguments], timeout=300)


@pytest.mark.slow
def test_a_folder_without_images_ends_in_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "in" / "cat").mkdir(parents=True)
    (tmp_path / "in" / "dog").mkdir()
    (tmp_path / "in" / ".DS_Store").write_bytes(b"\0")
    result = _cli(f"--image_folder={tmp_path / 'in'}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"vgg-convert: --image_folder {tmp_path / 'in'} holds no image to convert: found 1 "
        "hidden or system names ignored (every file is listed in the report); give folders of "
        "images, one sub-folder per class")
    assert not (tmp_path / "out").exists()
    # Files, but not one of them an image: the shards written on the way are removed.
    (tmp_path / "in" / "cat" / "a.jpg").write_text("not a picture")
    (tmp_path / "in" / "dog" / "b.txt").write_text("nor this")
    (tmp_path / "in" / "dog" / "c.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = _cli(f"--image_folder={tmp_path / 'in'}", f"--output_dir={tmp_path / 'out'}",
                  "--train_shards=2")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"vgg-convert: --image_folder {tmp_path / 'in'} holds no image to convert: found 2 not "
        "an image; 1 broken symbolic link; 1 hidden or system names ignored (every file is "
        "listed in the report); give folders of images, one sub-folder per class")
    assert not (tmp_path / "out").exists()
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_report_counts_what_was_ignored(messy, tmp_path):
    result = _cli(f"--image_folder={messy}", f"--output_dir={tmp_path / 'out'}",
                  "--train_shards=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("ignored 7 hidden or system names (neither classes nor inputs; listed in the "
            "manifest): .DS_Store, .hidden/, .ipynb_checkpoints/, __MACOSX/, desktop.ini, ...")\
        in result.stdout
    assert "EXIF orientation: apply (photos turned upright)" in result.stdout
    manifest = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
    assert manifest["arguments"]["exif_orientation"] is None  # the default, resolved in settings
