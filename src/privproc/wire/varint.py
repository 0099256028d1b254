"""QUIC variable-length integers (RFC 9000 section 16).

The two high bits of the first byte give the encoded length (1, 2, 4 or 8 bytes); the
remaining 6, 14, 30 or 62 bits hold the value in network byte order. Encoding always
uses the shortest form; decoding accepts any length, as RFC 9292 requires.
"""

from privproc.wire.errors import BinaryHttpError

__all__ = ["MAX_VARINT", "decode_varint", "encode_varint", "varint_size"]

MAX_VARINT = (1 << 62) - 1
"""The largest value a variable-length integer can carry."""


def varint_size(n: int) -> int:
    """Return how many bytes :func:`encode_varint` uses for ``n``."""
    if n < 0 or n > MAX_VARINT:
        raise BinaryHttpError(f"cannot encode {n} as a varint: must be in 0..2**62-1")
    if n < 1 << 6:
        return 1
    if n < 1 << 14:
        return 2
    if n < 1 << 30:
        return 4
    return 8


def encode_varint(n: int) -> bytes:
    """Encode ``n`` in the minimal number of bytes."""
    size = varint_size(n)
    if size == 1:
        return bytes((n,))
    prefix = {2: 0x4000, 4: 0x8000_0000, 8: 0xC000_0000_0000_0000}[size]
    return (prefix | n).to_bytes(size, "big")


def decode_varint(buf: bytes | bytearray | memoryview, offset: int) -> tuple[int, int]:
    """Decode the varint starting at ``offset``; return ``(value, offset_after_it)``.

    ``buf`` must be byte-addressed (a ``memoryview`` of format ``B``). Raises
    :class:`BinaryHttpError` if the varint runs past the end of ``buf``.
    """
    end = len(buf)
    if offset < 0 or offset >= end:
        raise BinaryHttpError(
            f"truncated varint at offset {offset}: expected at least 1 byte, "
            f"input is {end} bytes long"
        )
    first = buf[offset]
    size = 1 << (first >> 6)
    if size == 1:
        return first, offset + 1
    stop = offset + size
    if stop > end:
        raise BinaryHttpError(
            f"truncated varint at offset {offset}: prefix 0x{first:02x} announces "
            f"{size} bytes, only {end - offset} left"
        )
    value = int.from_bytes(buf[offset:stop], "big") & ((1 << (8 * size - 2)) - 1)
    return value, stop
