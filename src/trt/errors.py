"""The one root of TRT's own exceptions.

Every error TRT raises on purpose derives from `TrtError`, so a caller at a boundary (the
dispatcher's error handler, a worker loop, the CLI) can tell "TRT refused or could not do
this, for a reason it named" from a bug. The subclasses live where their concern does
(`LedgerError` in billing, `KieError` in kie, ...); this module holds only the root and the
errors no single package owns.
"""

from __future__ import annotations


class TrtError(Exception):
    """An error TRT raises on purpose, with a reason a caller can act on."""


class MediaFetchError(TrtError):
    """A user's file could not be used: not fetched from Telegram (too big, gone; code
    `input`) or not what the model takes (an empty file, a "photo" that is no image; code
    `input_format`, and `input_video` / `input_audio` for the other kinds)."""

    def __init__(self, message: str, code: str = "input") -> None:
        super().__init__(message)
        self.code = code
