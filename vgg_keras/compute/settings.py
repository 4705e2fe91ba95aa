"""Where a program computes, declared once for the programs that compute with TensorFlow
(``vgg-train`` and ``vgg-evaluate``): the same flags, names and meanings. Free of TensorFlow and
Keras, as every declaration of settings is (``pipelines.foundation.settings``).
"""

import dataclasses

from pipelines.foundation import errors
from pipelines.foundation import storage
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting

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
