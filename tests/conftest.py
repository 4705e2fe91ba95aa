"""Shared test set-up: quiet TensorFlow logs, the tiny nets and runs the tests share, the data and
trained runs built once per run of the suite, and the suite's own wall time.

`make test` runs the suite on two pytest-xdist workers (BUILD.md, "Tests"); what is built once
here is built once for both of them: the first worker to ask builds it under a lock, the other
waits and reads it. Tests never change a shared folder: they copy it first.
"""

import contextlib
import fcntl
import os
import re
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as our programs start TensorFlow
# oneDNN's kernels off, as TensorFlow has them on this project's machines, whatever the CPU (on
# AVX-512 CPUs TensorFlow turns them on by default); the distributed evaluation and training
# tests run with them on too, in interpreters of their own.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402

import vgg_keras  # noqa: E402

# A tiny net: 1/16 of the paper's widths (block1 has 4 filters, block5 32), FC-16, 10 classes.
TINY = dict(num_classes=10, input_shape=(32, 32, 3), width=1 / 16)
TINY_HEAD = vgg_keras.Head(fc_units=16)

# A tiny training run on the 4 classes of `train_data` (ImageNet labels 1..4: label_offset 1).
# Glorot's init at lr 0.002 learns within a few dozen steps; the paper's N(0, 0.01²) barely moves
# there. The same run as a library config and as vgg-train's flags.
TINY_RUN = dict(config="A", width=0.125, fc_units=64, crop_size=32, scale=(36, 48),
                batch_size=16, init="glorot", dropout=0.0, learning_rate=0.002, seed=0,
                progress="epochs", num_classes=4, label_offset=1)
TINY_FLAGS = ["--config=A", "--width=0.125", "--fc_units=64", "--crop_size=32", "--scale=36,48",
              "--batch_size=16", "--init=glorot", "--dropout=0", "--learning_rate=0.002",
              "--seed=0", "--num_classes=4", "--label_offset=1"]
# The reference run of the resume tests: 96 images in batches of 8, 12 steps an epoch, 3 epochs,
# deterministic, so that a run stopped anywhere and resumed ends with the same weights.
REFERENCE_STEPS_PER_EPOCH = 12
REFERENCE_RUN = dict(TINY_RUN, batch_size=8, train_epochs=3, deterministic=True,
                     distribution_strategy="one_device")
REFERENCE_FLAGS = [*TINY_FLAGS, "--batch_size=8", "--train_epochs=3", "--deterministic",
                   "--distribution_strategy=one_device"]

# What a line of TensorFlow's, Keras' or absl's own logs looks like (C++ and Python): none is
# printed by our programs unless asked for (--verbose, --tf_log_level).
LIBRARY_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages|(INFO|WARNING|ERROR):"
                          r"(tensorflow|absl)|.*(cuda|cuInit|oneDNN|cpu_feature_guard|"
                          r"UserWarning|rebuild TensorFlow))")

BUDGET_MINUTES = 12  # `make test` on 2 cores, install included (BUILD.md, "Tests")
# The longest modules, longest first (seconds on 2 cores, from --durations): they start first, so
# that the xdist workers, which take the next module as they finish one, end together.
LONGEST_MODULES = ("test_training.py", "test_demo.py", "test_backend_neutral.py",
                   "test_torch_weights.py", "test_evaluation.py", "test_explain.py",
                   "test_cluster.py", "test_recipe_runs.py", "test_journeys.py",
                   "test_preemption.py", "test_export.py",
                   "test_data_service.py", "test_docs_commands.py", "test_packaging.py",
                   "test_fine_tune.py", "test_keras_applications.py", "test_builder.py",
                   "test_conv_head.py")
_STARTED = pytest.StashKey[float]()


def build_tiny(config, *, head=TINY_HEAD, weight_init=None, **overrides):
    """Builds ``config`` with the tiny widths (seed 1 unless ``weight_init`` says otherwise);
    ``overrides`` replace any other argument of ``build_vgg``."""
    return vgg_keras.build_vgg(config, **{**TINY, **overrides}, head=head,
                               weight_init=weight_init or vgg_keras.WeightInit(seed=1))


@pytest.fixture
def tiny():
    return build_tiny


def write_shards(root, *, train_per_class, val_per_class, size_range, train_shards=4,
                 validation_shards=2):
    """Generates a clean 4-class ImageNet-layout dataset under ``root/raw`` and converts it to
    ``root/data``; returns that folder and the manifest. (ImageNet labels 1..4.)"""
    from pipelines import convert
    from pipelines import sources
    from pipelines import synthetic

    synthetic.write_dataset(root / "raw", layout="extracted",
                            synsets=synthetic.DEFAULT_SYNSETS[:4],
                            train_per_class=train_per_class, val_per_class=val_per_class,
                            problems=False, style=synthetic.ImageStyle(size_range=size_range))
    manifest = convert.convert(sources.find_imagenet(root / "raw"), root / "data",
                               num_shards={"train": train_shards, "validation": validation_shards},
                               num_workers=1)
    return root / "data", manifest


