"""What ``import vgg_keras`` gives a Keras user: the models our runs save load with Keras' own
``load_model`` (our layers registered, whether Keras was imported before or after us), and
``vgg_keras.load_model`` reads a model dir in a process that imported nothing else of ours."""

import concurrent.futures
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]

# Fresh processes, each its own import order.
CHILDREN = {
    "vgg_keras_first": """
        import vgg_keras
        import keras
        for name in ("model.keras", "best.keras"):
            model = keras.models.load_model(f"{MODEL_DIR}/{name}")
            print(name, model.get_layer("color_shift").__class__.__name__)
    """,
    "keras_first": """
        import keras
        try:
            keras.models.load_model(f"{MODEL_DIR}/model.keras")
            print("loaded without vgg_keras")
        except Exception as error:
            print("refused without vgg_keras:", "PCAColorShift" in str(error))
        import vgg_keras
        print("model.keras", keras.models.load_model(f"{MODEL_DIR}/model.keras").name)
    """,
    "only_load_model": """
        import sys
        import vgg_keras
        model = vgg_keras.load_model(MODEL_DIR)  # a model dir: its model.keras
        print(model.name, sorted(n for n in sys.modules if n.startswith("vgg_keras.")))
    """,
}


def _run(name, model_dir, folder):
    script = folder / f"{name}.py"
    script.write_text(f"MODEL_DIR = {str(model_dir)!r}\n" + textwrap.dedent(CHILDREN[name]))
    # From a folder outside the repository, the package as installed (editable here).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def loaded(reference_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("package")
    with concurrent.futures.ThreadPoolExecutor(len(CHILDREN)) as pool:
        results = dict(zip(CHILDREN, pool.map(lambda n: _run(n, reference_run, folder),
                                              CHILDREN), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-3000:])
    return {name: result.stdout.strip().splitlines() for name, result in results.items()}


def test_keras_loads_our_model_dirs_files_after_import_vgg_keras(loaded):
    assert loaded["vgg_keras_first"] == ["model.keras PCAColorShift", "best.keras PCAColorShift"]


def test_keras_imported_first_then_vgg_keras(loaded):
    refused, loaded_name = loaded["keras_first"]
    assert refused == "refused without vgg_keras: True"  # what the test guards against
    assert loaded_name == "model.keras vgg_a"


def test_vgg_keras_load_model_alone(loaded):
    (line,) = loaded["only_load_model"]
    name, modules = line.split(" ", 1)
    assert name == "vgg_a"
    assert "vgg_keras.training" not in modules  # nothing of training was needed
