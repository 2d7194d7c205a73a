"""Video ids become folders under the cache: which ids are safe, checked where ids are made and where they are used.

Ids come from dataset files (OMG's CSV columns `video` and `utterance`, Aff-Wild2 annotation names, video file
names). An id such as `../../x`, one with a path separator, an empty one or one starting with '.' would write
outside the cache (or into a hidden folder beside the groups, such as `.staging`). The listers check every id
they make and turn a bad one into a failed entry naming the file and line (`manifest.VideoEntry.problem`);
`store.video_dir` refuses a bad id whatever made it (defence in depth).
"""
from __future__ import annotations

import unicodedata

MAX_BYTES = 200   # a file name holds 255 bytes; staging folders add a suffix of 13 + 4


def id_problem(text: str) -> str | None:
    """Why `text` cannot be a video id (a folder name under the cache), or None when it can."""
    if not isinstance(text, str):
        return f"the id {text!r} is not text"
    if not text.strip():
        return "the id is empty"
    if "/" in text or "\\" in text:
        return f"the id {text!r} holds a path separator"
    if text.startswith("."):
        return f"the id {text!r} starts with '.' (a hidden name, or a path up: '..')"
    if any(unicodedata.category(c) == "Cc" for c in text):
        return f"the id {text!r} holds a control character"
    if any(unicodedata.category(c) == "Cf" for c in text):   # it would look like, but not be, the video's name
        return f"the id {text!r} holds an invisible format character (e.g. a byte-order mark, a zero-width space)"
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        return f"the id {text[:40]!r}... is longer than {MAX_BYTES} bytes"
    return None


def stand_in(file_name: str, lineno: int | None = None) -> str:
    """A safe id for a failed entry whose own id is bad (its index row): names the file (and line) it came from."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in file_name)[:100]
    return f"invalid-id_{name}" + (f"_line{lineno}" if lineno is not None else "")
