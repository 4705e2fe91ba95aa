"""Finds the converter's inputs: the official ILSVRC2012 archives (indexed in place, never
extracted), an extracted copy, or any folder of class sub-folders.

The result is a ``Plan``: every input image as an ``Entry`` (where its bytes are, its class),
and every input that cannot be used, found while indexing, as a skipped record with its reason.
Tar members are read later by offset (``tar_index``), so workers never scan an archive.
"""

import dataclasses
import hashlib
import os
import re

from pipelines import imagenet_labels
from pipelines import tar_index
from pipelines.foundation import errors
from pipelines.foundation import storage

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
# Names that are not data, wherever they appear: hidden names (".DS_Store", ".ipynb_checkpoints",
# AppleDouble "._x.jpg", ".Trashes", ".Spotlight-V100", ".fseventsd") and the litter of
# operating systems, file managers, NAS boxes and tools. Neither classes nor inputs; listed in
# the manifest as ignored.
LITTER = frozenset({
    "__MACOSX",  # macOS's zip resource forks
    "Thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "Desktop.ini",  # Windows
    "$RECYCLE.BIN", "System Volume Information", "RECYCLER",
    "lost+found",  # fsck
    "@eaDir", "#recycle", "#snapshot",  # Synology and other NAS
    "__pycache__",
    "Icon\r",  # macOS custom folder icons
})
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)


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
    ignored: list = dataclasses.field(default_factory=list)  # hidden and system names

    def total_entries(self):
        return sum(len(entries) for entries in self.entries.values())

    def fingerprint(self):
        """A digest of the inputs, to refuse resuming a conversion of other inputs."""
        digest = hashlib.sha256()
        for split in sorted(self.entries):
            for entry in self.entries[split]:
                digest.update(f"{split}\0{entry.path}\0{entry.label}\0{entry.size}\n".encode())
        digest.update("\n".join(self.labels).encode())
        return digest.hexdigest()


def is_litter(name):
    """Whether a file or folder name is not data (``LITTER``, or hidden)."""
    return name.startswith(".") or name in LITTER or name.endswith(":Zone.Identifier")


def skip(split, path, reason, synset=None):
    """A skipped input as the manifest records it."""
    return {"split": split, "path": path, "reason": reason, "synset": synset}


def _reporter(split, skipped):
    """``report(path, reason)`` for ``tar_index.scan_tar``: appends to ``skipped``."""
    return lambda path, reason: skipped.append(skip(split, path, reason))


def find_imagenet(raw_data_dir, val_labels=None):
    """Returns the plan for ImageNet in ``raw_data_dir``: archives or an extracted copy.

    Labels are the 1-based positions of the synsets in tensorflow-datasets' full 1,000-synset
    list, whichever classes the inputs hold, so that a partial conversion stays compatible
    with a full one (label = tfds label + 1).

    Raises:
        FileNotFoundError: naming what was expected, if neither layout is there.
    """
    root = str(raw_data_dir).rstrip("/") or "/"
    storage.check_filesystem(root, "--raw_data_dir")
    if not storage.isdir(root):
        raise FileNotFoundError(f"--raw_data_dir {root} is not a folder")
    labels = list(imagenet_labels.synsets())
    label_of = {synset: index for index, synset in enumerate(labels, start=1)}
    validation = (imagenet_labels.read_label_file(val_labels) if val_labels
                  else imagenet_labels.validation_synsets())
    entries, skipped, source, ignored = {}, [], {"raw_data_dir": root}, []
    if storage.isfile(storage.join(root, TRAIN_TAR)):
        entries["train"] = _index_train_tar(storage.join(root, TRAIN_TAR), label_of, skipped)
        source["train"] = TRAIN_TAR
    elif storage.isdir(storage.join(root, "train")):
        entries["train"] = _index_class_folders(storage.join(root, "train"), "train", label_of,
                                                skipped, root, ignored)
        source["train"] = "train/"
    if storage.isfile(storage.join(root, VAL_TAR)):
        entries["validation"] = _index_val_tar(storage.join(root, VAL_TAR), validation, label_of,
                                               skipped)
        source["validation"] = VAL_TAR
    elif storage.isdir(storage.join(root, "val")):
        entries["validation"] = _index_val_folder(storage.join(root, "val"), validation,
                                                  label_of, skipped, root, ignored)
        source["validation"] = "val/"
    if not entries:
        found = storage.listdir(root)[:20]
        raise FileNotFoundError(
            f"--raw_data_dir {root} holds neither {TRAIN_TAR} / {VAL_TAR} nor train/ and val/ "
            f"folders; found: {found}")
    source["validation_labels"] = str(val_labels) if val_labels else "tensorflow-datasets"
    return Plan(labels, list(imagenet_labels.synset_names()), entries, skipped, source,
                sorted(ignored))


