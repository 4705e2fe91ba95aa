"""One run per model dir at a time: a second launch into a running run's model dir is refused in
one line having written nothing, the first one's log keeps one row per epoch; the lease of a
process that no longer runs, or one not refreshed for long, is taken over, and the log says so."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipelines.foundation import lease
from tests import programs
from tests.conftest import REFERENCE_FLAGS
from tests.conftest import REFERENCE_RUN
from vgg_keras.artifacts import layout
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow


def _tree(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_a_second_launch_is_refused_and_the_first_runs_alone(train_data, tmp_path):
    command = [sys.executable, "-m", "tools.train", *REFERENCE_FLAGS, "--train_epochs=2",
               f"--data_dir={train_data}", f"--model_dir={tmp_path}"]
    first = programs.start(command)
    try:
        held = tmp_path / layout.LEASE_FILE
        deadline = time.monotonic() + 300
        while not held.exists():  # the first launch holds the model dir
            assert first.poll() is None and time.monotonic() < deadline, first.printed()[1]
            time.sleep(0.05)
        holder = json.loads(held.read_text())
        second = programs.run(command, timeout=600)
        finished = first.wait(timeout=600)
    finally:
        first.kill()
    assert second.returncode == 1, second.stderr[-3000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vgg-train: --model_dir={tmp_path} is in use by host "
                           f"{socket.gethostname()} process {holder['pid']} (started "), last
    assert "lease refreshed" in last and "Traceback" not in second.stderr
    assert "recipe:" not in second.stdout  # refused before it began
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = (tmp_path / "training_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [["1", "12"], ["2", "24"]]
    assert not held.exists()  # released at the end


def _config(data, model_dir):
    return run_config.TrainConfig(data_dir=str(data), model_dir=str(model_dir),
                                  **dict(REFERENCE_RUN, train_steps=2))


def _gone_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # a process of this machine that no longer runs


def test_a_live_holder_elsewhere_is_refused_and_a_gone_one_is_taken_over(train_data, tmp_path,
                                                                        capfd):
    held = tmp_path / layout.LEASE_FILE
    elsewhere = {"host": "gpu-node-7", "pid": 4242, "token": "x", "started": "yesterday",
                 "refreshed": time.time() - 60}
    held.write_text(json.dumps(elsewhere))
    before = _tree(tmp_path)
    # Another machine's run, which may be gone: a temporary refusal (exit 75) that says when
    # a rerun may take the lease over.
    with pytest.raises(lease.LeaseHeldElsewhere, match=r"in use by host gpu-node-7 process 4242 "
                       r"\(started yesterday, lease refreshed \d+ s ago\): one run per model dir "
                       r"at a time. If that machine is gone, its lease may be taken over at "
                       r"\S+ \(in (23\d|240) s, 5 min after its last refresh\)"):
        loop.train(_config(train_data, tmp_path))
    assert _tree(tmp_path) == before  # nothing written
    # With --lease_wait, the run waits until the lease may be taken over, and takes it.
    held.write_text(json.dumps(dict(elsewhere, refreshed=time.time() - lease.STALE_SECONDS + 2)))
    capfd.readouterr()
    waited = run_config.TrainConfig(**dict(vars(_config(train_data, tmp_path / "w")),
                                           lease_wait=True, model_dir=str(tmp_path)))
    started = time.monotonic()
    assert loop.train(waited)["steps"] == 2 and 1 < time.monotonic() - started
    out = capfd.readouterr().out
    assert f"waiting for the lease on {tmp_path} of host gpu-node-7 process 4242" in out
    assert "took over the lease" in out and not held.exists()
    shutil.rmtree(tmp_path / "checkpoints")  # the next launches start afresh
    for name in ("summary.json", "model.keras", "run.json"):
        (tmp_path / name).unlink()

    stale = dict(elsewhere, refreshed=time.time() - lease.STALE_SECONDS - 60)
    held.write_text(json.dumps(stale))
    capfd.readouterr()
    assert loop.train(_config(train_data, tmp_path))["steps"] == 2
    assert ("took over the lease on " + str(tmp_path) + " of host gpu-node-7 process 4242 "
            "(not refreshed for 6 min)") in capfd.readouterr().out

    dead = {"host": socket.gethostname(), "pid": _gone_pid(), "token": "y", "started": "now",
            "refreshed": time.time()}
    held.write_text(json.dumps(dead))
    other = tmp_path / "other"
    other.mkdir()
    (other / layout.LEASE_FILE).write_text(json.dumps(dead))
    assert loop.train(_config(train_data, other))["steps"] == 2  # a kill -9: at once
    assert f"process {dead['pid']} no longer runs" in capfd.readouterr().out
    assert not (other / layout.LEASE_FILE).exists()


def test_two_launches_that_both_found_the_lease_free_one_runs(tmp_path, monkeypatch):
    """The race a bucket allows (no atomic create): both write, the last writer keeps it. Each
    launch's first read waits for the other's, so that both find the lease free however the
    threads are scheduled."""
    read, both_read, first_reads = lease._read, threading.Barrier(2), {"first", "second"}

    def read_together(path):
        found = read(path)
        if threading.current_thread().name in first_reads:
            first_reads.discard(threading.current_thread().name)
            both_read.wait(timeout=60)
        return found

    monkeypatch.setattr(lease, "_read", read_together)
    first, second = lease.Lease(str(tmp_path)), lease.Lease(str(tmp_path))
    first.record["pid"] = second.record["pid"] = 1  # as if two machines: the pid says nothing
    first.record["host"], second.record["host"] = "a", "b"
    outcome = {}

    def take(name, held):
        try:
            outcome[name] = held.acquire(settle=1.0)
        except lease.LeaseHeld as error:
            outcome[name] = error

    threads = [threading.Thread(target=take, args=pair, name=pair[0])
               for pair in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [name for name, result in outcome.items() if isinstance(result, lease.LeaseHeld)]
    assert len(refused) == 1, outcome
    winner = second if refused == ["first"] else first
    assert json.loads((tmp_path / layout.LEASE_FILE).read_text())["token"] == winner.token
    winner.release()
    assert not (tmp_path / layout.LEASE_FILE).exists()
