"""The tests' fork server (tests/programs.py) runs a command as a fresh interpreter would: its
argv, folder, environment, output and exit status, an uncaught exception and Ctrl-C included."""

import os
import signal
import subprocess
import sys

import pytest

from tests import programs

pytestmark = pytest.mark.slow  # starts processes: the full tier

CHILD = """
import os, sys
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("PROGRAMS_TEST"))
print("to stderr", file=sys.stderr)
what = sys.argv[1]
if what == "exit":
    sys.exit(3)
if what == "raise":
    raise RuntimeError("not caught")
if what == "interrupt":
    raise KeyboardInterrupt
if what == "message":
    sys.exit("a message")
if what == "sleep":
    import time
    time.sleep(60)
"""


@pytest.mark.parametrize("what, code", [("none", 0), ("exit", 3), ("raise", 1), ("message", 1),
                                        ("interrupt", -signal.SIGINT)])
def test_a_command_ends_as_in_a_fresh_interpreter(tmp_path, what, code):
    result = programs.run([sys.executable, "-c", CHILD, what], cwd=tmp_path,
                          env=dict(os.environ, PROGRAMS_TEST="set"), timeout=60)
    assert result.returncode == code, result.stderr
    assert result.stdout.splitlines()[0] == f"argv ['{what}'] cwd {tmp_path} env set"
    assert result.stderr.startswith("to stderr\n")
    if what in ("raise", "interrupt"):
        assert "Traceback" in result.stderr
    if what == "message":
        assert result.stderr.endswith("a message\n")


def test_a_script_a_module_and_an_installed_program(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint(sys.argv)\n")
    assert programs.run([sys.executable, script, "a"]).stdout == f"[{str(script)!r}, 'a']\n"
    listed = programs.run([sys.executable, "-m", "tools.describe", "--help"])
    assert listed.returncode == 0 and "--configs" in listed.stdout  # asked for: status 0
    refused = programs.run([os.path.join(os.path.dirname(sys.executable), "vgg-describe"),
                            "--configs=Z"])
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("vgg-describe: unknown VGG")


def test_timeouts_kill_and_import_time_settings_are_refused(tmp_path):
    sleeper = programs.start([sys.executable, "-c", CHILD, "sleep"])
    assert sleeper.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(timeout=0.5)
    assert sleeper.returncode == -signal.SIGKILL
    with pytest.raises(ValueError, match="KERAS_BACKEND"):
        programs.start([sys.executable, "-c", "pass"], env=dict(os.environ, KERAS_BACKEND="jax"))
