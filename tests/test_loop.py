"""The training loop's control, alone: which steps each call of the step function runs, when a
backup follows, and the progress line."""

import signal

import pytest

from vgg_keras.training import epochs
from vgg_keras.training import notes
from vgg_keras.training import preemption


def _calls(start, end, backup_steps, steps_per_execution):
    """The (first step, steps, backup after) of every call from ``start`` to ``end``."""
    calls, current = [], start
    while current < end:
        count, backup = epochs.plan_chunk(current, end, backup_steps, steps_per_execution)
        calls.append((current, count, backup))
        current += count
    return calls


def test_one_step_a_call_backs_up_at_every_multiple_but_the_epochs_end():
    assert _calls(0, 6, 2, 1) == [(0, 1, False), (1, 1, True), (2, 1, False), (3, 1, True),
                                  (4, 1, False), (5, 1, False)]  # step 6: the epoch's checkpoint


def test_calls_stop_at_a_backup_and_at_the_epochs_end():
    # 3 steps a call, backups every 4, an epoch of 10 steps from step 0.
    assert _calls(0, 10, 4, 3) == [(0, 3, False), (3, 1, True), (4, 3, False), (7, 1, True),
                                   (8, 2, False)]


def test_a_resumed_epoch_starts_mid_way_and_no_backup_is_due():
    assert _calls(13, 24, 1000, 4) == [(13, 4, False), (17, 4, False), (21, 3, False)]


@pytest.mark.parametrize("start, end, backup_steps, steps_per_execution", [
    (0, 37, 5, 3), (12, 24, 7, 1), (5, 6, 1, 8), (0, 100, 10, 10)])
def test_calls_cover_the_epoch_exactly_once(start, end, backup_steps, steps_per_execution):
    calls = _calls(start, end, backup_steps, steps_per_execution)
    assert sum(count for _, count, _ in calls) == end - start
    for first, count, backup in calls:
        reached = first + count
        assert 1 <= count <= steps_per_execution
        assert backup == (reached % backup_steps == 0 and reached < end)
        # No call runs past a multiple of backup_steps.
        assert (first // backup_steps) == ((reached - 1) // backup_steps)


def test_the_progress_line_of_an_epoch():
    meter = notes.EpochProgress(epoch=1, start=15, end=24, steps_per_epoch=12, total_steps=36,
                               run_start=15, run_began=100.0, began=100.0, batch_size=8)
    # 3 steps of 8 images in 6 s: 4 images/s; 6 steps of the epoch and 18 of the run left.
    assert meter.describe(18, 0.01, 1.23456, now=106.0) == (
        "step 18/36, epoch 2/3 at 6/12; 4.0 images/s; lr 0.01; loss 1.2346; ETA epoch 12 s, run "
        "36 s")


def test_the_stop_line_says_whether_it_wrote_the_checkpoint_it_names():
    written = preemption.Stopped(signal.SIGTERM, 17, "m/backup/ckpt-17")
    assert str(written) == ("stopped by SIGTERM at step 17; backup written; run the same command "
                            "to resume (from m/backup/ckpt-17)")
    kept = preemption.Stopped(signal.SIGINT, 24, "m/checkpoints/latest/ckpt-24", written=False)
    assert str(kept) == ("stopped by SIGINT at step 24; its checkpoint was written already; run "
                         "the same command to resume (from m/checkpoints/latest/ckpt-24)")
    assert (written.exit_code, kept.exit_code) == (143, 130)


def test_a_call_also_ends_at_the_step_given_as_the_next_stop():
    """The EMA's update steps (``next_stop``): a call ends there, and a backup still follows
    only at its multiples."""
    assert epochs.plan_chunk(0, 12, 4, 10, next_stop=1) == (1, False)
    assert epochs.plan_chunk(1, 12, 4, 10, next_stop=4) == (3, True)
    assert epochs.plan_chunk(4, 12, 4, 10, next_stop=7) == (3, False)
    assert epochs.plan_chunk(4, 12, 8, 10, next_stop=None) == (4, True)
