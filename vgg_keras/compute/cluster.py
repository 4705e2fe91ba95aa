"""The cluster of a ``multi_worker`` run, as ``TF_CONFIG`` describes it: read and checked before
TensorFlow starts its server (one line naming what is wrong), the other tasks waited for where
our code can say so and stop on a signal, and a peer's failure during the run told apart from a
bug.

TensorFlow's ``MultiWorkerMirroredStrategy`` starts the task's gRPC server and then waits for
every task to connect, inside C++, saying nothing, with TensorFlow's own SIGTERM handler
installed (its preemption notifier): a chief whose peers never come would wait silently and
could only be killed. So each task first listens on its own port from Python and waits until
every other task's port answers (``rendezvous``), naming the missing ones every
``REPORT_SECONDS``; only then does TensorFlow start, with every peer up. The servers listen on
every interface and have no authentication (TensorFlow's): keep a cluster inside a private
network (BUILD.md).
"""

import contextlib
import dataclasses
import errno
import json
import os
import re
import signal
import socket
import struct
import threading
import time

from pipelines.foundation import errors

REPORT_SECONDS = 30.0  # between the lines of a task waiting for its peers
JOBS = ("chief", "worker")  # the jobs that train (an "evaluator" or "ps" does not)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The tasks of ``TF_CONFIG`` that train, in the order of their worker index (the chief
    first), and this task's place among them."""

    tasks: tuple  # ((job, index, "host:port"), ...)
    task_type: str
    task_id: int

    @property
    def index(self):
        return [(job, i) for job, i, _ in self.tasks].index((self.task_type, self.task_id))

    @property
    def address(self):
        return self.tasks[self.index][2]

    def name(self, task):
        job, index, address = task
        return f"{job} {index} ({address})"

    def peers(self):
        return [task for task in self.tasks if task[:2] != (self.task_type, self.task_id)]


def read_cluster(environment=None):
    """The ``Cluster`` of ``TF_CONFIG``.

    Raises:
        UserError: for a missing or malformed ``TF_CONFIG``, or one that does not name this
            task among its cluster's training tasks.
    """
    text = (os.environ if environment is None else environment).get("TF_CONFIG")
    usage = ('TF_CONFIG must be JSON like {"cluster": {"worker": ["host0:port", "host1:port"]}, '
             '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise errors.UserError("--distribution_strategy=multi_worker needs TF_CONFIG in the "
                               f"environment, naming the cluster and this task: {usage}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, task_id = task["type"], int(task["index"])
        tasks = tuple((job, index, str(address)) for job in JOBS
                      for index, address in enumerate(cluster.get(job, [])))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise errors.UserError(f"TF_CONFIG does not parse ({type(error).__name__}: {error}): "
                               f"{usage}") from None
    if task_type not in JOBS or not 0 <= task_id < len(cluster.get(task_type, [])):
        found = {job: len(cluster.get(job, [])) for job in JOBS if cluster.get(job)}
        raise errors.UserError(f"TF_CONFIG's task {task_type} {task_id} is not among its "
                               f"cluster's training tasks ({found or 'none'}): the index of "
                               "each task must be below the number of its job's addresses")
    for _, _, address in tasks:
        if not re.fullmatch(r".+:\d+", address):
            raise errors.UserError(f"TF_CONFIG names {address!r}: each task's address must be "
                                   "host:port")
    return Cluster(tasks, task_type, task_id)


class Interrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A signal ended a wait for the cluster; nothing was trained or written."""

    def __init__(self, number, what):
        self.exit_code = 128 + int(number)
        super().__init__(f"stopped by {signal.Signals(number).name} while {what}: nothing was "
                         "trained or written; run the same command to start again")


@contextlib.contextmanager
def _signals_end(what):
    """Within it, SIGTERM and SIGINT raise ``Interrupted`` at once."""
    def stop(number, frame):
        raise Interrupted(number, what)

    previous = {number: signal.signal(number, stop)
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _answers(address, timeout=1.0):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def rendezvous(cluster, report=print, interval=REPORT_SECONDS, poll=0.5, announce=None):
    """Listens on this task's port and waits until every other task's port answers; says which
    it waits for every ``interval`` seconds; a signal ends the wait (``Interrupted``), from
    before its first line (``announce``, reported once the signals are taken) on.

    Raises:
        TemporaryError: if this task's port is taken by another process.
    """
    port = int(cluster.address.rsplit(":", 1)[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))  # every interface, as TensorFlow's server will
    except OSError as error:
        listener.close()
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            raise errors.TemporaryError(
                f"port {port} of {cluster.name(cluster.tasks[cluster.index])} (TF_CONFIG) is "
                f"taken ({error.strerror}): another process listens there; stop it, or give "
                "this task another port") from None
        raise
    listener.listen(64)
    stop = threading.Event()
    answering = threading.Thread(target=_answer, args=(listener, stop), daemon=True)
    answering.start()
    started, reported = time.monotonic(), time.monotonic()
    try:
        with _signals_end("waiting for the cluster's other tasks"):
            if announce:
                report(announce, flush=True)
            while True:
                missing = [task for task in cluster.peers() if not _answers(task[2])]
                if not missing:
                    return time.monotonic() - started
                if time.monotonic() - reported >= interval:
                    reported = time.monotonic()
                    report(f"waiting for {', '.join(cluster.name(t) for t in missing)} "
                           f"({reported - started:.0f} s so far): the run starts when every "
                           "task of TF_CONFIG has started", flush=True)
                time.sleep(poll)
    finally:
        stop.set()
        listener.close()
        answering.join(timeout=5)


def _answer(listener, stop):
    """Accepts the other tasks' probes and closes each at once (reset, so that no closed
    connection holds the port when TensorFlow's server takes it)."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except OSError:
            continue
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


# TensorFlow's errors that mean a peer (or the service feeding it) went away, not a bug.
_GONE = ("UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError")
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def peer_gone(error, cluster, resume_from):
    """A ``TemporaryError`` for a TensorFlow error that says a task of ``cluster`` went away
    (naming it, with the checkpoint a rerun resumes from), or None for any other error."""
    if type(error).__name__ not in _GONE or not type(error).__module__.startswith("tensorflow"):
        return None
    message = getattr(error, "message", "") or str(error)
    named = [(job, int(index)) for job, index in _TASK.findall(message)]
    peers = [cluster.name(task) for task in cluster.peers() if task[:2] in named]
    who = ", ".join(peers) or "a task of the cluster"
    reason = errors.one_line(error).removeprefix("Collective ops is aborted by: ").rstrip(": ")
    return errors.TemporaryError(
        f"{who} went away ({reason}): the run stops here; rerun the same command on every "
        f"task and it resumes from {resume_from or 'its start (no checkpoint yet)'}")
