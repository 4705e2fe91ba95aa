"""The learning-rate schedules: the paper's ÷10 on plateau to the letter (at most 3 times, then
the rate stays), patience, minimum improvement and floor, steps, cosine, warm-up; the plateau
state survives a checkpoint."""

import pytest
import tensorflow as tf

from vgg_keras.training import run_config
from vgg_keras.training import schedules


def _schedule(steps_per_epoch=10, total_steps=100, **overrides):
    arguments = dict(data_dir="", model_dir="", learning_rate=1e-2)
    arguments.update(overrides)
    return schedules.LearningRate(run_config.TrainConfig(**arguments), steps_per_epoch,
                                  total_steps)


def _epochs(schedule, top1s):
    """The rate of each epoch when the validation top-1 after each is ``top1s``."""
    rates = []
    for epoch, top1 in enumerate(top1s):
        rates.append(schedule(epoch * schedule.steps_per_epoch))
        schedule.end_epoch(top1)
    return rates


def test_flat_accuracy_divides_exactly_three_times_then_the_rate_stays():
    schedule = _schedule()
    rates = _epochs(schedule, [0.3] * 20)
    assert rates[:5] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4, 1e-5])
    assert rates[5:] == pytest.approx([1e-5] * 15)  # §3.1: "decreased 3 times", no more
    assert int(schedule.decays.numpy()) == 3  # the count the checkpoint carries


def test_patience_min_delta_and_floor():
    patient = _epochs(_schedule(plateau_patience=2), [0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert patient == pytest.approx([1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-4])
    # A rise smaller than min_delta is no improvement; a larger one resets the wait.
    rates = _epochs(_schedule(plateau_min_delta=0.01), [0.30, 0.305, 0.32, 0.321])
    assert rates == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    floored = _epochs(_schedule(min_learning_rate=2e-4, plateau_decays=5), [0.3] * 8)
    assert floored == pytest.approx([1e-2, 1e-2, 1e-3, 2e-4, 2e-4, 2e-4, 2e-4, 2e-4])
    none = _epochs(_schedule(plateau_decays=0), [0.3] * 4)
    assert none == pytest.approx([1e-2] * 4)


def test_the_plateau_state_survives_a_checkpoint(tmp_path):
    first = _schedule()
    _epochs(first, [0.3, 0.4, 0.4])  # best 0.4, one division, nothing waited
    path = tf.train.Checkpoint(**first.state()).save(str(tmp_path / "ckpt"))
    resumed = _schedule()
    tf.train.Checkpoint(**resumed.state()).restore(path)
    assert int(resumed.decays.numpy()) == 1 and float(resumed.best_top1.numpy()) == \
        pytest.approx(0.4)
    assert _epochs(resumed, [0.4] * 4) == _epochs(first, [0.4] * 4)  # the same from here on


def test_step_cosine_and_warmup():
    step = _schedule(lr_schedule="step", lr_step_epochs=(2, 4), learning_rate=0.002)
    assert [round(step(s), 7) for s in (0, 19, 20, 40)] == [0.002, 0.002, 0.0002, 0.00002]
    cosine = _schedule(lr_schedule="cosine", warmup_epochs=1, learning_rate=0.002)
    assert cosine(0) == pytest.approx(0.0002) and cosine(9) == pytest.approx(0.002, rel=0.03)
    assert cosine(99) < 0.00004
    assert _schedule(lr_schedule="cosine", min_learning_rate=1e-4)(100) == pytest.approx(1e-4)


def test_the_schedule_describes_itself():
    assert _schedule().describe() == (
        "lr 0.01 ÷10 when validation top-1 has not improved by 0.0001 for 1 epoch(s), at most 3 "
        "times (to 1e-05)")
    assert "÷10 at epochs 30, 60" in _schedule(lr_schedule="step").describe()


@pytest.mark.parametrize("overrides, message", [
    (dict(plateau_decays=-1), "plateau_decays must be >= 0"),
    (dict(plateau_patience=0), "plateau_patience must be >= 1"),
    (dict(min_learning_rate=0.1), "min_learning_rate must be in"),
])
def test_bad_plateau_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_config.TrainConfig(data_dir="", model_dir="", **overrides).validate()
