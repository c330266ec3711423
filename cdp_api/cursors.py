"""Opaque pagination cursors: URL-safe base64 of a small JSON list, checked on the way back in.

A cursor is the position after a page's last row (keyset pagination), so a page costs an index
range scan however deep it is. Anything that is not a cursor the API made is a `CursorError` (400).
"""

import base64
import binascii
import json

MAX_CURSOR_LENGTH = 512


class CursorError(ValueError):
    """A cursor the API did not make."""


def encode(*position: str | int | None) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position), separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str, *kinds: type) -> list:
    """The cursor's position, one value per kind (str or int; None allowed for str)."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError("cursor too long")
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError("malformed cursor") from None
    if not isinstance(position, list) or len(position) != len(kinds):
        raise CursorError("malformed cursor")
    for value, kind in zip(position, kinds, strict=True):
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000):
            raise CursorError("malformed cursor")
        if kind is str and not (value is None or (isinstance(value, str) and "\x00" not in value)):
            raise CursorError("malformed cursor")
    return position
