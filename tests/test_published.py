"""Published weights by name (``vgg_keras.nets.published``): huggingface_hub's and Keras' own
download code against a server on 127.0.0.1 (tests/hub_server.py) and caches laid out as those
libraries lay them out. Nothing leaves this machine: a file is fetched once and then read from
the cache without a request, a file whose hash differs from the published one is refused and not
kept, a transfer cut off midway is never kept (and is tried again within the run)."""

import hashlib
import inspect
import json
import os
import pathlib
import sys

import pytest
from huggingface_hub import constants as hub_constants

from tests import hub_server
from tests import programs
from vgg_keras.nets import configs
from vgg_keras.nets import downloads
from vgg_keras.nets import published

REPOSITORY = "timm/vgg16_bn.tv_in1k"
HUB_PATH = hub_server.hub_path(REPOSITORY, published.HUB_FILE)
DATA = bytes(range(256)) * 1200  # 307,200 bytes
SHA256, MD5 = hashlib.sha256(DATA).hexdigest(), hashlib.md5(DATA).hexdigest()
KERAS_FILE = published.KERAS_FILES["D"][0]
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def server():
    with hub_server.serving({HUB_PATH: hub_server.Served(DATA),
                             "/keras/vgg16.h5": hub_server.Served(DATA)}) as started:
        yield started


def _kept(cache):
    """The files a cache holds, but for huggingface_hub's locks and its CACHEDIR.TAG."""
    return sorted(str(path.relative_to(cache)) for path in pathlib.Path(cache).rglob("*")
                  if path.is_file() and ".locks" not in path.parts
                  and path.name != "CACHEDIR.TAG")


def _keras_table(server, md5=MD5):
    return {"D": (KERAS_FILE, f"{server.url}/keras/vgg16.h5", md5)}


def test_a_hub_file_is_fetched_once_then_read_from_the_cache(server, tmp_path, capsys):
    weights = downloads.fetch("D-BN", "timm", folder=tmp_path, endpoint=server.url)
    assert (weights.downloaded, weights.source, weights.revision, weights.sha256) == (
        True, REPOSITORY, hub_server.COMMIT, SHA256)
    assert pathlib.Path(weights.path).read_bytes() == DATA and weights.layout == "timm"
    assert (f"downloading timm weights of D-BN: model.safetensors from {server.url}/{REPOSITORY} "
            f"(553 MB) into {tmp_path}") in capsys.readouterr().out
    asked = len(server.requests)
    # torchvision's weights by name are the same file, in timm's layout
    again = downloads.fetch("vgg16_bn", "torchvision", folder=tmp_path, endpoint=server.url)
    assert (again.downloaded, again.path, again.layout) == (False, weights.path, "timm")
    assert len(server.requests) == asked  # not even a HEAD request
    assert downloads.cached_file(published.find("D-BN", "timm"), tmp_path) == weights.path
    assert again.describe() == (f"{REPOSITORY} model.safetensors at revision "
                                f"{hub_server.COMMIT} (sha256 {SHA256})")


def test_a_hub_file_whose_hash_differs_is_refused_and_not_kept(server, tmp_path, capsys):
    server.files[HUB_PATH].sha256 = "ab" * 32
    with pytest.raises(published.WeightsUnavailable,
                       match=f"{server.url} sent model.safetensors of {REPOSITORY} with sha256 "
                             f"{SHA256}, not the {'ab' * 32} it publishes for it: refused, "
                             f"nothing kept in {tmp_path}$"):
        downloads.fetch("D-BN", "timm", folder=tmp_path, endpoint=server.url)
    assert _kept(tmp_path) == ["models--timm--vgg16_bn.tv_in1k/refs/main"]
    # A blob altered in the cache after its download: removed, and downloaded anew.
    server.files[HUB_PATH].sha256 = None
    cache = tmp_path / "altered"
    snapshot = hub_server.lay_out_cache(cache, REPOSITORY, published.HUB_FILE, DATA)
    pathlib.Path(os.path.realpath(snapshot)).write_bytes(DATA[:-1] + b"\0")
    weights = downloads.fetch("D-BN", "timm", folder=cache, endpoint=server.url)
    assert weights.downloaded and pathlib.Path(weights.path).read_bytes() == DATA
    assert (f"{REPOSITORY} model.safetensors in the cache has sha256 "
            f"{hashlib.sha256(DATA[:-1] + bytes(1)).hexdigest()}, not the {SHA256} its source "
            "publishes: removed") in capsys.readouterr().out
    # The same offline: removed, and the one line of a file not in the cache.
    pathlib.Path(os.path.realpath(weights.path)).write_bytes(b"\0")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(published.WeightsUnavailable, match="is not in the cache"):
            downloads.fetch("D-BN", "timm", folder=cache)
    assert _kept(cache) == ["models--timm--vgg16_bn.tv_in1k/refs/main"]


