"""What every program of ``tools/`` shares: ``--help`` that lists the program's own flags (its
console script's wrapper is not the program's module), and an error its user can fix ending the
program with one line naming the problem and the fix, and exit status 1; the traceback only with
``--verbose`` (or absl's ``-v 1``). An error that is a bug keeps its traceback.
"""

import os
import platform
import sys
import traceback

from absl import app
from absl import flags
from absl import logging

from pipelines import errors

_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, print its traceback too.")
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell's code for a program ended by Ctrl-C (128 + SIGINT)


def machine():
    """The CPU model and the cores this process may use, as timings should name them:
    ``"AMD EPYC 7B13, 2 cores"``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file
                     if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass  # not Linux: the platform's own name
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def run(main, name):
    """Runs ``main`` as absl's ``app.run`` does, as the program ``name`` (``vgg-train``)."""
    adopt_key_flags(main.__module__)
    app.run(guarded(main, name))


def adopt_key_flags(module_name):
    """Makes the flags of ``module_name`` (the program's) and this module's the key flags of the
    main module, which absl's ``--help`` lists: for a console script the main module is its
    wrapper, which defines no flag, and ``--help`` would list none."""
    main_module = sys.argv[0]
    for owner in (module_name, __name__):
        for flag in flags.FLAGS.get_flags_for_module(owner):
            flags.FLAGS.register_key_flag_for_module(main_module, flag)


def guarded(main, name):
    """``main`` with a user's error reported as one line and exit status 1."""
    def wrapped(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # noqa: BLE001 - sorted into a user's error or a bug below
            message = errors.user_message(error)
            if message is None:
                raise
            if _VERBOSE.value or logging.get_verbosity() > 0:
                traceback.print_exc()
            print(f"{name}: {message}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapped
