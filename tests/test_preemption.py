"""vgg-train on a preemptible machine: SIGTERM or Ctrl-C stops a run after its current step with
a backup of that step, and the same command resumes it to the weights of an uninterrupted run;
two workers stop at the same step; every resume says where it came from."""

import json
import pathlib
import re
import signal
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from tests import programs
from tests.conftest import REFERENCE_FLAGS
from tests.conftest import REFERENCE_RUN
from tests.conftest import REFERENCE_STEPS_PER_EPOCH as STEPS_PER_EPOCH
from vgg_keras.training import loop
from vgg_keras.training import run_config

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
# The reference run (96 images in batches of 8: 12 steps an epoch, 3 epochs), with a backup every
# 5 steps: the tests signal a run once a backup inside epoch 2 is on disk, so that the signal
# lands mid-epoch however slowly the machine runs.
FLAGS = [*REFERENCE_FLAGS, "--backup_steps=5"]
STOPPED = re.compile(r"vgg-train: stopped by (SIG\w+)( \(received by another worker\))? at step "
                     r"(\d+); (?:backup written|its checkpoint was written already); run the "
                     r"same command to resume \(from (.+)\)")


def _command(data, model_dir, *extra):
    return [sys.executable, "-m", "tools.train", *FLAGS, f"--data_dir={data}",
            f"--model_dir={model_dir}", *extra]


def _train(data, model_dir, *extra, env=None):
    return programs.run(_command(data, model_dir, *extra), cwd=ROOT, timeout=600, env=env)


def _backup_step(model_dir):
    """The step of the newest complete backup (its state file names it only once its files are
    written), or 0."""
    state = model_dir / "backup" / "checkpoint"
    text = state.read_text() if state.exists() else ""
    for line in text.splitlines():
        if line.startswith("model_checkpoint_path:"):
            return int(line.rsplit("-", 1)[1].rstrip('"'))
    return 0


def _signal_in_epoch_2(process, model_dir, number):
    """Sends ``number`` once a backup inside epoch 2 is on disk (at step 15: the signal lands
    among the steps of epoch 2, 9 steps before its end); returns what the process printed."""
    deadline = time.monotonic() + 300
    while (process.poll() is None and time.monotonic() < deadline
           and not STEPS_PER_EPOCH < _backup_step(model_dir) < 2 * STEPS_PER_EPOCH):
        time.sleep(0.01)
    process.send_signal(number)
    return process.wait(timeout=600)


def _weights(path):
    return keras.models.load_model(path).get_weights()


@pytest.mark.parametrize("number, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_backs_up_that_step_and_the_same_command_resumes_it(train_data, reference_run,
                                                                     tmp_path, capfd, number,
                                                                     code):
    process = programs.start(_command(train_data, tmp_path), cwd=ROOT)
    try:
        err = _signal_in_epoch_2(process, tmp_path, number).stderr
    finally:
        process.kill()
    assert process.returncode == code, err[-3000:]
    stopped = STOPPED.search(err)
    assert stopped and stopped.group(1) == signal.Signals(number).name, err[-3000:]
    step = int(stopped.group(3))
    assert STEPS_PER_EPOCH < step < 3 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH  # mid-epoch
    assert stopped.group(4) == str(tmp_path / "backup" / f"ckpt-{step}")
    assert pathlib.Path(stopped.group(4) + ".index").exists()
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "lease.json").exists()  # given back as the run's last act
    # The log agrees with the checkpoints: epoch 1's row only.
    rows = (tmp_path / "training_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["1", "12"]]

    # The same run again, through the library call the command makes (its flags' TrainConfig).
    capfd.readouterr()
    loop.train(run_config.TrainConfig(data_dir=str(train_data), model_dir=str(tmp_path),
                                      **dict(REFERENCE_RUN, backup_steps=5)))
    printed = capfd.readouterr().out
    assert re.search(rf"^resumed at step {step} from backup/ \(written \d{{4}}-\d\d-\d\d "
                     r"\d\d:\d\d:\d\d\)$", printed, re.MULTILINE), printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from_step"] == step and summary["resumed_from"] == "backup"
    assert summary["steps"] == 3 * STEPS_PER_EPOCH
    rows = (tmp_path / "training_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["1", "12"], ["2", "24"], ["3", "36"]]
    for ours, theirs in zip(_weights(tmp_path / "model.keras"),
                            _weights(reference_run / "model.keras"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_a_second_ctrl_c_ends_the_process_at_once(tmp_path):
    # The handler itself, without a run around it: the first SIGINT is noted, the second one
    # ends the process with 130 before anything else happens.
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import os, signal, time
        from vgg_keras.training import preemption

        with preemption.StopRequests() as stops:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs
            assert stops.agreed() == (signal.SIGINT, False), stops.agreed()
            print("first noted", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            print("survived the second", flush=True)
    """))
    result = programs.run([sys.executable, str(script)], cwd=ROOT, timeout=300)
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.stdout == "first noted\n"


def _workers(data, model_dir):
    return programs.cluster(_command(data, model_dir, "--distribution_strategy=multi_worker",
                                     "--backup_steps=1000"), cwd=ROOT)


def test_two_workers_stop_at_the_same_step_when_one_is_preempted(train_data, tmp_path):
    data = train_data
    with _workers(data, tmp_path) as (chief, other):
        chief.wait_printed(r"^epoch 1 ")
        other.send_signal(signal.SIGTERM)  # only the second worker is taken away
        results = [process.wait(timeout=600) for process in (chief, other)]
    assert [r.returncode for r in results] == [143, 143], results[0].stderr[-3000:]
    stops = [STOPPED.search(r.stderr) for r in results]
    assert all(stops), [r.stderr[-2000:] for r in results]
    assert stops[0].group(2) and not stops[1].group(2)  # the chief learnt it from the other
    assert stops[0].group(3) == stops[1].group(3)  # the same step on both
    step = int(stops[0].group(3))
    assert pathlib.Path(stops[0].group(4) + ".index").exists()
    assert stops[0].group(4) == stops[1].group(4)  # the run's path, also on the other worker
    assert not (tmp_path / "lease.json").exists()

    with _workers(data, tmp_path) as (chief, other):
        results = [process.wait(timeout=600) for process in (chief, other)]
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from_step"] == step and summary["steps"] == 3 * STEPS_PER_EPOCH
    assert f"resumed at step {step} from " in results[0].stdout
