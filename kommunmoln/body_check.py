"""Cheap checks on the bytes after a well-formed ESDK header: they catch honest mistakes.

A hand-built header followed by plaintext passes the header check. These two checks catch
the accidental cases (a tool that wrote a header and then the file, a truncated upload);
they prove nothing against a writer who forges a message on purpose, who can always make
the size fit and the body random (docs/use-case-1.md says so).

1. The object's size must be possible for the header's framing. AWS Encryption SDK message
   format (Encryption SDK specification, "Message Body" and "Message Footer"): a regular
   frame is sequence number 4 + IV 12 + frame-length content + tag 16 bytes; the final
   frame adds an end marker 4 and a content length 4 and holds 0..frame-length bytes; a
   non-framed body is IV 12 + content length 8 + content + tag 16; suites with ECDSA
   signatures end in a footer of a 2-byte length and the DER signature (102-104 bytes for
   P-384, rarely shorter).
2. The body bytes already read must look random: AES-GCM ciphertext does; text, office
   documents and most file formats do not (compressed formats do: not caught).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

FRAMING_MISMATCH = "size-does-not-match-framing"
BODY_NOT_RANDOM = "body-not-random"
MIN_RANDOMNESS_SAMPLE = 512  # body bytes needed before the entropy estimate means anything
_NON_FRAMED = 0x01
_SIGNED_SUITES = frozenset({0x0578, 0x0178, 0x0214, 0x0346, 0x0378})  # suites with an ECDSA footer
# A DER-encoded P-384 ECDSA signature is 102-104 bytes (shorter only when r or s has leading
# zero bytes, about once in 2^8 per value): allow 96-104 behind the 2-byte length.
_MAX_FOOTER = 2 + 104
_MIN_FOOTER = 2 + 96


def body_problems(header: Any, head: bytes, total_size: int) -> list[str]:
    """Problems of the body after `header` (empty when both checks pass). `head`: the bytes read."""
    problems = []
    if not size_fits_framing(header, total_size):
        problems.append(
            f"{FRAMING_MISMATCH}: {total_size} bytes cannot be an ESDK message with this header "
            f"(content type {header.content_type}, frame length {header.frame_length})"
        )
    sample = head[header.total_length + 16 :]  # skip the first frame's sequence number and IV
    if len(sample) >= MIN_RANDOMNESS_SAMPLE:
        entropy = byte_entropy(sample)
        if entropy < entropy_threshold(len(sample)):
            problems.append(
                f"{BODY_NOT_RANDOM}: the {len(sample)} body bytes read have {entropy:.2f} bits of entropy per byte; "
                "ciphertext has close to 8"
            )
    return problems


def byte_entropy(data: bytes) -> float:
    """Empirical Shannon entropy in bits per byte."""
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


def entropy_threshold(sample_size: int) -> float:
    """The line below which a sample is not ciphertext.

    The empirical entropy of n uniform bytes falls short of 8 by about 255 / (2 n ln 2)
    (Miller-Madow bias); one further bit of margin keeps ciphertext far above the line while
    text (about 4-5 bits per byte) falls well below it.
    """
    return 8.0 - 255 / (2 * sample_size * math.log(2)) - 1.0


def size_fits_framing(header: Any, total_size: int) -> bool:
    """Whether an ESDK message with this header can be `total_size` bytes long."""
    footers = range(_MIN_FOOTER, _MAX_FOOTER + 1) if header.algorithm_id in _SIGNED_SUITES else (0,)
    for footer in footers:
        body = total_size - header.total_length - footer
        if header.content_type == _NON_FRAMED:
            if body >= 12 + 8 + 16:
                return True
            continue
        final_overhead = 4 + 4 + 12 + 4 + 16
        if body < final_overhead:
            continue
        regular = 4 + 12 + header.frame_length + 16
        # After n regular frames, the final frame holds 0..frame_length bytes of content.
        if (body - final_overhead) % regular <= header.frame_length:
            return True
    return False
