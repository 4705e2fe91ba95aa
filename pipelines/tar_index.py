"""The members of a tar archive read in place, never extracted: the official ImageNet train tar
holds one tar per synset, and the converter reads each image by its byte offset.

Readable members are kept whatever else is wrong with an archive; links, devices, corrupt
stretches and members cut short are reported with their reason.
"""

import io
import tarfile

_BLOCK = tarfile.BLOCKSIZE


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``base`` of an open file: an inner tar in place."""

    def __init__(self, file, base, size):
        super().__init__()
        self._file, self._base, self._size, self._position = file, base, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, position, whence=io.SEEK_SET):
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, start + position)
        return self._position

    def readinto(self, buffer):
        count = max(0, min(len(buffer), self._size - self._position))
        self._file.seek(self._base + self._position)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def scan_tar(file, base, size, where, report):
    """Returns ``[(member, absolute data offset)]`` of the regular files of a tar in place.

    Readable members are kept whatever else is wrong with the archive; links, devices, corrupt
    stretches and members cut short are passed to ``report(path, reason)``.
    """
    window = _Window(file, base, size)
    try:
        # ignore_zeros: go on past a corrupt header to the members after it.
        tar = tarfile.open(fileobj=window, mode="r:", ignore_zeros=True)
    except tarfile.TarError as error:
        report(where, f"not a readable tar archive: {error}")
        return []
    members, expected = [], 0
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, OSError, UnicodeDecodeError) as error:
            report(where, f"corrupt tar archive after byte {expected}: {error}; later members "
                   "lost")
            break
        if member is None:
            break
        _check_gap(window, expected, member.offset, where, report)
        expected = member.offset_data + -(-member.size // _BLOCK) * _BLOCK
        name = f"{where}/{member.name}" if where else member.name
        if member.isdir():
            continue
        if member.issym() or member.islnk():
            report(name, f"link member (to {member.linkname!r}), not a file")
        elif member.ischr() or member.isblk() or member.isfifo():
            report(name, "device or FIFO member, not a file")
        elif not member.isreg() or member.issparse():
            report(name, "not a regular file member")
        elif member.offset_data + member.size > size:
            present = max(0, size - member.offset_data)
            report(name, f"truncated archive member: declares {member.size} bytes, {present} "
                   "present")
        else:
            members.append((member, base + member.offset_data))
    _check_gap(window, expected, size, where, report, at_end=True)
    return members


def _check_gap(window, start, end, where, report, at_end=False):
    """Bytes between members must be zero padding; anything else was a corrupt stretch."""
    if end <= start:
        return
    window.seek(start)
    data = window.read(min(end - start, 1 << 20))
    if data.strip(b"\0"):
        what = "trailing data" if at_end else "corrupt data"
        report(where or "(archive)", f"{what} at bytes {start}–{end} of the tar skipped "
               "(members there, if any, lost)")