def test_a_hub_download_cut_off_is_tried_again_within_the_run(server, tmp_path):
    """Cut off once: huggingface_hub tries again (from its last whole 10 MB chunk, else from the
    start) and the file is whole. Cut off every time: the vgg-export test below (exit 75,
    nothing kept)."""
    served = server.files[HUB_PATH]
    served.cut_at, served.cuts = 100_000, 1
    weights = downloads.fetch("D-BN", "timm", folder=tmp_path, endpoint=server.url)
    assert weights.sha256 == SHA256 and pathlib.Path(weights.path).read_bytes() == DATA
    assert [request[0] for request in server.requests] == ["HEAD", "GET", "GET"]


def test_offline_the_cache_alone_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hub"
    with pytest.raises(published.WeightsUnavailable) as refused:
        downloads.fetch("D-BN", "timm", folder=cache)
    assert str(refused.value) == (
        f"timm weights of D-BN: model.safetensors of {REPOSITORY} is not in the cache {cache} "
        "and HF_HUB_OFFLINE=1 forbids downloading it: on a connected machine, `hf download "
        f"{REPOSITORY} model.safetensors` puts it in that machine's cache: copy its "
        f"models--timm--vgg16_bn.tv_in1k folder into {cache}, or give the file as timm=PATH")
    hub_server.lay_out_cache(cache, REPOSITORY, published.HUB_FILE, DATA)
    weights = downloads.fetch("D-BN", "timm", folder=cache)
    assert (weights.downloaded, weights.revision, weights.sha256) == (
        False, hub_server.COMMIT, SHA256)


def test_keras_file_fetched_once_checked_and_then_read_from_the_cache(server, tmp_path):
    weights = downloads.fetch("D", "paper", folder=tmp_path, keras_files=_keras_table(server))
    assert (weights.downloaded, weights.md5, weights.layout) == (True, MD5, "keras_applications")
    assert weights.path == str(tmp_path / KERAS_FILE) and os.listdir(tmp_path) == [KERAS_FILE]
    asked = len(server.requests)
    again = downloads.fetch("vgg16", "keras_applications", folder=tmp_path,
                            keras_files=_keras_table(server))
    assert (again.downloaded, again.path, len(server.requests)) == (False, weights.path, asked)
    (tmp_path / KERAS_FILE).write_bytes(DATA[:1000])  # damaged in the cache: fetched anew
    assert downloads.fetch("D", "paper", folder=tmp_path,
                           keras_files=_keras_table(server)).downloaded
    assert (tmp_path / KERAS_FILE).read_bytes() == DATA


def test_keras_file_of_another_hash_or_cut_off_is_refused_and_nothing_cached(server, tmp_path):
    with pytest.raises(published.WeightsUnavailable,
                       match=f"/keras/vgg16.h5 sent a file of md5 {MD5}, not the {'0' * 32} "
                             "Keras pins for it .*: refused, nothing cached in "):
        downloads.fetch("D", "paper", folder=tmp_path,
                        keras_files=_keras_table(server, "0" * 32))
    assert os.listdir(tmp_path) == []
    server.files["/keras/vgg16.h5"].cut_at, server.files["/keras/vgg16.h5"].cuts = 5000, 1
    with pytest.raises(published.DownloadInterrupted,
                       match="broke off .*got only 5000 out of 307200 bytes.*nothing of it was "
                             "kept"):
        downloads.fetch("D", "paper", folder=tmp_path, keras_files=_keras_table(server))
    assert os.listdir(tmp_path) == []


def test_an_unreachable_or_refusing_source_is_one_line(server, tmp_path):
    table = {"D": (KERAS_FILE, f"{server.url}/keras/gone.h5", MD5)}
    with pytest.raises(published.WeightsUnavailable,
                       match="gone.h5 answered 404 Not Found: give the file as paper=PATH"):
        downloads.fetch("D", "paper", folder=tmp_path, keras_files=table)
    from tests.conftest import free_ports

    closed = f"http://127.0.0.1:{free_ports(1)[0]}/vgg16.h5"
    with pytest.raises(published.WeightsUnavailable,
                       match=f"paper weights of D: {KERAS_FILE} of {closed} is not in the cache "
                             f"{tmp_path} and {closed} could not be reached .*Connection "
                             f"refused.*: copy {KERAS_FILE} .* into {tmp_path}, or give the file "
                             "as paper=PATH"):
        downloads.fetch("D", "paper", folder=tmp_path, keras_files={"D": (KERAS_FILE, closed,
                                                                          MD5)})
    assert os.listdir(tmp_path) == []


