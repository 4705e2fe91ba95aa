"""What `pip install .` puts into a user's environment: the import packages `vgg_keras` and
`pipelines` only (no top-level `tools`, a name other distributions use), and console scripts
that run from anywhere, found through the installed package, not the working directory."""

import concurrent.futures
import configparser
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ("vgg-convert", "vgg-data-service", "vgg-describe", "vgg-evaluate", "vgg-explain",
           "vgg-export",
           "vgg-predict", "vgg-train")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel of this checkout, built offline with the test environment's setuptools."""
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools builds in the source tree (build/, *.egg-info), not in ours.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "demo_output", "__pycache__", ".pytest_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(out), str(source)], capture_output=True, text=True,
        timeout=600, cwd=out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("vgg_keras-*.whl")
    return path


def _dist_info(archive, name):
    (member,) = [m for m in archive.namelist() if m.endswith(f".dist-info/{name}")]
    return archive.read(member).decode()


def test_the_wheel_holds_vgg_keras_and_pipelines_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        assert _dist_info(archive, "top_level.txt").split() == ["pipelines", "vgg_keras"]
        files = [line.split(",")[0] for line in _dist_info(archive, "RECORD").splitlines()]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(_dist_info(archive, "entry_points.txt"))
    assert files and not [f for f in files if f.startswith("tools/")]
    assert {f.split("/")[0] for f in files if not f.split("/")[0].endswith(".dist-info")} == {
        "pipelines", "vgg_keras"}
    assert "vgg_keras/cli/train.py" in files and "vgg_keras/cli/program.py" in files
    scripts = dict(entry_points["console_scripts"])
    assert sorted(scripts) == list(SCRIPTS)
    assert all(target.startswith("vgg_keras.cli.") for target in scripts.values())


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed, its dependencies taken from the test
    environment's site-packages (a path entry only: the checkout's editable install there is not
    activated)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    (pathlib.Path(site.strip()) / "test_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                             str(wheel)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return venv / "bin"


def _run(command, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def test_every_console_script_runs_from_outside_the_repository(installed, tmp_path):
    where = _run([str(installed / "python"), "-c", "import vgg_keras, pipelines, "
                  "vgg_keras.cli.train as t; print(vgg_keras.__file__, pipelines.__file__, "
                  "t.__file__); import tools"], tmp_path)
    assert "No module named 'tools'" in where.stderr
    assert str(ROOT) not in where.stdout and where.stdout.count(str(installed.parent)) == 3
    commands = [[str(installed / name), "--help"] for name in SCRIPTS]
    commands.append([str(installed / "vgg-describe"), "--configs=A,D"])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda command: _run(command, tmp_path), commands))
    for command, result in zip(commands, results, strict=True):
        text = result.stdout + result.stderr
        assert "Traceback" not in text, (command, text[-2000:])
        if command[1] == "--help":
            name = pathlib.Path(command[0]).name
            assert f"USAGE: {command[0]}" in text or name in text, (command, text[-2000:])
            # The program's own flags, and the one every program shares.
            assert "--[no]verbose" in text and text.count("\n  --") >= 3, (command, text)
    describe = results[-1]
    assert describe.returncode == 0 and "138,357,544" in describe.stdout, describe.stdout
