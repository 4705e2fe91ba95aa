"""Progress of long jobs (conversion, counting, training, evaluation): how far, how fast, how long
still.

On a terminal, one line rewritten in place; otherwise (a log file, a CI job, ``kubectl logs``) a
whole line every ``interval`` seconds and at the end, so that logs stay readable and small.

Written here because the helpers at hand each lack a part of it: tqdm writes carriage returns
without newlines off a terminal (a day-long run would be one line); Keras' ``Progbar`` writes
only to standard output, and off a terminal (``verbose=2``) only when its target is reached, so a
day-long epoch would be silent; absl's ``log_every_n_seconds`` gives the periodic line but
neither the live one nor a rate or ETA, and prefixes every line with its logging header.
"""

import sys
import time

LIVE_INTERVAL = 0.1  # seconds between rewrites of a live line


def format_duration(seconds):
    """``"45 s"``, ``"12 min 05 s"``, ``"3 h 07 min"``, ``"2 d 04 h"``."""
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def eta(done, total, seconds):
    """The time left to reach ``total`` at the rate of ``done`` in ``seconds``, or None before
    anything is done."""
    if done <= 0 or seconds <= 0:
        return None
    return max(0, total - done) * seconds / done


class ProgressLine:
    """Where and how often a progress line is written.

    Args:
        show: True for a line rewritten in place, False for silence, None for "a live line on
            a terminal, else a line every ``interval`` seconds".
        interval: seconds between lines off a terminal.
        stream: where lines go (standard error by default).
    """

    def __init__(self, show=None, interval=30.0, stream=None):
        self.stream = stream or sys.stderr
        self.silent = show is False
        self.live = bool(show) or (show is None and self.stream.isatty())
        self.interval = interval
        # A live line is rewritten at most 10 times a second; the first one at once.
        self.last = float("-inf") if self.live else time.monotonic()
        self.pending = False  # a live line is on screen, not yet ended by a newline

    def due(self):
        """Whether a line is due now."""
        wait = LIVE_INTERVAL if self.live else self.interval
        return not self.silent and time.monotonic() - self.last >= wait

    def write(self, text):
        if self.silent:
            return
        self.last = time.monotonic()
        if self.live:
            print(f"\r{text}\033[K", end="", file=self.stream, flush=True)
            self.pending = True
        else:
            print(text, file=self.stream, flush=True)

    def end(self):
        """Ends a live line, so that what is printed next starts on a line of its own."""
        if self.pending:
            print(file=self.stream, flush=True)
            self.pending = False


class Progress(ProgressLine):
    """``done`` of ``total`` units, with their rate and the time left.

    Args:
        total: units of the whole job, or None where it is not known.
        label: what is counted ("converted", "counted"), first on the line.
        unit: the unit's name ("images", "shards").
        show, interval, stream: as for ``ProgressLine``.
    """

    def __init__(self, total, *, label, unit="images", show=None, interval=30.0, stream=None):
        super().__init__(show, interval, stream)
        self.total, self.label, self.unit = total, label, unit
        self.started = time.monotonic()
        self.done, self.reported = 0, None  # reported: ``done`` of the last line written

    def update(self, done, extra=""):
        """Records ``done`` units so far and writes a line (with ``extra``) when one is due."""
        self.done = done
        if self.due():
            self._report(extra)

    def close(self, extra=""):
        """Writes the final line, unless silent or already written for this count."""
        if self.live or self.reported != self.done:
            self._report(extra)
        self.end()

    def line(self, extra=""):
        seconds = time.monotonic() - self.started
        if self.total is None:
            text = f"{self.label} {self.done:,} {self.unit}"
        else:
            text = f"{self.label} {self.done:,}/{self.total:,} {self.unit}"
            if self.total:
                text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {self.done / max(seconds, 1e-9):,.1f} {self.unit}/s"
        if self.total is not None and 0 < self.done < self.total:
            text += f", ETA {format_duration(eta(self.done, self.total, seconds))}"
        return text + (f", {extra}" if extra else "")

    def _report(self, extra):
        self.write(self.line(extra))
        self.reported = self.done
