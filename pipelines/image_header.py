"""What an image's header declares, read from its bytes without decoding a pixel: its format and
its size.

One description of the formats: in Python, the JPEG frame header, from which the converter
decides whether to keep a JPEG's bytes; as TensorFlow ops, every format's size, for the training
input
(the crop window needs the image's size before anything is decoded) and for the export's
request checks (an image whose header declares too many pixels is refused before decoding).

Formats: JPEG (size in the frame header, found by walking the markers), PNG (IHDR), GIF (the
logical screen) and BMP (BITMAPINFOHEADER, or OS/2's BITMAPCOREHEADER) — the four that
``tf.io.decode_image`` reads.

TensorFlow is imported by the ops only: the converter's main process reads headers without
paying for it.
"""

import dataclasses

JPEG, PNG, GIF, BMP = "JPEG", "PNG", "GIF", "BMP"
KINDS = (JPEG, PNG, GIF, BMP)  # the kind codes of the TensorFlow ops are positions in this
UNKNOWN = -1
# Leading bytes of each format (GIF has two versions).
MAGIC = {JPEG: (b"\xff\xd8\xff",), PNG: (b"\x89PNG\r\n\x1a\n",), GIF: (b"GIF87a", b"GIF89a"),
         BMP: (b"BM",)}
# Where the size is: (offset, bytes, byte order) of height and width. PNG: IHDR; GIF: the
# logical screen; BMP: BITMAPINFOHEADER (signed; height < 0 means top-down rows), or OS/2's
# BITMAPCOREHEADER (unsigned 16-bit), told apart by the header's length at byte 14.
SIZE_FIELDS = {PNG: ((20, 4, "big"), (16, 4, "big")),
               GIF: ((8, 2, "little"), (6, 2, "little")),
               BMP: ((22, 4, "little"), (18, 4, "little"))}
BMP_CORE_FIELDS = ((20, 2, "little"), (18, 2, "little"))
BMP_HEADER_LENGTH = (14, 4, "little")
BMP_CORE_HEADER = 12  # the length of a BITMAPCOREHEADER
# Bytes a header needs before its size fields can be read (JPEG: found by walking markers).
HEADER_BYTES = {kind: max(o + n for o, n, _ in fields) for kind, fields in SIZE_FIELDS.items()}
_PADDING = 32  # zero bytes appended before slicing fixed offsets: more than any field's end

_BASELINE_FRAMES = (0xC0, 0xC1)  # SOF0 baseline, SOF1 extended sequential (both Huffman)
_NO_LENGTH_MARKERS = (0xD8, 0x01, *range(0xD0, 0xD8))  # SOI, TEM, RST0-7
_NOT_FRAMES = (0xC4, 0xC8, 0xCC)  # DHT, JPG, DAC share the SOF marker range


@dataclasses.dataclass(frozen=True)
class JpegFrame:
    """A JPEG's frame header: the SOF marker byte (0xC0 baseline, 0xC2 progressive, ...), the
    sample precision and the declared size."""

    marker: int
    precision: int | None
    height: int | None
    width: int | None

    @property
    def baseline(self):
        """Whether ``tf.io.decode_jpeg`` and ``decode_and_crop_jpeg`` read it as stored."""
        return self.marker in _BASELINE_FRAMES and self.precision == 8


def kind_of(data):
    """The format of ``data`` from its leading bytes (one of ``KINDS``), or None."""
    for kind, magics in MAGIC.items():
        if any(data.startswith(magic) for magic in magics):
            return kind
    return None


def jpeg_frame(data):
    """Returns the ``JpegFrame`` of JPEG bytes, or None if no frame header is found."""
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _NO_LENGTH_MARKERS:
            position += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_FRAMES:
            fields = data[position + 4 : position + 9]
            if len(fields) < 5:
                return JpegFrame(marker, fields[0] if fields else None, None, None)
            return JpegFrame(marker, fields[0], int.from_bytes(fields[1:3], "big"),
                             int.from_bytes(fields[3:5], "big"))
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def kind_op(encoded):
    """TensorFlow: the position of ``encoded``'s format in ``KINDS``, or ``UNKNOWN`` (int32)."""
    import tensorflow as tf

    kind = tf.constant(UNKNOWN)
    for code, name in reversed(list(enumerate(KINDS))):
        for magic in MAGIC[name]:
            kind = tf.where(tf.strings.substr(encoded, 0, len(magic)) == magic, code, kind)
    return kind


JPEG_TAIL = 1024  # bytes at a JPEG's end in which its end marker must stand (padding allowed)


def jpeg_ended_op(encoded):
    """TensorFlow: whether a JPEG's end-of-image marker (FF D9) stands in its last
    ``JPEG_TAIL`` bytes. A JPEG cut short lacks it (its decoder's error would name no image of
    a batch); writers that pad after it stay within the tail."""
    import tensorflow as tf

    length = tf.strings.length(encoded)
    start = tf.maximum(length - JPEG_TAIL, 0)
    tail = tf.strings.bytes_split(tf.strings.substr(encoded, start, length - start))
    return tf.reduce_any(tf.logical_and(tail[:-1] == b"\xff", tail[1:] == b"\xd9"))


def header_bytes_op(kind):
    """TensorFlow: the bytes a header of ``kind`` needs (0 for JPEG and unknown kinds, whose
    decoders judge truncation themselves)."""
    import tensorflow as tf

    table = tf.constant([HEADER_BYTES.get(name, 0) for name in KINDS], tf.int64)
    return tf.gather(table, tf.maximum(kind, 0)) * tf.cast(kind >= 0, tf.int64)


def shape_op(encoded, kind):
    """TensorFlow: ``[height, width]`` (int64) that the header of ``encoded`` declares.

    Args:
        encoded: a scalar string of image bytes.
        kind: ``kind_op(encoded)``; must not be ``UNKNOWN``. For PNG, GIF and BMP, a header cut
            short (``tf.strings.length(encoded) < header_bytes_op(kind)``) reads as zeros: check
            the length first where that matters.
    """
    import tensorflow as tf

    data = tf.strings.join([encoded, tf.constant(b"\0" * _PADDING)])  # fixed offsets stay valid

    def fields(kind_name):
        return lambda: tf.stack([_read_op(data, field) for field in SIZE_FIELDS[kind_name]])

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    def bmp():
        core = tf.equal(_read_op(data, BMP_HEADER_LENGTH), BMP_CORE_HEADER)
        height, width = (tf.where(core, _read_op(data, c), _read_op(data, f, signed=True))
                         for c, f in zip(BMP_CORE_FIELDS, SIZE_FIELDS[BMP], strict=True))
        return tf.stack([tf.abs(height), width])

    return tf.switch_case(tf.maximum(kind, 0), [jpeg, fields(PNG), fields(GIF), bmp])


def _read_op(data, field, signed=False):
    import tensorflow as tf

    offset, size, order = field
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int64)
    if order == "big":
        raw = tf.reverse(raw, axis=[0])
    value = tf.reduce_sum(raw * tf.constant([256**i for i in range(size)], tf.int64))
    if signed:
        value = tf.where(value >= 2 ** (8 * size - 1), value - 2 ** (8 * size), value)
    return value
