"""The versions of an export base (``EXPORT_DIR/<model_name>``), as the servers that watch it need
them: a version appears whole or not at all, readable by a server running as another user, never
overwrites one, and is one that the base's server can load.

A version is written under a hidden staging name beside the others (``.export-<host>-<pid>-
<random>``), then renamed into the next free number. A stop (SIGINT, SIGTERM, SIGHUP: raised as
exceptions by the programs) before that rename removes the staging folder and leaves no version;
a process killed outright leaves its staging folder, which the next export on the same host
removes once its process is gone. On an object store, where a folder cannot be renamed, the
version is written on the local disk and copied, its ``saved_model.pb`` and
``vgg_metadata.json`` last (a version folder without them is no export).

A base is the repository of the servers that read its versions: TF Serving (a SavedModel in
each), Triton (``config.pbtxt`` and a ``model.onnx``, or ``model.xml`` for its OpenVINO
backend), OpenVINO Model Server (``model.xml``). Each serves the highest version, so a new version
holds every format that the base's newest one holds (BUILD.md, "Deploying").
"""

import errno
import os
import re
import shutil
import socket
import tempfile
import time

from pipelines.foundation import errors
from pipelines.foundation import storage
from vgg_keras.artifacts import layout

STAGING_PREFIX = ".export-"
# A staging folder's name says who writes it: the host and process, so that the next export
# knows a dead one's leftovers (``.export-<host>-<pid>-<random>``).
_STAGING = re.compile(rf"^{re.escape(STAGING_PREFIX)}(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")
STALE_SECONDS = 24 * 3600  # a staging folder older than this, of another host: abandoned
# The formats whose servers read a base, by the file a version of each holds.
SERVED = {"saved_model": layout.SAVED_MODEL_FILE, layout.ONNX: "model.onnx",
          layout.OPENVINO: "model.xml"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_name(name):
    """Refuses a model name that is not a name (a path, a parent folder, a hidden name).

    Raises:
        UserError: naming what a model name may hold.
    """
    if not _NAME.match(str(name)) or name in (".", ".."):
        raise errors.UserError(f"--model_name={name!r} must be a name (letters, digits, '.', "
                               "'_' and '-', not starting with a dot), not a path: it names a "
                               "folder of --export_dir and the model in its servers")


def check_base(base, formats):
    """Refuses a version of ``formats`` in ``base`` that the base's servers could not load: one
    without a format that the base's newest version holds.

    Raises:
        UserError: naming the base's servers, the formats missing and the ways out.
    """
    newest = layout.find_export(base) if storage.isdir(base) else None
    if newest is None:
        return
    served = [name for name, file in SERVED.items()
              if storage.exists(os.path.join(newest, file))]
    missing = [name for name in served if name not in formats]
    if missing:
        raise errors.UserError(
            f"{base} is the repository of servers that load {', '.join(served)} (its newest "
            f"version, {storage.basename(newest)}, holds them); a version without "
            f"{', '.join(missing)} would become their latest and fail to load: add "
            f"{','.join(missing)} to --format, or export the other formats under another "
            "--model_name (a repository of their own)")


def write_new_version(base, write, before_commit=None):
    """``write(folder)`` into a staging folder beside the versions of ``base``, then the folder
    renamed into the next free version; returns its path. ``before_commit``: called just
    before the rename, from which on the version is whole (a program holds its signals from
    then on: what it is told after, it tells after the version)."""
    if storage.is_url(base):
        return _upload_new_version(base, write, before_commit)
    os.makedirs(base, exist_ok=True)
    clear_dead_staging(base)
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=base)
    try:
        write(staging)
        os.chmod(staging, 0o777 & ~_umask())  # as any folder: servers of other users read it
        if before_commit:
            before_commit()
        while True:
            version = os.path.join(base, str(layout.next_version(base)))
            try:
                os.rename(staging, version)
                return version
            except OSError as error:  # another export took this version meanwhile
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _upload_new_version(base, write, before_commit):
    with tempfile.TemporaryDirectory() as staging:
        write(staging)
        if before_commit:
            before_commit()
        version = storage.join(base, str(layout.next_version(base)))
        storage.copy_tree(staging, version, last=(layout.SAVED_MODEL_FILE,
                                                  layout.EXPORT_METADATA_FILE))
    return version


def clear_dead_staging(base):
    """Removes the staging folders of exports that died in ``base`` (killed outright: a stop
    they were told of removes its own): those of a process of this host that is gone, and
    those of another host, or of an unknown name, older than a day. Returns their names."""
    removed = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        found = _STAGING.match(name)
        if found and found["host"] == _host():
            dead = not _alive(int(found["pid"]))
        else:
            dead = time.time() - os.path.getmtime(path) > STALE_SECONDS
        if dead:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
            print(f"removed {path}: the staging folder of an export that died", flush=True)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _host():
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
