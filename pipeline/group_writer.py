"""Writing a video's group: a writer that appends time chunks and sets status=done last, the marks that make an array
unusable (stale while it is rewritten, damaged when a chunk cannot be read), and building new arrays beside a done
group and swapping them in whole (the integrity rules of pipeline/store.py).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from features.errors import BadInputError
from pipeline import arrays
from pipeline.cache_layout import CHUNK_T, EVERY_CHUNK, WRITE_EVERY_CHUNK, codecs, open_video, video_dir


class VideoWriter:
    """Writes one video's group: arrays grow by appending time chunks; ``finish`` sets status=done last.

    One writer per video: the stage graph never lets two tasks write the same group. `commit` records that the rows
    so far are complete (pipeline/resume.py); a writer made with `resume` (such a record) reopens the group, cuts
    each array back to its committed rows and goes on from there. Each writer signs the group with a token of its
    own: one that finds another's token at a commit or at the end stops (`Superseded`), touching nothing.
    """

    def __init__(self, cache: str | Path, dataset: str, video: str, names: list[str], attrs: dict,
                 path: Path | None = None, resume: dict | None = None):
        self.path = Path(path) if path is not None else video_dir(cache, dataset, video)
        self.token = uuid.uuid4().hex[:12]
        self.saved = resume is not None   # whether the group holds committed blocks (a rerun can resume them)
        if resume is not None:
            self.group = zarr.open_group(LocalStore(self.path), mode="r+")
            self.n = {n: int(resume["rows"][n]) for n in names}
            self.arrays = {n: self.group[n].with_config(WRITE_EVERY_CHUNK) for n in names}
            for n, a in self.arrays.items():
                a.resize((self.n[n], *a.shape[1:]))   # rows past the commit are a killed attempt's: cut
            at = [*self.group.attrs.get("resumed_at", []), int(resume["frames"])]
            self.group.attrs.update({"writer": self.token, "resumed_at": at})
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(LocalStore(self.path), mode="w")
        self.group.attrs.update({**attrs, "status": "writing", "fingerprints": {}, "writer": self.token})
        self.arrays = {n: create_array(self.group, n) for n in names}
        self.n = {n: 0 for n in names}

    def append(self, name: str, data: np.ndarray) -> None:
        """Append frames to one array (whole chunks except at the end of the video)."""
        dtype, shape = arrays.schema(name)
        data = np.asarray(data).astype(dtype, copy=False)
        if data.shape[1:] != shape:
            raise ValueError(f"{name}: frames of shape {data.shape[1:]}, the schema says {shape}")
        self.arrays[name].append(data, axis=0)
        self.n[name] += len(data)

    def commit(self, record: dict) -> None:
        """Record (attrs["progress"]) that every array's rows so far are complete, with what resuming needs."""
        self._check_owner()
        self.group.attrs["progress"] = {**record, "rows": dict(self.n)}
        self.saved = True

    def finish(self, fingerprints: dict, attrs: dict) -> None:
        """Check every array has the same number of frames, record fingerprints, then status=done."""
        counts = set(self.n.values())
        if len(counts) != 1:
            raise RuntimeError(f"{self.path}: arrays have different frame counts {self.n}")
        n = counts.pop()
        disk = zarr.open_group(LocalStore(self.path, read_only=True), mode="r")   # not this writer's cached shapes
        short = {name: disk[name].shape[0] for name in self.arrays if disk[name].shape[0] != n}
        if short:
            raise RuntimeError(f"{self.path}: arrays {short} on disk for {n} frames written")
        self._check_owner()
        done = {k: v for k, v in dict(self.group.attrs).items() if k not in ("progress", "writer")}
        done.update({**attrs, "fingerprints": fingerprints, "n_frames": n, "status": "done"})
        self.group.attrs.put(done)   # one atomic write: done, fingerprints, and the progress record gone

    def discard(self) -> None:
        """Remove the partial group (after a failure), unless another attempt has taken it over."""
        try:
            self._check_owner()
        except Superseded:
            return
        shutil.rmtree(self.path, ignore_errors=True)

    def _check_owner(self) -> None:
        try:
            on_disk = zarr.open_group(LocalStore(self.path, read_only=True), mode="r").attrs.get("writer")
        except Exception:   # gone (removed by a newer run) or unreadable: not ours any more
            on_disk = None
        if on_disk != self.token:
            raise Superseded(self.path, "another attempt at this video took its group over (a worker thought lost "
                             "was still running)", "nothing to do: the other attempt goes on")


