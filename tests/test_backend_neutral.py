"""The nets need only Keras: built and run under JAX in a process where TensorFlow cannot be
imported, with the same numbers as under TensorFlow."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from tests.conftest import build_tiny

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


def _run_without_tensorflow(body, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_BLOCK_TENSORFLOW + textwrap.dedent(body))
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_blocker_really_blocks(tmp_path):
    out = _run_without_tensorflow("""
        try:
            import tensorflow
        except ImportError as error:
            print("blocked:", error)
    """, tmp_path)
    assert "blocked: import of tensorflow blocked" in out


def test_every_config_builds_and_runs_under_jax_without_tensorflow(tmp_path):
    out = _run_without_tensorflow("""
        import sys
        import numpy as np
        import keras
        import vgg_keras

        assert keras.backend.backend() == "jax"
        image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
        for config in vgg_keras.CONFIGS:
            model = vgg_keras.build_vgg(config, seed=0)
            probabilities = keras.ops.convert_to_numpy(model(image, training=False))
            assert probabilities.shape == (1, 1000)
            assert abs(float(probabilities.sum()) - 1.0) < 1e-4
            print(config, vgg_keras.count_parameters(model),
                  vgg_keras.count_weight_layers(model))
        loaded = sorted(name for name in sys.modules if name.startswith("tensorflow"))
        print("tensorflow modules:", loaded)
    """, tmp_path)
    assert out.splitlines() == [
        "A 132863336 11", "A-LRN 132863336 11", "B 133047848 13", "C 133638952 16",
        "D 138357544 16", "E 143667240 19", "tensorflow modules: []",
    ]


def test_every_config_and_bn_variant_builds_without_a_head_under_jax(tmp_path):
    """The backbone path: no head, pooled or not, with taps before and after the ReLU."""
    out = _run_without_tensorflow("""
        import numpy as np
        import keras
        import vgg_keras

        image = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
        for config in vgg_keras.config_names():
            for pooling in (None, "avg"):
                model = vgg_keras.build_vgg(config, head=None, pooling=pooling, width=1 / 16)
                out = keras.ops.convert_to_numpy(model(image))
                taps = vgg_keras.feature_model(model, ["block2_conv1", "block5_pool"],
                                               relu=pooling is None)(image)
                print(config, pooling, out.shape, tuple(taps["block2_conv1"].shape))
    """, tmp_path)
    lines = out.splitlines()
    assert len(lines) == 24
    for line in lines:
        name, pooling, shape = line.split(" ", 2)
        expected = "(1, 2, 3, 32) (1, 32, 48, 8)" if pooling == "None" else "(1, 32) (1, 32, 48, 8)"
        assert shape == expected, line


def test_jax_and_tensorflow_give_the_same_numbers(tmp_path):
    model = build_tiny("A-LRN", input_shape=(64, 64, 3), batch_norm=True)
    model.save_weights(str(tmp_path / "tiny.weights.h5"))
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    _run_without_tensorflow("""
        import numpy as np
        import keras
        import vgg_keras
        from tests.conftest import TINY

        model = vgg_keras.build_vgg("A-LRN", **dict(TINY, input_shape=(64, 64, 3)),
                                    batch_norm=True)
        model.load_weights("tiny.weights.h5")
        images = np.load("images.npy")
        np.save("dense.npy", keras.ops.convert_to_numpy(model(images, training=False)))
        conv = vgg_keras.to_conv_head(model)
        np.save("conv.npy", keras.ops.convert_to_numpy(conv(images, training=False)))
    """, tmp_path)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "dense.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "conv.npy"), expected, atol=1e-5)


def test_the_gpu_benchmark_runs_under_jax_without_tensorflow(tmp_path):
    """tools/bench_gpu.py, made for the GPU machines (JAX, no TensorFlow), runs here on the CPU
    with a small batch: known to work the day it meets a GPU."""
    out = _run_without_tensorflow(f"""
        import sys
        sys.argv = ["bench_gpu", "--configs=A", "--batch_sizes=2", "--dtypes=float32,bfloat16",
                    "--image_size=32", "--steps=2", "--warmup=1"]
        sys.path.insert(0, {str(ROOT)!r})
        from absl import app
        from tools import bench_gpu
        app.run(bench_gpu.main)
    """, tmp_path)
    lines = out.strip().splitlines()
    assert lines[0].startswith("device cpu: ") and "Keras 3.15" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [("A", "2", "float32"),
                                                          ("A", "2", "bfloat16")]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0 and row[5] == "-"  # no peak for a CPU
        assert np.isfinite(float(row[6]))
