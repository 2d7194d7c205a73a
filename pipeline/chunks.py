"""Reading rows of a cached array: a chunk that cannot be decoded is marked damaged and named, never a traceback.

The check readers run first (store.check_arrays) reads metadata only; the chunks themselves are read as training,
prediction, export or inspection needs them, and a chunk file cut short (a disk that filled up, an interrupted copy)
fails only there. Reading every chunk up front would double the reading of a large cache, so the damage is caught
where it is met: the array is marked "damaged" in its group, as `features` marks one it cannot read back
(pipeline/compute.py), and the next `features` run of the dataset rebuilds it; the error names the video, the array,
the chunk's file and that command. The mark is written under the dataset's features lock, so it never races an
update's fingerprints.

A blosc chunk cut short is found before it is decoded: blosc reads as many bytes as its header says the chunk holds,
past the end of a shorter buffer, which can kill the process (a segmentation fault) instead of raising. The check
reads each chunk file's 16-byte header once per read, beside the decoding of the whole chunk.

A chunk file that is missing is damage too in an array that writes every chunk (store.EVERY_CHUNK): Zarr would
return fill values for it (zeros, NaN labels) without a word. store.check_arrays finds such a file before a reader
starts; this catches one lost while it runs. In an array made before (no EVERY_CHUNK) a missing file may be a chunk
of fill values Zarr never wrote, and still reads as such (`features` marks one whose files are all present:
pipeline/untracked.py).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec

from pipeline import store

LOCK_WAIT_S = 10.0   # other readers (loader workers) marking at the same moment hold the lock for milliseconds


class DamagedArray(store.UnusableVideo):
    """A chunk of a cached array that cannot be decoded."""


class ChunkCutShort(ValueError):
    """A chunk file shorter than its blosc header says (decoding it could crash the process)."""


class ChunkMissing(ValueError):
    """A chunk file absent from an array that writes every chunk (store.EVERY_CHUNK): deleted, or lost in a copy."""


def read_array(arr, where: Path, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of a Zarr array stored in folder ``where``, each chunk file checked (present, whole) first."""
    blosc = isinstance(arr.metadata.codecs[-1], BloscCodec)   # the chunk files are blosc frames
    every = bool(arr.attrs.get(store.EVERY_CHUNK))
    if blosc or every:
        step = int(arr.chunks[0])
        for c in range(lo // step, -(-min(hi, arr.shape[0]) // step)):
            _check_chunk(store.chunk_path(arr, where, c), where, blosc, every)
    return np.asarray(arr[lo:hi])


def _check_chunk(path: Path, where: Path, blosc: bool, every: bool) -> None:
    """Raise ChunkMissing or ChunkCutShort for a chunk file Zarr would read as fill values or blosc past its end."""
    try:
        with open(path, "rb") as f:
            head, size = f.read(16), path.stat().st_size
    except FileNotFoundError:
        if every:   # the array writes every chunk, so this one was written and is gone
            raise ChunkMissing(f"chunk {path.relative_to(where)} is missing") from None
        return   # an array made before (no EVERY_CHUNK): an all-fill chunk was never written; Zarr reads fill values
    if blosc and (len(head) < 16 or struct.unpack_from("<I", head, 12)[0] != size):
        want = struct.unpack_from("<I", head, 12)[0] if len(head) >= 16 else "16 or more"
        raise ChunkCutShort(f"chunk {path.relative_to(where)} has {size} bytes where its header says {want}")


def read_rows(cache: str | Path, dataset: str, video: str, group, name: str, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of one array of a video's group; a chunk that cannot be decoded or is missing raises DamagedArray."""
    try:
        return read_array(group[name], store.video_dir(cache, dataset, video) / name, lo, hi)
    except Exception as e:   # blosc/zstd errors, a file cut short: the file is not what was written
        raise damaged(cache, dataset, video, group, name, lo, hi, e) from None


def damaged(cache: str | Path, dataset: str, video: str, group, name: str, lo: int, hi: int,
            error: Exception) -> DamagedArray:
    """The error for an array whose rows [lo, hi) could not be read; marks the array damaged for `features`."""
    arr, where = group[name], store.video_dir(cache, dataset, video) / name
    hi = min(hi, arr.shape[0])
    bad = _bad_chunks(arr, where, lo, hi)
    path = store.chunk_path(arr, where, bad[0]) if bad else where
    more = f" (and {len(bad) - 1} more chunks)" if len(bad) > 1 else ""
    first = (str(error).strip().splitlines() or [""])[0][:200]
    verb, cause = _cause(error)
    problem = (f"video {video!r}: {name} frames {lo}..{hi} cannot be {verb}{more} "
               f"({type(error).__name__}: {first}); {cause}")
    fix = store.repair_command(cache, dataset, [name])
    not_marked = _mark(cache, dataset, video, name)
    if not_marked:
        hint = (f"it could not be marked for repair ({not_marked}): once that is resolved, run this command again, "
                f"then `{fix}`")
    else:
        hint = f"it is marked damaged now: `{fix}` rebuilds it; then run this again (train: with --resume)"
    return DamagedArray(path, problem, hint)


def _cause(error: Exception) -> tuple[str, str]:
    """(what cannot be done, the likely cause) for the message: a file gone is not a file damaged."""
    if isinstance(error, ChunkMissing):
        return "read", "the file is gone (deleted by a cleanup, lost in a copy or to a quota?)"
    return "decoded", "the file is damaged (a disk that filled up, a copy cut short?)"


def _bad_chunks(arr, where: Path, lo: int, hi: int) -> list[int]:
    """Time chunks among rows [lo, hi) that do not read (each read alone: only on the error path)."""
    step = int(arr.chunks[0])
    bad = []
    for c in range(lo // step, max(lo // step + 1, -(-hi // step))):
        try:
            read_array(arr, where, c * step, (c + 1) * step)
        except Exception:
            bad.append(c)
    return bad


def _mark(cache: str | Path, dataset: str, video: str, name: str) -> str:
    """Mark the array damaged under the features lock; '' when done, else why it could not be."""
    from pipeline.lock import CacheBusy, FeaturesLock

    try:
        with FeaturesLock(cache, dataset, f"marking {name} of {video} damaged").acquire(LOCK_WAIT_S, echo=_quiet):
            store.mark_damaged(cache, dataset, video, [name])
    except CacheBusy as e:
        return e.problem
    except OSError as e:   # a read-only cache
        return f"{type(e).__name__}: {e}"
    return ""


def _quiet(*_args) -> None:
    pass
