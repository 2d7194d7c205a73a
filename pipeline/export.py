"""Export a dataset's cache to HDF5 for loaders that read it (same array names, one group per video).

Each video's arrays are checked in its group (store.check_arrays), not in the index: a video whose group is not
done, or holds a stale, damaged or missing array, is left out and listed with the `features` command that
repairs it. Videos whose extraction failed (no group: a bad file) are listed too; they were never in the cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from pipeline import chunks, store


@dataclass
class ExportResult:
    """What an export wrote and what it left out."""

    path: Path
    written: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)   # (video, why and how to repair): unusable groups
    not_extracted: list[tuple[str, str]] = field(default_factory=list)   # (video, error): no group at all


def export_h5(cache: str | Path, dataset: str, out: str | Path) -> ExportResult:
    """Copy every usable video, chunk by chunk (bounded memory), into `out`; list the ones left out."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    idx = store.read_index(cache, dataset)
    if idx is None:
        store.done_videos(cache, dataset)   # raises the 'no feature cache, run features' message
    res = ExportResult(out)
    usable = []
    for row in idx.sort_values("video").itertuples():
        status = store.group_status(cache, dataset, row.video)
        if status is None:
            res.not_extracted.append((row.video, str(row.error or "not extracted")))
            continue
        try:
            names = sorted(store.open_video(cache, dataset, row.video).array_keys()) if status == "done" else []
            fps = store.check_arrays(cache, dataset, row.video, names)   # not done, stale, damaged, short: refused
            usable.append((row.video, fps))
        except store.UnusableVideo as e:
            res.left_out.append((row.video, str(e)))
    tmp = out.with_suffix(out.suffix + ".tmp")
    with h5py.File(tmp, "w") as h5:
        h5.attrs["dataset"] = dataset
        for video, fps in usable:
            try:
                _copy_unchanged(cache, dataset, video, h5, fps)
            except (chunks.DamagedArray, store.UnusableVideo) as e:   # met while copying: left out like the
                res.left_out.append((video, str(e)))                   # others, its partial copy gone
                continue
            res.written.append(video)
        h5.attrs["left_out"] = json.dumps(dict(res.left_out))
    tmp.replace(out)
    return res


def _copy_unchanged(cache, dataset: str, video: str, h5, fps: dict[str, str], tries: int = 3) -> None:
    """Copy a video's arrays, checked with fingerprints ``fps`` {name: fingerprint}, whose group a `features` run may
    update meanwhile (arrays swapped in whole, pipeline/store.py): a copy whose fingerprints changed under it could
    mix rows from before and after, so it is checked again and made again."""
    names = sorted(fps)
    for attempt in range(tries):
        if attempt:
            fps = store.check_arrays(cache, dataset, video, names)
        try:
            _copy_video(cache, dataset, video, h5.create_group(video), names)
        except BaseException:
            del h5[video]
            raise
        now = store.video_fingerprints(cache, dataset, video)
        if {n: now.get(n) for n in names} == fps:
            return
        del h5[video]
    raise store.UnusableVideo(store.video_dir(cache, dataset, video), f"video {video!r} changed while it was "
                              f"exported, {tries} times", "let the `features` run finish, then export again")


def _copy_video(cache, dataset: str, video: str, grp, names: list[str]) -> None:
    g = store.open_video(cache, dataset, video)
    for k, v in g.attrs.items():
        grp.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) or v is None else v
    for name in names:
        src = g[name]
        dst = grp.create_dataset(name, shape=src.shape, dtype=src.dtype,
                                 chunks=(min(store.CHUNK_T, max(1, src.shape[0])), *src.shape[1:]),
                                 compression="gzip", compression_opts=1)
        for lo in range(0, src.shape[0], store.CHUNK_T):
            dst[lo:lo + store.CHUNK_T] = chunks.read_rows(cache, dataset, video, g, name, lo, lo + store.CHUNK_T)
