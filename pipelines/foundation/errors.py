"""How failures read: the one line a command prints for an error its user can fix, and the
traceback of anything else.

An error is the user's when our code judged the user's input and raised ``UserError`` (or a
subclass) naming the problem and the fix; when the system refused what the user asked for (a
missing or unreadable path, a full disk: ``OSError``s and their TensorFlow counterparts); or when
a check inside a TensorFlow graph fails (a label outside its range, a corrupt shard, a refused
image), whose assertion text is the message. Anything else — a ``ValueError`` from inside Keras
or from our own code included — is a bug, and keeps its traceback.
"""

import ast
import contextlib
import errno
import re

# OSErrors that are the user's: what was asked for is not there, cannot be read or written.
_USERS_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                    PermissionError)
# TensorFlow's errors that say the same of a path, or of the data at it.
_USERS_TF_ERRORS = ("NotFoundError", "PermissionDeniedError", "DataLossError",
                    "AlreadyExistsError")
_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[",
             "Stack trace for op", "Traceback", "File \"")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
# TensorFlow's framing of several errors at once: "2 root error(s) found." and "(0) NOT_FOUND: ".
_ROOT_ERRORS = re.compile(r"^\d+ root error\(s\) found")
_ROOT_ERROR = re.compile(r"^\(\d+\) [A-Z_]+: ")
# An eager op's framing around its message: "{{function_node ...}} <message> [Op:Name]".
_EAGER_FRAMING = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]")


# Exit statuses, the same in every program, for a scheduler to act on (README, "Exit codes").
EXIT_DONE = 0
EXIT_USER_ERROR = 1  # fix the command: running it again fails the same way
EXIT_BUG = 2  # ours: please report it
EXIT_TEMPORARY = 75  # EX_TEMPFAIL: a peer, the service or a lease went away; rerun later


class UserError(ValueError):
    """A value, path or file the user gave is wrong; the message names it and the fix. (A
    ``ValueError``, so that library callers who catch those catch it too.)"""


class TemporaryError(Exception):
    """What a rerun of the same command may cure (a peer or the tf.data service gone, a port
    taken, a model dir's lease held by a run that may be gone); the message names it and says
    where the rerun resumes. Programs exit with ``EXIT_TEMPORARY``."""


@contextlib.contextmanager
def user_input():
    """Within it, a ``ValueError`` is a ``UserError``: around a call that judges the user's
    input for us (the nets name an unknown configuration, Keras a file that is no weights file),
    and nothing else."""
    try:
        yield
    except UserError:
        raise
    except ValueError as error:
        raise UserError(str(error)) from error


@contextlib.contextmanager
def temporary(*kinds):
    """Within it, an exception of ``kinds`` is a ``TemporaryError``: around a call whose own
    errors of those kinds a rerun cures (a download that broke off), and nothing else."""
    try:
        yield
    except kinds as error:
        raise TemporaryError(str(error)) from error


def one_line(error):
    """The readable part of a TensorFlow error: an assertion's own text ("label 12 of ... is
    outside ..."), or the first line that is not TensorFlow's framing (an eager op's
    ``{{function_node ...}}`` and ``[Op:Name]`` included)."""
    message = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in message.splitlines()]
    graph, eager = "assertion failed: [", "Summarized data: "
    for line in lines:
        if graph in line:  # inside a graph: C-escaped
            text = line[line.index(graph) + len(graph):]
            return _unescape(text[:-1] if text.endswith("]") else text).strip()
        if eager in line:  # eagerly: the bytes' Python repr
            text = line[line.index(eager) + len(eager):]
            try:
                return ast.literal_eval(text).decode("utf-8", "replace").strip()
            except (ValueError, SyntaxError, AttributeError):
                return text.strip()
    lines = [_EAGER_FRAMING.sub("", _ROOT_ERROR.sub("", line)).strip() for line in lines
             if line and not line.startswith(_TF_NOISE) and not _ROOT_ERRORS.match(line)]
    return ([line for line in lines if line] or [message])[0]


_ESCAPE = re.compile(r"\\([0-7]{3}|.)")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(text):
    """Undoes the C escaping with which TensorFlow prints an assertion's strings (``\\'``,
    ``\\"``, octal bytes of UTF-8 paths)."""
    parts, position = bytearray(), 0
    for match in _ESCAPE.finditer(text):
        parts += text[position:match.start()].encode()
        code = match.group(1)
        parts += bytes([int(code, 8)]) if len(code) == 3 else _SIMPLE.get(code, code).encode()
        position = match.end()
    parts += text[position:].encode()
    return parts.decode("utf-8", "replace")


def user_message(error):
    """One line for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        where = f" writing {error.filename}" if error.filename else ""
        return (f"the disk is full{where} ({error.strerror}): free space, or write to another "
                "disk; an interrupted run resumes from its last checkpoint")
    if isinstance(error, OSError) and error.errno in _READ_ONLY:
        where = f"{error.filename} is" if error.filename else "the destination is"
        return (f"{where} on a read-only file system: give a folder (or cache) that can be "
                "written")
    if isinstance(error, UserError):  # ours, written to be read whole (a list of settings)
        return str(error) or type(error).__name__
    if isinstance(error, _USERS_OS_ERRORS):
        return _first_line(error)
    if type(error).__module__.startswith("tensorflow") and hasattr(error, "error_code"):
        message = getattr(error, "message", "") or str(error)
        if "assertion failed" in message or "Summarized data" in message:
            return one_line(error)  # one of our checks inside a graph
        if "Read-only file system" in message:
            return (f"the destination is on a read-only file system ({one_line(error)}): give a "
                    "folder that can be written")
        if type(error).__name__ in _USERS_TF_ERRORS:
            return one_line(error)
        if type(error).__name__ == "ResourceExhaustedError" and "space" in message.lower():
            return ("the disk is full (" + one_line(error) + "): free space, or write to another "
                    "disk; an interrupted run resumes from its last checkpoint")
    return None


def _first_line(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__