def test_which_nets_have_which_weights():
    assert [(e.config, e.kinds[0]) for e in published.published_weights()] == [
        ("A", "torchvision"), ("B", "torchvision"), ("D", "torchvision"), ("D", "paper"),
        ("E", "torchvision"), ("E", "paper"), ("A-BN", "torchvision"), ("B-BN", "torchvision"),
        ("D-BN", "torchvision"), ("E-BN", "torchvision")]
    assert published.find("VGG19", "paper").file == "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    assert published.find("vgg11_bn", "timm").repository == "timm/vgg11_bn.tv_in1k"
    with pytest.raises(published.WeightsUnavailable,
                       match="no paper weights are published for D-BN: they exist for D, E$"):
        published.find("D-BN", "paper")
    with pytest.raises(published.WeightsUnavailable,
                       match="no torchvision weights are published for A-LRN: they exist for A, "
                             "B, D, E, A-BN, B-BN, D-BN, E-BN$"):
        published.find("A-LRN", "torchvision")
    assert set(published.KINDS) == set(configs.WEIGHT_KINDS)


def test_the_pins_are_keras_own_and_the_sizes_torchvisions_counts():
    from keras.src.applications import vgg16
    from keras.src.applications import vgg19

    for config, module in (("D", vgg16), ("E", vgg19)):
        file, url, md5 = published.KERAS_FILES[config]
        assert module.WEIGHTS_PATH == url and f'"{md5}"' in inspect.getsource(module)
        assert f'"{file}"' in inspect.getsource(module)
    # torchvision's parameter counts (batch norm's moving statistics are floats of the file too)
    counts = {"A": 132_863_336, "B": 133_047_848, "D": 138_357_544, "E": 143_667_240,
              "A-BN": 132_868_840 + 2 * 2752, "D-BN": 138_365_992 + 2 * 4224}
    for config, count in counts.items():
        assert published.find(config, "timm").size == 4 * count, config


def test_vgg_describe_lists_the_published_weights_and_what_is_cached(tmp_path):
    hub_server.lay_out_cache(tmp_path / "hub", REPOSITORY, published.HUB_FILE, DATA)
    env = dict(os.environ, HF_HOME=str(tmp_path))
    result = programs.run([str(BIN / "vgg-describe"), "--weights"], env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {(line.split()[0], line.split()[1]): line for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in configs.config_names()}
    assert len(rows) == 10
    assert rows[("D-BN", "torchvision,")].split()[3:9] == [
        "553", "MB", "73.36%", "91.52%", "yes", REPOSITORY]
    assert rows[("D", "paper,")].split()[3:7] == ["553", "MB", "71.30%", "90.10%"]
    assert rows[("D", "paper,")].endswith(published.KERAS_FILES["D"][1])
    assert rows[("A", "torchvision,")].split()[7] == "no"
    assert f"caches: {tmp_path / 'hub'}; " in result.stdout
    as_json = programs.run([str(BIN / "vgg-describe"), "--weights", "--configs=VGG16",
                            "--batch_norm", "--json"], env=env, timeout=300)
    (row,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert row["cached"] == str(tmp_path / "hub" / "models--timm--vgg16_bn.tv_in1k" / "snapshots"
                                / hub_server.COMMIT / "model.safetensors")
    assert (row["config"], row["size_bytes"], row["top1"]) == ("D-BN", 553_497_760, 73.36)


def test_a_download_that_breaks_off_exits_75_and_keeps_nothing(server, tmp_path):
    """vgg-export with the weights named alone, through a mirror (HF_ENDPOINT) that cuts every
    transfer (huggingface_hub tries five more times): exit 75 (a scheduler reruns it), one
    line, nothing kept in the cache, nothing exported."""
    server.files[HUB_PATH].cut_at, server.files[HUB_PATH].cuts = 1000, 100
    env = dict(os.environ, HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=server.url)
    result = programs.run([str(BIN / "vgg-export"), "--config=D-BN", "--weights=timm",
                           f"--export_dir={tmp_path / 'exports'}"], env=env, timeout=300)
    assert result.returncode == 75, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vgg-export: the download of model.safetensors from "
                           f"{server.url} broke off") and "run the same command again" in last
    assert _kept(tmp_path / "home" / "hub") == ["models--timm--vgg16_bn.tv_in1k/refs/main"]
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").iterdir())
