"""The nets' published ImageNet weights by name: which file each kind names for each net, what its
publisher measured with it, and what the weights need, as torchvision's ``Weights`` carry their
transforms and meta (``Needs``: the input normalisation and batch-norm ε the net is built with,
the crop it reads, the test scale it was measured at, its classes). Where the files come from,
and how they are fetched and checked: ``downloads``.

- ``torchvision`` and ``timm`` (A, B, D, E and their BN variants): torchvision's weights as timm
  publishes them on the Hugging Face Hub (``timm/vgg16_bn.tv_in1k``'s ``model.safetensors``).
- ``paper`` (D, E; ``keras_applications`` is its other name): the authors' released VGG-16 and
  VGG-19, converted from Caffe, as keras.applications publishes them.

``Weights`` is the one shape of the weights a command names (``--weights``, ``--init``): a kind
alone (the published file, by name) or ``KIND=PATH`` (a file in that kind's layout), parsed once
by ``parse``; once located (``pretrained.locate``) it also says where the file is and came from.
Pure Python: the programs parse their flags with it before anything heavy starts.
"""

import dataclasses
import itertools

from vgg_keras.nets import configs

HUB_FILE = "model.safetensors"
# timm's repositories of torchvision's weights, ``timm/<name>[_bn].tv_in1k``.
_TIMM_NAMES = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
# torchvision's ImageNet top-1 / top-5 (%) of these weights (resize 256, centre crop 224), and
# its own file names, for those who have its .pth.
TORCHVISION = {
    "A": ("vgg11-8a719046.pth", 69.020, 88.628),
    "B": ("vgg13-19584684.pth", 69.928, 89.246),
    "D": ("vgg16-397923af.pth", 71.592, 90.382),
    "E": ("vgg19-dcbb9e9d.pth", 72.376, 90.876),
    "A-BN": ("vgg11_bn-6002323d.pth", 70.370, 89.810),
    "B-BN": ("vgg13_bn-abd245e5.pth", 71.586, 90.374),
    "D-BN": ("vgg16_bn-6c64b313.pth", 73.360, 91.516),
    "E-BN": ("vgg19_bn-c79401a0.pth", 74.218, 91.842),
}
# keras.applications' VGG16 and VGG19 with their top (fc1 and fc2 are what a fine-tune keeps):
# file name, URL and md5 as keras/src/applications/vgg16.py and vgg19.py pin them; top-1 and
# top-5 (%) as keras.applications' table reports them.
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications"
KERAS_FILES = {
    "D": ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
          f"{_KERAS_BASE}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
          "64373286793e3c8b2b4e3219cbf3544b"),
    "E": ("vgg19_weights_tf_dim_ordering_tf_kernels.h5",
          f"{_KERAS_BASE}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
          "cbe5617147190e668d6c5d5026f83318"),
}
_KERAS_ACCURACY = {"D": (71.3, 90.1), "E": (71.3, 90.0)}
HUB_KINDS = ("torchvision", "timm")
KERAS_KINDS = ("paper", "keras_applications")
KINDS = configs.WEIGHT_KINDS  # (*KERAS_KINDS, *HUB_KINDS)
# The loader a file given for each kind needs (``pretrained.load_weights``); the Hub's files,
# fetched by name, are timm's whichever kind names them.
LAYOUTS = {"paper": "keras_applications", "keras_applications": "keras_applications",
           "torchvision": "torchvision", "timm": "timm"}
TORCH_BN_EPSILON = 1e-5  # PyTorch adds it to the variance (Keras 1e-3): its nets trained with it


class WeightsUnavailable(ValueError):
    """Published weights that cannot be had here and now: no such weights, offline without the
    file in the cache, a source that refuses, a file whose hash differs. The message names the
    file, the cache and the alternative (``KIND=PATH``)."""


class DownloadInterrupted(ConnectionError):
    """A download that broke off midway; nothing of it was kept or loaded, and running the same
    command again downloads it anew."""


