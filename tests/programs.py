"""Our programs run by the tests in processes forked from one that has imported TensorFlow.

A test that runs ``vgg-train ...`` in a fresh interpreter pays TensorFlow's and Keras' import
(6–9 s of CPU on the 2-core machine) before the program starts, and the suite runs our
programs dozens of times: minutes of a 15-minute budget. tests/fork_server.py imports them
once per pytest worker and forks a child per command; the child takes the command's argv,
working folder, environment and standard streams and calls the installed console script's
entry point (or runs ``python -m module``, ``python -c code``, ``python script.py``): the
program's own code, in a process of its own, with its own exit status and output, less the
import. The server touches no TensorFlow runtime before forking, so each child starts its own.

What only a fresh interpreter shows stays in one: the installed scripts themselves
(test_packaging), a Keras backend or a TensorFlow setting read at import (refused here), and
the tests that kill or signal the programs and the multi-process clusters.
"""

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Read by TensorFlow or Keras when they are imported: a child forked after the import would
# silently ignore them.
READ_AT_IMPORT = ("KERAS_BACKEND", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
                  "TF_USE_LEGACY_KERAS", "PYTHONPATH", "PYTHONHASHSEED")


def _read(path):
    """What a stream's file holds; nothing of a pipe (a FIFO: its reader is the test's)."""
    if stat.S_ISFIFO(os.stat(path).st_mode):
        return ""
    return pathlib.Path(path).read_text(errors="replace")


class Program:
    """A started command: ``pid``, ``poll``, ``wait`` for its ``subprocess.CompletedProcess``,
    ``send_signal``, ``kill``; what it has printed so far in the files ``stdout_path`` and
    ``stderr_path``."""

    def __init__(self, server, argv, pid, streams, own):
        self._server, self.args, self.pid = server, argv, pid
        self.stdout_path, self.stderr_path = streams
        self._own = own  # the files made for it (those a test named stay)
        self.result = None

    def _finished(self, answer, timeout):
        out, err = (_read(path) for path in (self.stdout_path, self.stderr_path))
        for path in self._own:
            os.remove(path)
        self.result = subprocess.CompletedProcess(self.args, answer["returncode"], out, err)
        if answer["timed_out"]:  # killed by the server
            raise subprocess.TimeoutExpired(self.args, timeout, out, err)
        return self.result

    def poll(self):
        """Its exit status, or None while it runs."""
        if self.result is None:
            answer = self._server.ask({"op": "wait", "pid": self.pid, "timeout": 0})
            if answer["returncode"] is None:
                return None
            self._finished(answer, 0)
        return self.result.returncode

    def wait(self, timeout=600):
        """Its CompletedProcess (text stdout and stderr); raises TimeoutExpired, after killing
        it, as subprocess.run would."""
        if self.result is None:
            answer = self._server.ask({"op": "wait", "pid": self.pid, "timeout": timeout})
            self._finished(answer, timeout)
        return self.result

    def printed(self):
        """``(stdout, stderr)``: what it has printed so far, all of it once it has ended."""
        if self.result is not None:
            return self.result.stdout, self.result.stderr
        return tuple(_read(path) for path in (self.stdout_path, self.stderr_path))

    def wait_printed(self, pattern, timeout=300):
        """Waits until its output (stdout and stderr) matches ``pattern`` (a regular expression,
        multi-line); fails with the output's end if it ends or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            out, err = self.printed()
            output = out if self.stderr_path == self.stdout_path else out + err
            if re.search(pattern, output, re.MULTILINE):
                return
            if self.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.args[0]} did not print {pattern!r}: "
                                     f"{output[-3000:]}")
            time.sleep(0.05)

    @property
    def returncode(self):
        return None if self.result is None else self.result.returncode

    def send_signal(self, number=signal.SIGTERM):
        os.kill(self.pid, number)

    def kill(self):
        """Kills it unless it has been waited for (a test's clean-up: also when it failed)."""
        if self.result is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()


class Programs:
    """``run`` and ``start`` our programs as ``subprocess.run`` and ``Popen`` would (one fork
    server, started at the first command)."""

    def __init__(self):
        self._process = None
        self._env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._folder = tempfile.mkdtemp(prefix="programs-")

    def ask(self, request):
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the fork server of tests/programs.py died: "
                               + pathlib.Path(self._folder, "server.err").read_text()[-3000:])
        return json.loads(line)

    def _started(self):
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "fork_server.py")], cwd=ROOT,
                env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                stderr=open(os.path.join(self._folder, "server.err"), "w"))
            line = self._process.stdout.readline()
            if not line:
                raise RuntimeError("the fork server of tests/programs.py did not start: "
                                   + pathlib.Path(self._folder, "server.err").read_text()[-3000:])
        return self

    def start(self, argv, *, cwd=None, env=None, stdout=None, stderr=None):
        """Starts ``argv`` (an installed script, or ``sys.executable`` with ``-m``, ``-c`` or a
        script); ``env`` as subprocess's, with the import-time variables unchanged; ``stdout``
        and ``stderr`` a file to write (``stderr=subprocess.STDOUT``: with ``stdout``), by
        default files of its own, read by ``wait``."""
        argv = [str(part) for part in argv]
        env = dict(self._env if env is None else env)
        env.setdefault("PYTHONPATH", str(ROOT))
        changed = [name for name in READ_AT_IMPORT if name != "PYTHONPATH"
                   and env.get(name) != self._env.get(name)]
        if changed:
            raise ValueError(f"{changed} are read when TensorFlow or Keras is imported: run "
                             "this command with subprocess in a fresh interpreter")
        own = []
        if stdout is None:
            handle, stdout = tempfile.mkstemp(dir=self._folder, suffix=".out")
            os.close(handle)
            own.append(stdout)
        if stderr == subprocess.STDOUT:
            stderr = stdout
        elif stderr is None:
            handle, stderr = tempfile.mkstemp(dir=self._folder, suffix=".err")
            os.close(handle)
            own.append(stderr)
        streams = (str(stdout), str(stderr))
        for path in streams:  # there from the start, as Popen's open files are
            if not (os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode)):
                pathlib.Path(path).write_bytes(b"")  # a pipe (a FIFO) the child opens itself
        answer = self._started().ask({"op": "start", "argv": argv, "cwd": str(cwd or ROOT),
                                      "env": env, "stdout": streams[0], "stderr": streams[1]})
        return Program(self, argv, answer["pid"], streams, own)

    def run(self, argv, *, cwd=None, env=None, timeout=600):
        """``subprocess.run(argv, capture_output=True, text=True)``'s result."""
        return self.start(argv, cwd=cwd, env=env).wait(timeout)

    def close(self):
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None
        shutil.rmtree(self._folder, ignore_errors=True)


