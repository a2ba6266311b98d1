"""Upload part buffers: reused across parts, and handed to botocore over HTTPS as a file.

botocore copies a bytes-like body into an io.BytesIO before it adds the aws-chunked CRC32
trailer (HTTPS uploads, botocore/httpchecksum.py `_apply_request_trailer_checksum`); a
file-like body is read in chunks instead, and must then behave as a seekable file: botocore
measures it (`len` or seek/tell), reads it, and seeks back to retry.
"""

from __future__ import annotations

import io
import os

from kommunmoln.tier_a.transfer import _PartBody, _PartReader


def test_part_body_reads_seeks_and_releases_its_buffer():
    # GIVEN a 3 MiB part buffer wrapped as a file
    data = bytearray(os.urandom(3 * 1024 * 1024))
    body = _PartBody(data)
    # WHEN botocore-style reads happen: length, chunks, a seek back for a retry, readinto
    assert len(body) == len(data) and body.seekable() and body.readable()
    chunks = [body.read(1024 * 1024) for _ in range(4)]
    body.seek(0)
    again = bytearray(len(data))
    n = body.readinto(again)
    body.seek(-10, io.SEEK_END)
    tail = body.read()
    # THEN every read returns the buffer's bytes, in order, and nothing past its end
    assert b"".join(chunks) == bytes(data) and chunks[-1] == b""
    assert n == len(data) and again == data and tail == bytes(data[-10:]) and body.tell() == len(data)
    # AND after close the buffer is no longer exported: the pool may shorten it for a last part
    body.close()
    del data[10:]
    assert len(data) == 10


def test_part_reader_reuses_released_buffers_of_the_same_size():
    # GIVEN a reader over the frame engine's interface (readinto) that yields 20 bytes in all
    class Source:
        header = None

        def __init__(self) -> None:
            self.left = 20

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left)
            memoryview(buffer)[:n] = b"x" * n
            self.left -= n
            return n

    reader = _PartReader(Source())
    # WHEN a full part is released and the next part is cut, then the short last part
    first = reader.next_part(8)
    reader.release(first)
    second = reader.next_part(8)
    last = reader.next_part(8)
    # THEN the released buffer is filled again (no new allocation) and the last part is shorter
    assert second is first and bytes(second) == b"x" * 8
    assert bytes(last) == b"x" * 4 and reader.total == 20
