"""Settings declared once: each a dataclass field carrying its name, type, default, help text,
check, and whether a resumed run may change it (``setting``). Every program derives its flags
from such declarations (``tools/program.py``), the settings classes check themselves with
``check_settings``, and a training run's identity keeps the ones that may not change.

Here, at the bottom of the layers, so that the converter's settings (``pipelines``) and the
programs' of ``vgg_keras`` are declared alike. Free of TensorFlow and Keras: a program defines its
flags, and refuses a bad value, before anything heavy starts.
"""

import dataclasses

from pipelines.foundation import errors


def setting(default=dataclasses.MISSING, help="", *, check=None, choices=None,
            changeable=False, flag=True, parse=None, text=None, multiple=False, flag_name=None):
    """A field of a settings dataclass, with everything else there is to say about it.

    Args:
        default: the default (the paper's where it has one); none: the setting is required.
        help: the flag's help text.
        check: ``(predicate, what)``: the value must satisfy ``predicate``; the error says
            "--name must be what". None values (unset optional settings) are not checked.
        choices: the allowed values (an enum flag).
        changeable: a resumed run may change it: it says how the run runs (where, how often it
            saves, how it reports), not what it computes (``run_identity``).
        flag: whether the program offers it as a flag.
        parse: for a value a flag cannot hold as such (a pair, a list of numbers): the function
            from the flag's text to the value; ``text`` the function back.
        multiple: the flag may be given several times (``--model=a --model=b``); the value is
            the tuple of them.
        flag_name: the flag's name where it cannot be the field's (``--class``, a Python
            keyword).
    """
    metadata = dict(help=help, check=check, choices=choices, changeable=changeable, flag=flag,
                    parse=parse, text=text, multiple=multiple, flag_name=flag_name)
    return dataclasses.field(default=default, metadata=metadata)


def at_least(low):
    """The ``check`` of ``setting``: the value is at least ``low``."""
    return (lambda value: value >= low, f">= {low}")


def above(low):
    """The ``check`` of ``setting``: the value is above ``low``."""
    return (lambda value: value > low, f"> {low}")


def check_settings(settings):
    """Each field's own check and choices (``setting``), for any settings dataclass.

    Raises:
        UserError: naming the first setting whose value fails, and what it must be.
    """
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        choices, check = field.metadata.get("choices"), field.metadata.get("check")
        if value is None:
            continue
        if choices and value not in choices:
            raise errors.UserError(f"{field.name} must be one of {choices}, got {value!r}")
        if check and not check[0](value):
            raise errors.UserError(f"{field.name} must be {check[1]}, got {value!r}")


def parse_given(settings, *names):
    """Parses the settings ``names`` of ``settings`` (a frozen settings dataclass, in its
    ``__post_init__``) that were given as their flag's text, a ``str``, by their declared
    ``parse``: a setting whose value is an object is the same whether a flag or a caller gave it.

    Raises:
        UserError: as the setting's ``parse``.
    """
    fields = {field.name: field for field in dataclasses.fields(settings)}
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, str):
            object.__setattr__(settings, name, fields[name].metadata["parse"](value))


def defaults(settings_class):
    """The default of every setting of ``settings_class`` that has one."""
    return {field.name: field.default for field in dataclasses.fields(settings_class)
            if field.default is not dataclasses.MISSING}


def changeable(settings_class):
    """The names of the settings a resumed run may change."""
    return tuple(field.name for field in dataclasses.fields(settings_class)
                 if field.metadata.get("changeable"))
