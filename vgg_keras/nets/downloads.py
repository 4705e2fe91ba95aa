"""Published weights fetched into the cache of the library that publishes them, checked against
the hash their source publishes (which files: ``published``).

- The Hub's files through ``huggingface_hub``: its cache (``HF_HOME``, ``HF_HUB_CACHE``), its
  offline mode (``HF_HUB_OFFLINE=1``), mirrors (``HF_ENDPOINT``) and tokens (``HF_TOKEN``).
- keras.applications' files through Keras' own download (``keras.utils.get_file``) and the md5
  hashes Keras pins, in Keras' cache (``KERAS_HOME``, else ``~/.keras``), where
  ``keras.applications.VGG16(weights="imagenet")`` finds them too.

A file in the cache is read without touching the network. A file is handed over only whole and
checked: huggingface_hub keeps a download under a temporary name until it is complete and names
the blob by the sha256 the Hub publishes for it (its ETag), which it does not check itself: it is
checked here, each time, and a blob that differs is removed. Keras' download is written under a
temporary name here and moved into place only once its md5 is the one Keras pins.
"""

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import socket
import threading
import urllib.parse
import uuid

from vgg_keras.nets import published
from vgg_keras.nets.published import DownloadInterrupted
from vgg_keras.nets.published import WeightsUnavailable

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
REACH_SECONDS = 3.0  # to find a source's host, before anything is asked of it


def cache_dir(entry, folder=None):
    """The cache a published file goes to: huggingface_hub's (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``) or Keras' models folder; ``folder`` instead, where given."""
    if folder:
        return os.fspath(folder)
    if entry.repository:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    return os.path.join(_keras_home(), "models")


def cached_file(entry, folder=None):
    """The path of ``entry``'s file in its cache, or None (nothing is downloaded or checked)."""
    if entry.repository:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(entry.repository, entry.file,
                                       cache_dir=cache_dir(entry, folder))
        return found if isinstance(found, str) else None
    path = os.path.join(cache_dir(entry, folder), entry.file)
    return path if os.path.isfile(path) else None


def fetch(config, kind, *, folder=None, endpoint=None, keras_files=None):
    """The published weights ``kind`` of ``config``, from the cache or downloaded into it, and
    checked against the hash their source publishes.

    Args:
        config: the net ("D-BN", "vgg16_bn", ...).
        kind: one of ``published.KINDS``.
        folder: the cache to use instead of the library's default one.
        endpoint: the Hub's address instead of ``HF_ENDPOINT`` (a mirror).
        keras_files: ``{config: (file name, URL, md5)}`` instead of ``published.KERAS_FILES``.

    Returns:
        ``Weights``.

    Raises:
        WeightsUnavailable: one line naming the file, the cache and ``KIND=PATH``.
        DownloadInterrupted: the transfer broke off; nothing was kept.
    """
    entry = published.find(config, kind)
    if entry.repository:
        return _fetch_from_hub(entry, kind, cache_dir(entry, folder), endpoint)
    if keras_files and entry.config in keras_files:
        file, url, md5 = keras_files[entry.config]
        entry = dataclasses.replace(entry, file=file, url=url, md5=md5)
    return _fetch_from_keras(entry, kind, cache_dir(entry, folder))


def _fetch_from_hub(entry, kind, cache, endpoint):
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    try:
        path = huggingface_hub.hf_hub_download(entry.repository, entry.file, cache_dir=cache,
                                               local_files_only=True)
    except hub_errors.LocalEntryNotFoundError:
        path = None
    if path is not None:
        sha256, published_sha256 = _hashes_of_blob(path)
        if sha256 == published_sha256 or published_sha256 is None:
            return _hub_weights(entry, kind, path, sha256, downloaded=False)
        _remove_blob(path)
        print(f"{entry.repository} {entry.file} in the cache has sha256 {sha256}, not the "
              f"{published_sha256} its source publishes: removed", flush=True)
    if huggingface_hub.constants.is_offline_mode():
        raise WeightsUnavailable(_not_cached(entry, kind, cache, "HF_HUB_OFFLINE=1 forbids "
                                                                 "downloading it"))
    host = endpoint or huggingface_hub.constants.ENDPOINT
    _check_reachable(entry, kind, cache, host)
    _say_downloading(entry, kind, f"{host}/{entry.repository}", cache)
    with _quiet("huggingface_hub"):  # its retries' warnings: the one line below says it all
        path = _download_from_hub(entry, kind, cache, endpoint, host)
    sha256, published_sha256 = _hashes_of_blob(path)
    if published_sha256 is not None and sha256 != published_sha256:
        _remove_blob(path)
        raise WeightsUnavailable(
            f"{host} sent {entry.file} of {entry.repository} with sha256 {sha256}, not the "
            f"{published_sha256} it publishes for it: refused, nothing kept in {cache}")
    return _hub_weights(entry, kind, path, sha256, downloaded=True)


