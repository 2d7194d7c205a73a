"""What a cached group was made from (its video file, its OpenFace CSV), identified by contents, not by mtime.

A copy of a dataset (`cp -r` without -p, rsync without -t, a SLURM node's scratch, a git-annex or DVC checkout) gives
every file a new mtime although not a byte changed; an identity holding the mtime re-extracted the whole dataset
after such a copy, and changed every training run's identity. A replaced file that kept its size and mtime
(`touch -r old new`) went unseen. So identities follow the bytes:

- a video: its size and the sha256 of its first and last MiB (with the size). Cheap: 2 MiB read per video on every
  `features` run, where a full hash of a multi-GB dataset would take longer than the plan it guards. It misses an
  edit of the same size confined to the middle of the file, which is rare for videos: a re-encode or a cut changes
  the size and the container's header (at the head) or index (at the tail).
- an OpenFace CSV: its size and the sha256 of the whole file. Text, where a same-size edit in the middle (one
  success flag or landmark value corrected) is plausible, and stale faces would go unseen. Not free: a
  FeatureExtraction CSV holds about 4.9 kB a frame, so Aff-Wild2's are some 14 GB, hashed at about 1.3 GB/s warm
  (bench/identity.py): some 10 s a `--faces openface` run, more from a cold disk; chosen over a miss. Each process
  hashes a file once (the client's plan, then a worker's plan, attrs and resume identity reuse it).

Groups made before this recorded `[size, int(mtime)]` (a "legacy" identity). Such a record is honoured as it was
made (it matches while the file keeps its size and mtime), so existing caches are not extracted again; `features`
then records the content identity beside it (pipeline/graph.py, under the dataset's lock), and later runs compare
that one, so a copy made after that run re-extracts nothing either.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

HEAD_TAIL = 1 << 20          # bytes read at each end of a video
_BLOCK = 1 << 20

# (path, device, inode, size, mtime_ns, ctime_ns) -> identity: one process (the client's plan, a worker's) hashes a
# file once. ctime is in the key because writing the file or setting its mtime (touch -r) always moves it.
_MEMO: dict[tuple, dict] = {}


def _key(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def video_identity(path: Path) -> dict:
    """{"size", "head_tail_sha256"} of a video file (the sha256 of the size, the first and the last MiB)."""
    key = ("video", *_key(path))
    if key not in _MEMO:
        size = key[4]
        h = hashlib.sha256(str(size).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(fh.read(min(size, HEAD_TAIL)))
            if size > HEAD_TAIL:   # a file of at most 2 MiB is read whole, each byte once
                fh.seek(max(HEAD_TAIL, size - HEAD_TAIL))
                h.update(fh.read())
        _MEMO[key] = {"size": size, "head_tail_sha256": h.hexdigest()}
    return dict(_MEMO[key])


def file_identity(path: Path) -> dict:
    """{"size", "sha256"} of a whole file (an OpenFace CSV)."""
    key = ("file", *_key(path))
    if key not in _MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
        _MEMO[key] = {"size": key[4], "sha256": h.hexdigest()}
    return dict(_MEMO[key])


def is_legacy(recorded) -> bool:
    """Whether a recorded identity is the `[size, int(mtime)]` of groups made before identities followed contents."""
    return isinstance(recorded, (list, tuple)) and len(recorded) == 2 and all(isinstance(v, int) for v in recorded)


def legacy_matches(recorded, path: Path) -> bool:
    """Whether a legacy identity still matches the file (its size and whole-second mtime), as it did when made."""
    st = path.stat()
    return list(recorded) == [st.st_size, int(st.st_mtime)]


def recorded(attrs, prefix: str = ""):
    """The identity a group's input is compared by: the content identity that `features` recorded beside a legacy
    `[size, mtime]` one (`<prefix>content`, pipeline/extract.adopt_content), else the one recorded when the group was
    made (`<prefix>identity`). prefix "source_": the group's video; "": its face input (attrs["face_source"])."""
    return attrs.get(prefix + "content") or attrs.get(prefix + "identity")


def matches(recorded, path: Path, identify=video_identity) -> bool:
    """Whether a recorded identity still describes the file: a content identity must equal the file's now (a size
    that differs says so without reading it); a legacy one is honoured as it was made."""
    if is_legacy(recorded):
        return legacy_matches(recorded, path)
    if isinstance(recorded, dict) and recorded.get("size") != path.stat().st_size:
        return False
    return recorded == identify(path)


def replaced_while_read(recorded, path: Path) -> str | None:
    """Why a video no longer holds the contents `recorded` identified when its extraction began, or None.

    Checked after its frames are decoded: a file copied over in place (`cp`, `rsync --inplace`) while it is read gives
    the decoder the old file's first frames and the new one's last, and a file replaced between the recording and the
    decoder's open gives it the new one's frames under the old file's identity, which a later run with the old file
    put back would find matching, and keep."""
    if not path.is_file():
        return "the file was removed or renamed while its frames were read"
    if not matches(recorded, path):
        return ("the file changed while its frames were read (its contents are not those it had when the extraction "
                "began): the frames read may come from the old file, the new one or both")
    return None