def find_image_folder(image_folder, validation_fraction=0.0):
    """Returns the plan for ``DIR/<class>/…`` or ``DIR/train/<class>`` + ``DIR/val/<class>``.

    Classes are the sorted folder names (of ``train/`` in the split layout), hidden and system
    folders left out (``is_litter``). A single folder's inputs all come as "train", and the
    converter holds out ``validation_fraction`` of each class's images that convert
    (``convert.split_by_class``), deterministically by file name. Every other file is an input,
    judged by its content when the shards are written: its extension decides nothing.
    """
    root = str(image_folder).rstrip("/") or "/"
    storage.check_filesystem(root, "--image_folder")
    if not storage.isdir(root):
        raise FileNotFoundError(f"--image_folder {root} is not a folder")
    val_dir = next((storage.join(root, n) for n in ("val", "validation")
                    if storage.isdir(storage.join(root, n))), None)
    split_layout = storage.isdir(storage.join(root, "train")) and val_dir is not None
    class_root = storage.join(root, "train") if split_layout else root
    try:
        classes = sorted(name for name in storage.listdir(class_root)
                         if not is_litter(name) and storage.isdir(storage.join(class_root, name)))
    except OSError as error:
        raise FileNotFoundError(f"--image_folder {class_root} cannot be listed: "
                                f"{error.strerror or error}") from None
    if not classes:
        raise FileNotFoundError(f"--image_folder {class_root} has no class sub-folders")
    label_of = {name: index for index, name in enumerate(classes, start=1)}
    skipped, ignored = [], []
    if split_layout:
        ignored += [name + ("/" if storage.isdir(storage.join(root, name)) else "")
                    for name in storage.listdir(root) if is_litter(name)]
        entries = {
            "train": _index_class_folders(storage.join(root, "train"), "train", label_of,
                                          skipped, root, ignored),
            "validation": _index_class_folders(val_dir, "validation", label_of, skipped, root,
                                               ignored),
        }
    else:
        if not 0.0 <= validation_fraction < 1.0:
            raise errors.UserError(f"--validation_fraction must be in [0, 1), got "
                                   f"{validation_fraction}")
        # Split by the converter, class by class, over the inputs that convert (a fraction of
        # the files found would not be one of each class's images: convert.split_by_class).
        entries = {"train": _index_class_folders(root, "train", label_of, skipped, root,
                                                 ignored)}
    source = {"image_folder": root, "layout": "train/val" if split_layout else "single",
              "validation_fraction": validation_fraction}
    return Plan(classes, list(classes), entries, skipped, source, sorted(ignored))


