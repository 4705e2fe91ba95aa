"""Where a program computes, declared once for the programs that compute with TensorFlow
(``vgg-train`` and ``vgg-evaluate``): the same flags, names and meanings. Free of TensorFlow and
Keras, as every declaration of settings is (``pipelines.settings``).
"""

import dataclasses

from pipelines import errors
from pipelines import storage
from pipelines.settings import at_least
from pipelines.settings import setting
from vgg_keras.nets import configs
from vgg_keras.nets import published

STRATEGIES = ("mirrored", "multi_worker", "one_device", "tpu", "default")


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


def check_tpu_paths(paths):
    """Refuses a local path for a TPU run: its workers read only buckets, never this machine's
    disk (nor its ``ram://``).

    Raises:
        UserError: naming the first such path.
    """
    for flag, path in paths.items():
        if path and storage.scheme(path) in ("", "file", "ram"):
            raise errors.UserError(
                f"{flag}={path}: a TPU's workers read only buckets (gs://...), not this "
                "machine's disk: copy the data to a bucket and give --data_dir=gs://... and "
                "--model_dir=gs://...")


def weights_source(text, kinds, flag):
    """``(kind, path)`` of a ``KIND=PATH`` value (``--init``, ``--weights``) whose kind is one of
    ``kinds``, or ``(text, None)`` for a value without ``=PATH``; the path is checked to be of a
    filesystem this TensorFlow reads (not that it exists).

    Raises:
        UserError: for a kind not in ``kinds`` or a missing path.
    """
    kind, _, path = text.partition("=")
    if not path:
        return text, None
    if kind not in kinds:
        raise errors.UserError(f"{flag}={text}: {kind!r} is none of {', '.join(kinds)}")
    storage.check_filesystem(path, f"{flag}={kind}=")
    return kind, path


def published_weights_source(text, flag, config):
    """``(kind, path)`` of a value naming weights of ``configs.WEIGHT_KINDS`` (``--weights``,
    ``--init``): ``KIND`` alone for the published file (``published.fetch``), whose kind must
    publish weights of ``config``, or ``KIND=PATH`` for a file.

    Raises:
        UserError: naming what is wrong, and the forms that work.
    """
    kind, path = weights_source(text, configs.WEIGHT_KINDS, flag)
    if path is None:
        if kind not in configs.WEIGHT_KINDS:
            raise errors.UserError(f"{flag} must be KIND or KIND=PATH, KIND one of "
                                   f"{', '.join(configs.WEIGHT_KINDS)}; got {text!r}")
        with errors.user_input():  # an unknown net, or none of its weights of that kind
            published.find(config, kind)
    return kind, path
