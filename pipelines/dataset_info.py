"""One reader for a folder of shards: everything known about it, read from its metadata, never
from its images.

Three kinds of folder:

* ``vgg``: our converter's shards and its manifest, ``dataset_info.json`` (counts per split,
  the label map, every shard with its size and sha256);
* ``slim``: shards with the same keys and names but no metadata (slim's
  ``build_imagenet_data.py``, tf_cnn_benchmarks);
* ``tfds``: a tfds-prepared folder (``imagenet2012/5.1.0/``): tfds's own ``dataset_info.json``
  (the same file name as our manifest, told apart by content: its ``splits`` is a list), read
  by tfds itself.

A glob pattern or a list of files is read as the files of whichever split is asked for, with
the metadata beside the first file.
"""

import dataclasses
import glob
import os

from pipelines import imagenet_labels
from pipelines import schema
from pipelines.foundation import errors
from pipelines.foundation import storage

FORMATS = ("vgg", "slim", "tfds")
# The feature keys of the records: our and slim's schema, or tfds's imagenet2012 features.
RECORD_KEYS = {
    "vgg": {"encoded": schema.ENCODED, "label": schema.LABEL, "filename": schema.FILENAME},
    "tfds": {"encoded": "image", "label": "label", "filename": "file_name"},
}
_SPLIT_ALIASES = {"val": "validation"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a data folder holds.

    Attributes:
        location: the folder, pattern or file list as given.
        format: one of ``FORMATS``.
        files: ``{split: (paths, ...)}``; for a pattern or list, ``{None: (paths, ...)}``.
        num_classes: from the metadata, or None.
        num_examples: ``{split: count}`` where the metadata states it.
        label_offset: the stored label of the first class (1 for ours and slim's, whose label 0
            is reserved; 0 for tfds).
        synsets: the class identifiers in stored-label order from ``label_offset``, or None.
        names: their human-readable names, or None.
        shards: ``{split: {file name: {"num_examples", "sha256", ...}}}`` from our manifest.
    """

    location: object
    format: str
    files: dict
    num_classes: int | None = None
    num_examples: dict = dataclasses.field(default_factory=dict)
    label_offset: int = schema.LABEL_OFFSET
    synsets: tuple | None = None
    names: tuple | None = None
    shards: dict = dataclasses.field(default_factory=dict)

    @property
    def record_keys(self):
        """``{"encoded", "label", "filename"}`` → the feature keys of this format's records."""
        return RECORD_KEYS["tfds" if self.format == "tfds" else "vgg"]

    def expected_shards(self):
        """``{file name: {"size_bytes", "sha256", ...}}`` of every shard the metadata records
        (our manifest), for ``shard_integrity``."""
        return {name: entry for split in self.shards.values() for name, entry in split.items()}

    def shard_sizes(self, paths):
        """``[[file name, size in bytes]]`` of ``paths``: the manifest's sizes where it records
        them, else one ``stat`` per shard (never a read)."""
        expected = self.expected_shards()
        sizes = []
        for path in paths:
            name = os.path.basename(path)
            size = expected.get(name, {}).get("size_bytes")
            sizes.append([name, size if size is not None else storage.size(path)])
        return sizes

    def split_files(self, split):
        """The files of ``split`` (all files for a pattern or list).

        Raises:
            FileNotFoundError: naming the folder and the names expected, if there are none.
        """
        split = _SPLIT_ALIASES.get(split, split)
        files = self.files.get(None) or self.files.get(split)
        if not files:
            raise FileNotFoundError(
                f"no {split} shards in {self.location} (expected {schema.shard_pattern(split)} "
                f"or a tfds folder's *-{split}.tfrecord-*; found splits: "
                f"{sorted(k for k in self.files if k) or 'none'})")
        return list(files)

    def class_names(self, num_classes, label_offset=None):
        """Returns ``(synsets, names)`` of a model's output classes, index by index, or None.

        Output index i is the class whose stored label is ``i + label_offset`` (default: this
        format's). Without a label map, a net of 1,000 outputs is named as ImageNet's (tfds
        order, as slim's and tfds's ImageNet shards are). The output of the reserved label 0 (a
        model trained with ``label_offset=0`` on our shards) is "background", as slim names it.

        Raises:
            ValueError: if an output has no class in the label map.
        """
        if label_offset is None:
            label_offset = self.label_offset
        synsets, names = self.synsets, self.names
        if synsets is None:
            if num_classes + label_offset - self.label_offset != \
                    imagenet_labels.NUM_IMAGENET_CLASSES:
                return None
            synsets, names = imagenet_labels.synsets(), imagenet_labels.synset_names()
        result_synsets, result_names = [], []
        for index in range(num_classes):
            position = index + label_offset - self.label_offset
            if 0 <= position < len(synsets):
                result_synsets.append(synsets[position])
                result_names.append(names[position])
            elif position == -1:
                result_synsets.append("background")
                result_names.append("background")
            else:
                raise errors.UserError(f"output {index} of {num_classes} has no class in "
                                       f"{self.location} ({len(synsets)} classes, "
                                       f"label_offset={label_offset})")
        return result_synsets, result_names


def read_info(source):
    """Returns the ``DatasetInfo`` of a folder of shards, a glob pattern or a list of files.

    Reads metadata files only (and, for shards without any, the keys of one record to tell
    slim's from tfds's): its cost grows with the number of shards, never with the images.

    Raises:
        FileNotFoundError: if no shards are found.
    """
    if isinstance(source, DatasetInfo):
        return source
    if isinstance(source, (str, os.PathLike)):
        storage.check_filesystem(os.fspath(source), "the data")
    if isinstance(source, (str, os.PathLike)) and not glob.has_magic(os.fspath(source)) and \
            not storage.exists(source):
        raise FileNotFoundError(f"{os.fspath(source)} does not exist: give the folder of the "
                                "shards (vgg-convert's --output_dir, or slim's or tfds's)")
    files = _find_files(source)
    if not any(files.values()):
        where = source if isinstance(source, (list, tuple)) else os.fspath(source)
        raise FileNotFoundError(
            f"no shards found in {where} (expected {schema.shard_pattern('train')} / "
            f"{schema.shard_pattern('validation')} from vgg-convert or slim, or a tfds folder)")
    first = next(paths[0] for paths in files.values() if paths)
    folder = storage.dirname(first)
    metadata = _read_manifest(folder)  # ours, or tfds's namesake
    if isinstance(metadata, dict) and isinstance(metadata.get("splits"), list):
        return _tfds_info(source, files, folder)
    if isinstance(metadata, dict) and "num_classes" in metadata:
        return _our_info(source, files, metadata)
    if _has_tfds_keys(first):
        return DatasetInfo(source, "tfds", files, label_offset=0)
    return DatasetInfo(source, "slim", files)


def read_manifest(folder):
    """Our converter's whole manifest (``dataset_info.json``: counts, label map, shards, every
    skipped and repaired input), or None where there is none (or it is tfds's namesake)."""
    manifest = _read_manifest(folder)
    if isinstance(manifest, dict) and "num_classes" in manifest:
        return manifest
    return None


def _read_manifest(folder):
    return storage.read_json(os.path.join(folder, schema.MANIFEST),
                             written_by="vgg-convert (or tfds)",
                             fix="convert the data again into an empty --output_dir")


def count_records(files):
    """The number of records in ``files``: reads every byte (metadata-less shards only)."""
    import tensorflow as tf

    return int(tf.data.TFRecordDataset(list(files)).reduce(
        tf.constant(0, tf.int64), lambda count, _: count + 1))


def _find_files(source):
    if isinstance(source, (list, tuple)):
        return {None: tuple(sorted(str(f) for f in source))}
    source = os.fspath(source)
    if not storage.isdir(source):
        return {None: tuple(storage.glob(source))}
    found = {}
    for split in schema.SPLITS:
        files = storage.glob(os.path.join(source, schema.shard_pattern(split)))
        files = files or storage.glob(os.path.join(source, f"*-{split}.tfrecord-*"))
        if files:
            found[split] = tuple(sorted(files))
    return found


def _our_info(source, files, manifest):
    splits = manifest.get("splits", {})
    return DatasetInfo(
        source, "vgg", files, num_classes=int(manifest["num_classes"]),
        num_examples={split: int(info["num_examples"]) for split, info in splits.items()},
        label_offset=int(manifest.get("label_offset", schema.LABEL_OFFSET)),
        synsets=tuple(manifest["labels"]), names=tuple(manifest["label_text"]),
        shards={split: {shard["file"]: shard for shard in info.get("shards", [])}
                for split, info in splits.items()})


def _tfds_info(source, files, folder):
    """tfds's metadata, read by tfds itself (``builder_from_directory``): example counts per
    split, the number of classes and their names (ImageNet's human names where the synsets are
    ImageNet's)."""
    import tensorflow_datasets as tfds

    local = folder[len("file://"):] if storage.scheme(folder) == "file" else folder
    with errors.user_input():  # tfds judges its own files
        info = tfds.builder_from_directory(local).info
    num_examples = {_SPLIT_ALIASES.get(name, name): int(split.num_examples)
                    for name, split in info.splits.items()}
    label = info.features["label"] if "label" in info.features else None
    synsets = tuple(label.names) if label is not None else None
    names = None
    if synsets:
        imagenet = dict(zip(imagenet_labels.synsets(), imagenet_labels.synset_names(),
                            strict=True))
        names = tuple(imagenet.get(synset, synset) for synset in synsets)
    return DatasetInfo(source, "tfds", files,
                       num_classes=int(label.num_classes) if label is not None else None,
                       num_examples=num_examples, label_offset=0, synsets=synsets, names=names)


def _has_tfds_keys(path):
    """Whether the first record of ``path`` has tfds's keys rather than our and slim's."""
    import tensorflow as tf

    for raw in tf.data.TFRecordDataset(path).take(1):
        keys = tf.train.Example.FromString(raw.numpy()).features.feature
        return "image" in keys and schema.ENCODED not in keys
    return False
