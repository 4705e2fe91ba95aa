"""Settings declared once: each a dataclass field carrying its name, type, default, help text,
check, and whether a resumed run may change it (``setting``). The programs derive their flags
from these declarations (``tools/program.py``), the settings classes check themselves with
``check_settings``, and a run's identity keeps the ones that may not change.

``DistributionSettings``, where a program computes, is shared by ``vgg-train`` and
``vgg-evaluate``: the same flags, names and meanings. Free of TensorFlow and Keras.
"""

import dataclasses

from pipelines import errors

STRATEGIES = ("mirrored", "multi_worker", "one_device", "tpu", "default")


def setting(default=dataclasses.MISSING, help="", *, check=None, choices=None,
            changeable=False, flag=True, parse=None, text=None):
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
    """
    metadata = dict(help=help, check=check, choices=choices, changeable=changeable, flag=flag,
                    parse=parse, text=text)
    return dataclasses.field(default=default, metadata=metadata)


def at_least(low):
    """The ``check`` of ``setting``: the value is at least ``low``."""
    return (lambda value: value >= low, f">= {low}")


def above(low):
    """The ``check`` of ``setting``: the value is above ``low``."""
    return (lambda value: value > low, f"> {low}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionSettings:
    """Where a program computes: a ``tf.distribute`` strategy and its devices."""

    distribution_strategy: str = setting("mirrored", "tf.distribute strategy.",
                                         choices=STRATEGIES, changeable=True)
    tpu: str | None = setting(None, "With --distribution_strategy=tpu: the Cloud TPU's name or "
                                    "grpc:// address (TPUClusterResolver), or local on a TPU "
                                    "VM.", changeable=True)
    num_gpus: int | None = setting(None, "GPUs to use (default: all visible).", changeable=True)
    cpu_replicas: int | None = setting(None, "Split the CPU into N logical devices, so that "
                                             "MirroredStrategy runs N replicas.",
                                       check=at_least(1), changeable=True)


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


def defaults(settings_class):
    """The default of every setting of ``settings_class`` that has one."""
    return {field.name: field.default for field in dataclasses.fields(settings_class)
            if field.default is not dataclasses.MISSING}


def changeable(settings_class):
    """The names of the settings a resumed run may change."""
    return tuple(field.name for field in dataclasses.fields(settings_class)
                 if field.metadata.get("changeable"))
