"""What the converter does with one image's bytes: keep, repair or skip, decided from the bytes.

Every stored image must be a baseline RGB JPEG that ``tf.io.decode_jpeg(channels=3)`` and
``tf.image.decode_and_crop_jpeg`` read. A good one is stored byte-for-byte; anything else that is
an image (grayscale or CMYK JPEGs, progressive JPEGs, PNG/GIF/BMP data, whatever its file name
says) is re-encoded; anything that is not a complete image is refused with a reason.
"""

import contextlib
import dataclasses
import io
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from pipelines import image_header

# Re-encoding without chroma subsampling at quality 98 keeps the mean absolute error under
# 2 grey levels even on grainy photos; 4:2:0 costs 4–5 levels at any quality (measured on the
# generator's grainy photos: tests/test_images.py holds the bound).
REPAIR_QUALITY = 98
REPAIR_SUBSAMPLING = 0  # 4:4:4
# PIL's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS): 0.25 GiB of 24-bit pixels.
DEFAULT_MAX_PIXELS = 89_478_485

EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 is upright as stored
_ORIENTATIONS = {2: "mirrored", 3: "rotated 180°", 4: "flipped", 5: "mirrored and rotated",
                 6: "rotated 90°", 7: "flipped and rotated", 8: "rotated 270°"}
_FRAME_NAMES = {0xC2: "progressive", 0xC3: "lossless", 0xC5: "hierarchical",
                0xC6: "hierarchical progressive", 0xC7: "hierarchical lossless",
                0xC9: "arithmetic-coded", 0xCA: "arithmetic progressive",
                0xCB: "arithmetic lossless", 0xCD: "arithmetic hierarchical",
                0xCE: "arithmetic hierarchical progressive",
                0xCF: "arithmetic hierarchical lossless"}


class BadImage(Exception):
    """The bytes are not a usable image; the message is the reason recorded in the manifest."""


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """An image ready to store: baseline RGB JPEG bytes and their size."""

    jpeg: bytes
    height: int
    width: int
    repair: str | None = None  # why it was re-encoded, None if stored as given
    resized_from: tuple | None = None  # (height, width) before --max_shorter_side


def prepare_image(data, *, max_pixels=DEFAULT_MAX_PIXELS, max_shorter_side=None,
                  apply_orientation=False):
    """Returns the bytes to store for one input image.

    Args:
        data: the file's bytes.
        max_pixels: images whose header declares more pixels are refused before decoding.
        max_shorter_side: if set, larger images are downscaled to this shorter side.
        apply_orientation: turn an image whose EXIF orientation is not 1 upright (as a
            photo viewer shows it) and re-encode it; TensorFlow's decoders ignore EXIF.

    Raises:
        BadImage: empty, not an image, truncated or corrupt, or a decompression bomb.
    """
    if not data:
        raise BadImage("empty file")
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb: header declares {width}x{height} = "
                       f"{width * height:,} pixels > max_pixels {max_pixels:,}")
    if width < 1 or height < 1:
        raise BadImage(f"image has no pixels ({width}x{height})")
    repair = _repair_reason(image, data)
    orientation = _orientation(image) if apply_orientation else None
    if orientation:
        turned = f"EXIF orientation {orientation} applied ({_ORIENTATIONS[orientation]})"
        repair = f"{repair}; {turned}" if repair else turned
    downscale = bool(max_shorter_side) and min(width, height) > max_shorter_side
    if not repair and not downscale:
        # The bytes are kept, so the pixels are not needed, only proof that the whole
        # bitstream decodes. libjpeg's 1/8-scale decode still entropy-decodes every
        # coefficient (where truncation and corruption show) but skips the IDCT, upsampling
        # and colour conversion: ~30% faster than a full decode on photos.
        image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()  # truncated or corrupt data fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"truncated or corrupt {image.format} data: {error}") from None
    if orientation:
        image = ImageOps.exif_transpose(image)
        width, height = image.size
    resized_from = None
    if downscale:
        resized_from = (height, width)
        image = _downscale(_to_rgb(image), max_shorter_side)
        data = encode_jpeg(image)
        width, height = image.size
    elif repair:
        data = encode_jpeg(_to_rgb(image))
    return PreparedImage(data, height, width, repair, resized_from)


def encode_jpeg(image):
    """Encodes an RGB PIL image as a baseline JPEG with the repair settings."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=REPAIR_QUALITY, subsampling=REPAIR_SUBSAMPLING,
               progressive=False, optimize=False)
    return buffer.getvalue()


@contextlib.contextmanager
def _pil_bomb_check_off():
    # prepare_image checks max_pixels itself, from the header; PIL's fixed limit would
    # override the user's --max_pixels.
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _open(data):
    with _pil_bomb_check_off():
        try:
            image = Image.open(io.BytesIO(data))
            image.size  # noqa: B018 - the header is parsed by now
        except Image.UnidentifiedImageError:
            raise BadImage(f"not an image (unrecognised data, starts {data[:8]!r})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise BadImage(f"unreadable image header: {error}") from None
    return image


def _orientation(image):
    """The EXIF orientation (2..8) of an image not stored upright, or None."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, TypeError):
        return None  # unreadable EXIF: the pixels as stored
    return value if value in _ORIENTATIONS else None


def _repair_reason(image, data):
    """Returns why the image must be re-encoded, or None if it is a good baseline RGB JPEG."""
    if image.format in ("JPEG", "MPO"):
        frame = image_header.jpeg_frame(data)
        if image.mode == "CMYK":
            return "CMYK JPEG converted to RGB"
        if image.mode in ("L", "LA", "I", "I;16"):
            return "grayscale JPEG converted to RGB"
        if image.mode != "RGB":
            return f"{image.mode} JPEG converted to RGB"
        if frame is None or not frame.baseline:
            kind = _FRAME_NAMES.get(frame and frame.marker, "unusual")
            return f"{kind} JPEG re-encoded as baseline"
        return None
    return f"{image.format} ({image.mode}) data re-encoded as RGB JPEG"


def _to_rgb(image):
    """Converts any PIL mode to RGB: alpha composited on white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's convert("L") clips 16-bit values instead of scaling them.
        pixels = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((pixels >> 8 if pixels.max() > 255 else pixels).astype(np.uint8))
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _downscale(image, shorter_side):
    width, height = image.size
    scale = shorter_side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
