"""Upload part buffers: reused across parts (a fresh part-sized bytearray per part costs page faults).

Each part goes to botocore as the bytearray itself, with its CRC32 in a header
(test_part_checksums.py), so no aws-chunked wrapper copies it.
"""

from __future__ import annotations

from kommunmoln.tier_a.transfer import _PartReader


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
