"""Synthetic data for tests, benchmarks and the demo: small ImageNet-layout datasets of
procedurally drawn, learnable scenes, deterministic by seed, with the problem files real ImageNet
has planted among them.

Layouts: ``archives`` (``ILSVRC2012_img_train.tar`` of per-synset tars and a flat
``ILSVRC2012_img_val.tar``, validation file numbers chosen so that the validation label list
shipped in tensorflow-datasets labels them), ``extracted`` (``train/<synset>/``, flat ``val/``),
and ``image_folder`` (``<class>/`` folders, mixed extensions).

Every file written is returned as a ``GeneratedFile`` saying what it is (``kind``) and so what a
converter must do with it: store it, repair it or skip it. ``write_photo_like_jpegs`` writes
JPEGs of ImageNet's typical sizes for the benchmarks.

    python -m tools.generate_images --output_dir=/tmp/fake_imagenet --layout=archives
"""

import dataclasses
import io
import pathlib
import tarfile
import zlib

import numpy as np
from PIL import Image

from pipelines import imagenet_labels
from pipelines.foundation import errors

# Ten real ImageNet synsets (tench, goldfish, great white shark, ...), for realistic names.
DEFAULT_SYNSETS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
                   "n01496331", "n01498041", "n01514668", "n01514859", "n01518878")
LAYOUTS = ("archives", "extracted", "image_folder")
GOOD = "rgb"
REPAIRED_KINDS = ("grayscale", "cmyk", "png_as_jpeg", "progressive")
SKIPPED_KINDS = ("empty", "truncated", "not_image", "bomb_jpeg", "bomb_png")
_SHAPES = ("disc", "square", "triangle", "stripes", "ring", "cross", "diamond", "dots",
           "checker", "bar")


@dataclasses.dataclass(frozen=True)
class GeneratedFile:
    """One generated input: where the converter will find it and what it is."""

    split: str  # "train" or "validation"
    path: str  # archive member name or path relative to the dataset root
    synset: str  # class (synset or folder name)
    kind: str  # "rgb", one of REPAIRED_KINDS or one of SKIPPED_KINDS