def write_applications_h5(model, path, include_top=True):
    """Writes weights in the layout of keras.applications' downloadable .h5 files."""
    layers = [layer for layer in model.layers
              if include_top or not layer.name.startswith(("fc", "pred"))]
    import h5py

    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        for layer in layers:
            group = h5.create_group(layer.name)
            names = [f"{layer.name}_W_1:0", f"{layer.name}_b_1:0"][: len(layer.get_weights())]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, value in zip(names, layer.get_weights(), strict=True):
                group.create_dataset(weight_name, data=value)


def evaluate(models, data, *, strategy=None, progress=False, **settings):
    """vgg-evaluate's library call: ``models`` on ``data`` with ``settings`` (``EvalConfig``'s
    fields), on ``strategy``."""
    from vgg_keras.evaluation import config as eval_config
    from vgg_keras.evaluation import evaluator

    config = eval_config.EvalConfig(model=tuple(str(m) for m in models), data_dir=str(data),
                                   **settings)
    return evaluator.evaluate(config, strategy=strategy, progress=progress)


def write_tfds_metadata(folder, split_lengths, synsets):
    """tfds's own metadata for a folder of ``imagenet2012`` shards, written by tfds:
    ``split_lengths`` ``{split: [records per shard]}``, the label's class names ``synsets``."""
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=list(synsets)),
        "file_name": tfds.features.Text()})
    identity = tfds.core.DatasetIdentity(name="imagenet2012", version=tfds.core.Version("5.1.0"),
                                         data_dir=str(folder), module_name="tests")
    info = tfds.core.DatasetInfo(builder=identity, features=features)
    info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
        name=split, shard_lengths=list(lengths), num_bytes=0,
        filename_template=tfds.core.ShardedFileTemplate(
            data_dir=str(folder), dataset_name="imagenet2012", split=split,
            filetype_suffix="tfrecord")) for split, lengths in split_lengths.items()]))
    info.write_to_directory(str(folder))


def free_ports(count):
    """``count`` ports of localhost that nothing listens on now (servers the tests start)."""
    import socket

    ports = []
    for _ in range(count):
        with socket.socket() as sock:
            sock.bind(("localhost", 0))
            ports.append(sock.getsockname()[1])
    return ports


@contextlib.contextmanager
def _locked(path):
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def built_once(tmp_path_factory, name, build):
    """The folder ``name``, made by ``build(folder)`` the first time any test of this run of the
    suite asks for it (in any xdist worker), and the same folder for every later test."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # .../pytest-N/popen-gwK: share pytest-N
        base = base.parent
    root = base / "built_once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with _locked(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def train_data(tmp_path_factory):
    """96 training and 24 validation images of 4 classes (shorter sides 40–64) as vgg-convert's
    shards: 4 training shards, 2 validation shards."""
    folder = built_once(tmp_path_factory, "train_data", lambda root: write_shards(
        root, train_per_class=24, val_per_class=6, size_range=(40, 64)))
    return folder / "data"


@pytest.fixture(scope="session")
def reference_run(train_data, tmp_path_factory):
    """The model dir of ``REFERENCE_RUN`` on ``train_data``, finished: what an uninterrupted run
    ends with."""
    from vgg_keras.training import loop
    from vgg_keras.training import run_config

    def train(folder):
        loop.train(run_config.TrainConfig(data_dir=str(train_data), model_dir=str(folder),
                                          **REFERENCE_RUN))

    return built_once(tmp_path_factory, "reference_run", train)


@pytest.fixture(scope="session")
def deploy_exports(reference_run, train_data, tmp_path_factory):
    """``reference_run`` exported in every format at fp32 (``.../vgg/1``), and in the tensor
    formats at int8, calibrated on ``train_data``'s training split (``.../vgg_int8/1``): built
    once for the suite. Copy a version before changing it."""
    def build(root):
        from vgg_keras.serving import export
        from vgg_keras.serving import formats
        from vgg_keras.serving.config import ServingSettings

        export.export_saved_model(str(reference_run), str(root), ServingSettings(
            model_name="vgg", format=formats.FORMATS))
        export.export_saved_model(str(reference_run), str(root), ServingSettings(
            model_name="vgg_int8", format=formats.TENSOR_FORMATS, precision="int8",
            calibration_data=str(train_data), calibration_images=48))

    root = built_once(tmp_path_factory, "deploy_exports", build)
    return root / "vgg" / "1", root / "vgg_int8" / "1"


def pytest_collection_modifyitems(items):
    """Runs the modules of ``LONGEST_MODULES`` first, in that order; a module's tests stay
    together and in their order."""
    def rank(item):
        name = item.path.name
        return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)  # stable: the rest keep the collection order


def pytest_configure(config):
    config.stash[_STARTED] = time.monotonic()


def pytest_sessionfinish(session):
    """Stops the fork server of tests/programs.py (in each xdist worker that started one)."""
    from tests import programs

    programs.close()


def pytest_terminal_summary(terminalreporter, config):
    """The suite's wall time against its budget (in the xdist controller, or a plain run)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    seconds = time.monotonic() - config.stash[_STARTED]
    over = seconds > BUDGET_MINUTES * 60
    terminalreporter.write_sep(
        "=", f"suite wall time {int(seconds // 60)} min {int(seconds % 60):02d} s; `make test`'s "
        f"budget is {BUDGET_MINUTES} min on 2 cores"
        + (" — OVER BUDGET: find what grew with --durations=25 (BUILD.md, Tests)" if over else ""),
        red=over, bold=over)
