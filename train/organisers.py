"""What the challenge files a submission follows have in common (ABAW's sample submission, train/abaw_sample.py;
OMG's CSV of a split, train/omg_table.py): read as text that may carry a byte-order mark, and recorded by hash."""
from __future__ import annotations

import hashlib
from pathlib import Path

from features.errors import BadInputError


def read_text(path: Path, what: str) -> str:
    """The file's text; one saved on Windows starts with a byte-order mark, which is not part of its header."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(path, f"cannot read the {what} ({type(e).__name__})", "check the --sample path") from None


def record(path: Path) -> dict:
    """Which file it was, for predict.json: its absolute path and the sha256 of its bytes."""
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