def hash_fraction(name):
    """A number in [0, 1) fixed by ``name``: the same split on every run and machine."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16**12


def _index_class_folders(folder, split, label_of, skipped, root, ignored):
    """``folder/<class>/**`` files; files outside a known class folder are skipped."""
    entries = []
    for path in _walk_files(folder, root, ignored):
        relative = storage.relative(path, root)
        parts = storage.relative(path, folder).split("/")
        if len(parts) < 2:
            skipped.append(skip(split, relative, "not inside a class folder"))
            continue
        synset = parts[0]
        if synset not in label_of:
            skipped.append(skip(split, relative, f"unknown class {synset!r}", synset))
        else:
            _add_file(entries, skipped, split, relative, synset, label_of[synset], path)
    return entries


def _index_val_folder(folder, validation, label_of, skipped, root, ignored):
    """``val/`` flat (labels by file number) and/or in synset folders."""
    entries = []
    for path in _walk_files(folder, root, ignored):
        relative = storage.relative(path, root)
        parts = storage.relative(path, folder).split("/")
        if len(parts) >= 2:
            synset = parts[0]
            if synset in label_of:
                _add_file(entries, skipped, "validation", relative, synset, label_of[synset],
                          path)
            else:
                skipped.append(skip("validation", relative, f"unknown synset {synset!r}",
                                    synset))
            continue
        synset, reason = _validation_synset(storage.basename(path), validation, label_of)
        if reason:
            skipped.append(skip("validation", relative, reason, synset))
        else:
            _add_file(entries, skipped, "validation", relative, synset, label_of[synset], path)
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


def _walk_files(folder, root, ignored):
    """Every file under ``folder`` (following links to folders, each folder once), in name
    order; hidden and system names are not entered or yielded but added to ``ignored``
    (relative to ``root``, folders with a trailing ``/``)."""
    seen = set()
    for here, subdirs, files in storage.walk(folder):
        real = here if storage.is_url(here) else os.path.realpath(here)  # no links on buckets
        if real in seen:  # a link back to a folder read already: a loop, or a second name
            ignored.append(storage.relative(here, root) + "/ (a link to a folder read already)")
            subdirs[:] = []
            continue
        seen.add(real)
        ignored += [storage.relative(storage.join(here, name), root) + "/"
                    for name in subdirs if is_litter(name)]
        subdirs[:] = sorted(name for name in subdirs if not is_litter(name))
        for name in sorted(files):
            if is_litter(name):
                ignored.append(storage.relative(storage.join(here, name), root))
            else:
                yield storage.join(here, name)


def _add_file(entries, skipped, split, relative, synset, label, path):
    """Adds the file at ``path`` as an input, or skips it with the reason it cannot be one (a
    broken link, a file that cannot be examined): one file never stops the run."""
    try:
        size = storage.size(path)
    except OSError as error:
        if storage.islink(path):
            reason = f"broken symbolic link (to {os.readlink(path)})"
        else:
            reason = f"unreadable file: {error.strerror or error}"
        skipped.append(skip(split, relative, reason, synset))
        return
    entries.append(Entry(split, relative, synset, label, path, 0, size))


def _index_train_tar(path, label_of, skipped):
    """The train tar: one ``<synset>.tar`` per class, each holding that class's images."""
    entries = []
    with storage.open_file(path, "rb") as file:
        size = storage.size(path)
        report = _reporter("train", skipped)
        for member, offset in tar_index.scan_tar(file, 0, size, "", report):
            if not member.name.endswith(".tar"):
                skipped.append(skip("train", member.name, "not a per-synset .tar member"))
                continue
            synset = os.path.basename(member.name)[: -len(".tar")]
            for image, image_offset in tar_index.scan_tar(file, offset, member.size,
                                                          member.name, report):
                name = f"{member.name}/{image.name}"
                if synset not in label_of:
                    skipped.append(skip("train", name, f"unknown synset {synset!r}", synset))
                    continue
                entries.append(Entry("train", name, synset, label_of[synset], path,
                                     image_offset, image.size))
    return entries


def _index_val_tar(path, validation, label_of, skipped):
    """The flat validation tar: ``ILSVRC2012_val_%08d.JPEG`` labelled by file number."""
    entries = []
    with storage.open_file(path, "rb") as file:
        size = storage.size(path)
        report = _reporter("validation", skipped)
        for member, offset in tar_index.scan_tar(file, 0, size, "", report):
            synset, reason = _validation_synset(os.path.basename(member.name), validation,
                                                label_of)
            if reason:
                skipped.append(skip("validation", member.name, reason, synset))
                continue
            entries.append(Entry("validation", member.name, synset, label_of[synset],
                                 path, offset, member.size))
    return entries
