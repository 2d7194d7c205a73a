"""Where a dataset's videos live in the cache and what their arrays are: paths, the array schema, time chunks,
fingerprints, opening a video's group and reading its status. The bottom of the cache's modules (pipeline/store.py
describes the cache and re-exports these); it imports none of them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from features.errors import BadInputError
from pipeline import arrays
from pipeline.ids import id_problem

# Time chunks of 256 frames. Every writer appends whole chunks (or the tail) and dask chunks are whole
# multiples of this, because two tasks writing one chunk silently lose data.
CHUNK_T = 256

# name -> (dtype, per-frame shape) of the default variants; `arrays` is the description, this is a view of it.
SCHEMA: dict[str, tuple[str, tuple[int, ...]]] = {p: spec for k in arrays.KINDS.values() for p, spec in k.parts.items()}
REQUIRED = ("valid", "landmarks", "face48", "resnet50", "dphase_s0", "dphase_s1", "labels")
UNUSABLE = ("stale", "damaged")   # fingerprints that say an array is not what it should be
# Zarr skips writing a chunk that is all fill value (write_empty_chunks=False), so in an array made that way a missing
# chunk file may be legitimate (a stretch with no face) and reads as fill values: a file deleted by a cleanup script or
# lost in a copy then read as zeros or NaN labels without a word. Arrays made now write every chunk (an all-fill blosc
# chunk is a few dozen bytes) and say so in this attribute: in them a missing chunk file is damage. Arrays made before
# have no attribute, and a missing file there still reads as fill values until `features` marks them (pipeline/untracked.py).
EVERY_CHUNK = "every_chunk_written"
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}   # Zarr's runtime config: not stored, so set on every writer
# ... and as this process's default too: otherwise any other write into an existing array (an array opened from its
# group, `g[name][...] = all-NaN labels`) would not only skip an all-fill chunk but delete the file already there,
# which readers would then take for a lost one. Every process that writes the cache imports this module
# (group_writer.py does, and store.py).
zarr.config.set({"array.write_empty_chunks": True})
NO_FACE = "no face found in any frame"
UNLISTED = "unlisted"   # group attr of a video its dataset no longer lists: why no reader uses it (pipeline/unlisted.py)


def fingerprint(*parts) -> str:
    """A short, stable hash of JSON-able parts (stage parameters, versions, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dataset_dir(cache: str | Path, dataset: str) -> Path:
    """Folder of one dataset in the cache; a name that would leave the cache is refused."""
    problem = id_problem(dataset)
    if problem:
        raise BadInputError(Path(cache), f"dataset name refused: {problem}", "name datasets with plain folder names")
    return Path(cache) / dataset


def video_dir(cache: str | Path, dataset: str, video: str) -> Path:
    """Folder (Zarr group) of one video; an id that would leave the dataset's folder is refused.

    The listers already fail a bad id where it is made (naming the file and line); this is the last line of defence
    for ids from anywhere else.
    """
    problem = id_problem(video)
    if problem:
        raise BadInputError(dataset_dir(cache, dataset), f"video id refused: {problem}",
                            "a video id is a folder name in the cache: no path separators, not empty, no leading '.'")
    return dataset_dir(cache, dataset) / "videos" / video


def codecs(dtype: str):
    # byte-shuffle helps float16/float32 (sign/exponent bytes compress well); zstd is fast to decode for training.
    shuffle = "noshuffle" if dtype in ("bool", "uint8") else "shuffle"
    return [BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)]


def open_video(cache: str | Path, dataset: str, video: str, mode: str = "r") -> zarr.Group:
    """Open one video's group (read-only by default)."""
    return zarr.open_group(LocalStore(video_dir(cache, dataset, video), read_only=(mode == "r")), mode=mode)


def group_status(cache: str | Path, dataset: str, video: str) -> str | None:
    """'done', another status string for a partial group, or None when there is no group."""
    path = video_dir(cache, dataset, video)
    if not (path / "zarr.json").is_file():
        return None if not path.exists() else "partial"
    try:
        return str(open_video(cache, dataset, video).attrs.get("status", "partial"))
    except Exception:  # a half-written zarr.json: treat as partial, it will be redone
        return "partial"


def video_fingerprints(cache: str | Path, dataset: str, video: str) -> dict:
    """Per-array fingerprints recorded in one video's group."""
    return dict(open_video(cache, dataset, video).attrs.get("fingerprints", {}))