@dataclasses.dataclass(frozen=True)
class Needs:
    """What published weights need of the net and its input, as their publisher trained and
    measured them: the input ``normalization`` the net is built with (``"paper"``: the mean RGB
    subtracted; ``"torchvision"``: mean/std), batch norm's ``bn_epsilon`` (None: Keras' own), the
    ``crop_size`` it reads (§2.1), the test scale Q it was measured at (both publishers resize
    the shorter side to 256 before the centre crop), and its ``num_classes`` classes, named by
    the list ``classes`` (``"imagenet2012"``: ILSVRC2012's 1,000 synsets in the order of our
    shards, slim's and tfds's)."""

    normalization: str
    bn_epsilon: float | None = None
    crop_size: int = configs.CROP_SIZE
    test_scale: int = 256
    num_classes: int = 1000
    classes: str = "imagenet2012"

    def test_scale_at(self, crop_size):
        """Q for crops of ``crop_size``: the publisher's Q scaled as the crop is."""
        return int(round(self.test_scale * crop_size / self.crop_size))


# Per kind: what a file of that kind needs, published by name or given as KIND=PATH.
NEEDS = {"paper": Needs("paper"), "keras_applications": Needs("paper"),
         "torchvision": Needs("torchvision", TORCH_BN_EPSILON),
         "timm": Needs("torchvision", TORCH_BN_EPSILON)}


@dataclasses.dataclass(frozen=True)
class Published:
    """One published weights file: the net it fits, the kinds that name it, where it is
    published (a Hub ``repository`` or Keras' ``url``), its size (bytes), the ImageNet
    top-1 / top-5 accuracy (%) its publisher measured, and what it needs (``needs``)."""

    config: str
    kinds: tuple
    repository: str | None
    url: str | None
    file: str
    md5: str | None
    size: int
    top1: float
    top5: float
    measured_by: str
    needs: Needs

    @property
    def source(self):
        return self.repository or self.url


@dataclasses.dataclass(frozen=True)
class Weights:
    """Weights as a command names them: a ``kind`` of ``KINDS`` (``--weights``, ``--init``), alone
    (the published file, by name) or with the ``path`` of a file in that kind's layout
    (``KIND=PATH``). ``vgg-train``'s ``--init`` takes the same shape for its own kinds (a random
    initialisation: ``auto``, ``gaussian``, ``glorot``; another net of ours: ``from_a=PATH``,
    ``model=PATH``); ``published`` says which.

    Once located (``pretrained.locate``), ``path`` is the file on this machine and ``layout``
    the loader it needs; for published weights, ``source`` (a Hub repository or a URL), ``file``,
    ``revision`` (a Hub commit), their hashes, and whether this call ``downloaded`` them."""

    kind: str
    path: str | None = None
    layout: str | None = None
    source: str | None = None
    file: str | None = None
    revision: str | None = None
    sha256: str | None = None
    md5: str | None = None
    downloaded: bool = False

    def __post_init__(self):
        if self.layout is None and self.kind in LAYOUTS:
            object.__setattr__(self, "layout", LAYOUTS[self.kind])

    def __str__(self):
        """As its flag writes it: ``timm``, ``timm=/weights/vgg16_bn.safetensors``."""
        return self.kind if self.path is None or self.fetched else f"{self.kind}={self.path}"

    @property
    def published(self):
        """Whether these are published weights (a kind of ``KINDS``), by name or as a file."""
        return self.kind in KINDS

    @property
    def fetched(self):
        """Whether these are the published file itself, found by name (not a file given)."""
        return self.file is not None

    @property
    def needs(self):
        """What the weights need of the net and its input (``Needs``), or None for kinds that
        are not published weights."""
        return NEEDS.get(self.kind)

    def describe(self):
        if not self.fetched:
            return self.source or str(self)
        revision = f" at revision {self.revision}" if self.revision else ""
        hashes = ", ".join(f"{name} {value}" for name, value in
                           (("sha256", self.sha256), ("md5", self.md5)) if value)
        return f"{self.source} {self.file}{revision} ({hashes})"

    def to_json(self):
        record = {"kind": self.kind, "source": self.source, "file": self.file,
                  "revision": self.revision, "sha256": self.sha256, "md5": self.md5,
                  "path": self.path}
        return {key: value for key, value in record.items() if value is not None}


