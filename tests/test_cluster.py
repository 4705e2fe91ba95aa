"""A cluster's first day (multi_worker on localhost, ports free, every process stopped by the test):
batch-norm nets on two workers of two replicas each with fewer validation shards than workers,
configuration errors in one line (exit 1), a port taken and a peer gone as temporary (exit 75)
with the rerun resuming, a chief without peers that says so and stops on SIGTERM."""

import json
import os
import pathlib
import re
import signal
import sys
import time

import pytest

from tests import programs
from tests.conftest import LIBRARY_LINE
from tests.conftest import REFERENCE_FLAGS
from tests.conftest import TINY_FLAGS
from tests.conftest import free_ports
from tests.conftest import write_shards
from vgg_keras.artifacts import layout

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
MULTI_WORKER = "--distribution_strategy=multi_worker"


def _tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                  "index": index}})


def test_a_batch_norm_net_on_two_workers_of_two_replicas_with_one_validation_shard(tmp_path):
    """With torchvision's 2021 recipe: its mixup and cutmix, repeated augmentation, and the
    moving average updated across the workers' replicas."""
    data, _ = write_shards(tmp_path, train_per_class=8, val_per_class=3, size_range=(40, 56),
                           train_shards=2, validation_shards=1)
    run = tmp_path / "run"
    chief, other = programs.run_cluster(
        [BIN / "vgg-train", *TINY_FLAGS, "--config=A-BN", f"--data_dir={data}",
         f"--model_dir={run}", MULTI_WORKER, "--cpu_replicas=2", "--train_epochs=1",
         "--recipe=torchvision", "--warmup_epochs=0", "--model_ema_steps=1"],
        cwd=ROOT)
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert other.returncode == 0, other.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 4 and summary["config"] == "A-BN"
    assert summary["images_per_replica"] == [4 * 2] * 2  # this worker's two replicas
    # One log per cluster: the chief's; the other worker says where it stands, and its stop.
    assert [line for line in chief.stdout.splitlines() if line.startswith("epoch ")] == [
        line for line in chief.stdout.splitlines() if re.match(r"epoch 1 \(step", line)]
    assert chief.stdout.splitlines()[2].startswith("recipe: config A-BN (--recipe=torchvision")
    assert "(EMA weights; " in chief.stdout
    assert not [line for line in other.stdout.splitlines()
                if line.startswith(("epoch ", "recipe:", "init:"))], other.stdout
    assert "worker 1 of 2: training the run in" in other.stdout and ".worker_1" not in (
        other.stdout + other.stderr)
    assert "listens on every interface at port" in other.stdout  # and without authentication
    for result in (chief, other):
        assert not [line for line in (result.stdout + result.stderr).splitlines()
                    if LIBRARY_LINE.match(line)], result.stderr[-3000:]


def test_cluster_configuration_errors_are_one_line(train_data, tmp_path):
    command = [BIN / "vgg-train", *TINY_FLAGS, f"--data_dir={train_data}",
               f"--model_dir={tmp_path / 'run'}", MULTI_WORKER, "--train_steps=2"]
    taken = free_ports(1)[0]
    cases = {
        None: (1, "--distribution_strategy=multi_worker needs TF_CONFIG in the environment"),
        '{"cluster": {"worker": ["localhost:1"]': (1, "TF_CONFIG does not parse "
                                                      "(JSONDecodeError"),
        _tf_config(["localhost:1"], 3): (1, "TF_CONFIG's task worker 3 is not among its "
                                            "cluster's training tasks ({'worker': 1})"),
        _tf_config([f"localhost:{taken}", "localhost:1"], 0): (
            75, f"port {taken} of worker 0 (localhost:{taken}) (TF_CONFIG) is taken"),
    }
    import socket

    with socket.socket() as holder:  # another process's server on the task's port
        holder.bind(("", taken))
        holder.listen(1)
        for tf_config, (code, expected) in cases.items():
            environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
            if tf_config:
                environment["TF_CONFIG"] = tf_config
            result = programs.run(command, cwd=tmp_path, env=environment, timeout=300)
            assert result.returncode == code, result.stderr[-3000:]
            last = result.stderr.strip().splitlines()[-1]
            assert last.startswith("vgg-train: ") and expected in last, last
    assert not (tmp_path / "run" / layout.LEASE_FILE).exists()


def test_a_chief_without_peers_says_so_and_stops_on_sigterm(train_data, tmp_path):
    environment = dict(os.environ, TF_CONFIG=_tf_config(
        [f"localhost:{port}" for port in free_ports(2)], 0))
    process = programs.start([BIN / "vgg-train", *TINY_FLAGS, f"--data_dir={train_data}",
                              f"--model_dir={tmp_path}", MULTI_WORKER], cwd=ROOT,
                             env=environment)
    try:
        process.wait_printed(r"^worker 0 \(localhost:\d+\): one of 2 tasks; waiting for the "
                             r"others to start")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        result = process.wait(timeout=60)
    finally:
        process.kill()
    assert result.returncode == 143 and time.monotonic() - sent < 20, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "vgg-train: stopped by SIGTERM while waiting for the cluster's other tasks: nothing was "
        "trained or written; run the same command to start again")
    assert not (tmp_path / layout.LEASE_FILE).exists()


def test_a_peer_gone_is_temporary_and_the_rerun_resumes(train_data, tmp_path):
    """A worker killed (its node lost) mid-run: the survivor stops within a minute, naming it
    and the checkpoint a rerun resumes from, exit 75, and gives its lease back; the same
    command on both (a shorter schedule here, deliberately) resumes from there."""
    command = [sys.executable, "-m", "tools.train", *REFERENCE_FLAGS, f"--data_dir={train_data}",
               f"--model_dir={tmp_path}", MULTI_WORKER, "--backup_steps=4", "--train_epochs=40"]
    with programs.cluster(command, cwd=ROOT) as (chief, other):
        chief.wait_printed(r"^epoch 1 ")
        other.kill()
        killed = time.monotonic()
        result = chief.wait(timeout=300)
    assert result.returncode == 75 and time.monotonic() - killed < 60, result.stderr[-3000:]
    gone = re.search(r"^vgg-train: worker 1 \(localhost:\d+\) went away \(.+\): the run stops "
                     r"here; rerun the same command on every task and it resumes from (\S+)$",
                     result.stderr.strip().splitlines()[-1])
    assert gone, result.stderr[-3000:]
    step = layout.checkpoint_step(gone.group(1))
    assert step >= 12 and pathlib.Path(gone.group(1) + ".index").exists()
    assert not (tmp_path / layout.LEASE_FILE).exists()
    results = programs.run_cluster([*command[:-1], f"--train_steps={step + 2}",
                                    "--allow_changed_settings"], cwd=ROOT)
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from_step"] == step and summary["steps"] == step + 2
