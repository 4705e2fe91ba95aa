"""The one owner of file operations. Every path the user gives may be a local path or a URL of a
filesystem TensorFlow reads: ``gs://`` (built into TensorFlow), ``s3://`` and others with
tensorflow-io, ``file://``, the in-memory ``ram://`` of the tests. Local paths go through the
operating system (as fast as it is, and durable with ``fsync``); URLs through ``tf.io.gfile``,
imported only then, so that a program reading local files starts without TensorFlow.

One durability rule for every file we write whole (a manifest, ``summary.json``, ``run.json``, a
CSV log rewritten, a PNG, a Keras file): it is written under a temporary name beside the target,
made durable (on a local disk: flushed and ``fsync``-ed), then renamed over the target, so that a
reader, or a run resumed after a crash at any instant, finds the old file or the new one, never a
part of one. A temporary file a crash left behind is ignored by every reader and overwritten by
the next write. On an object store a rename is a copy and a delete, not atomic: a crash between
the two leaves the temporary object and the target, the target whole (an object is written whole
or not at all when its upload closes); the next write overwrites both.
"""

import glob as local_glob
import hashlib
import json
import os
import shutil

from pipelines import errors

TEMPORARY_SUFFIX = ".tmp"
_KNOWN_ELSEWHERE = {"s3": "tensorflow-io (pip install tensorflow-io)",
                    "hdfs": "TensorFlow's HDFS support (libhdfs and the Hadoop environment)",
                    "az": "tensorflow-io (pip install tensorflow-io)"}


def is_url(path):
    """Whether ``path`` names a filesystem by its scheme (``gs://b/x``), not a local path."""
    return "://" in str(path)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def scheme(path):
    return str(path).split("://", 1)[0] if is_url(path) else ""


def check_filesystem(path, what="path"):
    """Raises ``UserError`` if ``path`` is a URL whose scheme no registered filesystem reads,
    naming the scheme and what provides it."""
    if not is_url(path) or scheme(path) in ("file", "ram", "gs"):
        return
    try:
        _gfile().exists(str(path))
    except Exception as error:  # noqa: BLE001 - TensorFlow's UnimplementedError, among others
        if "not implemented" not in str(error) and "scheme" not in str(error):
            raise
        provider = _KNOWN_ELSEWHERE.get(scheme(path), "a TensorFlow filesystem plugin for it")
        raise errors.UserError(
            f"{what} {path}: TensorFlow reads no {scheme(path)}:// filesystem here; it comes "
            f"with {provider}") from None


def join(path, *parts):
    return os.path.join(str(path), *[str(p) for p in parts])


def basename(path):
    return os.path.basename(str(path).rstrip("/"))


def dirname(path):
    return os.path.dirname(str(path).rstrip("/"))


def exists(path):
    return _gfile().exists(str(path)) if is_url(path) else os.path.exists(path)


def isdir(path):
    return _gfile().isdir(str(path)) if is_url(path) else os.path.isdir(path)


def isfile(path):
    return exists(path) and not isdir(path)


def listdir(path):
    """The names in a folder, sorted (a folder's own names, without a trailing slash)."""
    if is_url(path):
        return sorted(name.rstrip("/") for name in _gfile().listdir(str(path)))
    return sorted(os.listdir(path))


def glob(pattern):
    """The paths matching ``pattern``, sorted."""
    if is_url(pattern):
        return sorted(_gfile().glob(str(pattern)))
    return sorted(local_glob.glob(str(pattern)))


def size(path):
    """A file's size in bytes."""
    return _gfile().stat(str(path)).length if is_url(path) else os.path.getsize(path)


def mtime(path):
    """A file's modification time, in seconds since the epoch."""
    if is_url(path):
        return _gfile().stat(str(path)).mtime_nsec / 1e9
    return os.path.getmtime(path)


def makedirs(path):
    if is_url(path):
        _gfile().makedirs(str(path))
    else:
        os.makedirs(path, exist_ok=True)


def remove(path):
    """Removes a file; nothing if it is not there."""
    if is_url(path):
        if _gfile().exists(str(path)):
            _gfile().remove(str(path))
    elif os.path.lexists(path):
        os.remove(path)


def rmtree(path):
    """Removes a folder and all it holds; nothing if it is not there."""
    if is_url(path):
        if _gfile().exists(str(path)):
            _gfile().rmtree(str(path))
    else:
        shutil.rmtree(path, ignore_errors=True)


def open_file(path, mode="rb"):
    """A file object: ``open`` for a local path, ``tf.io.gfile.GFile`` for a URL (seekable when
    read)."""
    return _gfile().GFile(str(path), mode) if is_url(path) else open(path, mode)


def read_bytes(path):
    with open_file(path, "rb") as file:
        return file.read()


def read_text(path):
    return read_bytes(path).decode("utf-8")


def read_json(path, default=None):
    """The JSON value in ``path``, or ``default`` if there is no such file."""
    if not exists(path):
        return default
    return json.loads(read_text(path))


def sha256(path, chunk=1 << 20):
    """The sha256 of a file, read in chunks (a shard is never held in memory whole)."""
    digest = hashlib.sha256()
    with open_file(path, "rb") as file:
        for block in iter(lambda: file.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_path(path):
    """Where ``path`` is written before the rename that completes it (``write_atomic``)."""
    return str(path) + TEMPORARY_SUFFIX


def write_atomic(path, data):
    """Writes ``data`` (bytes or text) to ``path`` whole, by the module's durability rule."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    temporary = temporary_path(path)
    if is_url(path):
        with _gfile().GFile(temporary, "wb") as file:
            file.write(data)
    else:
        with open(temporary, "wb") as file:
            file.write(data)
    replace(temporary, path)


def write_json(path, value):
    """Writes ``value`` as JSON to ``path`` whole (``write_atomic``)."""
    write_atomic(path, json.dumps(value, indent=1, ensure_ascii=False))


def replace(source, target):
    """Completes a write: ``source`` (written in full) renamed over ``target``. On a local disk
    the data is made durable first (``fsync``), then the rename, then the folder's entry."""
    if is_url(target):
        _gfile().rename(str(source), str(target), overwrite=True)
        return
    with open(source, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(source, target)
    _fsync_folder(os.path.dirname(os.path.abspath(target)))


def _fsync_folder(folder):
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform that cannot open folders (Windows): the rename is what there is
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def append_text(path, text):
    """Appends ``text`` to a file (a log). On an object store, where objects cannot be appended
    to, the file is rewritten whole with the new text (``write_atomic``)."""
    if is_url(path):
        before = read_text(path) if exists(path) else ""
        write_atomic(path, before + text)
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
