"""Export a dataset's cache to HDF5 for loaders that read it (same array names, one group per video).

Each video's arrays are checked in its group (store.check_arrays), not in the index: a video whose group is not
done, or holds a stale, damaged or missing array, is left out and listed with the `features` command that
repairs it; so is a video the index lists as done whose group is gone, and a done group the index has no row
for (pipeline/unindexed.py). Videos whose extraction failed (no group: a bad file) are listed too; they were never
in the cache. An array made with other settings on some videos than on others (one name, two fingerprints) is
refused, as train and predict refuse it: a loader would mix them unknowingly.

The file says what made it (root attrs): the cache, the mimamo version, the time, each array's one fingerprint,
settings and how many videos hold it, the videos left out and not extracted, those whose last `features` run
reported an error (not_updated: their arrays are from their file as it was; pipeline/not_updated.py), and how labels
are stored. Each group's attrs are the cache's own, plus not_updated (that error) on such a video's group.
"""
from __future__ import annotations

import datetime
import importlib.metadata as md
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pandas as pd

from features.errors import BadInputError
from pipeline import chunks, not_updated, store, unindexed
from pipeline.uniform import one_fingerprint

LABELS = ("labels [T, 2]: arousal, valence per frame, NaN where unlabelled. A dataset labelled per video (OMG) has "
          "NaN there and its labels in each group's attrs video_labels.")
GROUP_ATTRS = ("each group's attrs are the cache's own: fingerprints and made_with say how each array was made; "
               "settings and libraries are those of the run that created the group (later runs may have added or "
               "replaced arrays).")


@dataclass
class ExportResult:
    """What an export wrote and what it left out."""

    path: Path
    written: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)   # (video, why and how to repair): unusable groups
    not_extracted: list[tuple[str, str]] = field(default_factory=list)   # (video, error): no group at all
    partial: dict[str, int] = field(default_factory=dict)   # array -> how many of the videos written hold it (not all)
    not_updated: dict[str, str] = field(default_factory=dict)   # video written -> the error of its last `features` run


def export_h5(cache: str | Path, dataset: str, out: str | Path, force: bool = False) -> ExportResult:
    """Copy every usable video, chunk by chunk (bounded memory), into `out`; list the ones left out. An existing
    file at `out` is replaced only if it is an earlier export (or with ``force``)."""
    out = Path(out)
    _check_out(cache, out, force)
    idx = store.read_index(cache, dataset)
    if idx is None:
        store.done_videos(cache, dataset)   # raises the 'no feature cache, run features' message
    res = ExportResult(out)
    usable = []
    for row in idx.sort_values("video").itertuples():
        status = store.group_status(cache, dataset, row.video)
        if status is None and row.status == "done":   # the index is a summary: without its group the file would
            res.left_out.append((row.video, f"{row.video}: the index lists it as done but its group is missing "
                                 f"({store.video_dir(cache, dataset, row.video)}); run "
                                 f"{store.repair_hint(cache, dataset, store.rebuild_names(cache, dataset))} to extract "
                                 "it again"))
            continue
        if status is None:
            res.not_extracted.append((row.video, "not extracted" if pd.isna(row.error) or not row.error
                                      else str(row.error)))
            continue
        try:
            names = sorted(store.open_video(cache, dataset, row.video).array_keys()) if status == "done" else []
            fps = store.check_arrays(cache, dataset, row.video, names)   # not done, stale, damaged, short: refused
            usable.append((row.video, fps))
        except store.UnusableVideo as e:
            res.left_out.append((row.video, str(e)))
    # the other way round, a done group without a row: not exported (the index is the record of what is done), but
    # said and counted as left out, so the exit status is 1 as above (pipeline/unindexed.py)
    res.left_out += [(v, f"{unindexed.problem(cache, dataset, v)} ({unindexed.hint(cache, dataset)})")
                     for v in unindexed.without_row(cache, dataset, idx)]
    # an array's fingerprint alike on every video (labels differ per video by design: their contents)
    one_fingerprint(cache, dataset, {v: f for v, f in usable}, sorted({n for _, f in usable for n in f} - {"labels"}))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")   # two exports to one path do not share a temporary file
    try:
        with h5py.File(tmp, "w") as h5:
            _copy_all(cache, dataset, h5, usable, res, not_updated.errors(idx.to_dict("records")))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return res


def _check_out(cache, out: Path, force: bool) -> None:
    """Refuse an output among the cache's datasets, a folder, or an existing file that is not an earlier export (a
    checkpoint, an index...), which replacing would destroy."""
    where, root = out.resolve(), Path(cache).resolve()
    if root in where.parents and len(where.relative_to(root).parts) > 1:   # in a dataset's folder, among its groups
        raise BadInputError(out, "the export would be written inside the cache's dataset folders",
                            "give --out a path outside them")
    if out.is_dir():
        raise BadInputError(out, "is a folder", "give --out a file path, e.g. features.h5")
    if out.exists() and not force and not _is_export(out):
        raise BadInputError(out, "exists and is not an earlier export of this command (replacing it would destroy "
                            "it)", "give another --out, or add --force to replace it")


def _is_export(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as h5:
            return "dataset" in h5.attrs
    except (OSError, ValueError):
        return False


def _copy_all(cache, dataset: str, h5, usable: list[tuple[str, dict]], res: ExportResult,
              stale: dict[str, str]) -> None:
    """The usable videos into h5, then the root attrs that say what the file holds and what made it. ``stale``: the
    done videos whose last `features` run reported an error (their file changed since, the rebuild failed): their
    arrays are those made before, from the file as it was; written, and said in their group's and the root attrs."""
    for video, fps in usable:
        try:
            _copy_unchanged(cache, dataset, video, h5, fps)
        except (chunks.DamagedArray, store.UnusableVideo) as e:   # met while copying: left out like the
            res.left_out.append((video, str(e)))                   # others, its partial copy gone
            continue
        res.written.append(video)
        if video in stale:
            res.not_updated[video] = h5[video].attrs["not_updated"] = stale[video]
    made = {}
    for video in res.written:
        g = h5[video]
        fps, how = json.loads(g.attrs.get("fingerprints", "{}")), json.loads(g.attrs.get("made_with", "{}"))
        for name in g:
            a = made.setdefault(name, {"fingerprint": fps.get(name), "made_with": how.get(name), "videos": 0})
            a["videos"] += 1
            if name != "labels" and fps.get(name) != a["fingerprint"]:   # a `features` run between check and copy
                raise BadInputError(store.dataset_dir(cache, dataset), f"array {name!r} changed settings while it was "
                                    "exported; nothing is written", "let the `features` run finish, then export again")
    made.get("labels", {}).update(fingerprint="per video (each its annotation's contents)")
    res.partial = {name: a["videos"] for name, a in made.items() if a["videos"] < len(res.written)}
    h5.attrs.update({"dataset": dataset, "cache": str(Path(cache).resolve()), "mimamo": _version(),
                     "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "videos": len(res.written), "arrays": json.dumps(made, default=str),
                     "left_out": json.dumps(dict(res.left_out)), "not_extracted": json.dumps(dict(res.not_extracted)),
                     "not_updated": json.dumps(res.not_updated),
                     "labels": LABELS, "group_attrs": GROUP_ATTRS})


def _version() -> str:
    try:
        return md.version("mimamo")
    except md.PackageNotFoundError:
        return "unknown (not installed)"


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
