"""How failures read: the one line a command prints for an error its user can fix.

The library raises ``ValueError`` and the ``OSError`` family for bad settings, paths and files,
its own ``RuntimeError`` subclasses where a run cannot go on, and, from inside TensorFlow graphs
(a label outside its range, a corrupt shard, a refused image), a TensorFlow error whose
assertion text is the message. ``user_message`` turns each into one line; anything else is a
bug, and keeps its traceback.
"""

import ast
import errno
import re

_PACKAGES = ("vgg_keras", "pipelines")
_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[",
             "Stack trace for op", "Traceback", "File \"")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def one_line(error):
    """The readable part of a TensorFlow error: an assertion's own text ("label 12 of ... is
    outside ..."), or the first line that is not TensorFlow's framing."""
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
    lines = [line for line in lines if line and not line.startswith(_TF_NOISE)] or [message]
    return lines[0]


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
    if isinstance(error, (ValueError, OSError)):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    module = type(error).__module__.split(".")[0]
    if isinstance(error, RuntimeError) and module in _PACKAGES:
        return str(error)
    if module == "tensorflow" and hasattr(error, "error_code"):
        return one_line(error)
    return None
