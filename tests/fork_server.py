"""The fork server of tests/programs.py: imports TensorFlow, Keras and vgg_keras once, then
forks one child per command it is sent and runs the command in that child.

One JSON request per line on standard input, one JSON answer per line on standard output:
  {"op": "start", "argv": [...], "cwd": ..., "env": {...}, "stdout": path, "stderr": path}
      -> {"pid": N}
  {"op": "wait", "pid": N, "timeout": seconds} -> {"returncode": R, "timed_out": bool}
      (killed once the timeout is past; a timeout of 0 only looks: R is null while it runs)
Standard input at its end: the children still running are killed and the server exits.

Nothing here touches TensorFlow's runtime (no device, no op, no thread pool) before a fork,
so each child initialises its own, as a fresh interpreter would.
"""

import atexit
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from importlib import metadata

import keras  # noqa: F401  (imported for the children)
import tensorflow  # noqa: F401

import pipelines.inputs  # noqa: F401
import vgg_keras  # noqa: F401  (registers our layers with Keras)
import vgg_keras.training  # noqa: F401

# Ours (vgg-*) and those of the packages installed beside them (saved_model_cli).
SCRIPTS = {entry.name: entry for entry in metadata.entry_points(group="console_scripts")}


def _exit_code(code):
    """What the interpreter makes of ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run(argv):
    """Runs ``argv`` as ``python ...`` or an installed script would; returns its exit code."""
    name = os.path.basename(argv[0])
    if name in SCRIPTS:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(argv[0])
        return _exit_code(SCRIPTS[name].load()())
    if argv[0] != sys.executable:
        raise ValueError(f"neither an installed script nor this Python: {argv[0]}")
    if argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    elif argv[1] == "-c":
        sys.argv = ["-c", *argv[3:]]
        sys.path[0] = ""
        exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(argv[1:])
        sys.path[0] = os.path.dirname(os.path.abspath(argv[1]))
        runpy.run_path(argv[1], run_name="__main__")
    return 0


def _child(request):
    """In the forked child: the command's streams, folder and environment, then the command;
    never returns."""
    code = 1
    try:
        writing = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], writing),
                                (2, request["stderr"], writing)):
            if fd == 2 and path == request["stdout"]:  # stderr=subprocess.STDOUT
                os.dup2(1, 2)
                continue
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            code = _run(request["argv"])
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except KeyboardInterrupt:  # as the interpreter: the traceback, then killed by SIGINT
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:  # noqa: BLE001  (as the interpreter: the traceback, status 1)
            traceback.print_exc()
            code = 1
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown:  # the interpreter's exit: joins the threads that are not daemons
            shutdown()
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if code == -signal.SIGINT:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            os._exit(code if code >= 0 else 1)


def _wait(pid, timeout):
    """Its exit status within ``timeout`` seconds (0: only a look), or killed."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": False}
        if timeout == 0:
            return {"returncode": None, "timed_out": False}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": True}
        time.sleep(0.02)


def main():
    children = set()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            children.add(pid)
            answer = {"pid": pid}
        else:
            answer = _wait(request["pid"], request["timeout"])
            if answer["returncode"] is not None:
                children.discard(request["pid"])
        print(json.dumps(answer), flush=True)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass


if __name__ == "__main__":
    main()
