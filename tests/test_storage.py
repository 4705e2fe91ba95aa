"""The one owner of file operations, alike on a local disk and at a URL (``ram://``, TensorFlow's
in-memory filesystem, stands in for a bucket): whole writes, JSON, listing, walking, copies, and
a clear line for a scheme no filesystem reads."""

import os

import pytest
import tensorflow as tf

from pipelines.foundation import errors
from pipelines.foundation import storage


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
        return
    folder = f"ram://storage_{os.getpid()}_{id(tmp_path)}"
    tf.io.gfile.makedirs(folder)
    yield folder
    tf.io.gfile.rmtree(folder)


def test_a_whole_write_replaces_the_file_and_leaves_no_temporary(root):
    path = storage.join(root, "summary.json")
    assert storage.read_json(path, {"none": True}) == {"none": True}
    storage.write_json(path, {"steps": 1})
    storage.write_json(path, {"steps": 2, "name": "café"})
    assert storage.read_json(path) == {"steps": 2, "name": "café"}
    assert storage.listdir(root) == ["summary.json"]  # the temporary was renamed away
    storage.write_atomic(storage.join(root, "curve.png"), b"\x89PNG")
    assert storage.read_bytes(storage.join(root, "curve.png")) == b"\x89PNG"
    assert storage.size(storage.join(root, "curve.png")) == 4


def test_a_temporary_left_by_a_crash_is_overwritten(root):
    path = storage.join(root, "run.json")
    storage.write_atomic(storage.temporary_path(path), "half a fi")  # what a crash leaves
    storage.write_json(path, {"version": 1})
    assert storage.read_json(path) == {"version": 1}
    assert not storage.exists(storage.temporary_path(path))


def test_listing_globbing_walking_and_removing(root):
    for name in ("train-00000-of-00002", "train-00001-of-00002", "sub/deeper/x.jpg"):
        path = storage.join(root, name)
        storage.makedirs(storage.dirname(path))
        storage.write_atomic(path, b"data")
    assert [storage.basename(p) for p in storage.glob(storage.join(root, "train-*"))] == [
        "train-00000-of-00002", "train-00001-of-00002"]
    walked = [(storage.relative(here, root), sorted(names)) for here, _, names in
              storage.walk(root)]
    assert ("sub/deeper", ["x.jpg"]) in walked
    assert storage.isdir(storage.join(root, "sub")) and not storage.isfile(storage.join(root,
                                                                                       "sub"))
    storage.rmtree(storage.join(root, "sub"))
    storage.remove(storage.join(root, "train-00000-of-00002"))
    storage.remove(storage.join(root, "not-there"))  # nothing to remove: no error
    assert storage.listdir(root) == ["train-00001-of-00002"]


def test_a_missing_file_is_a_file_not_found_error_at_a_url_too(root):
    with pytest.raises(FileNotFoundError):
        storage.size(storage.join(root, "missing"))


def test_a_tree_is_copied_with_the_named_files_last(tmp_path, root):
    source = tmp_path / "export"
    (source / "variables").mkdir(parents=True)
    (source / "variables" / "variables.index").write_bytes(b"i")
    (source / "saved_model.pb").write_bytes(b"pb")
    copied = []
    original = storage.copy

    def recording_copy(a, b):
        copied.append(storage.basename(b))
        original(a, b)

    storage.copy = recording_copy
    try:
        storage.copy_tree(str(source), storage.join(root, "1"), last=("saved_model.pb",))
    finally:
        storage.copy = original
    assert copied[-1] == "saved_model.pb" and "variables.index" in copied
    assert storage.read_bytes(storage.join(root, "1", "variables", "variables.index")) == b"i"


def test_a_local_copy_of_a_url_lasts_as_long_as_its_context(root):
    path = storage.join(root, "weights.h5")
    storage.write_atomic(path, b"h5")
    with storage.local_copy(path) as local:
        assert not storage.is_url(local) and open(local, "rb").read() == b"h5"
    assert (local == path) == (not storage.is_url(root))


def test_a_scheme_no_filesystem_reads_is_one_line_naming_what_provides_it():
    with pytest.raises(errors.UserError, match=r"^--data_dir s3://bucket/imagenet: TensorFlow "
                       r"reads no s3:// filesystem here; it comes with tensorflow-io"):
        storage.check_filesystem("s3://bucket/imagenet", "--data_dir")
    with pytest.raises(errors.UserError, match="no nosuch:// filesystem here; it comes with a "
                                               "TensorFlow filesystem plugin for it"):
        storage.check_filesystem("nosuch://x", "--model_dir")
    for fine in ("/data", "gs://bucket/x", "file:///tmp/x", "ram://x"):
        storage.check_filesystem(fine)  # no network: gs:// is TensorFlow's own


def test_paths_are_absolute_and_compared_as_their_kind(tmp_path):
    assert storage.absolute("gs://b/models/d") == "gs://b/models/d"
    assert storage.absolute("relative/x") == os.path.abspath("relative/x")
    assert storage.same("gs://b/m/", "gs://b/m") and not storage.same("gs://b/m", "gs://b/n")
    (tmp_path / "a").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert storage.same(str(tmp_path / "link"), str(tmp_path / "a"))