def _hashes_of_blob(path):
    """The sha256 of a Hub file in the cache, and the one its source published: the name of
    its blob (huggingface_hub names an LFS file's blob by the ETag, its sha256; None for
    another kind of name)."""
    name = os.path.basename(os.path.realpath(path))
    return _file_hash(path, "sha256"), name if _SHA256.match(name) else None


def _remove_blob(path):
    """A snapshot's file out of the cache: its link and the blob it names."""
    for stale in {os.path.realpath(path), path}:
        if os.path.lexists(stale):
            os.remove(stale)


def _hub_weights(entry, kind, path, sha256, downloaded):
    revision = os.path.basename(os.path.dirname(path))  # snapshots/<commit>/model.safetensors
    return published.Weights(kind, path, "timm", entry.repository, entry.file, revision,
                             sha256=sha256, downloaded=downloaded)


def _download_from_hub(entry, kind, cache, endpoint, host):
    import httpx2
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    try:
        return huggingface_hub.hf_hub_download(entry.repository, entry.file, cache_dir=cache,
                                               endpoint=endpoint)
    except hub_errors.LocalEntryNotFoundError as error:  # the Hub did not answer
        raise WeightsUnavailable(_not_cached(
            entry, kind, cache, f"{host} did not answer ({_cause(error)})")) from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError,
            hub_errors.EntryNotFoundError) as error:  # gated repositories included
        raise WeightsUnavailable(
            f"{host} refuses {entry.file} of {entry.repository} ({_first_line(error)}): set "
            f"HF_TOKEN if it needs a login, or give the file as {kind}=PATH") from None
    except hub_errors.HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None) if error.response else None
        if status is not None and status < 500:
            raise WeightsUnavailable(f"{host} refuses {entry.file} of {entry.repository} "
                                     f"({_first_line(error)}); give the file as {kind}=PATH") \
                from None
        raise DownloadInterrupted(_interrupted(entry, host, error)) from None
    except (ConnectionError, TimeoutError, httpx2.TransportError,
            hub_errors.XetDownloadError) as error:
        raise DownloadInterrupted(_interrupted(entry, host, error)) from None
    except OSError as error:  # huggingface_hub's check of the size received
        if not str(error).startswith("Consistency check failed"):
            raise  # a full disk, a cache that cannot be written: the system's own words
        raise DownloadInterrupted(_interrupted(entry, host, error)) from None


def _fetch_from_keras(entry, kind, cache):
    found = cache
    while not os.path.exists(found) and os.path.dirname(found) != found:
        found = os.path.dirname(found)  # the part of the cache's path that exists
    if not os.path.isdir(found):
        raise WeightsUnavailable(f"Keras keeps its downloads in {cache}, but {found} is a file, "
                                 "not a folder: point KERAS_HOME at a folder (its models/ "
                                 f"sub-folder is the cache), or give the file as {kind}=PATH")
    path = os.path.join(cache, entry.file)
    if os.path.isfile(path):
        md5 = _file_hash(path, "md5")
        if md5 == entry.md5:
            return published.Weights(kind, path, source=entry.url, file=entry.file, md5=md5)
        print(f"{path} has md5 {md5}, not Keras' {entry.md5}: downloading it again", flush=True)
        os.remove(path)
    _check_reachable(entry, kind, cache, entry.url)
    _say_downloading(entry, kind, entry.url, cache)
    partial = f"{entry.file}.{uuid.uuid4().hex[:8]}.incomplete"
    import keras

    try:
        keras.utils.get_file(partial, entry.url, file_hash=entry.md5, hash_algorithm="md5",
                             cache_subdir=os.path.basename(cache),
                             cache_dir=os.path.dirname(cache))
        os.replace(os.path.join(cache, partial), path)
    except ValueError as error:  # Keras' md5 check: a file that is not the published one
        md5 = _file_hash(os.path.join(cache, partial), "md5")
        raise WeightsUnavailable(
            f"{entry.url} sent a file of md5 {md5}, not the {entry.md5} Keras pins for it "
            f"({_first_line(error)}): refused, nothing cached in {cache}") from None
    except Exception as error:  # noqa: BLE001 - get_file wraps urllib's errors in Exception
        raise _keras_failure(entry, kind, cache, error) from None
    finally:
        if os.path.exists(os.path.join(cache, partial)):
            os.remove(os.path.join(cache, partial))
    return published.Weights(kind, path, source=entry.url, file=entry.file, md5=entry.md5,
                             downloaded=True)


