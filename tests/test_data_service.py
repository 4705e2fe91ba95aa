"""Preprocessing on other machines: a tf.data service dispatcher and two workers on localhost
(started and stopped by the tests, on free ports); vgg-train on 2 logical CPU replicas trains
through them, and goes on when one worker is killed; a wrong address or --deterministic is one
clear line."""

import contextlib
import json
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import programs
from tests.conftest import free_ports

pytestmark = pytest.mark.slow  # the full tier: left out by `make test-fast`

BIN = pathlib.Path(sys.executable).parent
TINY = ["--config=A", "--width=0.125", "--fc_units=64", "--crop_size=32", "--scale=36,48",
        "--batch_size=16", "--init=glorot", "--dropout=0", "--learning_rate=0.002", "--seed=0",
        "--num_classes=4", "--label_offset=1", "--cpu_replicas=2"]


def _start(arguments, log):
    return programs.start([BIN / "vgg-data-service", *arguments], stdout=log,
                          stderr=subprocess.STDOUT)


def _wait_until_serving(processes, ready):
    """Waits for each started ``vgg-data-service`` to print the line saying it serves."""
    deadline = time.monotonic() + 120
    for process in processes:
        process.wait_printed(re.escape(ready), timeout=deadline - time.monotonic())


@contextlib.contextmanager
def _stopped_on_the_way_out(processes):
    """Stops every process of ``processes`` on the way out, also when a test fails."""
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # killed by the fork server at the timeout


def _dispatcher(port, folder, journal=True):
    return _start([f"--port={port}", "--worker_timeout_ms=2000",
                   *([f"--work_dir={folder / 'journal'}"] if journal else [])],
                  folder / "dispatcher.log")


@contextlib.contextmanager
def _service(folder, workers=2, journal=True):
    """A dispatcher (workers taken as gone after 2 s without a heartbeat) and ``workers``
    workers, the first started before the dispatcher (pods start in any order: it waits)."""
    port = free_ports(1)[0]
    with _stopped_on_the_way_out([]) as processes:
        logs = [folder / f"worker{index}.log" for index in range(workers)]
        if workers:
            processes.append(_start([f"--dispatcher=localhost:{port}", "--wait=300",
                                     "--worker_address=localhost"], logs[0]))
            _wait_until_serving(processes, "waiting for the tf.data service dispatcher")
        processes.insert(0, _dispatcher(port, folder, journal))
        _wait_until_serving(processes[:1], "dispatcher at")
        processes += [_start([f"--dispatcher=localhost:{port}", "--worker_address=localhost"],
                             log) for log in logs[1:]]
        _wait_until_serving(processes[1:], "worker at")
        yield f"grpc://localhost:{port}", processes


@pytest.fixture
def data(train_data):
    return train_data


def test_training_through_the_service_survives_a_worker_killed_mid_run(data, tmp_path):
    with _service(tmp_path) as (address, processes):
        model_dir = tmp_path / "model"
        log = tmp_path / "train.log"
        # With torchvision's 2021 recipe: its augmentations run on the service's workers.
        train = programs.start([BIN / "vgg-train", *TINY, f"--data_dir={data}",
                                f"--model_dir={model_dir}", "--train_steps=60",
                                f"--data_service={address}", "--recipe=torchvision"], stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            csv = model_dir / "training_log.csv"
            deadline = time.monotonic() + 300
            while not (csv.exists() and len(csv.read_text().splitlines()) >= 2):
                assert train.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            processes[2].kill()  # a worker dies mid-run
            killed_at = len(csv.read_text().splitlines()) - 1
            assert train.wait(timeout=600).returncode == 0, log.read_text()[-3000:]
        finally:
            train.kill()
        summary = json.loads((model_dir / "summary.json").read_text())
        assert summary["data_service"] == address and summary["replicas"] == 2
        assert summary["steps"] == 60 and summary["images_per_replica"] == [60 * 8] * 2
        rows = csv.read_text().splitlines()[1:]
        assert killed_at < len(rows) == 10  # epochs of 6 steps went on after the kill
        assert "input from the tf.data service at " + address in log.read_text()
        assert "(--recipe=torchvision: random resized crop" in log.read_text()


def test_nothing_listening_or_deterministic_is_one_line(data, tmp_path):
    port = free_ports(1)[0]
    started = time.monotonic()
    result = programs.run([str(BIN / "vgg-train"), *TINY, f"--data_dir={data}",
                           f"--model_dir={tmp_path / 'm'}", "--train_steps=2",
                           f"--data_service=grpc://localhost:{port}"], timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"vgg-train: no tf.data service dispatcher answers at grpc://localhost:{port} ")
    assert f"`vgg-data-service --port={port}`" in result.stderr
    assert time.monotonic() - started < 120
    result = programs.run([str(BIN / "vgg-train"), *TINY, f"--data_dir={data}",
                           f"--model_dir={tmp_path / 'm'}", "--deterministic",
                           f"--data_service=grpc://localhost:{port}"], timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "read their input in order, which the tf.data service does not keep" in (
        result.stderr)
    result = programs.run([str(BIN / "vgg-train"), *TINY, f"--data_dir={data}",
                           f"--model_dir={tmp_path / 'm'}", "--data_service=localhost"],
                          timeout=300)
    assert result.returncode == 1 and "is not grpc://HOST:PORT" in result.stderr


def test_a_trainer_without_workers_says_so_and_stops_on_sigterm_within_its_grace(data,
                                                                                 tmp_path):
    with _service(tmp_path, workers=0) as (address, _):
        log = tmp_path / "train.log"
        train = programs.start([BIN / "vgg-train", *TINY, f"--data_dir={data}",
                                f"--model_dir={tmp_path / 'model'}", "--train_steps=6",
                                f"--data_service={address}", "--stop_grace_seconds=3"],
                               stdout=log, stderr=subprocess.STDOUT)
        with _stopped_on_the_way_out([train]):
            train.wait_printed(re.escape(f"the tf.data service at {address} has 0 workers "
                                         "registered"))
            signalled = time.monotonic()
            train.send_signal(signal.SIGTERM)
            assert train.wait(timeout=60).returncode == 143, log.read_text()[-3000:]
            assert time.monotonic() - signalled < 3 + 10  # the grace, and the exit
    assert ("vgg-train: stopped by SIGTERM at step 0, its input waiting 3 s after the signal; "
            "the last checkpoint is none yet; run the same command to resume") in log.read_text()


def test_a_dispatcher_restarted_without_its_journal_is_temporary_and_the_rerun_resumes(
        data, tmp_path):
    """The dispatcher killed and started again on its port without a journal: it has lost the
    trainer's job. The trainer stops, exit 75 (a rerun resumes, nothing to fix), in one line."""
    with _service(tmp_path, workers=1, journal=False) as (address, processes):
        log = tmp_path / "train.log"
        command = [BIN / "vgg-train", *TINY, f"--data_dir={data}",
                   f"--model_dir={tmp_path / 'model'}", "--train_steps=600", "--backup_steps=6",
                   f"--data_service={address}"]
        train = programs.start(command, stdout=log, stderr=subprocess.STDOUT)
        with _stopped_on_the_way_out([train]):
            train.wait_printed(r"^epoch 1 ")
            processes[0].kill()
            processes[0] = _dispatcher(int(address.rsplit(":", 1)[1]), tmp_path, journal=False)
            result = train.wait(timeout=300)
        assert result.returncode == 75, log.read_text()[-3000:]
        last = log.read_text().strip().splitlines()[-1]
        assert last.startswith(f"vgg-train: the tf.data service at {address} lost this run's "
                               "input (") and "and the run resumes from " in last, last
