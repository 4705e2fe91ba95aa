"""What every program of ``tools/`` shares: flags derived from a library's settings dataclass
(each setting declared once, in the library: ``pipelines.foundation.settings.setting``),
checked before TensorFlow is imported; ``--help`` that says what the program does and lists its
own flags (its console script's wrapper is not the program's module), exit status 0; and exit
statuses that tell the truth: an error its user can fix ends the program with one line naming
the problem and the fix, exit status 1; what a rerun may cure (a peer gone, a port taken) one
line and 75; SIGTERM and Ctrl-C one line and 143 or 130, after the program's own clean-up; a
reader that closed the pipe an end without a word (141, as the shell's); the traceback only
with ``--verbose`` (or absl's ``-v 1``). An error that is a bug keeps its traceback, asks to be
reported and exits with 2.
"""

import dataclasses
import os
import platform
import signal
import sys
import traceback
import types

from absl import app
from absl import flags
from absl import logging

from pipelines.foundation import errors
from pipelines.foundation import tf_runtime
from pipelines.foundation.settings import setting

EXIT_USER_ERROR, EXIT_BUG, EXIT_TEMPORARY = (errors.EXIT_USER_ERROR, errors.EXIT_BUG,
                                             errors.EXIT_TEMPORARY)
EXIT_INTERRUPTED = 130  # the shell's code for a program ended by Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what the shell reports of a writer whose reader left
ISSUES = "the vgg_keras issue tracker"
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
# The program running in this process: its name, and whether (and how quietly) it starts
# TensorFlow once its settings are read.
_RUNNING = {"name": None, "tensorflow": False, "level": None}


def define_settings_flags(settings_class, module_name):
    """Defines a flag for every setting of ``settings_class`` that offers one, with the
    setting's name, default, help text and choices, as flags of ``module_name`` (the program);
    returns ``{name: FlagHolder}``. A setting with a ``parse`` function is a string flag holding
    its ``text``; an unset optional setting's flag defaults to None."""
    holders = {}
    for field in dataclasses.fields(settings_class):
        meta = field.metadata
        if not meta.get("flag"):
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        common = dict(name=meta.get("flag_name") or field.name, help=meta["help"],
                      module_name=module_name)
        if meta.get("multiple"):
            holders[field.name] = flags.DEFINE_multi_string(default=default, **common)
        elif meta.get("parse"):
            text = None if default is None else meta["text"](default)
            holders[field.name] = flags.DEFINE_string(default=text, **common)
        elif meta.get("choices"):
            holders[field.name] = flags.DEFINE_enum(default=default,
                                                    enum_values=list(meta["choices"]), **common)
        else:
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float, str: flags.DEFINE_string}[_base_type(field.type)]
            holders[field.name] = define(default=default, **common)
    return holders


def settings_from_flags(settings_class, holders, **given):
    """The ``settings_class`` of the flags' values (and of ``given``, for settings without a
    flag), parsed; a required setting without its flag is a usage error."""
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    values = dict(given)
    for name, holder in holders.items():
        value, field = holder.value, fields[name]
        if value in (None, []) and field.default is dataclasses.MISSING:
            raise app.UsageError(f"--{field.metadata.get('flag_name') or name} is required")
        parse = field.metadata.get("parse")
        if field.metadata.get("multiple") and value is not None:
            value = tuple(value)
        values[name] = parse(value) if parse and value is not None else value
    recipe_defaults = getattr(settings_class, "recipe_defaults", None)
    if recipe_defaults is not None:  # a named set of defaults (vgg-train's --recipe)
        given = {name for name, holder in holders.items() if holder.present}
        values = recipe_defaults(values, given)
    return settings_class(**values)


class Settings:
    """A program's settings: a flag for each of ``settings_class``'s declarations (as flags of
    the program ``module_name``), read back as one checked object."""

    def __init__(self, settings_class, module_name):
        self.settings_class = settings_class
        self.flags = define_settings_flags(settings_class, module_name)

    def read(self, *arguments, **keywords):
        """The settings of the flags' values, checked by their class's ``validate`` (given
        ``arguments`` and ``keywords``) where it has one; then, for a program that uses it,
        TensorFlow started (a mistake in a flag is refused without waiting for it)."""
        config = settings_from_flags(self.settings_class, self.flags)
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate(*arguments, **keywords)
        if _RUNNING["tensorflow"]:
            tf_runtime.start(_RUNNING["level"])
        return config

    def check_flags(self):
        """The flags' values checked as the program checks them, reading no file (the
        documentation's commands are tested with it)."""
        self.read(check_files=False)