def parse(text, flag="--weights", named=KINDS, with_file=KINDS):
    """The ``Weights`` a flag's ``text`` names: ``KIND`` (a kind of ``named``) or ``KIND=PATH``
    (a kind of ``with_file``). A ``Weights`` is returned as it is.

    Raises:
        ValueError: one line naming the forms that work.
    """
    if isinstance(text, Weights):
        return text
    kind, _, path = str(text).partition("=")
    if path and kind in with_file:
        return Weights(kind, path)
    if not path and kind in named and "=" not in str(text):
        return Weights(kind)
    forms = [*named, *(f"{kind}=PATH" for kind in with_file)]
    raise ValueError(f"{flag} must be one of {', '.join(forms)}; got {text!r}")


def published_weights(config=None):
    """Every published weights file, or those of ``config`` (any name ``resolve_config`` takes),
    in the order of Table 1."""
    found = []
    for name in configs.config_names():
        base = name.removesuffix(configs.BN_SUFFIX)
        if base in _TIMM_NAMES:
            suffix = "_bn" if name.endswith(configs.BN_SUFFIX) else ""
            _, top1, top5 = TORCHVISION[name]
            found.append(Published(name, HUB_KINDS, f"timm/{_TIMM_NAMES[base]}{suffix}.tv_in1k",
                                   None, HUB_FILE, None, _file_size(name), top1, top5,
                                   "torchvision", NEEDS["timm"]))
        if name in KERAS_FILES:
            file, url, md5 = KERAS_FILES[name]
            found.append(Published(name, KERAS_KINDS, None, url, file, md5, _file_size(name),
                                   *_KERAS_ACCURACY[name], "keras.applications", NEEDS["paper"]))
    if config is None:
        return found
    wanted = configs.variant_name(config)
    return [entry for entry in found if entry.config == wanted]


def find(config, kind):
    """The published file that ``kind`` names for ``config``.

    Raises:
        WeightsUnavailable: for a kind that names no file of ``config`` (one line saying which
            nets have weights of that kind).
    """
    if kind not in KINDS:
        raise WeightsUnavailable(f"published weights are one of {', '.join(KINDS)}; got {kind!r}")
    name = configs.variant_name(config)
    for entry in published_weights(name):
        if kind in entry.kinds:
            return entry
    having = sorted({e.config for e in published_weights() if kind in e.kinds},
                    key=configs.config_names().index)
    raise WeightsUnavailable(f"no {kind} weights are published for {name}: they exist for "
                             f"{', '.join(having)}")


def check(weights, config):
    """Refuses ``weights`` named alone (``KIND``) for a net that has no published file of that
    kind, reading no file.

    Raises:
        WeightsUnavailable: naming the nets that have weights of that kind.
    """
    if weights.published and weights.path is None:
        find(config, weights.kind)


def _file_size(config):
    """Bytes of the net's float32 weights (batch norm's moving statistics included): the size
    of its published file, but for a few kilobytes of header."""
    _, tokens, batch_norm = configs.resolve_config(config)
    floats, channels = 0, 3
    for token in tokens:
        layer = configs.parse_layer(token)
        if isinstance(layer, configs.Conv):
            floats += layer.kernel_size ** 2 * channels * layer.filters + layer.filters
            floats += 4 * layer.filters if batch_norm else 0
            channels = layer.filters
    side = configs.CROP_SIZE // 32  # five max-pools
    units = (channels * side * side, 4096, 4096, 1000)  # Table 1's classifier
    floats += sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(units))
    return 4 * floats