def draw_scene(label, rng, height, width, texture=12.0):
    """Draws an RGB scene of class ``label``: a class-coloured shape on a class-tinted ground.

    The class decides the shape, its colour and the background hue; position, size, lighting and
    noise vary per image, so a small ConvNet must learn the shape and colours, not a pixel.
    """
    hue = np.array([(label * 37) % 256, (label * 91 + 80) % 256, (label * 53 + 160) % 256], float)
    ground = 0.55 * hue + rng.uniform(20, 90, 3)
    ys, xs = np.mgrid[0:height, 0:width]
    shading = 1.0 + 0.25 * (xs / width - 0.5) * rng.uniform(-1, 1)
    image = ground[None, None, :] * shading[..., None]
    size = rng.uniform(0.25, 0.45) * min(height, width)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    mask = _shape_mask(_SHAPES[label % len(_SHAPES)], ys - cy, xs - cx, size)
    colour = 255.0 - hue if label % 2 else np.roll(hue, 1)
    image[mask] = colour * rng.uniform(0.8, 1.1)
    image += rng.normal(0, texture, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(shape, dy, dx, size):
    radius = np.hypot(dy, dx)
    if shape == "disc":
        return radius < size
    if shape == "square":
        return (abs(dy) < size * 0.8) & (abs(dx) < size * 0.8)
    if shape == "triangle":
        return (dy < size * 0.7) & (dy > -size) & (abs(dx) < (dy + size) * 0.6)
    if shape == "stripes":
        return (abs(dy) < size) & (abs(dx) < size) & ((dx // max(size / 4, 1)) % 2 == 0)
    if shape == "ring":
        return (radius < size) & (radius > size * 0.6)
    if shape == "cross":
        return ((abs(dy) < size * 0.25) & (abs(dx) < size)) | (
            (abs(dx) < size * 0.25) & (abs(dy) < size))
    if shape == "diamond":
        return abs(dy) + abs(dx) < size
    if shape == "dots":
        return (radius < size) & (((dy // max(size / 3, 1)) + (dx // max(size / 3, 1))) % 2 == 0)
    if shape == "checker":
        return (abs(dy) < size) & (abs(dx) < size) & (
            ((dy // max(size / 2, 1)) + (dx // max(size / 2, 1))) % 2 == 0)
    return (abs(dy) < size * 0.2) & (abs(dx) < size * 1.2)  # bar


def encode(pixels, kind=GOOD, quality=90):
    """Returns the bytes of an image of ``kind`` ("rgb" JPEG, a repaired or a skipped kind)."""
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if kind == GOOD:
        image.save(buffer, "JPEG", quality=quality)
    elif kind == "grayscale":
        image.convert("L").save(buffer, "JPEG", quality=quality)
    elif kind == "cmyk":
        image.convert("CMYK").save(buffer, "JPEG", quality=quality)
    elif kind == "progressive":
        image.save(buffer, "JPEG", quality=quality, progressive=True)
    elif kind in ("png_as_jpeg", "png"):
        image.save(buffer, "PNG")
    elif kind in ("bmp", "gif"):
        image.save(buffer, kind.upper())
    elif kind == "empty":
        return b""
    elif kind == "not_image":
        return b"<html><body>404 Not Found</body></html>\n" * 8
    elif kind == "truncated":
        data = encode(pixels, GOOD, quality)
        return data[: len(data) * 3 // 5]
    elif kind == "bomb_jpeg":
        return _declare_size_jpeg(encode(pixels, GOOD, quality), 20_000, 20_000)
    elif kind == "bomb_png":
        return _declare_size_png(encode(pixels, "png"), 12_000, 12_000)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return buffer.getvalue()


def _declare_size_jpeg(data, height, width):
    """Rewrites the frame header (SOF0) so that it declares ``height``×``width``."""
    position = data.index(b"\xff\xc0")
    return (data[: position + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[position + 9 :])


def _declare_size_png(data, height, width):
    """Rewrites the PNG IHDR chunk (with a valid CRC) so that it declares ``height``×``width``."""
    ihdr = bytearray(data[12:29])  # type (4) + data (13)
    ihdr[4:8], ihdr[8:12] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    return data[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + data[33:]


def _image_size(rng, size_range):
    shorter = int(rng.integers(size_range[0], size_range[1] + 1))
    aspect = rng.uniform(1.0, 1.6)
    longer = int(round(shorter * aspect))
    return (shorter, longer) if rng.random() < 0.5 else (longer, shorter)


def _plan(synsets, per_class, problems, split):
    """Returns ``[(synset index, kind)]``: good images, and each problem kind once."""
    plan = [(label, GOOD) for label in range(len(synsets)) for _ in range(per_class)]
    if problems:
        for offset, kind in enumerate(REPAIRED_KINDS + SKIPPED_KINDS):
            plan.append(((offset + (split == "validation")) % len(synsets), kind))
    return plan


def _render(plan, synsets, rng, style):
    for label, kind in plan:
        height, width = _image_size(rng, style.size_range)
        yield label, kind, encode(draw_scene(label + style.scene_offset, rng, height, width,
                                             style.texture), kind)


def validation_numbers(synsets, per_class, labels_by_number):
    """Returns, per synset, the first ``per_class`` validation file numbers labelled with it."""
    wanted = {synset: [] for synset in synsets}
    for number, synset in enumerate(labels_by_number, start=1):
        if synset in wanted and len(wanted[synset]) < per_class:
            wanted[synset].append(number)
    for synset, numbers in wanted.items():
        if len(numbers) < per_class:
            raise errors.UserError(f"the validation label list has only {len(numbers)} images of "
                                   f"{synset}, {per_class} asked")
    return wanted


@dataclasses.dataclass(frozen=True)
class ImageStyle:
    """How the generated photos look: the range of their shorter side, the σ of their pixel
    noise (grain makes JPEGs larger, as photos are), and ``scene_offset``: class i is drawn as
    scene ``i + scene_offset`` (other classes than the first ones, that still share their
    shapes: for fine-tuning)."""

    size_range: tuple = (64, 160)
    texture: float = 12.0
    scene_offset: int = 0


def write_dataset(root, *, layout="archives", synsets=DEFAULT_SYNSETS, train_per_class=20,
                  val_per_class=5, problems=True, seed=0, style=None, validation_labels=None,
                  val_label_file=None):
    """Writes a dataset under ``root`` and returns the ``GeneratedFile`` of every input.

    Args:
        root: folder to write into (created).
        layout: one of ``LAYOUTS``.
        synsets: class names (real synsets for the ImageNet layouts).
        train_per_class, val_per_class: good images per class and split.
        problems: plant one file of each repaired and skipped kind per split.
        seed: everything written is a function of the arguments.
        style: an ``ImageStyle`` (sizes, grain, scenes).
        validation_labels: synset per validation file number (default: tensorflow-datasets').
        val_label_file: instead, number the validation files 1..N (classes interleaved, as in
            ImageNet's) and write their synsets, one per line, to ``root/val_label_file``:
            the label file ``vgg-convert --val_labels`` reads.
    """
    style = style or ImageStyle()
    if layout not in LAYOUTS:
        raise errors.UserError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = list(_render(_plan(synsets, train_per_class, problems, "train"), synsets, rng,
                         style))
    val = list(_render(_plan(synsets, val_per_class, problems, "validation"), synsets, rng,
                       style))
    if layout == "image_folder":
        return _write_image_folder(root, synsets, train + val)
    if val_label_file:
        val = [val[i] for i in rng.permutation(len(val))]
        (root / val_label_file).write_text("".join(f"{synsets[label]}\n" for label, _, _ in val))
        val_numbers = list(range(1, len(val) + 1))
    else:
        val_numbers = _numbers_in(val, synsets, validation_labels)
    train_files, val_files = [], []
    for index, (label, kind, data) in enumerate(train):
        name = f"{synsets[label]}_{index}.JPEG"
        train_files.append((synsets[label], name, kind, data))
    for number, (label, kind, data) in zip(val_numbers, val, strict=True):
        val_files.append((synsets[label], f"ILSVRC2012_val_{number:08d}.JPEG", kind, data))
    if layout == "archives":
        return _write_archives(root, train_files, val_files)
    return _write_extracted(root, train_files, val_files)


def _numbers_in(val, synsets, validation_labels):
    """File numbers for ``val`` whose labels in ``validation_labels`` are their synsets."""
    if validation_labels is None:
        validation_labels = imagenet_labels.validation_synsets()
    counts = {}
    for label, _, _ in val:
        counts[label] = counts.get(label, 0) + 1
    numbers = validation_numbers(synsets, max(counts.values()), validation_labels)
    taken = {synset: iter(numbers[synset]) for synset in synsets}
    return [next(taken[synsets[label]]) for label, _, _ in val]


def _write_archives(root, train_files, val_files):
    records = []
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w", format=tarfile.USTAR_FORMAT) as outer:
        for synset in sorted({f[0] for f in train_files}):
            inner = [(name, data) for s, name, _, data in train_files if s == synset]
            add_member(outer, f"{synset}.tar", make_tar(inner))
        records += [GeneratedFile("train", f"{s}.tar/{name}", s, kind)
                    for s, name, kind, _ in train_files]
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for synset, name, kind, data in sorted(val_files, key=lambda f: f[1]):
            add_member(tar, name, data)
            records.append(GeneratedFile("validation", name, synset, kind))
    return records


def _write_extracted(root, train_files, val_files):
    records = []
    for synset, name, kind, data in train_files:
        (root / "train" / synset).mkdir(parents=True, exist_ok=True)
        (root / "train" / synset / name).write_bytes(data)
        records.append(GeneratedFile("train", f"train/{synset}/{name}", synset, kind))
    (root / "val").mkdir(parents=True, exist_ok=True)
    for synset, name, kind, data in val_files:
        (root / "val" / name).write_bytes(data)
        records.append(GeneratedFile("validation", f"val/{name}", synset, kind))
    return records


_FOLDER_EXTENSIONS = (".jpg", ".JPEG", ".jpeg", ".JPG", ".png", ".bmp", ".gif", ".Png")


def _write_image_folder(root, classes, items):
    """``<class>/<name>``, no split: converters split it with a validation fraction."""
    records = []
    for index, (label, kind, data) in enumerate(items):
        extension = _FOLDER_EXTENSIONS[index % len(_FOLDER_EXTENSIONS)]
        if kind == GOOD and extension.lower() in (".png", ".bmp", ".gif"):
            kind = extension.lower()[1:]
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            data = encode(pixels, kind)
        elif kind != GOOD:
            extension = ".jpg"
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{classes[label]}/img_{index:05d}{extension}"
        (root / name).write_bytes(data)
        records.append(GeneratedFile("", name, classes[label], kind))
    return records


def write_photo_like_jpegs(folder, count, seed=0):
    """Writes ``count`` JPEGs shaped like ImageNet's (shorter side 240–500, ~100 KB, grainy as
    photos are) as ``<folder>/class<k>/img_<n>.jpg``, 10 classes, unless they are there already.
    Returns their paths."""
    folder = pathlib.Path(folder)
    existing = sorted(folder.rglob("*.jpg"))
    if len(existing) >= count:
        return existing[:count]
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        label = index % 10
        shorter = int(rng.integers(240, 501))
        longer = int(shorter * rng.uniform(1.0, 1.5))
        height, width = (shorter, longer) if rng.random() < 0.7 else (longer, shorter)
        pixels = draw_scene(label, rng, height, width, texture=28.0)
        path = folder / f"class{label}" / f"img_{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(pixels))
        paths.append(path)
    return paths


def photo_like_shards(work, count, num_shards, validation_fraction=0.0, num_workers=1):
    """``count`` photo-like JPEGs (``write_photo_like_jpegs``, in ``work/images``) converted to
    ``work/shards`` (``num_shards``: per split), unless the shards are there already: the
    benchmarks' data. Returns the shards' folder."""
    import shutil

    from pipelines import convert
    from pipelines import sources

    work = pathlib.Path(work)
    shards = work / "shards"
    if not (shards / "dataset_info.json").exists():
        shutil.rmtree(shards, ignore_errors=True)
        write_photo_like_jpegs(work / "images", count)
        plan = sources.find_image_folder(work / "images",
                                         validation_fraction=validation_fraction)
        convert.convert(plan, shards, num_shards=num_shards, num_workers=num_workers,
                        progress=False)
    return shards


def make_tar(members):
    """Returns the bytes of a tar holding ``[(name, data)]``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            add_member(tar, name, data)
    return buffer.getvalue()


def add_member(tar, name, data):
    """Adds a regular file member with fixed metadata, so that archives are reproducible."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_300_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))
