"""What the §3.1 training input is, in one object, checked once when it is made: the batch, the
training scale S and crop, the classes and label offset, the order and randomness, how damaged
shards are met, and where the work runs (here, or on tf.data service workers).

Free of TensorFlow: ``vgg-train`` builds it from its settings, and so refuses a bad value, before
anything heavy starts; ``pipelines.inputs.make_train_dataset`` reads it.
"""

import dataclasses

from pipelines import errors


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """The training input's settings.

    Attributes:
        batch_size: global batch size; each input pipeline yields the per-replica batch
            ``batch_size / num_replicas_in_sync``.
        scale: S as ``(Smin, Smax)`` (jitter, §3.1: 256–512) or one number (fixed S).
        crop_size: side of the square crops (224).
        num_classes: default: ``num_classes`` of the metadata beside the shards.
        label_offset: subtracted from stored labels (default: 1 for our/slim shards, 0 tfds).
        seed: seed of shuffles and augmentation (required for reproducible runs; 0 when
            ``deterministic`` and unset).
        deterministic: the same batches in the same order for the same seed.
        shuffle_buffer: records in the shuffle buffer.
        cycle_length: shards read in parallel.
        skip_corrupt: leave out (or skip the rest of) a damaged shard, counted, instead of
            failing.
        verify_shards: compare every shard's sha256 with the manifest before reading (reads
            every byte once; sizes are always compared where the manifest records them).
        data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher: its workers run the
            pipeline (reading, decoding, cropping, batching) and send the batches. Not with
            ``deterministic``: the service keeps no order.
        data_service_job: the job's name; every input pipeline that names it shares its batches.
        split: which shards of a folder to read.
        repeat: repeat forever (training); False for one pass.
    """

    batch_size: int
    scale: tuple = (256, 512)
    crop_size: int = 224
    num_classes: int | None = None
    label_offset: int | None = None
    seed: int | None = None
    deterministic: bool = False
    shuffle_buffer: int = 10_000
    cycle_length: int = 16
    skip_corrupt: bool = False
    verify_shards: bool = False
    data_service: str | None = None
    data_service_job: str = "vgg_train"
    split: str = "train"
    repeat: bool = True

    def __post_init__(self):
        scale = self.scale
        scale = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
        object.__setattr__(self, "scale", scale)
        if self.deterministic and self.seed is None:
            object.__setattr__(self, "seed", 0)
        rules = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (len(scale) == 2 and self.crop_size <= scale[0] <= scale[1],
             f"scale must be S or Smin,Smax with crop_size {self.crop_size} <= Smin <= Smax, "
             f"got {scale}"),
            (not (self.data_service and self.deterministic),
             "--deterministic runs read their input in order, which the tf.data service does "
             "not keep: drop --data_service or --deterministic"),
        ]
        for ok, message in rules:
            if not ok:
                raise errors.UserError(message)