class Superseded(BadInputError):
    """A writer found that another attempt now writes its group."""


def create_array(group: zarr.Group, name: str, n_frames: int = 0) -> zarr.Array:
    """Create (or replace) one schema array in a group, chunked by CHUNK_T frames, writing every chunk (EVERY_CHUNK)."""
    dtype, shape = arrays.schema(name)
    return group.create_array(name, shape=(n_frames, *shape), chunks=(CHUNK_T, *shape), dtype=dtype,
                              fill_value=arrays.fill_value(name), compressors=codecs(dtype), overwrite=True,
                              attributes={EVERY_CHUNK: True}, config=WRITE_EVERY_CHUNK)


def mark_stale(group: zarr.Group, names: list[str]) -> None:
    """Before rewriting arrays in a done group: their fingerprints say 'stale' until the rewrite completes."""
    fps = dict(group.attrs.get("fingerprints", {}))
    fps.update({n: "stale" for n in names})
    group.attrs["fingerprints"] = fps


def set_fingerprints(group: zarr.Group, new: dict) -> None:
    """Record fingerprints of rewritten arrays."""
    fps = dict(group.attrs.get("fingerprints", {}))
    fps.update(new)
    group.attrs["fingerprints"] = fps


def mark_damaged(cache: str | Path, dataset: str, video: str, names: list[str]) -> None:
    """Arrays whose chunks cannot be read: readers refuse them and the next run rebuilds them."""
    g = open_video(cache, dataset, video, mode="r+")
    set_fingerprints(g, {n: "damaged" for n in names})


def staging_dir(cache: str | Path, dataset: str, video: str) -> Path:
    """A fresh folder beside the groups where one task builds a video's new arrays (or whole group).

    Unique per task, so a task that outlived its client never shares it with the next run's task. Earlier
    staging folders of this video (a killed or failed task) are removed first.
    """
    root = video_dir(cache, dataset, video).parent.parent / ".staging"   # video_dir checks the id
    for old in root.glob(f"{_glob_escape(video)}.*"):
        shutil.rmtree(old, ignore_errors=True)
    return root / f"{video}.{uuid.uuid4().hex[:12]}"


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def swap_group(cache: str | Path, dataset: str, video: str, staged: Path) -> None:
    """Replace a video's whole group by a complete one built beside it (two renames; the old one is removed)."""
    dst = video_dir(cache, dataset, video)
    trash = staged.with_name(staged.name + ".old")
    if dst.exists():
        os.rename(dst, trash)
    os.rename(staged, dst)   # between the renames there is no group: a kill here is seen as 'new' and redone
    shutil.rmtree(trash, ignore_errors=True)


def swap_arrays(cache: str | Path, dataset: str, video: str, staged: Path, fingerprints: dict, attrs: dict) -> None:
    """Swap complete arrays built beside a done group into it, then record their fingerprints.

    The arrays are marked stale before the first rename and get their fingerprints after the last, so no
    reader ever sees a new array under an old fingerprint (or the reverse).
    """
    g = open_video(cache, dataset, video, mode="r+")
    names = list(fingerprints)
    mark_stale(g, names)
    trash = staged.with_name(staged.name + ".old")
    trash.mkdir(parents=True, exist_ok=True)
    dst = video_dir(cache, dataset, video)
    for name in names:
        if (dst / name).exists():
            os.rename(dst / name, trash / name)
        os.rename(staged / name, dst / name)
    g.attrs.update(attrs)
    set_fingerprints(g, fingerprints)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)


def write_video(cache: str | Path, dataset: str, video: str, arrays: dict[str, np.ndarray], attrs: dict,
                fingerprints: dict | None = None) -> None:
    """Write a whole video's group in one go (small data: tests, export round trips)."""
    w = VideoWriter(cache, dataset, video, list(arrays), attrs)
    for name, data in arrays.items():
        for s in range(0, len(data), CHUNK_T):
            w.append(name, data[s:s + CHUNK_T])
    w.finish(fingerprints or {n: "unknown" for n in arrays}, {})
