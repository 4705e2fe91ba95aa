"""Whole paths as a user takes them, across features: a photo folder with odd files converted,
trained from scratch, a checkpoint of the run evaluated, exported and its model dir asked for
predictions; a finished run started again; a fine-tune that would load nothing; the losses on
the nets as built. Each uses the suite's data and runs where it can."""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from pipelines import synthetic
from tests import programs
from tests.conftest import LIBRARY_LINE
from tests.conftest import REFERENCE_RUN
from tests.conftest import TINY_FLAGS
from tests.conftest import build_tiny
from tests.conftest import write_applications_h5

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _digests(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_photo_folder_to_predictions_through_a_checkpoint(tmp_path):
    """A folder of photos with odd files among them → vgg-convert → vgg-train from scratch on 2
    replicas (a fresh interpreter, oneDNN on: its output is its own lines, the recipe first) →
    vgg-evaluate on a
    checkpoint of the run → vgg-export of a run that has not finished (its newest checkpoint)
    → vgg-predict on the model dir itself, naming the folder's own classes."""
    photos = tmp_path / "photos"
    synthetic.write_dataset(photos, layout="image_folder", synsets=("circles", "squares",
                                                                    "stripes"),
                            train_per_class=8, val_per_class=0, problems=False, seed=3,
                            style=synthetic.ImageStyle(size_range=(40, 64)))
    (photos / ".DS_Store").write_bytes(b"\0\1")
    (photos / "circles" / "empty.jpg").write_bytes(b"")
    (photos / "squares" / "notes.txt").write_text("taken on a sunny day")
    data, run = tmp_path / "data", tmp_path / "run"
    converted = programs.run([BIN / "vgg-convert", f"--image_folder={photos}",
                              "--validation_fraction=0.25", f"--output_dir={data}"])
    assert converted.returncode == 0, converted.stderr[-3000:]
    manifest = json.loads((data / "dataset_info.json").read_text())
    assert manifest["splits"]["validation"]["per_class"] == {"circles": 2, "squares": 2,
                                                             "stripes": 2}
    assert {s["path"] for s in manifest["skipped"]} == {"circles/empty.jpg",
                                                        "squares/notes.txt"}
    flags = [flag for flag in TINY_FLAGS if not flag.startswith(("--num_classes",
                                                                 "--label_offset"))]
    # A fresh interpreter: TensorFlow's start-up in it too; on 2 replicas with oneDNN's kernels
    # (TensorFlow's default on AVX-512 CPUs, read when it starts; the suite has them off).
    trained = subprocess.run(
        [BIN / "vgg-train", *flags, "--batch_size=4", "--train_epochs=2", f"--data_dir={data}",
         f"--model_dir={run}", "--cpu_replicas=2"], capture_output=True, text=True,
        timeout=600, cwd=tmp_path, env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    lines = trained.stdout.splitlines() + trained.stderr.splitlines()
    assert not [line for line in lines if LIBRARY_LINE.match(line)], lines
    assert trained.stdout.splitlines()[0].startswith("recipe: config A"), trained.stdout
    checkpoints = sorted((run / "checkpoints" / "latest").glob("ckpt-*.index"))
    first = str(checkpoints[0]).removesuffix(".index")
    step = int(first.rsplit("-", 1)[1])
    evaluated = programs.run([BIN / "vgg-evaluate", f"--model={first}", f"--data_dir={data}",
                              f"--output_dir={tmp_path / 'eval'}"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{first}: {first} (the checkpoint of step {step})" in evaluated.stdout
    predictions = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()
    assert predictions[0].startswith("image,protocol,true_class,top1,probability1")
    assert len(predictions) == 1 + 6 and {"circles", "squares", "stripes"} >= {
        line.split(",")[2] for line in predictions[1:]}
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    unfinished = tmp_path / "unfinished"  # the run as it was before its end: no model.keras
    shutil.copytree(run, unfinished)
    (unfinished / "model.keras").unlink()
    (unfinished / "summary.json").unlink()
    exported = programs.run([BIN / "vgg-export", f"--model={unfinished}",
                             f"--export_dir={tmp_path / 'exports'}"])
    assert exported.returncode == 0, exported.stderr[-3000:]
    newest = max(checkpoints, key=lambda path: int(str(path)[:-6].rsplit("-", 1)[1]))
    assert f"(the checkpoint of step {int(str(newest)[:-6].rsplit('-', 1)[1])})" in \
        exported.stdout
    photo = next((photos / "stripes").glob("*.jpg"))
    for model in (run, tmp_path / "exports" / "vgg"):
        predicted = programs.run([BIN / "vgg-predict", f"--model={model}", photo])
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        ranked = predicted.stdout.splitlines()[1:]
        assert len(ranked) == 3 and {line.split()[-1] for line in ranked} == {
            "circles", "squares", "stripes"}, predicted.stdout  # each name once


def test_a_finished_run_started_again_changes_nothing(reference_run, train_data, tmp_path,
                                                      capsys):
    """The same command on a finished run: it says so, exit 0, and every file stays as it was
    (summary, model, logs); a longer schedule, allowed, continues it."""
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = _digests(run)
    cfg = run_config.TrainConfig(data_dir=str(train_data), model_dir=str(run), **REFERENCE_RUN)
    summary = loop.train(cfg)
    assert summary["steps"] == 36 and _digests(run) == before
    assert f"the run in {run} finished at step 36: nothing to do" in capsys.readouterr().out
    longer = run_config.TrainConfig(**dict(vars(cfg), train_epochs=4,
                                           allow_changed_settings=True))
    assert loop.train(longer)["steps"] == 48


def test_a_fine_tune_that_would_load_nothing_is_refused(train_data, tmp_path):
    """keras.applications-layout weights of a wider net into a narrower one: no convolution
    fits; refused, naming the shapes, before any training. The same width loads."""
    from pipelines.foundation import errors
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    weights = tmp_path / "vgg16_notop.h5"
    write_applications_h5(build_tiny("D", width=0.25, input_shape=(32, 32, 3)), weights,
                          include_top=False)
    common = dict(REFERENCE_RUN, config="D", init=f"keras_applications={weights}",
                  trainable_from="block5_conv1", train_epochs=1, data_dir=str(train_data))
    with pytest.raises(errors.UserError, match=r"loaded no convolution into vgg_d \(block1_conv1:"
                                               r" source kernel \(3, 3, 3, 16\), model "
                                               r"\(3, 3, 3, 8\)"):
        loop.train(run_config.TrainConfig(model_dir=str(tmp_path / "narrow"), **common))
    assert not os.path.exists(tmp_path / "narrow" / "checkpoints")
    summary = loop.train(run_config.TrainConfig(model_dir=str(tmp_path / "fits"),
                                                **dict(common, width=0.25)))
    assert len(summary["init"]["loaded"]) == 13 and summary["init"]["new"] == [
        "fc1", "fc2", "predictions"]


# Our artifacts in other people's software: a fresh Python session, servers running as another
# user, a client without TensorFlow, a pipe that closes early, signals, faults and races.

def _copy_version(version, folder):
    """A copy of an export version, to change (the suite's exports are shared)."""
    copy = folder / "vgg" / "1"
    shutil.copytree(version, copy)
    return copy


def test_any_model_loads_in_a_fresh_session(reference_run, tmp_path):
    """One fresh interpreter, nothing of ours imported but ``import vgg_keras``: a finished run,
    a run still training (no model.keras: its newest checkpoint), a checkpoint by path and a
    .keras file all load through ``vgg_keras.load_model``, and Keras' own ``load_model`` after
    it; no load says "damaged" of a file that is not."""
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference_run, unfinished)
    for name in ("model.keras", "best.keras", "summary.json"):
        (unfinished / name).unlink()
    checkpoint = sorted((reference_run / "checkpoints" / "latest").glob("ckpt-*.index"))[-1]
    script = tmp_path / "fresh.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import vgg_keras
        from vgg_keras.artifacts import loading
        for path in {[str(reference_run), str(unfinished), str(checkpoint)[:-len(".index")],
                      str(reference_run / "best.keras")]!r}:
            model = vgg_keras.load_model(path)  # the public path; then which file it read
            print(model.name, loading.load_model_and_source(path)[1].kind)
        import keras
        print(keras.models.load_model({str(reference_run / "model.keras")!r}).name, "keras")
        print("training" in " ".join(n for n in sys.modules if n.startswith("vgg_keras.")))
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package installed
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["vgg_a keras", "vgg_a checkpoint", "vgg_a checkpoint",
                                          "vgg_a keras", "vgg_a keras", "False"]
    assert "damaged" not in result.stderr


def test_an_export_is_a_repository_its_servers_load(reference_run, deploy_exports, tmp_path):
    """Exported under umask 022: every folder and file readable by another user (read as
    ``nobody`` where this machine can switch users); a version the base's servers could not
    load refused (ONNX alone into a TF Serving base); a Triton repository for OpenVINO alone;
    a model name that is a path refused; and what killed exports left, cleared."""
    from pipelines.foundation import errors
    from vgg_keras.serving import export
    from vgg_keras.serving import versions
    from vgg_keras.serving.config import ServingSettings

    public = pathlib.Path(tempfile.mkdtemp(prefix="vgg-exports-", dir="/tmp"))
    try:
        public.chmod(0o755)
        base = public / "vgg"
        shutil.copytree(deploy_exports[0], base / "1")
        dead = base / f".export-{versions._host()}-999999999-abc123de"  # a kill -9 left it
        dead.mkdir()
        old = base / ".export-oldstyle"
        old.mkdir()
        os.utime(old, (0, 0))
        previous = os.umask(0o022)
        try:
            version = pathlib.Path(export.export_saved_model(
                str(reference_run), str(public), ServingSettings(
                    format=("saved_model", "onnx", "openvino"), max_batch_size=8)))
        finally:
            os.umask(previous)
        assert version == base / "2" and not dead.exists() and not old.exists()
        modes = {path: path.stat().st_mode for path in [version, *version.rglob("*")]}
        assert all(mode & 0o004 for mode in modes.values()), oct(min(modes.values()))
        assert all(mode & 0o001 for path, mode in modes.items() if path.is_dir())
        if shutil.which("setpriv") and os.geteuid() == 0:
            read = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                   "--clear-groups", "find", str(base), "-type", "f", "-exec",
                                   "cat", "{}", "+"], capture_output=True, timeout=120)
            assert read.returncode == 0, read.stderr[-2000:]
        assert "max_batch_size: 8" in (base / "config.pbtxt").read_text()
        with pytest.raises(errors.UserError, match=r"a version without saved_model, openvino "
                                                   r"would become their latest and fail to load"):
            export.export_saved_model(str(reference_run), str(public),
                                      ServingSettings(format=("onnx",)))
        assert sorted(p.name for p in base.iterdir() if p.name[0].isdigit()) == ["1", "2"]
    finally:
        shutil.rmtree(public)
    openvino = export.export_saved_model(str(reference_run), str(tmp_path), ServingSettings(
        model_name="edge", format=("openvino",)))
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((tmp_path / "edge" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert (config.backend, config.default_model_filename) == ("openvino", "model.xml")
    assert (pathlib.Path(openvino) / "model.xml").exists() and config.model_warmup
    for name in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(errors.UserError, match="must be a name"):
            ServingSettings(model_name=name).check()


def test_a_client_without_tensorflow_sees_what_the_server_sees(deploy_exports, tmp_path):
    """The reference client's crops (NumPy, Pillow) equal the serving graph's on photos of many
    sizes and shapes, JPEG and PNG; run with TensorFlow unimportable, its top 5 through ONNX
    Runtime is vgg-predict's; the metadata spells the preprocessing out."""
    import numpy as np

    from vgg_keras.serving import client
    from vgg_keras.serving import reference_client

    version = deploy_exports[0]
    metadata = json.loads((version / "vgg_metadata.json").read_text())
    steps = metadata["client_preprocessing"]
    assert (steps["resize_method"], steps["half_pixel_centers"], steps["antialias"]) == (
        "bilinear", True, False)
    assert steps["rounding"] == "floor(value + 0.5) to uint8" and steps["center_crop"] == 32
    rng = np.random.default_rng(5)
    photos = []
    for index, (height, width) in enumerate([(375, 500), (500, 375), (97, 301), (64, 64),
                                             (131, 67)]):
        pixels = synthetic.draw_scene(index, rng, height, width)
        for kind in ("rgb", "png_as_jpeg"):
            data = synthetic.encode(pixels, kind)
            served = client.preprocess_image(data, metadata["test_scale"], 32)
            ours = reference_client.preprocess(data, metadata)
            assert np.abs(ours.astype(int) - served.astype(int)).max() <= 1
            photos.append(data)
    for index, data in enumerate(photos[:3]):
        (tmp_path / f"photo_{index}.jpg").write_bytes(data)
    images = [str(tmp_path / f"photo_{index}.jpg") for index in range(3)]
    blocked = textwrap.dedent("""
        import importlib.abc, runpy, sys
        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow":
                    raise ImportError(f"{name} is not installed here")
        sys.meta_path.insert(0, Blocked())
        sys.argv = ["reference_client", *sys.argv[1:]]
        try:
            runpy.run_module("vgg_keras.serving.reference_client", run_name="__main__")
        finally:
            print("imported:", [name for name in ("tensorflow", "keras") if name in sys.modules])
    """)
    ours = subprocess.run([sys.executable, "-c", blocked, str(version), *images],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert ours.returncode == 0, ours.stderr[-3000:]
    *printed, imported = ours.stdout.splitlines()
    assert imported == "imported: []"  # neither TensorFlow nor Keras
    served = programs.run([BIN / "vgg-predict", f"--model={version / 'model.onnx'}", *images])
    assert served.returncode == 0, served.stderr[-3000:]
    assert "\n".join(printed).split() == served.stdout.split()


def test_exit_statuses_tell_the_truth(deploy_exports, tmp_path):
    """--help: status 0, the program's own description first; a flag mistake refused before
    TensorFlow is imported; a reader that closes the pipe early: a quiet end (0 or 141)."""
    for name in ("convert", "train", "evaluate", "export", "predict", "describe",
                 "data-service"):
        helped = programs.run([BIN / f"vgg-{name}", "--help"])
        assert helped.returncode == 0, (name, helped.stderr[-2000:])
        assert helped.stdout.lstrip().startswith(f"vgg-{name}: "), helped.stdout[:200]
    early = textwrap.dedent("""
        import sys
        sys.argv = ["vgg-export", "--export_dir=/tmp/x", "--model=/tmp/y", "--format=onnx,zip"]
        from vgg_keras.cli import export
        try:
            export.run()
        except SystemExit as stop:
            print(stop.code, "tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    refused = subprocess.run([sys.executable, "-c", early], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert refused.stdout.split() == ["1", "False", "False"], refused.stderr[-2000:]
    assert "--format must be a comma list of" in refused.stderr
    fifo = tmp_path / "head"
    os.mkfifo(fifo)
    photo = tmp_path / "photo.png"
    photo.write_bytes(synthetic.encode(synthetic.draw_scene(0, _rng(), 80, 60), "png_as_jpeg"))
    predict = programs.start([BIN / "vgg-predict", f"--model={deploy_exports[0]}",
                              *[str(photo)] * 40], stdout=str(fifo))
    try:
        with open(fifo) as reader:  # `| head -1`: one line read, then the pipe closed
            assert reader.readline().strip() == str(photo)
        result = predict.wait(300)
    finally:
        predict.kill()
    assert result.returncode in (0, 141), result.stderr[-2000:]
    assert "bug" not in result.stderr and "Traceback" not in result.stderr


def _rng():
    import numpy as np

    return np.random.default_rng(0)


def _export_with(script_body, reference_run, out):
    """vgg-export of the reference run into ``out`` in a forked process that first runs
    ``script_body`` (a fault planted in the export's own code), then the program."""
    code = textwrap.dedent(script_body) + textwrap.dedent(f"""
        sys.argv = ["vgg-export", "--model={reference_run}", "--export_dir={out}"]
        from vgg_keras.cli import export
        export.run()
    """)
    return programs.run([sys.executable, "-c", "import os, signal, sys\n" + code], cwd=ROOT)


def test_a_stop_after_the_version_is_whole_keeps_it_and_one_before_leaves_nothing(
        reference_run, tmp_path):
    """SIGINT the instant the version takes its number: the version stays, the report is
    printed, exit 0; SIGTERM while the formats are written: exit 143, no version, no staging
    folder."""
    after = _export_with("""
        from vgg_keras.serving import versions
        rename = versions.os.rename
        def renamed_then_interrupted(source, target):
            rename(source, target)
            os.kill(os.getpid(), signal.SIGINT)
        versions.os.rename = renamed_then_interrupted
    """, reference_run, tmp_path / "after")
    assert after.returncode == 0, after.stderr[-3000:]
    version = tmp_path / "after" / "vgg" / "1"
    assert (version / "vgg_metadata.json").exists() and f"to {version}" in after.stdout
    assert f"SIGINT came once version {version} was whole: it stays" in after.stderr
    before = _export_with("""
        from vgg_keras.serving import export as library
        write = library.write_warmup_requests
        def killed(*arguments):
            os.kill(os.getpid(), signal.SIGTERM)
            write(*arguments)
        library.write_warmup_requests = killed
    """, reference_run, tmp_path / "before")
    assert before.returncode == 143, before.stderr[-3000:]
    assert before.stderr.strip().splitlines()[-1] == "vgg-export: stopped by SIGTERM"
    assert os.listdir(tmp_path / "before" / "vgg") == []  # no version, no staging folder


def test_a_training_that_fails_before_its_first_step_leaves_the_model_dir_as_found(
        train_data, tmp_path, monkeypatch):
    """Published weights that cannot be had (offline, not cached): refused in one line, and
    the model dir is as it was: a new one not made, an existing one unchanged."""
    from huggingface_hub import constants as hub_constants

    from pipelines.foundation import errors
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for model_dir in (tmp_path / "new", existing):
        with pytest.raises(errors.UserError, match="is not in the cache"):
            loop.train(run_config.TrainConfig(**dict(
                REFERENCE_RUN, init="timm", data_dir=str(train_data), model_dir=str(model_dir))))
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:{port}", "http://no-such-host.invalid"])
def test_offline_a_published_fetch_ends_in_one_line_within_seconds(endpoint, tmp_path):
    """Without a network (nothing listens, no name resolves) and without HF_HUB_OFFLINE: one
    line, within 5 s, none of huggingface_hub's retries."""
    import time

    from tests.conftest import free_ports

    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"),
               HF_ENDPOINT=endpoint.format(port=free_ports(1)[0]))
    env.pop("HF_HUB_OFFLINE", None)
    started = time.monotonic()
    result = programs.run([BIN / "vgg-export", "--config=D-BN", "--weights=timm",
                           f"--export_dir={tmp_path / 'out'}"], env=env)
    assert time.monotonic() - started < 5 + 3  # the program's start included
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "could not be reached" in line and "is not in the cache" in line, line


def test_a_folder_of_photos_gets_its_shard_counts_by_size(tmp_path):
    """152 small photos: as many shards as workers (about 100 MB each otherwise), not one per
    photo; ImageNet's own inputs keep ImageNet's counts."""
    from pipelines import convert
    from pipelines import sources

    synthetic.write_dataset(tmp_path / "photos", layout="image_folder",
                            synsets=("a", "b", "c", "d"), train_per_class=38, val_per_class=0,
                            problems=False, style=synthetic.ImageStyle(size_range=(32, 40)))
    plan = sources.find_image_folder(tmp_path / "photos", validation_fraction=0.25)
    assert convert.default_shards(plan, num_workers=2) == {"train": 2}
    manifest = convert.convert(plan, tmp_path / "out", num_workers=2)
    assert [len(split["shards"]) for split in manifest["splits"].values()] == [2, 2]
    assert convert.default_shards(dataclasses.replace(plan, source={"raw_data_dir": "x"})) == {
        "train": 1024, "validation": 128}


def test_one_conversion_per_folder_and_a_manifest_true_to_the_bytes(train_data, tmp_path):
    """A second vgg-convert into a folder another one converts into is refused in one line; a
    rerun finds a shard written over since, rewrites it, and the manifest says its bytes."""
    import hashlib

    from pipelines import convert
    from pipelines import sources
    from pipelines.foundation import lease

    synthetic.write_dataset(tmp_path / "photos", layout="image_folder", synsets=("a", "b"),
                            train_per_class=4, val_per_class=0, problems=False,
                            style=synthetic.ImageStyle(size_range=(32, 40)))
    out = tmp_path / "out"
    held = lease.Lease(str(out), flag="--output_dir", job="conversion per output folder",
                       state=str(out / ".convert_state"))
    held.acquire(settle=0)
    try:
        refused = programs.run([BIN / "vgg-convert", f"--image_folder={tmp_path / 'photos'}",
                                f"--output_dir={out}"])
    finally:
        held.release()
    assert refused.returncode == 1
    assert f"--output_dir={out} is in use by host" in refused.stderr
    plan = sources.find_image_folder(tmp_path / "photos")
    convert.convert(plan, out, num_workers=1, num_shards={"train": 2})
    first, second = sorted(out.glob("train-*"))
    first.write_bytes(second.read_bytes())  # another run's bytes over it
    manifest = convert.convert(plan, out, num_workers=1, num_shards={"train": 2})
    for shard in manifest["splits"]["train"]["shards"]:
        data = (out / shard["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["size_bytes"],
                                                                  shard["sha256"])


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (a tmpfs mounted ``ro``), where this machine lets a test mount."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)],
                             capture_output=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {mounted.stderr[:200]!r}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


def test_a_read_only_destination_is_one_line(read_only, reference_run, train_data, tmp_path):
    commands = {
        "export": [BIN / "vgg-export", f"--model={reference_run}",
                   f"--export_dir={read_only / 'exports'}"],
        "convert": [BIN / "vgg-convert", f"--image_folder={tmp_path / 'photos'}",
                    f"--output_dir={read_only / 'data'}"],
        "train": [BIN / "vgg-train", *TINY_FLAGS, f"--data_dir={train_data}",
                  f"--model_dir={read_only / 'run'}", "--train_epochs=1"],
        "evaluate": [BIN / "vgg-evaluate", f"--model={reference_run}",
                     f"--data_dir={train_data}", f"--output_dir={read_only / 'eval'}",
                     "--num_classes=4"],
    }
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "photo.png").write_bytes(synthetic.encode(
        synthetic.draw_scene(0, _rng(), 40, 40), "png_as_jpeg"))
    for name, command in commands.items():
        result = programs.run(command)
        assert result.returncode == 1, (name, result.stderr[-2000:])
        (line,) = result.stderr.strip().splitlines()
        assert "read-only file system" in line and "bug" not in line, (name, line)


def test_the_tensor_formats_refuse_what_the_saved_model_refuses(deploy_exports, tmp_path):
    """Through ONNX: an image of 1×1 pixels and one whose header declares 12000×12000 are
    refused as the SavedModel refuses them, the others predicted; metadata that names fewer
    classes than the model gives is one line."""
    version = deploy_exports[0]
    tiny, huge = tmp_path / "tiny.png", tmp_path / "huge.jpg"
    tiny.write_bytes(synthetic.encode(synthetic.draw_scene(0, _rng(), 1, 1), "png_as_jpeg"))
    huge.write_bytes(synthetic.encode(synthetic.draw_scene(0, _rng(), 64, 64), "bomb_jpeg"))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(synthetic.encode(synthetic.draw_scene(1, _rng(), 48, 64)))
    result = programs.run([BIN / "vgg-predict", f"--model={version / 'model.onnx'}",
                           str(tiny), str(huge), str(photo)])
    assert result.returncode == 1 and str(photo) in result.stdout
    refusals = result.stderr.strip().splitlines()
    assert "too small: the shorter side must be at least 32" in refusals[0], refusals
    assert "more than the limit of 40000000" in refusals[1], refusals
    copy = _copy_version(version, tmp_path / "copy")
    metadata = json.loads((copy / "vgg_metadata.json").read_text())
    metadata["labels"], metadata["synsets"] = metadata["labels"][:3], metadata["synsets"][:3]
    (copy / "vgg_metadata.json").write_text(json.dumps(metadata))
    result = programs.run([BIN / "vgg-predict", f"--model={copy / 'model.onnx'}", str(photo)])
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "gives 4 outputs; its vgg_metadata.json says 32 and 3 classes" in line, line
    (copy / "model.bin").unlink()
    result = programs.run([BIN / "vgg-predict", f"--model={copy / 'model.xml'}", str(photo)])
    assert result.returncode == 1
    assert f"needs its weights, {copy / 'model.bin'}, beside it" in result.stderr


def test_the_messages_name_the_thing_and_a_fix_that_works(deploy_exports, train_data,
                                                          tmp_path, monkeypatch):
    """Dense evaluation of an ONNX file names it; KERAS_HOME that is a file is named; a damaged
    calibration shard's advice is a flag the reader has; dir(vgg_keras) is its public names."""
    import numpy as np

    import vgg_keras
    from pipelines import shard_integrity

    dense = programs.run([BIN / "vgg-evaluate", f"--model={deploy_exports[0] / 'model.onnx'}",
                          f"--data_dir={train_data}", "--protocols=dense", "--num_classes=4"])
    assert dense.returncode == 1
    assert "(an ONNX, LiteRT or OpenVINO file) does not hold: use single" in dense.stderr
    from vgg_keras.nets import downloads
    from vgg_keras.nets import published

    home = tmp_path / "keras_home"
    home.write_text("not a folder")
    monkeypatch.setenv("KERAS_HOME", str(home))
    with pytest.raises(published.WeightsUnavailable,
                       match=f"{home} is a file, not a folder: point KERAS_HOME at a folder"):
        downloads.fetch("D", "paper")
    assert "--skip_corrupt)" in shard_integrity._TRAINING_SKIPS
    assert "vgg-train can go on" in shard_integrity._TRAINING_SKIPS
    from vgg_keras.evaluation import results

    figure = results.confusion_figure(np.array([[5, 1, 0], [2, 3, 1], [0, 0, 6]]),
                                      ["circles", "squares", "stripes"], "single")
    image, bar = figure.axes  # the matrix, and the colour bar that reads it
    assert bar.get_ylabel() == "share of the true class's images"
    assert sorted(text.get_text() for text in image.texts) == ["1", "1", "2", "3", "5", "6"]
    assert not {"importlib", "sys"} & set(dir(vgg_keras))
    assert {"build_vgg", "load_model", "Head", "__version__"} <= set(dir(vgg_keras))
