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
