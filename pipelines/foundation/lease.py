"""One job per folder at a time: a training run per model dir (its chief's), a conversion per
output folder. The job holds a lease on its folder: ``lease.json`` (``FILE``), naming the host,
the process, when it started and when it last refreshed the lease (every ``REFRESH_SECONDS``,
from a thread of its own, while the job lives). A second launch into the same folder (a job
submitted twice, a rescheduled pod whose old copy still runs) finds the lease held and is
refused, in one line, before it writes anything. A lease is taken over, and the log says so,
when its holder is gone: a process of this machine that no longer runs (``kill -9``: the same
command resumes at once), or a lease not refreshed for ``STALE_SECONDS`` (a dead machine).

Safe without an atomic create (an object store has none): a launch reads the lease, writes its
own with a token of its own, waits ``settle`` seconds, and reads it back. Of two launches that
found the lease free, the one that wrote last finds its token and runs; the other finds the
other's and is refused. This holds when a launch's read and write lie closer together than the
settle time (milliseconds against ``SETTLE_SECONDS``); on every filesystem we write to a whole
write is seen whole (``storage``), and buckets (GCS) read their own writes at once.
"""

import datetime
import os
import socket
import threading
import time
import uuid

from pipelines.foundation import errors
from pipelines.foundation import storage

FILE = "lease.json"
REFRESH_SECONDS = 30.0
STALE_SECONDS = 300.0  # 10 refreshes missed: the holder's machine is gone
SETTLE_SECONDS = {"local": 0.25, "url": 2.0}  # longer than a launch's read-to-write gap


class LeaseHeld(errors.UserError):
    """A job of this machine holds the folder; the message names it."""


class LeaseHeldElsewhere(errors.TemporaryError):
    """A job of another machine holds the folder, and may be gone: its lease is taken over
    once it is ``STALE_SECONDS`` old; the message says when."""


class Lease:
    """The lease of a job on its folder, refreshed until ``release``. ``flag``, ``job`` and
    ``wait_flag`` name the folder, the job and the flag that waits for another machine's lease
    (None: none) in what a refused launch is told; the lease file lies in the folder, or in
    ``state`` where given (a sub-folder of its own)."""

    def __init__(self, model_dir, now=time.time, *, flag="--model_dir",
                 job="run per model dir", wait_flag="--lease_wait", state=None):
        self.path = os.path.join(state or model_dir, FILE)
        self.flag, self.job, self.wait_flag = flag, job, wait_flag
        self.model_dir, self._now = model_dir, now
        self.token = uuid.uuid4().hex
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                       "started": _stamp(now()), "refreshed": now()}
        self.lost = None  # what took the lease away, if anything did
        self._stop = threading.Event()
        self._thread = None

    def acquire(self, settle=None, wait=False, report=print):
        """Takes the lease; returns a line for the log if it took over a holder's, else None.
        ``wait``: a lease of another machine's run is waited for until it may be taken over
        (a line every ``REFRESH_SECONDS``), instead of refused.

        Raises:
            LeaseHeld: if a live run of this machine holds it, or another launch took it
                meanwhile.
            LeaseHeldElsewhere: if another machine's run holds it (a rerun after the time
                the message names takes it over), and ``wait`` is false.
        """
        note = None
        held = _read(self.path)
        while held and held.get("token") != self.token and not self._gone(held):
            if held.get("host") == socket.gethostname() or not wait:
                refusal = LeaseHeld if held.get("host") == socket.gethostname() else (
                    LeaseHeldElsewhere)
                raise refusal(self._refusal(held))
            report(f"waiting for the lease on {self.model_dir} of {_holder(held)}: taken over "
                   f"at {_stamp(self._stale_at(held))} unless refreshed", flush=True)
            time.sleep(max(1.0, min(REFRESH_SECONDS, self._stale_at(held) - self._now())))
            held = _read(self.path)
        if held and held.get("token") != self.token:
            note = (f"took over the lease on {self.model_dir} of {_holder(held)} "
                    f"({self._gone(held)})")
        storage.makedirs(os.path.dirname(self.path))
        storage.write_json(self.path, self.record, writer=self.token)
        if settle is None:
            settle = SETTLE_SECONDS["url" if storage.is_url(self.path) else "local"]
        time.sleep(settle)
        now = _read(self.path)
        if not now or now.get("token") != self.token:
            raise LeaseHeld(self._refusal(now or held or {}))
        self._thread = threading.Thread(target=self._refresh, name="model-dir-lease",
                                        daemon=True)
        self._thread.start()
        return note

    def release(self):
        """Stops refreshing and removes the lease (unless another run took it over)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        held = _read(self.path)
        if held and held.get("token") == self.token:
            storage.remove(self.path)

    def _refresh(self):
        while not self._stop.wait(REFRESH_SECONDS):
            held = _read(self.path)
            if not held or held.get("token") != self.token:
                self.lost = f"{_holder(held)} took the lease over" if held else "it was removed"
                return
            storage.write_json(self.path, dict(self.record, refreshed=self._now()),
                               writer=self.token)

    def _gone(self, held):
        """Why the holder of ``held`` is gone, or None if it may still run."""
        age = self._now() - held.get("refreshed", 0)
        if held.get("host") == socket.gethostname() and not _alive(held.get("pid")):
            return f"process {held.get('pid')} no longer runs"
        if age > STALE_SECONDS:
            return f"not refreshed for {age / 60:.0f} min"
        return None

    def _stale_at(self, held):
        return held.get("refreshed", self._now()) + STALE_SECONDS

    def _refusal(self, held):
        age = self._now() - held.get("refreshed", self._now())
        text = (f"{self.flag}={self.model_dir} is in use by {_holder(held)} (started "
                f"{held.get('started', '?')}, lease refreshed {age:.0f} s ago): one "
                f"{self.job} at a time")
        if held.get("host") == socket.gethostname():
            return (f"{text}; wait for it to end or stop it, or give another {self.flag}")
        stale_at = self._stale_at(held)
        return (f"{text}. If that machine is gone, its lease may be taken over at "
                f"{_stamp(stale_at)} (in {max(0, stale_at - self._now()):.0f} s, "
                f"{STALE_SECONDS / 60:.0f} min after its last refresh): rerun then"
                + (f", or with {self.wait_flag} to wait for it" if self.wait_flag else "")
                + f"; or give another {self.flag}")


def _holder(held):
    return f"host {held.get('host', '?')} process {held.get('pid', '?')}"


def _alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False  # this process: an earlier run of it that ended without releasing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _stamp(seconds):
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _read(path):
    return storage.read_json(path, written_by="vgg_keras", fix="if no job of this folder is "
                             "going (on any machine), delete it")