@contextlib.contextmanager
def cluster(argv, *, workers=2, cwd=None):
    """``workers`` processes of ``argv`` as one multi_worker cluster on free ports of localhost
    (TF_CONFIG: worker 0 is the chief); every one killed on the way out, also when a test
    fails."""
    from tests.conftest import free_ports

    addresses = [f"localhost:{port}" for port in free_ports(workers)]
    started = []
    try:
        for index in range(workers):
            started.append(start(argv, cwd=cwd, env=dict(os.environ, TF_CONFIG=json.dumps(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}))))
        yield started
    finally:
        for process in started:
            process.kill()


def run_cluster(argv, *, workers=2, cwd=None, timeout=600):
    """``cluster``'s processes, run to their end: their CompletedProcess each."""
    with cluster(argv, workers=workers, cwd=cwd) as started:
        return [process.wait(timeout) for process in started]


_RUNNER = None


def _runner():
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = Programs()
    return _RUNNER


def start(argv, *, cwd=None, env=None, stdout=None, stderr=None):
    """``Programs.start`` on this process's fork server."""
    return _runner().start(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)


def run(argv, *, cwd=None, env=None, timeout=600):
    """``Programs.run`` on this process's fork server."""
    return _runner().run(argv, cwd=cwd, env=env, timeout=timeout)


def close():
    """Stops this process's fork server, if one was started (conftest, at the session's end)."""
    global _RUNNER
    if _RUNNER is not None:
        _RUNNER.close()
        _RUNNER = None