def _keras_failure(entry, kind, cache, error):
    """What a failed ``get_file`` means: a transfer that broke off (rerun), or a source that
    cannot be reached or refuses (the file by other means)."""
    import urllib.error

    cause = error.__context__ if type(error) is Exception else error
    if isinstance(cause, urllib.error.ContentTooShortError) or (
            isinstance(cause, (ConnectionError, TimeoutError))):
        return DownloadInterrupted(_interrupted(entry, entry.url, cause))
    if isinstance(cause, urllib.error.HTTPError):
        return WeightsUnavailable(f"{entry.url} answered {cause.code} {cause.reason}: give the "
                                  f"file as {kind}=PATH")
    if isinstance(cause, urllib.error.URLError):
        return WeightsUnavailable(_not_cached(entry, kind, cache,
                                              f"{entry.url} could not be reached "
                                              f"({getattr(cause, 'reason', cause)})"))
    return error


def _check_reachable(entry, kind, cache, url):
    """Refuses at once, within ``REACH_SECONDS``, a download from a host that cannot be reached
    (no network, a mirror down): the libraries would retry for half a minute first.

    Raises:
        WeightsUnavailable: the one line of a file not in the cache, and why.
    """
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome = {}

    def connect():
        try:
            socket.create_connection((parsed.hostname, port), timeout=REACH_SECONDS).close()
            outcome["reached"] = True
        except OSError as error:
            outcome["error"] = error

    probe = threading.Thread(target=connect, daemon=True)  # a name lookup may hang
    probe.start()
    probe.join(REACH_SECONDS)
    if not outcome.get("reached"):
        why = _first_line(outcome["error"]) if "error" in outcome else (
            f"no answer within {REACH_SECONDS:g} s")
        raise WeightsUnavailable(_not_cached(entry, kind, cache,
                                             f"{url} could not be reached ({why})"))


@contextlib.contextmanager
def _quiet(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _say_downloading(entry, kind, where, cache):
    """A download of half a gigabyte is a wait: named before it starts."""
    print(f"downloading {kind} weights of {entry.config}: {entry.file} from {where} "
          f"({entry.size / 1e6:.0f} MB) into {cache}", flush=True)


def _not_cached(entry, kind, cache, why):
    if entry.repository:
        fetch_elsewhere = (f"on a connected machine, `hf download {entry.repository} "
                           f"{entry.file}` puts it in that machine's cache: copy its "
                           f"models--{entry.repository.replace('/', '--')} folder into {cache}")
    else:
        fetch_elsewhere = (f"copy {entry.file} (from {entry.url}, or a connected machine's "
                           f"~/.keras/models/) into {cache}")
    return (f"{kind} weights of {entry.config}: {entry.file} of {entry.source} is not in the "
            f"cache {cache} and {why}: {fetch_elsewhere}, or give the file as {kind}=PATH")


def _interrupted(entry, where, error):
    return (f"the download of {entry.file} from {where} broke off ({_first_line(error)}); "
            "nothing of it was kept: run the same command again to download it anew")


def _cause(error):
    """The innermost reason of an error raised from another, in one line."""
    while error.__cause__:
        error = error.__cause__
    return _first_line(error)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _file_hash(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:  # a file of the library's cache, always local
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _keras_home():
    """Keras' folder, as keras/src/backend/config.py finds it: ``KERAS_HOME``, else ``~/.keras``
    (``/tmp/.keras`` where the home folder is read-only). Keras has no public accessor."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
