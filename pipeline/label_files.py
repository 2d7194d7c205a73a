"""Where a video's labels were read from, and whether those files changed since: the group records each label file
(and OMG's label table) with the sha256 of its contents, so readers can refuse labels whose files were edited after
extraction, and an unlabelled entry records where its labels would be, so their release is noticed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from pipeline import arrays
from pipeline.cache_layout import fingerprint


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def label_source(files: dict, video_labels) -> list:
    """What a labels array is made from: each label file's role and the sha256 of its contents, and the video-level
    labels. Contents, not path and mtime: a dataset root moved or copied (laptop to cluster) holds the same labels,
    which must not be read again nor change every run's identity; an edit that keeps size and mtime is still seen."""
    return [sorted((role, _sha256(p)) for role, p in files.items() if Path(p).is_file()), video_labels]


def labels_fingerprint(files: dict, video_labels) -> str:
    """The fingerprint of a labels array made from these label files {role: path} and video-level labels."""
    return fingerprint("labels", arrays.KINDS["labels"].version, label_source(files, video_labels))


def labelled(attrs) -> bool | None:
    """Whether a video came with labels (label files, or OMG's table): False for an unlabelled entry (a test list's),
    None when its group does not record it (made before the record). Training never reads an unlabelled video, so
    a failed or stale one must not stop it (train.videos.select)."""
    if "label_files" not in attrs:
        return None
    return bool(attrs.get("label_files")) or attrs.get("video_labels") is not None


def known_unlabelled(row: dict) -> bool:
    """An index row that says its video came without labels (``labelled`` False); not recorded (None, NA) is not."""
    flag = row.get("labelled")
    return flag is not None and flag is not pd.NA and not bool(flag)


def label_record(entry) -> dict[str, dict]:
    """A group's attrs["label_files"]: each file a video's labels were read from, {role: {"path": absolute path,
    "sha256": of its contents}}: its label files, and OMG's label table (role "table"), for readers to compare."""
    files = {**entry.label_files, **({"table": entry.label_table} if entry.label_table else {})}
    return {role: {"path": str(Path(p).resolve()), "sha256": _sha256(p)} for role, p in files.items()
            if Path(p).is_file()}


def absent_labels(entry) -> list[str]:
    """A group's attrs["labels_absent"]: where an unlabelled entry's labels would be (VideoEntry.labels_absent)."""
    return [str(Path(p).resolve()) for p in entry.labels_absent]


def appeared_labels(attrs) -> list[str]:
    """The files a group recorded as holding no labels for it yet (attrs labels_absent) that are there now."""
    return sorted(p for p in attrs.get("labels_absent") or [] if Path(p).is_file())


def changed_labels(attrs) -> str | None:
    """Why a group's cached labels may no longer be what the files they were read from hold, or None.

    A label file corrected after extraction (annotations are re-released) would otherwise leave training on the old
    values without a word: the labels array is fingerprinted, but no reader looked at the files again. None when
    there is nothing here to compare: a group made before the files were recorded, or a cache moved without its
    dataset (the files' contents, in the labels' fingerprint, still say which labels the numbers came from).
    """
    if appeared := appeared_labels(attrs):   # cached as unlabelled; its labels were released since
        return (f"it was cached without labels, and labels for it have appeared since: {', '.join(appeared)}; "
                "`features` reads them")
    files = [r for r in dict(attrs.get("label_files") or {}).values() if isinstance(r, dict)]
    if not files or not all(Path(r["path"]).is_file() for r in files):
        return None
    changed = [r["path"] for r in files if _sha256(r["path"]) != r["sha256"]]
    return f"labels were cached from files that have changed since: {', '.join(sorted(changed))}" if changed else None
