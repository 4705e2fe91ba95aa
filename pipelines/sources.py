"""Finds the converter's inputs: the official ILSVRC2012 archives (indexed in place, never
extracted), an extracted copy, or any folder of class sub-folders.

The result is a ``Plan``: every input image as an ``Entry`` (where its bytes are, its class),
and every input that cannot be used, found while indexing, as a skipped record with its reason.
Tar members are read later by offset, so workers never scan an archive.
"""

import dataclasses
import hashlib
import io
import os
import pathlib
import re
import tarfile

from pipelines import imagenet_labels

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
_BLOCK = tarfile.BLOCKSIZE


@dataclasses.dataclass(frozen=True)
class Entry:
    """One input image: its split and class, and where its bytes are."""

    split: str
    path: str  # as reported: archive member (inner tar/member) or path under the input root
    synset: str
    label: int  # 1-based position in Plan.labels
    source: str  # file on disk holding the bytes
    offset: int  # byte offset in ``source`` (0 for a plain file)
    size: int


@dataclasses.dataclass
class Plan:
    """What a conversion will read: the label space, the inputs and what was already skipped."""

    labels: list
    label_text: list
    entries: dict  # split -> [Entry]
    skipped: list  # [{"split", "path", "reason", "synset"}]
    source: dict  # how the inputs were found

    def fingerprint(self):
        """A digest of the inputs, to refuse resuming a conversion of other inputs."""
        digest = hashlib.sha256()
        for split in sorted(self.entries):
            for entry in self.entries[split]:
                digest.update(f"{split}\0{entry.path}\0{entry.label}\0{entry.size}\n".encode())
        digest.update("\n".join(self.labels).encode())
        return digest.hexdigest()


def skip(split, path, reason, synset=None):
    return {"split": split, "path": path, "reason": reason, "synset": synset}


def find_imagenet(raw_data_dir, val_labels=None):
    """Returns the plan for ImageNet in ``raw_data_dir``: archives or an extracted copy.

    Labels are the 1-based positions of the synsets in tensorflow-datasets' full 1,000-synset
    list, whichever classes the inputs hold, so that a partial conversion stays compatible
    with a full one (label = tfds label + 1).

    Raises:
        FileNotFoundError: naming what was expected, if neither layout is there.
    """
    root = pathlib.Path(raw_data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--raw_data_dir {root} is not a folder")
    labels = list(imagenet_labels.synsets())
    label_of = {synset: index for index, synset in enumerate(labels, start=1)}
    validation = (imagenet_labels.read_label_file(val_labels) if val_labels
                  else imagenet_labels.validation_synsets())
    entries, skipped, source = {}, [], {"raw_data_dir": str(root)}
    if (root / TRAIN_TAR).is_file():
        entries["train"] = _index_train_tar(root / TRAIN_TAR, label_of, skipped)
        source["train"] = TRAIN_TAR
    elif (root / "train").is_dir():
        entries["train"] = _index_class_folders(root / "train", "train", label_of, skipped, root)
        source["train"] = "train/"
    if (root / VAL_TAR).is_file():
        entries["validation"] = _index_val_tar(root / VAL_TAR, validation, label_of, skipped)
        source["validation"] = VAL_TAR
    elif (root / "val").is_dir():
        entries["validation"] = _index_val_folder(root / "val", validation, label_of, skipped,
                                                  root)
        source["validation"] = "val/"
    if not entries:
        found = sorted(p.name for p in root.iterdir())[:20]
        raise FileNotFoundError(
            f"--raw_data_dir {root} holds neither {TRAIN_TAR} / {VAL_TAR} nor train/ and val/ "
            f"folders; found: {found}")
    source["validation_labels"] = str(val_labels) if val_labels else "tensorflow-datasets"
    return Plan(labels, list(imagenet_labels.synset_names()), entries, skipped, source)


def find_image_folder(image_folder, validation_fraction=0.0):
    """Returns the plan for ``DIR/<class>/…`` or ``DIR/train/<class>`` + ``DIR/val/<class>``.

    Classes are the sorted folder names (of ``train/`` in the split layout). A single folder is
    split by ``validation_fraction``, deterministically by file name.
    """
    root = pathlib.Path(image_folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--image_folder {root} is not a folder")
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    split_layout = (root / "train").is_dir() and val_dir is not None
    class_root = root / "train" if split_layout else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"--image_folder {class_root} has no class sub-folders")
    label_of = {name: index for index, name in enumerate(classes, start=1)}
    skipped = []
    if split_layout:
        entries = {
            "train": _index_class_folders(root / "train", "train", label_of, skipped, root,
                                          extensions=IMAGE_EXTENSIONS),
            "validation": _index_class_folders(val_dir, "validation", label_of, skipped, root,
                                               extensions=IMAGE_EXTENSIONS),
        }
    else:
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"--validation_fraction must be in [0, 1), got {validation_fraction}")
        found = _index_class_folders(root, "train", label_of, skipped, root,
                                     extensions=IMAGE_EXTENSIONS)
        entries = {"train": [], "validation": []}
        for entry in found:
            split = "validation" if _hash_fraction(entry.path) < validation_fraction else "train"
            entries[split].append(dataclasses.replace(entry, split=split))
        if validation_fraction == 0.0:
            del entries["validation"]
    source = {"image_folder": str(root), "layout": "train/val" if split_layout else "single",
              "validation_fraction": validation_fraction}
    return Plan(classes, list(classes), entries, skipped, source)


