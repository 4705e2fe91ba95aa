"""`vgg-describe` / `python -m tools.describe`: the table of Tables 1–2, from built models."""

import json
import pathlib
import sys

import pytest

from tests import programs
from tools import describe

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_describe_a_tiny_net_counts_from_the_model():
    row = describe.describe("A-LRN", input_size=224, num_classes=10)
    assert row["config"] == "A-LRN" and row["weight_layers"] == 11
    assert row["parameters"] == 132_863_336 - 4096 * 990 - 990
    assert row["output_shape"] == [None, 10]
    # A at 224 is 15.218 GFLOPs with 1000 classes; 990 fewer outputs of fc3 save 2·4096·990.
    assert row["gflops"] == pytest.approx(15.218180096 - 2 * 4096 * 990 / 1e9, abs=1e-9)


def test_table_format():
    rows = [{"config": "D", "weight_layers": 16, "parameters": 138_357_544, "gflops": 30.94,
             "output_shape": [None, 1000]}]
    table = describe.format_table(rows)
    assert "D" in table and "138,357,544" in table and "30.94" in table


@pytest.mark.slow
def test_cli_prints_the_configurations_asked_for():
    """The shallowest and the deepest net (every net's counts: tests/test_backend_neutral.py)."""
    result = programs.run([sys.executable, "-m", "tools.describe", "--configs=A,E"], cwd=ROOT,
                          timeout=300)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[3:]}
    assert list(lines) == ["A", "E"]
    assert [lines[c][2] for c in lines] == ["132,863,336", "143,667,240"]
    assert [lines[c][1] for c in lines] == ["11", "19"]
    assert lines["E"][3] == "39.26"


@pytest.mark.slow
def test_cli_json_for_bn_variants_at_another_size():
    result = programs.run([sys.executable, "-m", "tools.describe", "--configs=B",
                           "--batch_norm", "--json", "--input_size=384", "--head=conv"],
                          cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.strip())
    assert row["config"] == "B-BN" and row["output_shape"] == [None, 1000]
    assert row["trainable_parameters"] == 133_053_736


def test_cli_rejects_an_unknown_config():
    result = programs.run([sys.executable, "-m", "tools.describe", "--configs=A,Z"],
                          cwd=ROOT, timeout=300)
    assert result.returncode != 0
    assert "unknown VGG configuration 'Z'" in result.stderr


def test_describe_counts_a_narrow_net_as_vgg_train_builds_it():
    """--width and --fc_units, as vgg-train's: the counts of the net a run will train."""
    row = describe.describe("D", input_size=64, num_classes=5, width=0.125, fc_units=64)
    widths = [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    convs = sum(9 * a * b + b for a, b in zip([3, *widths[:-1]], widths, strict=True))
    assert row["parameters"] == convs + (2 * 2 * 64 * 64 + 64) + (64 * 64 + 64) + (64 * 5 + 5)
    assert row["weight_layers"] == 16
