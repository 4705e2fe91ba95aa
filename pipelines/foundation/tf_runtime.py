"""TensorFlow started as a program of ours wants it: its own log lines (C++ and Python) at the level
asked for, by default none, so that what a program prints is its own lines.

TensorFlow writes some lines before anything can ask it not to (``absl::InitializeLog``'s
warning, the CUDA and CPU-feature notes of its start): those are caught on file descriptor 2
while it starts, and shown only at ``info``. The rest follow ``TF_CPP_MIN_LOG_LEVEL`` (C++,
read when TensorFlow starts; a value the user set is kept) and the ``tensorflow`` logger
(Python).
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings

LEVELS = ("quiet", "error", "warning", "info")
_INHERITED = "VGG_KERAS_TF_LOG_LEVEL"  # a program's level, for the processes it starts
_CPP_LEVELS = {"quiet": "3", "error": "2", "warning": "1", "info": "0"}
_PYTHON_LEVELS = {"quiet": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
                  "info": logging.INFO}
_ABSL_LEVELS = {"quiet": "fatal", "error": "error", "warning": "warning", "info": "info"}


@contextlib.contextmanager
def caught_stderr():
    """Catches what is written to file descriptor 2 (C++ included) meanwhile; yields a function
    returning it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield lambda: (caught.seek(0), caught.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def native_lines():
    """What libraries' C++ writes to file descriptor 2 meanwhile (LiteRT's converter and its
    interpreter print their notes there, past every logging setting): shown at level ``info``
    or when the block fails, else dropped."""
    if os.environ.get(_INHERITED, "quiet") == "info":
        yield
        return
    failed, caught = True, ""
    try:
        with caught_stderr() as text:
            try:
                yield
                failed = False
            finally:
                caught = text()
    finally:
        if failed:
            sys.stderr.write(caught)


def configure(level=None):
    """Sets TensorFlow's log lines to ``level`` (``LEVELS``; default: the level of the program
    that started this process, else quiet) for when it starts, in this process and the ones it
    starts, without importing it; returns the level."""
    level = level or os.environ.get(_INHERITED, "quiet")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    os.environ[_INHERITED] = level
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _CPP_LEVELS[level])
    logging.getLogger("tensorflow").setLevel(_PYTHON_LEVELS[level])
    # TensorFlow logs through absl too (its checkpoints' "Sharding callback" lines, say).
    from absl import logging as absl_logging

    absl_logging.set_verbosity(_ABSL_LEVELS[level])
    if level in ("quiet", "error"):
        for package in ("tensorflow", "keras", "tensorflow_datasets", "absl"):
            warnings.filterwarnings("ignore", module=package)
    return level


def start(level=None):
    """Imports TensorFlow (and lists its devices, which starts its platforms) with its log lines
    at ``level`` (``configure``); returns the ``tensorflow`` module. Where TensorFlow was imported
    already (and read ``TF_CPP_MIN_LOG_LEVEL`` then), its platforms' start is still caught."""
    level = configure(level)
    caught, started = "", False
    try:
        with caught_stderr() as text:
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()
                started = True
            finally:
                caught = text()
    finally:
        if level == "info" or not started:
            sys.stderr.write(caught)
    return tf
