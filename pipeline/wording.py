"""Counts in messages: "1 clip", not "1 clips". A leaf module (no imports), so listers and readers alike can use
it without an import cycle through pipeline.store."""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, singular for one ("1 clip", "2 clips"; ``plural`` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