def _base_type(annotation):
    """``int`` of ``int``, ``int | None``."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = [a for a in annotation.__args__ if a is not type(None)]
    return annotation


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """The settings every program has."""

    verbose: bool = setting(False, "On an error, print its traceback too; and TensorFlow's own "
                                   "log lines (as --tf_log_level=info).")
    tf_log_level: str | None = setting(None, "TensorFlow's own log lines (C++ and Python) down "
                                             "to this level (default: none; info with "
                                             "--verbose).", choices=tf_runtime.LEVELS)


_COMMON = define_settings_flags(CommonSettings, __name__)


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


def run(main, name, tensorflow=True):
    """Runs ``main`` as absl's ``app.run`` does, as the program ``name`` (``vgg-train``);
    ``tensorflow``: it uses TensorFlow, started quietly (``tf_runtime``) once its settings are
    read. ``--help`` shows the program's own description (its module's docstring) and flags,
    and exits with 0."""
    adopt_key_flags(main.__module__)
    sys.modules["__main__"].__doc__ = sys.modules[main.__module__].__doc__
    try:
        app.run(guarded(main, name, tensorflow))
    except SystemExit as stop:
        if stop.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            raise SystemExit(0) from None  # absl ends --help with 1: asked for, it succeeded
        raise


def adopt_key_flags(module_name):
    """Makes the flags of ``module_name`` (the program's) and this module's the key flags of the
    main module, which absl's ``--help`` lists: for a console script the main module is its
    wrapper, which defines no flag, and ``--help`` would list none."""
    main_module = sys.argv[0]
    for owner in (module_name, __name__):
        for flag in flags.FLAGS.get_flags_for_module(owner):
            flags.FLAGS.register_key_flag_for_module(main_module, flag)


def guarded(main, name, tensorflow=True):
    """``main`` with a user's error reported as one line and exit status 1, and a bug as its
    traceback and a line asking to report it, exit status 2 (``errors``); SIGTERM raised as an
    exception in the main thread, so that the program cleans up before it exits with 143."""
    def wrapped(argv):
        try:
            level = _COMMON["tf_log_level"].value or (
                "info" if _COMMON["verbose"].value else "quiet")
            _RUNNING.update(name=name, tensorflow=tensorflow, level=tf_runtime.configure(level))
            for number in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(number, _terminate)
            code = main(argv)
            sys.stdout.flush()  # a reader gone meanwhile is found here, not at the exit
            return code
        except BrokenPipeError:
            _stdout_to_nowhere()
            return EXIT_CLOSED_PIPE
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except errors.TemporaryError as error:  # a rerun may cure it: a scheduler retries
            if _COMMON["verbose"].value:
                traceback.print_exc()
            print(f"{name}: {error}", file=sys.stderr)
            return EXIT_TEMPORARY
        except Exception as error:  # noqa: BLE001 - sorted into a user's error or a bug below
            return _failed(name, error)

    return wrapped


class Terminated(Exception):  # noqa: N818 - a stop asked for, not an error
    """SIGTERM (or SIGHUP: the terminal gone), raised where the program is, so that what it
    holds is cleaned up; the exit status is the shell's, 128 + the signal."""

    def __init__(self, number=signal.SIGTERM):
        super().__init__(number)
        self.exit_code = 128 + int(number)
        self.signal = signal.Signals(number).name

    def __str__(self):
        return f"stopped by {self.signal}"


def _terminate(signum, frame):
    raise Terminated(signum)


class HeldSignals:
    """From ``hold()`` on, SIGINT, SIGTERM and SIGHUP are recorded, not raised: a program past
    its point of no return (an export's version whole) finishes, then says what it was told
    (``received``: the signal's name, or None)."""

    def __init__(self):
        self.received = None

    def hold(self):
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, self._record)

    def _record(self, signum, frame):
        self.received = signal.Signals(signum).name


def _stdout_to_nowhere():
    """Standard output pointed at /dev/null: the reader left, and Python's own flush at the exit
    would raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _failed(name, error):
    """The exit status of ``error`` (a stop asked for, a user's error or a bug), its lines
    printed."""
    if isinstance(getattr(error, "exit_code", None), int):  # a stop asked for (signal)
        print(f"{name}: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    message = (f"{error}; `{name} --help` lists its flags"
               if isinstance(error, app.UsageError) else errors.user_message(error))
    if message is None:
        traceback.print_exc()
        print(f"{name}: this is a bug in vgg_keras, not something you did: please report "
              f"it to {ISSUES} with the command you ran ({' '.join(sys.argv)}) and the "
              "traceback above", file=sys.stderr)
        return EXIT_BUG
    if _COMMON["verbose"].value or logging.get_verbosity() > 0:
        traceback.print_exc()
    print(f"{name}: {message}", file=sys.stderr)
    return EXIT_USER_ERROR
