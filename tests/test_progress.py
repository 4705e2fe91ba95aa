"""Progress lines: durations a reader takes in at a glance, ETA from the rate so far, a live line
on a terminal and whole lines at an interval elsewhere; the converter reports image by image."""

import io

import pytest

from pipelines import convert
from pipelines import sources
from pipelines import synthetic
from pipelines.foundation import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (45.4, "45 s"), (725, "12 min 05 s"),
                                           (3 * 3600 + 7 * 60, "3 h 07 min"),
                                           (2 * 86400 + 4 * 3600 + 59, "2 d 04 h")])
def test_durations(seconds, text):
    assert progress.format_duration(seconds) == text


def test_eta_is_the_time_left_at_the_rate_so_far():
    assert progress.eta(0, 100, 5.0) is None
    assert progress.eta(25, 100, 10.0) == pytest.approx(30.0)
    assert progress.eta(100, 100, 10.0) == 0


def test_a_log_gets_whole_lines_at_the_interval_and_at_the_end():
    stream = io.StringIO()
    meter = progress.Progress(10, label="converted", unit="images", stream=stream,
                              interval=3600.0)
    for done in range(1, 11):
        meter.update(done, extra=f"{done // 5}/2 shards")
    assert stream.getvalue() == ""  # no line due within the hour
    meter.close(extra="2/2 shards")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("converted 10/10 images (100%), ")
    assert lines[0].endswith(" images/s, 2/2 shards") and "\r" not in stream.getvalue()
    every = io.StringIO()
    meter = progress.Progress(4, label="counted", unit="shards", stream=every, interval=0.0)
    for done in range(1, 5):
        meter.update(done)
    meter.close()
    assert [line.split(",")[0] for line in every.getvalue().splitlines()] == [
        "counted 1/4 shards (25%)", "counted 2/4 shards (50%)", "counted 3/4 shards (75%)",
        "counted 4/4 shards (100%)"]  # the last line is not written twice
    assert "ETA" in every.getvalue().splitlines()[0]


def test_a_terminal_gets_one_live_line_and_silence_gets_nothing():
    terminal = _Terminal()
    meter = progress.Progress(None, label="evaluated", stream=terminal)
    meter.update(3)
    meter.close()
    assert terminal.getvalue().startswith("\revaluated 3 images, ")
    assert terminal.getvalue().endswith("\n") and terminal.getvalue().count("\r") == 2
    quiet = _Terminal()
    meter = progress.Progress(5, label="x", stream=quiet, show=False)
    meter.update(5)
    meter.close()
    assert quiet.getvalue() == ""


def test_the_converter_reports_image_by_image(tmp_path, capfd):
    synthetic.write_dataset(tmp_path / "raw", layout="image_folder", train_per_class=2,
                            val_per_class=0, synsets=synthetic.DEFAULT_SYNSETS[:2],
                            problems=False)
    plan = sources.find_image_folder(tmp_path / "raw")
    convert.convert(plan, tmp_path / "out", num_shards={"train": 2}, num_workers=1,
                    progress=True)
    err = capfd.readouterr().err
    lines = err.split("\r")
    assert any(line.startswith("converted 1/4 images (25%)") for line in lines)
    assert any(line.startswith("converted 4/4 images (100%)") and "2/2 shards" in line
               for line in lines)