def _hash_fraction(name):
    """A number in [0, 1) fixed by ``name``: the same split on every run and machine."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16**12


def _index_class_folders(folder, split, label_of, skipped, root, extensions=None):
    """``folder/<class>/**`` files; files outside a known class folder are skipped."""
    entries = []
    for path in _walk_files(folder):
        relative = path.relative_to(root).as_posix()
        parts = path.relative_to(folder).parts
        if len(parts) < 2:
            skipped.append(skip(split, relative, "not inside a class folder"))
            continue
        synset = parts[0]
        if synset not in label_of:
            skipped.append(skip(split, relative, f"unknown class {synset!r}", synset))
        elif extensions and path.suffix.lower() not in extensions:
            skipped.append(skip(split, relative, f"not an image file extension "
                                f"({path.suffix or 'none'}; expected {', '.join(extensions)})",
                                synset))
        else:
            entries.append(_file_entry(split, relative, synset, label_of[synset], path))
    return entries


def _index_val_folder(folder, validation, label_of, skipped, root):
    """``val/`` flat (labels by file number) and/or in synset folders."""
    entries = []
    for path in _walk_files(folder):
        relative = path.relative_to(root).as_posix()
        parts = path.relative_to(folder).parts
        if len(parts) >= 2:
            synset = parts[0]
            if synset in label_of:
                entries.append(_file_entry("validation", relative, synset, label_of[synset],
                                           path))
            else:
                skipped.append(skip("validation", relative, f"unknown synset {synset!r}",
                                    synset))
            continue
        synset, reason = _validation_synset(path.name, validation, label_of)
        if reason:
            skipped.append(skip("validation", relative, reason, synset))
        else:
            entries.append(_file_entry("validation", relative, synset, label_of[synset], path))
    return entries


def _validation_synset(name, validation, label_of):
    """Returns ``(synset, None)``, or ``(synset or None, reason)`` if it cannot be labelled.

    The label follows from the file number (ILSVRC2012_val_00000042 → line 42), never from the
    order of the files: a partial validation set stays correctly labelled.
    """
    match = _VAL_NAME.match(name)
    if not match:
        return None, "not an ILSVRC2012_val_NNNNNNNN.JPEG name: no validation label"
    number = int(match.group(1))
    if not 1 <= number <= len(validation):
        return None, (f"no validation label for file number {number} (the label list has "
                      f"{len(validation)})")
    synset = validation[number - 1]
    if synset not in label_of:
        return synset, f"unknown synset {synset!r} in the validation label list"
    return synset, None


def _walk_files(folder):
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for name in sorted(files):
            yield pathlib.Path(directory) / name


def _file_entry(split, relative, synset, label, path):
    return Entry(split, relative, synset, label, str(path), 0, path.stat().st_size)


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``base`` of an open file: an inner tar in place."""

    def __init__(self, file, base, size):
        super().__init__()
        self._file, self._base, self._size, self._position = file, base, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, position, whence=io.SEEK_SET):
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, start + position)
        return self._position

    def readinto(self, buffer):
        count = max(0, min(len(buffer), self._size - self._position))
        self._file.seek(self._base + self._position)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def scan_tar(file, base, size, where, split, skipped):
    """Returns ``[(member, absolute data offset)]`` of the regular files of a tar in place.

    Readable members are kept whatever else is wrong with the archive; links, devices, corrupt
    stretches and members cut short are appended to ``skipped`` with their reason.
    """
    window = _Window(file, base, size)
    try:
        # ignore_zeros: go on past a corrupt header to the members after it.
        tar = tarfile.open(fileobj=window, mode="r:", ignore_zeros=True)
    except tarfile.TarError as error:
        skipped.append(skip(split, where, f"not a readable tar archive: {error}"))
        return []
    members, expected = [], 0
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, OSError, UnicodeDecodeError) as error:
            skipped.append(skip(split, where, f"corrupt tar archive after byte {expected}: "
                                f"{error}; later members lost"))
            break
        if member is None:
            break
        _check_gap(window, expected, member.offset, where, split, skipped)
        expected = member.offset_data + -(-member.size // _BLOCK) * _BLOCK
        name = f"{where}/{member.name}" if where else member.name
        if member.isdir():
            continue
        if member.issym() or member.islnk():
            skipped.append(skip(split, name, f"link member (to {member.linkname!r}), not a file"))
        elif member.ischr() or member.isblk() or member.isfifo():
            skipped.append(skip(split, name, "device or FIFO member, not a file"))
        elif not member.isreg() or member.issparse():
            skipped.append(skip(split, name, "not a regular file member"))
        elif member.offset_data + member.size > size:
            present = max(0, size - member.offset_data)
            skipped.append(skip(split, name, f"truncated archive member: declares "
                                f"{member.size} bytes, {present} present"))
        else:
            members.append((member, base + member.offset_data))
    _check_gap(window, expected, size, where, split, skipped, at_end=True)
    return members


def _check_gap(window, start, end, where, split, skipped, at_end=False):
    """Bytes between members must be zero padding; anything else was a corrupt stretch."""
    if end <= start:
        return
    window.seek(start)
    data = window.read(min(end - start, 1 << 20))
    if data.strip(b"\0"):
        what = "trailing data" if at_end else "corrupt data"
        skipped.append(skip(split, where or "(archive)", f"{what} at bytes {start}–{end} of the "
                            "tar skipped (members there, if any, lost)"))


def _index_train_tar(path, label_of, skipped):
    """The train tar: one ``<synset>.tar`` per class, each holding that class's images."""
    entries = []
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        for member, offset in scan_tar(file, 0, size, "", "train", skipped):
            if not member.name.endswith(".tar"):
                skipped.append(skip("train", member.name, "not a per-synset .tar member"))
                continue
            synset = os.path.basename(member.name)[: -len(".tar")]
            for image, image_offset in scan_tar(file, offset, member.size, member.name, "train",
                                                skipped):
                name = f"{member.name}/{image.name}"
                if synset not in label_of:
                    skipped.append(skip("train", name, f"unknown synset {synset!r}", synset))
                    continue
                entries.append(Entry("train", name, synset, label_of[synset], str(path),
                                     image_offset, image.size))
    return entries


def _index_val_tar(path, validation, label_of, skipped):
    """The flat validation tar: ``ILSVRC2012_val_%08d.JPEG`` labelled by file number."""
    entries = []
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        for member, offset in scan_tar(file, 0, size, "", "validation", skipped):
            synset, reason = _validation_synset(os.path.basename(member.name), validation,
                                                label_of)
            if reason:
                skipped.append(skip("validation", member.name, reason, synset))
                continue
            entries.append(Entry("validation", member.name, synset, label_of[synset],
                                 str(path), offset, member.size))
    return entries
