"""The staged tail of a local store: the append-only, self-checking log that commits each batch
before it is compacted into whole Zarr chunks (see :class:`bigalign.io.ActivationWriter`)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np



# --------------------------------------------------------------------------- #
# the staged tail of a local store
# --------------------------------------------------------------------------- #
#
# A local writer logs every appended batch, raw, to a small append-only file in
# the store's ``bigalign_tail`` folder (one file per stretch of ``chunk_rows``
# rows, one self-checking record per batch and stretch): once the record is in
# the operating system (and, with durability="power", fsynced) the batch is
# committed.  Whenever a stretch is complete, its rows are written to the Zarr
# arrays as whole chunks (compressed once), recorded as compacted in the group
# metadata (fsynced first with durability="power"), and its log file is deleted.  ``close``
# compacts the last, partial stretch too, so a closed store is a plain Zarr
# group; a store whose writer died is read as its compacted rows plus the whole
# batches of its log.

_TAIL = "bigalign_tail"


_LOG_MAGIC = b"BALOG001"


#: magic, header length, payload length, crc32 of the header, crc32 of the payload
_LOG_PREFIX = struct.Struct("<8sIQII")


def _read_log(path: Path) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """The intact records of one log file, in order: reading stops at the first torn or unwritten one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    pos = 0
    view = memoryview(data)
    while pos + _LOG_PREFIX.size <= len(data):
        magic, hlen, plen, hcrc, pcrc = _LOG_PREFIX.unpack_from(data, pos)
        h0 = pos + _LOG_PREFIX.size
        p0, end = h0 + hlen, h0 + hlen + plen
        if magic != _LOG_MAGIC or end > len(data) or zlib.crc32(view[h0:p0]) != hcrc:
            break
        if zlib.crc32(view[p0:end]) != pcrc:
            break
        head = json.loads(bytes(view[h0:p0]))
        arrays, off = {}, p0
        for name, dt, shape in head["sections"]:
            dtype = np.dtype(dt)
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=off).reshape(shape)
            off += count * dtype.itemsize
        out.append((head, arrays))
        pos = end
    return out


def _load_tail(root: Path, compacted: int) -> tuple[int, dict[str, np.ndarray]]:
    """Rows committed in the log beyond ``compacted``: (count, {array name: rows}).

    A batch counts when every one of its records is intact and it continues the
    rows before it; reading stops at the first batch that does not.
    """
    folder = root / _TAIL
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".log")
    except (FileNotFoundError, NotADirectoryError):
        return 0, {}
    records = [rec for f in files for rec in _read_log(f) if rec[0]["start"] >= compacted]
    # rows of each batch in intact records; the batch's rows before `compacted` are in the arrays already
    covered: dict[int, int] = {}
    for head, _ in records:
        covered[head["batch"]] = covered.get(head["batch"], 0) + head["rows"]
    records.sort(key=lambda r: r[0]["start"])
    pos, taken = compacted, []
    for head, arrays in records:
        whole = head["bstop"] - max(head["bstart"], compacted)
        if head["start"] != pos or covered[head["batch"]] != whole:
            break
        taken.append(arrays)
        pos += head["rows"]
    if not taken:
        return 0, {}
    return pos - compacted, {name: np.concatenate([a[name] for a in taken]) for name in taken[0]}


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Log:
    """One open log file of the staged tail."""

    def __init__(self, path: Path, size: int, sync: bool):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset = 0
        self.on_disk = sync  # whether some of its records were fsynced (so its rows may go only once on disk elsewhere)
        self.dirty = False  # whether records were written since the last fsync
        if size > 0 and hasattr(os, "posix_fallocate"):
            try:  # allocated up front, a record's fdatasync need not journal a new file size
                os.posix_fallocate(self.fd, 0, size)
            except OSError:
                pass
        if sync:
            os.fsync(self.fd)
            _fsync_path(path.parent)

    def write(self, head: dict, sections: Sequence[tuple[str, np.ndarray]]) -> None:
        head = dict(head, sections=[[n, a.dtype.str, list(a.shape)] for n, a in sections])
        header = json.dumps(head).encode()
        buffers = [memoryview(np.ascontiguousarray(a)).cast("B") for _, a in sections]
        crc = 0
        for b in buffers:
            crc = zlib.crc32(b, crc)
        plen = sum(b.nbytes for b in buffers)
        prefix = _LOG_PREFIX.pack(_LOG_MAGIC, len(header), plen, zlib.crc32(header), crc)
        chunks: list[Any] = [prefix, header, *buffers]
        total = len(prefix) + len(header) + plen
        written = os.pwritev(self.fd, chunks, self.offset) if hasattr(os, "pwritev") else -1
        if written != total:  # short write (or no pwritev): write the rest plainly
            data = b"".join(bytes(c) for c in chunks)
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            view = memoryview(data)
            done = 0
            while done < total:
                done += os.write(self.fd, view[done:])
        self.offset += total
        self.dirty = True

    def sync(self) -> None:
        (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self.fd)
        self.on_disk, self.dirty = True, False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
