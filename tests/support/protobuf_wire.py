"""Protocol-buffer wire encoding for test inputs (SentencePiece .model files and the like):
a varint, and one field of a message (bytes: length-delimited, float: fixed32, int: varint).
Shared by tests/fuzz/make_corpus.py and tests/hostile/make_cases.py."""
import struct


def varint(v):
    out = b""
    while True:
        out += bytes([(v & 0x7F) | (0x80 if v > 0x7F else 0)])
        v >>= 7
        if not v:
            return out


def field(num, value):
    if isinstance(value, bytes):
        return varint(num << 3 | 2) + varint(len(value)) + value
    if isinstance(value, float):
        return varint(num << 3 | 5) + struct.pack("<f", value)
    return varint(num << 3) + varint(value)
