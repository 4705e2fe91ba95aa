"""Stopping a run on request. Preemptible machines (spot VMs, Kubernetes) send SIGTERM and kill
the process after a grace period (often 30 s); a user presses Ctrl-C (SIGINT).

On either signal the run finishes the step it is in, writes a backup of exactly that step
(model, optimizer, schedule state, random streams; in ``--deterministic`` runs the input
position follows from the step) and stops with ``Stopped``, which ``vgg-train`` prints as one
line before it exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), the
status a shell reports for a process ended by that signal. A signal during the validation at an
epoch's end stops the run once the epoch's checkpoint is written. A second SIGINT ends the
process at once.

Several workers (``multi_worker``) must stop at the same step, or the collective save of one
would wait for the others for ever: after every call of the training step they sum their stop
flags (one per signal) with one all-reduce of two numbers, so that all of them see, at the same
step, a request that reached any of them. TensorFlow's
``tf.distribute.experimental.PreemptionCheckpointHandler`` agrees on the step too, but it
reacts to SIGTERM alone, saves through its own checkpoint manager rather than the run's backup
(so a resume could not tell its checkpoint from an epoch's), and ends the process itself; one
small all-reduce per step call serves both signals on every strategy and leaves the backup,
the message and the exit status to the run.

A step whose input never comes (a tf.data service without workers) never returns to Python,
where signal handlers run. So a watchdog thread learns of each signal from the interpreter's
wake-up file descriptor, which the C-level handler writes at once; if the run has not stopped
``grace`` seconds later, it calls the run's ``on_grace`` (which saves what can be saved safely
and ends the process), well inside Kubernetes' 30 s.
"""

import os
import signal
import threading

import tensorflow as tf

from vgg_keras.compute import distribution

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signal_number):
    """128 + the signal's number: what a shell reports for a process ended by it."""
    return 128 + int(signal_number)


class Stopped(Exception):  # noqa: N818 - not an error: the run stopped as it was asked to
    """The run stopped on a signal at ``step``, with a checkpoint of that step at ``saved``."""

    def __init__(self, signal_number, step, saved, elsewhere=False, written=True):
        self.signal_number, self.step, self.saved = signal_number, step, saved
        name = signal.Signals(signal_number).name
        where = " (received by another worker)" if elsewhere else ""
        # A backup written for the signal, or the checkpoint of that step already on disk (the
        # epoch's, at its end; a periodic backup's).
        kept = "backup written" if written else "its checkpoint was written already"
        super().__init__(f"stopped by {name}{where} at step {step}; {kept}; run the same "
                         f"command to resume (from {saved})")

    @property
    def exit_code(self):
        return exit_code(self.signal_number)


class StopRequests:
    """Catches SIGTERM and SIGINT while a run trains (``with StopRequests(strategy) as
    stops``); ``stops.agreed()`` says whether to stop at this step."""

    def __init__(self, strategy=None, grace=None, on_grace=None):
        self.received = None  # the first signal received by this process
        self._previous = {}
        several = (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                   and distribution.worker_share(strategy)[0] > 1)
        self._agree = _agreement(strategy) if several else None
        self._grace, self._on_grace = grace, on_grace
        self._handled = threading.Event()  # the run stops (or ended): no watchdog needed
        self._wakeup = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
            if self._grace is not None and self._on_grace is not None:
                self._start_watchdog()
        return self

    def __exit__(self, *exc_info):
        self._handled.set()
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        if self._wakeup is not None:
            read_end, write_end, previous = self._wakeup
            signal.set_wakeup_fd(previous)
            os.close(write_end)  # the watchdog's read returns nothing: it ends
            self._wakeup = None

    def acknowledge(self):
        """The run is stopping on its own (at a step's end): the watchdog stands down."""
        self._handled.set()

    def _start_watchdog(self):
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wakeup = (read_end, write_end, previous)
        threading.Thread(target=self._watch, args=(read_end,), name="stop-watchdog",
                         daemon=True).start()

    def _watch(self, read_end):
        """Waits for signals; ``grace`` seconds after the first, unless the run has stopped by
        then, ``on_grace(signal)``; a second SIGINT ends the process at once."""
        first = None
        try:
            while True:
                data = os.read(read_end, 1)
                if not data:
                    return
                number = data[0]
                if number not in [int(n) for n in SIGNALS]:
                    continue
                if first == signal.SIGINT and number == signal.SIGINT:
                    os._exit(exit_code(signal.SIGINT))
                if first is None:
                    first = number
                    threading.Thread(target=self._deadline, args=(number,), daemon=True).start()
        finally:
            os.close(read_end)

    def _deadline(self, number):
        if not self._handled.wait(self._grace):
            self._on_grace(signal.Signals(number))

    def _handle(self, number, frame):
        if self.received == signal.SIGINT and number == signal.SIGINT:
            os._exit(exit_code(signal.SIGINT))  # a second Ctrl-C: at once, saving nothing
        if self.received is None:  # nothing printed here: the handler may interrupt a print
            self.received = number

    def agreed(self):
        """``(signal number, received elsewhere)`` if this or any other worker received a
        signal, else None. Every worker calls this at the same steps and gets the same
        answer."""
        if self._agree is None:
            return (self.received, False) if self.received else None
        flags = [int(self.received == number) for number in SIGNALS]
        counts = self._agree(tf.constant(flags, tf.int32)).numpy()
        for number, count in zip(SIGNALS, counts, strict=True):
            if count:  # SIGTERM first: where both were received, the machine is going away
                return number, number != self.received
        return None


def _agreement(strategy):
    """The sum of a vector of flags over every replica of every worker."""
    @tf.function(autograph=False)
    def agree(flags):
        per_replica = strategy.run(lambda: tf.identity(flags))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return agree
