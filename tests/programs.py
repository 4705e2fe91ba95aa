"""Our programs run by the tests in processes forked from one that has imported TensorFlow.

A test that runs ``vgg-train ...`` in a fresh interpreter pays TensorFlow's and Keras' import
(6–9 s of CPU on the 2-core machine) before the program starts, and the suite runs our
programs some sixty times: minutes of a 15-minute budget. tests/fork_server.py imports them
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
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Read by TensorFlow or Keras when they are imported: a child forked after the import would
# silently ignore them.
READ_AT_IMPORT = ("KERAS_BACKEND", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
                  "TF_USE_LEGACY_KERAS", "PYTHONPATH", "PYTHONHASHSEED")


class Program:
    """A started command: ``pid``, and ``wait`` for its ``subprocess.CompletedProcess``."""

    def __init__(self, server, argv, pid, streams):
        self._server, self.args, self.pid, self._streams = server, argv, pid, streams
        self.result = None

    def wait(self, timeout=600):
        """Its CompletedProcess (text stdout and stderr); raises TimeoutExpired, after killing
        it, as subprocess.run would."""
        if self.result is None:
            answer = self._server.ask({"op": "wait", "pid": self.pid, "timeout": timeout})
            out, err = (pathlib.Path(path).read_text(errors="replace") for path in self._streams)
            for path in self._streams:
                os.remove(path)
            if answer["timed_out"]:
                raise subprocess.TimeoutExpired(self.args, timeout, out, err)
            self.result = subprocess.CompletedProcess(self.args, answer["returncode"], out, err)
        return self.result

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

    def start(self, argv, *, cwd=None, env=None):
        """Starts ``argv`` (an installed ``vgg-*`` script, or ``sys.executable`` with ``-m``,
        ``-c`` or a script); ``env`` as subprocess's, with the import-time variables unchanged."""
        argv = [str(part) for part in argv]
        env = dict(self._env if env is None else env)
        env.setdefault("PYTHONPATH", str(ROOT))
        changed = [name for name in READ_AT_IMPORT if name != "PYTHONPATH"
                   and env.get(name) != self._env.get(name)]
        if changed:
            raise ValueError(f"{changed} are read when TensorFlow or Keras is imported: run "
                             "this command with subprocess in a fresh interpreter")
        handle, out = tempfile.mkstemp(dir=self._folder, suffix=".out")
        os.close(handle)
        handle, err = tempfile.mkstemp(dir=self._folder, suffix=".err")
        os.close(handle)
        answer = self._started().ask({"op": "start", "argv": argv, "cwd": str(cwd or ROOT),
                                      "env": env, "stdout": out, "stderr": err})
        return Program(self, argv, answer["pid"], (out, err))

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


_RUNNER = None


def _runner():
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = Programs()
    return _RUNNER


def start(argv, *, cwd=None, env=None):
    """``Programs.start`` on this process's fork server."""
    return _runner().start(argv, cwd=cwd, env=env)


def run(argv, *, cwd=None, env=None, timeout=600):
    """``Programs.run`` on this process's fork server."""
    return _runner().run(argv, cwd=cwd, env=env, timeout=timeout)


def close():
    """Stops this process's fork server, if one was started (conftest, at the session's end)."""
    global _RUNNER
    if _RUNNER is not None:
        _RUNNER.close()
        _RUNNER = None
