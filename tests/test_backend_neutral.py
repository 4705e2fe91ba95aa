"""The nets need only Keras: built and run under JAX in a process where TensorFlow cannot be
imported, with the same numbers as under TensorFlow.

Starting JAX and Keras costs seconds, so one child process runs every check of this module, each
in its own section (a failing section fails its own test only, with its traceback)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import build_tiny

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs first in the child: any `import tensorflow...` raises, as on a machine without it.
_BLOCK_TENSORFLOW = """
import importlib.abc, sys

class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"import of {name} blocked: TensorFlow is not installed here")

sys.meta_path.insert(0, _BlockTensorFlow())
"""

# The checks, in the order they run; each prints its own lines.
SECTIONS = {
    "blocker": """
        try:
            import tensorflow
        except ImportError as error:
            print("blocked:", error)
    """,
    "every_config": """
        import numpy as np
        import keras
        import vgg_keras

        assert keras.backend.backend() == "jax"
        image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
        for config in vgg_keras.CONFIGS:
            model = vgg_keras.build_vgg(config, weight_init=vgg_keras.WeightInit(seed=0))
            if config in ("A-LRN", "C"):  # every kind of layer: LRN, 1x1 convolutions
                probabilities = keras.ops.convert_to_numpy(model(image, training=False))
                assert probabilities.shape == (1, 1000)
                assert abs(float(probabilities.sum()) - 1.0) < 1e-4
            print(config, vgg_keras.count_parameters(model),
                  vgg_keras.count_weight_layers(model))
            del model
            keras.backend.clear_session()
        loaded = sorted(name for name in sys.modules if name.startswith("tensorflow"))
        print("tensorflow modules:", loaded)
    """,
    "backbones": """
        import numpy as np
        import keras
        import vgg_keras

        image = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
        # Each new kernel shape costs JAX a compilation (of its initializer too): three nets
        # cover every kind of layer, at the full width whose kernels every_config compiled
        # (a narrow net's new shapes took 15 s more).
        for config, pooling in (("A-LRN", None), ("C", None), ("E-BN", "avg")):
            model = vgg_keras.build_vgg(config, head=vgg_keras.Head(None, pooling=pooling))
            out = keras.ops.convert_to_numpy(model(image))
            taps = vgg_keras.feature_model(model, ["block2_conv1", "block5_pool"],
                                           relu=pooling is None)(image)
            print(config, pooling, out.shape, tuple(taps["block2_conv1"].shape))
    """,
    "same_numbers": """
        import numpy as np
        import keras
        import vgg_keras
        from tests.conftest import TINY, TINY_HEAD

        model = vgg_keras.build_vgg("A-LRN", **dict(TINY, input_shape=(64, 64, 3)),
                                    head=TINY_HEAD, batch_norm=True)
        model.load_weights("tiny.weights.h5")
        images = np.load("images.npy")
        np.save("dense.npy", keras.ops.convert_to_numpy(model(images, training=False)))
        conv = vgg_keras.to_conv_head(model)
        np.save("conv.npy", keras.ops.convert_to_numpy(conv(images, training=False)))
        print("saved")
    """,
    "gpu_benchmark": f"""
        sys.path.insert(0, {str(ROOT)!r})
        from absl import flags
        from tools import bench_gpu
        argv = ["bench_gpu", "--configs=A", "--batch_sizes=2", "--dtypes=float32,bfloat16",
                "--image_size=32", "--steps=2", "--warmup=1"]
        bench_gpu.main(flags.FLAGS(argv))
    """,
    "afterwards": """
        print(sorted(name for name in sys.modules if name.startswith("tensorflow")))
    """,
}

# The child: TensorFlow blocked, then every section; a section's output and error are kept apart.
_CHILD = _BLOCK_TENSORFLOW + """
import contextlib, io, json, sys, time, traceback
results = {}
for name, body in json.loads(sys.argv[1]).items():
    out, started = io.StringIO(), time.monotonic()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(body, name, "exec"), {"__name__": "__main__", "sys": sys})
        results[name] = {"out": out.getvalue(), "error": None}
    except BaseException:  # noqa: BLE001 - reported to the section's own test
        results[name] = {"out": out.getvalue(), "error": traceback.format_exc()}
    results[name]["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps({name: results[name]}), flush=True)
with open("results.json", "w") as file:
    json.dump(results, file)
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    """Runs every section in one JAX process without TensorFlow; returns {section: output}."""
    folder = tmp_path_factory.mktemp("jax")
    # The same-numbers check reads a tiny net saved here, under TensorFlow.
    model = build_tiny("A-LRN", input_shape=(64, 64, 3), batch_norm=True)
    model.save_weights(str(folder / "tiny.weights.h5"))
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.save(folder / "images.npy", images)
    script = folder / "child.py"
    script.write_text(_CHILD)
    sections = {name: textwrap.dedent(body) for name, body in SECTIONS.items()}
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, str(script), json.dumps(sections)], env=env,
                            capture_output=True, text=True, timeout=900, cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((folder / "results.json").read_text())
    return folder, model, images, results


def _output(child, name):
    result = child[3][name]
    assert result["error"] is None, result["out"] + result["error"]
    return result["out"]


def test_blocker_really_blocks(child):
    assert "blocked: import of tensorflow blocked" in _output(child, "blocker")


def test_every_config_builds_and_runs_under_jax_without_tensorflow(child):
    assert _output(child, "every_config").splitlines() == [
        "A 132863336 11", "A-LRN 132863336 11", "B 133047848 13", "C 133638952 16",
        "D 138357544 16", "E 143667240 19", "tensorflow modules: []",
    ]


def test_no_tensorflow_module_was_loaded_by_any_section(child):
    assert _output(child, "afterwards").strip() == "[]"


def test_nets_and_bn_variants_build_without_a_head_under_jax(child):
    """The backbone path: no head, pooled or not, with taps before and after the ReLU."""
    lines = _output(child, "backbones").splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [["A-LRN", "None"], ["C", "None"],
                                                          ["E-BN", "avg"]]
    for line in lines:
        name, pooling, shape = line.split(" ", 2)
        expected = ("(1, 2, 3, 512) (1, 32, 48, 128)" if pooling == "None" else
                    "(1, 512) (1, 32, 48, 128)")
        assert shape == expected, line


def test_jax_and_tensorflow_give_the_same_numbers(child):
    assert _output(child, "same_numbers").strip() == "saved"
    folder, model, images, _ = child
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(np.load(folder / "dense.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(np.load(folder / "conv.npy"), expected, atol=1e-5)


def test_the_gpu_benchmark_runs_under_jax_without_tensorflow(child):
    """tools/bench_gpu.py, made for the GPU machines (JAX, no TensorFlow), runs here on the CPU
    with a small batch: known to work the day it meets a GPU."""
    lines = _output(child, "gpu_benchmark").strip().splitlines()
    assert lines[0].startswith("device cpu: ") and "Keras 3.15" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [("A", "2", "float32"),
                                                          ("A", "2", "bfloat16")]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0 and row[5] == "-"  # no peak for a CPU
        assert np.isfinite(float(row[6]))
