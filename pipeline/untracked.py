"""Arrays made before chunk tracking: marked as writing every chunk where their files show it, counted where not.

Arrays made now write every chunk and carry store.EVERY_CHUNK, so a chunk file that is absent is damage, named by
readers. Arrays made before have no mark: Zarr did not write a chunk all of fill value (256 frames with no face), so
an absent file there may be such a chunk or a lost one, and reads as fill values either way. An array whose every
chunk file is present relied on no such skipped chunk, so marking it changes nothing it reads and makes a later loss
damage: `features` does that for each done group it plans (extract.plan finds them, beside the content identities it
adopts; graph.run records both under the dataset's features lock). An array with an absent file stays unmarked, and
`info --cache` counts it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import zarr

from pipeline import arrays, store


def untracked_arrays(group: zarr.Group, skip: Iterable[str] = ()) -> dict[str, bool]:
    """{each schema array of a group made without store.EVERY_CHUNK: whether every one of its chunk files is present}.

    One stat per chunk, stopping at the first absent file (as store.missing_chunks does for marked arrays). Arrays in
    `skip` (unusable, or about to be rebuilt) are left out. An array chunked along more than time (mimamo never made
    one) counts as not whole: chunk_path does not name its files.
    """
    skip = set(skip)
    where = Path(group.store.root) / group.path
    out = {}
    for folder in sorted(where.iterdir()):   # not group.array_keys(), which opens every member: see _unmarked
        name = folder.name
        if name in skip or not _is_schema(name) or not _unmarked(folder):
            continue
        arr = group[name]
        out[name] = tuple(arr.chunks[1:]) == tuple(arr.shape[1:]) and \
            next(store.absent_chunks(arr, where / name), None) is None
    return out


def mark(group: zarr.Group, names: Iterable[str]) -> None:
    """Record on these arrays that every chunk is written (the caller holds the dataset's features lock)."""
    for name in names:
        group[name].attrs[store.EVERY_CHUNK] = True


def count(cache: str | Path, dataset: str) -> tuple[int, dict[str, int]]:
    """(usable arrays of the dataset's done groups made before chunk tracking and still unmarked,
    {video: how many of these have absent chunk files})."""
    unmarked, absent = 0, {}
    videos = store.dataset_dir(cache, dataset) / "videos"
    for d in sorted(videos.iterdir()) if videos.is_dir() else []:
        if store.group_status(cache, dataset, d.name) != "done":
            continue
        g = store.open_video(cache, dataset, d.name)
        found = untracked_arrays(g, skip=store.unusable_arrays(g))
        unmarked += len(found)
        if not all(found.values()):
            absent[d.name] = sum(not whole for whole in found.values())
    return unmarked, absent


def _unmarked(folder: Path) -> bool:
    """Whether a group's member is an array without store.EVERY_CHUNK, read from its zarr.json as JSON: this runs for
    every array of every done group on every plan, and opening each as Zarr does cost ten times as much once the
    arrays are marked (bench/old_chunks.py)."""
    try:
        meta = json.loads((folder / "zarr.json").read_bytes())
    except (OSError, ValueError):   # not a node, or unreadable: store.unusable_arrays says what is wrong
        return False
    return meta.get("node_type") == "array" and not (meta.get("attributes") or {}).get(store.EVERY_CHUNK)


def _is_schema(name: str) -> bool:
    try:
        arrays.kind_of(name)
    except KeyError:
        return False
    return True
