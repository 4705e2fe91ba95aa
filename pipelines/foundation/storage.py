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

import contextlib
import glob as local_glob
import hashlib
import json
import os
import shutil
import sys
import tempfile

from pipelines.foundation import errors

TEMPORARY_SUFFIX = ".tmp"
# Filesystems TensorFlow itself no longer carries, and the package that registers them.
_KNOWN_ELSEWHERE = {name: "tensorflow-io (pip install tensorflow-io)"
                    for name in ("s3", "hdfs", "az", "http", "https")}


def is_url(path):
    """Whether ``path`` names a filesystem by its scheme (``gs://b/x``), not a local path."""
    return "://" in str(path)


def _gfile():
    from pipelines.foundation import tf_runtime

    # Started as quietly as the program asked, where this is TensorFlow's first use.
    tf = sys.modules.get("tensorflow") or tf_runtime.start()
    return _RaisingOSErrors(tf.io.gfile, tf.errors)


class _RaisingOSErrors:
    """``tf.io.gfile`` whose functions raise the ``OSError`` a local call would (a missing
    file: ``FileNotFoundError``), so that callers handle both kinds of path alike."""

    def __init__(self, gfile, tf_errors):
        self._gfile, self._errors = gfile, tf_errors

    def __getattr__(self, name):
        function = getattr(self._gfile, name)
        if name == "GFile":
            return function
        mapping = ((self._errors.NotFoundError, FileNotFoundError),
                   (self._errors.PermissionDeniedError, PermissionError),
                   (self._errors.AlreadyExistsError, FileExistsError))

        def call(*arguments, **keywords):
            try:
                return function(*arguments, **keywords)
            except tuple(tf_error for tf_error, _ in mapping) as error:
                local = next(os_error for tf_error, os_error in mapping
                             if isinstance(error, tf_error))
                raise local(error.message) from error

        return call


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


def check_folder(path, what="path"):
    """Raises ``UserError`` if ``path`` exists and is not a folder (a program would write into
    it as one)."""
    if exists(path) and not isdir(path):
        raise errors.UserError(f"{what}={path} is a file, not a folder: give a folder (it is "
                               "made where missing)")


def absolute(path):
    """A local path made absolute; a URL as it is."""
    return str(path) if is_url(path) else os.path.abspath(path)


def same(path, other):
    """Whether two paths name the same folder or file (a link's target counts as itself)."""
    if is_url(path) or is_url(other):
        return str(path).rstrip("/") == str(other).rstrip("/")
    try:
        return os.path.samefile(path, other)
    except OSError:
        return os.path.abspath(path) == os.path.abspath(other)


def walk(folder):
    """``(folder, subfolders, files)`` of every folder under ``folder``, as ``os.walk``
    (following links to folders, as ``os.walk(followlinks=True)``); prune ``subfolders`` in
    place to leave some out."""
    if is_url(folder):
        for here, subfolders, names in _gfile().walk(str(folder)):
            subfolders[:] = [name.rstrip("/") for name in subfolders]
            yield here.rstrip("/"), subfolders, names
    else:
        yield from os.walk(folder, followlinks=True)


def copy(source, target):
    """Copies a file (either side local or a URL), overwriting ``target``."""
    if is_url(source) or is_url(target):
        remove(target)  # overwritten whole, whatever the filesystem does with an existing file
        _gfile().copy(str(source), str(target), overwrite=True)
    else:
        shutil.copyfile(source, target)


def copy_tree(source, target, last=()):
    """Copies the files under the local folder ``source`` to ``target`` (a URL or a local
    folder), the files named in ``last`` after all the others: a reader that waits for them
    (TF Serving, for ``saved_model.pb``) never finds the copy incomplete."""
    later = []
    for folder, _, names in os.walk(source):
        relative = os.path.relpath(folder, source)
        destination = target if relative == "." else join(target, relative)
        makedirs(destination)
        for name in sorted(names):
            pair = (os.path.join(folder, name), join(destination, name))
            if name in last:
                later.append(pair)
            else:
                copy(*pair)
    for pair in later:
        copy(*pair)


@contextlib.contextmanager
def local_copy(path):
    """A local path holding the file at ``path``: ``path`` itself, or, for a URL, a copy on the
    local disk while the context lasts (for libraries that read local files only: h5py,
    Keras' loader)."""
    if not is_url(path):
        yield str(path)
        return
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, basename(path))
        copy(path, local)
        yield local


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


def relative(path, root):
    """``path`` below the folder ``root``, with ``/`` between its parts."""
    path, root = str(path), str(root).rstrip("/")
    return path[len(root):].lstrip("/") if path.startswith(root) else path


def islink(path):
    return not is_url(path) and os.path.islink(path)


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
        try:
            _gfile().rmtree(str(path))
        except FileNotFoundError:  # not there (or gone while it was removed): nothing to do
            pass
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


_DAMAGED = object()


def read_json(path, default=None, *, written_by=None, fix=None, damaged=_DAMAGED):
    """The JSON value in ``path``, or ``default`` if there is no such file; every JSON file the
    project reads is read here.

    A file that does not parse (cut short, overwritten, not UTF-8) is ``damaged`` where the
    caller can do without it (a cache, a marker of work to redo); else it is the user's to
    mend: one line naming the file, what wrote it (``written_by``) and the ``fix``.

    Raises:
        UserError: for a damaged file and no ``damaged`` value.
    """
    if not exists(path):
        return default
    try:
        return json.loads(read_text(path))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        if damaged is not _DAMAGED:
            return damaged
        writer = f", written by {written_by}," if written_by else ""
        raise errors.UserError(
            f"{path} is damaged{writer} and cannot be read ({error}): "
            f"{fix or 'restore it from a copy, or write it again'}") from None


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


def write_atomic(path, data, writer=None):
    """Writes ``data`` (bytes or text) to ``path`` whole, by the module's durability rule.
    ``writer``: a name of the writer's own for its temporary file, where several processes may
    write one file at once (each must rename its own)."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    temporary = temporary_path(path) if writer is None else f"{path}.{writer}{TEMPORARY_SUFFIX}"
    if is_url(path):
        remove(temporary)  # a crash's leftover: TensorFlow's ram:// appends to what is there
        with _gfile().GFile(temporary, "wb") as file:
            file.write(data)
    else:
        with open(temporary, "wb") as file:
            file.write(data)
    replace(temporary, path)


def write_json(path, value, writer=None):
    """Writes ``value`` as JSON to ``path`` whole (``write_atomic``)."""
    write_atomic(path, json.dumps(value, indent=1, ensure_ascii=False), writer)


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
