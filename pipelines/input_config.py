"""What the inputs are, each in one object checked once when it is made: the §3.1 training input
(``InputConfig``: the batch, the training scale S and crop, the classes and label offset, the
order and randomness, how damaged shards are met, and where the work runs: here, or on tf.data
service workers) and the §3.2 test input (``EvalInputConfig``: centre crops or whole images at
the test scale Q, which images, which classes).

Free of TensorFlow: ``vgg-train`` builds them from its settings, and so refuses a bad value,
before anything heavy starts; ``pipelines.inputs.make_train_dataset`` and ``make_eval_dataset``
read them. The crop's size is the net's to say (``vgg_keras.nets.configs.CROP_SIZE``, §2.1): the
inputs take it as they are told.
"""

import dataclasses

from pipelines.foundation import errors

# The defaults of the input side, declared once.
TRAIN_SCALE = (256, 256)  # §3.1: S = 256, the first of the paper's fixed training scales
TEST_SCALE = 256  # §4.1: Q = S; also slim's and Keras' "resize to 256, crop 224" without an S
# The two inputs evaluation reads (pipelines.inputs.make_eval_dataset): batches of centre crops,
# or each image whole at Q (for the fully convolutional net and the multi-crop grid, which take
# their own views of it).
CENTER_CROPS, WHOLE_IMAGES = "center_crops", "whole_images"
INPUT_MODES = (CENTER_CROPS, WHOLE_IMAGES)
AUTO_AUGMENTS = ("none", "ta_wide", "rand_augment")  # pipelines.auto_augment's policies


def parse_scale(value, flag="--scale"):
    """'256' → (256, 256); '256,512' → (256, 512): a training scale S as its flag writes it."""
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise errors.UserError(f"{flag} must be S or Smin,Smax in pixels, got {value!r}")
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def scale_text(scale):
    """The training scale as its flag writes it, wherever it is shown: ``256``, ``256,512``."""
    return str(scale[0]) if scale[0] == scale[1] else f"{scale[0]},{scale[1]}"


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """The training input's settings.

    Attributes:
        batch_size: global batch size; each input pipeline yields the per-replica batch
            ``batch_size / num_replicas_in_sync``.
        crop_size: side of the square crops (§2.1: the net's input).
        scale: S as ``(Smin, Smax)`` (jitter, §3.1: 256–512) or one number (fixed S; default
            256).
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
        random_resized_crop: ``(area low, area high, ratio low, ratio high)``: torchvision's
            crop instead of §3.1's (``scale`` is then unused); None: §3.1's.
        auto_augment: ``none``, ``ta_wide`` or ``rand_augment`` (``auto_augment``).
        random_erase: probability of erasing a rectangle of each crop to ``erase_fill``.
        erase_fill: the RGB colour erased to (the mean colour the net subtracts).
        mixup_alpha, cutmix_alpha: mixup's and cutmix's Beta(α, α) (0: off); with either, the
            labels are one-hot rows ``[batch, num_classes]`` (float32), mixed.
        ra_reps: repeated augmentation: each record this many times in a row, differently
            augmented, the copies sent to different replicas of this pipeline.
    """

    batch_size: int
    crop_size: int
    scale: tuple = TRAIN_SCALE
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
    random_resized_crop: tuple | None = None
    auto_augment: str = "none"
    random_erase: float = 0.0
    erase_fill: tuple = (124, 117, 104)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ra_reps: int = 1

    @property
    def mixes(self):
        """Whether batches are mixed (mixup or cutmix): the labels are then one-hot rows."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    @property
    def seeded_elements(self):
        """Whether each element's crop takes a seed of its own (torchvision's crop; §3.1's
        only in a deterministic run)."""
        return self.deterministic or bool(self.random_resized_crop)

    @property
    def augments_batches(self):
        """Whether batches are augmented after they are made (auto-augment, erasing, mixing)."""
        return self.mixes or bool(self.random_erase) or self.auto_augment != "none"

    def __post_init__(self):
        scale = self.scale
        scale = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
        object.__setattr__(self, "scale", scale)
        if self.deterministic and self.seed is None:
            object.__setattr__(self, "seed", 0)
        rules = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (len(scale) == 2 and (self.random_resized_crop or  # then S is not used
                                  self.crop_size <= scale[0] <= scale[1]),
             f"scale must be S or Smin,Smax with crop_size {self.crop_size} <= Smin <= Smax, "
             f"got {scale}"),
            (not (self.data_service and self.deterministic),
             "--deterministic runs read their input in order, which the tf.data service does "
             "not keep: drop --data_service or --deterministic"),
            (self.auto_augment in AUTO_AUGMENTS,
             f"auto_augment must be one of {AUTO_AUGMENTS}, got {self.auto_augment!r}"),
        ]
        for ok, message in rules:
            if not ok:
                raise errors.UserError(message)

    @classmethod
    def from_settings(cls, settings, **overrides):
        """The input of a program's ``settings`` (``vgg-train``'s ``TrainConfig``): every field
        of the same name, then ``overrides``; nothing copied by hand."""
        names = {field.name for field in dataclasses.fields(cls)}
        values = {name: getattr(settings, name) for name in names if hasattr(settings, name)}
        values.update(overrides)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class EvalInputConfig:
    """The §3.2 test input's settings (``pipelines.inputs.make_eval_dataset``).

    Attributes:
        mode: ``center_crops``: shorter side → Q, the central crop, in batches;
            ``whole_images``: each image whole at Q, one at a time (for the fully convolutional
            net and the multi-crop grid, which take their own views of it).
        test_scale: Q, the shorter side every image is rescaled to.
        crop_size: side of the centre crops (the net's input); needed for ``center_crops``.
        batch_size: centre crops per batch.
        num_classes: default: ``num_classes`` of the metadata beside the shards.
        label_offset: subtracted from stored labels (default: the metadata's).
        split: which shards of a folder to read.
        skip_corrupt: leave out (or skip the rest of) a damaged shard, counted, instead of
            failing.
        verify_shards: compare every shard's sha256 with the manifest before reading.
        max_images: the first N images only.
        shard: ``(count, index)``: every count-th image from the index-th (an evaluation split
            across workers: each image read and decoded by one).
    """

    mode: str = CENTER_CROPS
    test_scale: int = TEST_SCALE
    crop_size: int | None = None
    batch_size: int = 32
    num_classes: int | None = None
    label_offset: int | None = None
    split: str = "validation"
    skip_corrupt: bool = False
    verify_shards: bool = False
    max_images: int | None = None
    shard: tuple | None = None

    def __post_init__(self):
        if self.mode not in INPUT_MODES:
            raise errors.UserError(f"mode must be one of {INPUT_MODES}, got {self.mode!r}")
        if self.mode == CENTER_CROPS and not self.crop_size:
            raise errors.UserError("crop_size is required for center_crops: the side of the "
                                   "net's input")
        if self.mode == CENTER_CROPS and self.test_scale < self.crop_size:
            raise errors.UserError(f"test scale Q={self.test_scale} is smaller than the "
                                   f"{self.crop_size} crop")
