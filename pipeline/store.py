"""The feature cache: one Zarr v3 group per video plus a Parquet index. The contract between pipeline and trainer.

    <cache>/<dataset>/index.parquet        one row per video (INDEX_COLUMNS)
    <cache>/<dataset>/videos/<video>/      group; attrs: status, fps, n_frames, source, fingerprints, ...

A group is written fully, then ``status=done`` is set last. Until then (status "writing") it holds a progress
record after each complete block (pipeline/resume.py): a rerun resumes it there if it was made under the same
settings, else deletes and redoes it. Readers never use a group that is not done.
Every array records the fingerprint of what made it in ``attrs["fingerprints"][name]``.

An update of a done group never exposes a half-written array: new arrays are built beside the group, in
``<cache>/<dataset>/.staging/<video>.<token>/``, and swapped in when complete (Zarr v3 LocalStore arrays are
directories; a rename is atomic). Their fingerprints say "stale" only during the swap, so a kill there is seen as
stale, never as done. A rebuild of a done group from its video is built beside it whole and swapped in the same way.
An array whose chunks cannot be read is marked "damaged". Readers refuse stale, damaged or missing arrays, and
arrays missing a chunk file (every chunk is written: EVERY_CHUNK).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
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
_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}   # Zarr's runtime config: not stored, so set on every writer
# ... and as this process's default too: otherwise any other write into an existing array (an array opened from its
# group, `g[name][...] = all-NaN labels`) would not only skip an all-fill chunk but delete the file already there,
# which readers would then take for a lost one. Every process that writes the cache imports this module.
zarr.config.set({"array.write_empty_chunks": True})
# faces: where the faces came from (video, cropped_aligned, openface); label_frame_diff: label lines minus frames,
# accepted by --label-slack (labels truncated or padded with NaN at the end); faces_frame_diff: the same for the
# crop folder (crops numbered past the last frame) or the OpenFace CSV (CSV frames minus video frames).
# note: what a reader of a done video should know though nothing failed (video_note): no face in any frame, or a
# video that decoded to fewer frames than its header declares.
INDEX_COLUMNS = ["video", "split", "n_frames", "fps", "width", "height", "source", "source_size", "source_mtime",
                 "n_valid", "status", "error", "seconds", "fingerprints", "video_arousal", "video_valence",
                 "faces", "label_frame_diff", "faces_frame_diff", "note", "labelled"]
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


def _codecs(dtype: str):
    # byte-shuffle helps float16/float32 (sign/exponent bytes compress well); zstd is fast to decode for training.
    shuffle = "noshuffle" if dtype in ("bool", "uint8") else "shuffle"
    return [BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)]


# ---------------------------------------------------------------- reading


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


def read_index(cache: str | Path, dataset: str) -> pd.DataFrame | None:
    """The dataset's index (one row per video), or None when there is none; BadInputError when it cannot be read."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:   # a damaged file (disk full, a copy cut short): the groups still hold everything
        raise UnreadableIndex(path, f"the index cannot be read ({type(e).__name__}: {str(e)[:200]})",
                              f"it is a summary of the groups: rerun `{repair_command(cache, dataset)}`, which "
                              "rebuilds it (videos already done are skipped)") from None


class UnreadableIndex(BadInputError):
    """index.parquet exists but is not a readable Parquet file."""


def done_videos(cache: str | Path, dataset: str, split: str | None = None) -> pd.DataFrame:
    """Index rows of the videos whose group is complete (optionally one split), sorted by video."""
    idx = read_index(cache, dataset)
    if idx is None:
        raise BadInputError(dataset_dir(cache, dataset), f"no feature cache for dataset {dataset!r}",
                            f"run `python cli.py features --dataset {dataset} --cache {cache}` first")
    idx = idx[idx.status == "done"]
    if split is not None:
        idx = idx[idx.split == split]
    return idx.sort_values("video").reset_index(drop=True)


def video_fingerprints(cache: str | Path, dataset: str, video: str) -> dict:
    """Per-array fingerprints recorded in one video's group."""
    return dict(open_video(cache, dataset, video).attrs.get("fingerprints", {}))


class UnusableVideo(BadInputError):
    """A reader met a video whose group cannot give the arrays it needs (not done, missing, stale)."""


def repair_command(cache: str | Path, dataset: str, names=()) -> str:
    """The `features` command that (re)makes these arrays of a dataset in this cache."""
    what = "VIDEO_FILES..." if dataset == "videos" else f"--dataset {dataset}"   # `features a.mp4 ...` makes 'videos'
    return " ".join([f"python cli.py features {what} --cache {cache}", *arrays.make_flags(names)])


def repair_hint(cache: str | Path, dataset: str, names=()) -> str:
    """The `features` command(s), quoted, that (re)make these arrays: one per run (arrays.runs: a run makes one
    motion variant), "`A`, then `B`" where they are of several variants."""
    return ", then ".join(f"`{repair_command(cache, dataset, run)}`" for run in arrays.runs(names) or [()])


def rebuild_names(cache: str | Path, dataset: str, names=()) -> list[str]:
    """The arrays to make for a video whose group is made anew: ``names`` (what a reader needs) and every array the
    dataset's done videos hold (by the index), named variants included (`dphase_s0@paper`, `flow@gamma0.2`): a
    repair that made only the default ones left the video without them, refused again by the next reader of a
    variant. Each variant is a `features` run of its own; repair_hint names them all."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    try:
        held = _held_arrays(str(path), path.stat().st_mtime_ns)
    except (OSError, UnreadableIndex):   # no index yet, or a damaged one: only what the reader named
        held = ()
    return list(dict.fromkeys([*names, *held]))


@functools.lru_cache(maxsize=8)
def _held_arrays(path: str, mtime_ns: int) -> tuple[str, ...]:
    # one read per version of the index: a reader checking thousands of videos asks once per video not done
    try:
        rows = pd.read_parquet(path, columns=["status", "fingerprints"])
    except Exception as e:
        raise UnreadableIndex(path, f"the index cannot be read ({type(e).__name__})") from None
    held = set()
    for fps in rows.fingerprints[rows.status == "done"].dropna():
        held |= set(json.loads(fps))
    return tuple(sorted(n for n in held if _known(n)))   # a name this code does not know is no stage to make


def _known(name: str) -> bool:
    try:
        arrays.kind_of(name)
        return True
    except KeyError:
        return False


def unusable_arrays(group: zarr.Group) -> dict[str, str]:
    """{array: why} for the arrays of a group that a reader must not use (stale, damaged, wrong length, missing)."""
    fps = dict(group.attrs.get("fingerprints", {}))
    n = int(group.attrs.get("n_frames", -1))
    present = set(group.array_keys())
    bad = {}
    for name in sorted(set(fps) | present):
        fp = fps.get(name)
        if name not in present:
            bad[name] = "missing"
        elif fp is None:
            bad[name] = "unfingerprinted"
        elif fp == "stale":
            bad[name] = "stale (an update did not finish)"
        elif fp == "damaged":
            bad[name] = "damaged (a chunk could not be read)"
        elif group[name].shape[0] != n:
            bad[name] = f"{group[name].shape[0]} rows for {n} frames"
        elif lost := missing_chunks(group[name], Path(group.store.root) / group.path / name):
            bad[name] = _lost(lost)   # `features` rebuilds it though its fingerprint was never marked
    return bad


def chunk_path(arr: zarr.Array, where: Path, c: int) -> Path:
    """The file of time chunk ``c`` of an array stored in folder ``where`` (arrays are chunked along time only)."""
    return where / arr.metadata.encode_chunk_key((c, *[0] * (arr.ndim - 1)))


def missing_chunks(arr: zarr.Array, where: Path) -> list[Path]:
    """The chunk files absent from an array that writes every chunk (EVERY_CHUNK); [] for an array made before.

    One stat per chunk (a 10-minute video has ~70 per array): metadata-cheap, so readers learn of a lost file before
    training starts, not mid-epoch. A stat, not a listing of c/: a cleanup that deletes files leaves their folders.
    """
    if not arr.attrs.get(EVERY_CHUNK):
        return []   # made before: a missing file may be a chunk of fill values Zarr never wrote (pipeline/untracked.py)
    return list(absent_chunks(arr, where))


def absent_chunks(arr: zarr.Array, where: Path) -> Iterator[Path]:
    """The time chunk files absent from an array stored in folder ``where``, in order, whatever it was made with."""
    step = int(arr.chunks[0])
    return (p for c in range(-(-arr.shape[0] // step)) if not (p := chunk_path(arr, where, c)).is_file())


def _lost(paths: list[Path]) -> str:
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return f"is missing its chunk file {paths[0]}{more} (deleted, or lost in a copy)"


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


def check_arrays(cache: str | Path, dataset: str, video: str, names) -> dict[str, str]:
    """The fingerprints, read from the video's group itself, of the arrays a reader needs.

    The group must be done, and each array present, as long as the video, and under a real fingerprint (not
    'stale' or missing). Otherwise UnusableVideo names the video, what is wrong and the command that repairs it.
    The index is a summary; this is the check readers (train, predict, export, inspect) rely on.
    """
    names = list(names)
    where = video_dir(cache, dataset, video)
    status = group_status(cache, dataset, video)
    # a group not done is made again whole by the command: it must make what the dataset's other videos hold too
    # (a reader that cannot see in it, as export, asks for nothing), not only the arrays this reader named
    fix = repair_hint(cache, dataset, names if status == "done" else rebuild_names(cache, dataset, names))
    if status is None:   # no group: its extraction failed (the caller adds why) or never ran
        raise UnusableVideo(where, f"video {video!r} has no features in the cache", f"fix what its extraction failed "
                            f"on, if it did, then run {fix}")
    if status != "done":
        raise UnusableVideo(where, f"video {video!r} is not complete in the cache (status {status})", f"run {fix}")
    g = open_video(cache, dataset, video)
    if why := g.attrs.get(UNLISTED):
        raise UnusableVideo(where, f"video {video!r} {why}", f"put it back in the dataset and rerun {fix}, or "
                            f"delete it with `{repair_command(cache, dataset)} --prune`")
    fps = dict(g.attrs.get("fingerprints", {}))
    n = int(g.attrs.get("n_frames", -1))
    bad = []
    for name in names:
        fp = fps.get(name)
        if name not in g:
            bad.append(f"{name} is missing")
        elif fp in (None, *UNUSABLE):
            why = {None: "unfingerprinted", "stale": "stale (an update did not finish)",
                   "damaged": "damaged (a chunk could not be read)"}[fp]
            bad.append(f"{name} is {why}")
        elif g[name].shape[0] != n:
            bad.append(f"{name} has {g[name].shape[0]} rows for {n} frames")
        elif lost := missing_chunks(g[name], where / name):
            bad.append(f"{name} {_lost(lost)}")
        elif name == "labels" and (why := changed_labels(g.attrs)):
            bad.append(why)
    if bad:
        raise UnusableVideo(where, f"video {video!r}: " + "; ".join(bad), f"run {fix}")
    return {name: fps[name] for name in names}


# ---------------------------------------------------------------- writing


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
        if resume is not None:
            self.group = zarr.open_group(LocalStore(self.path), mode="r+")
            self.n = {n: int(resume["rows"][n]) for n in names}
            self.arrays = {n: self.group[n].with_config(_WRITE_EVERY_CHUNK) for n in names}
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
                              fill_value=arrays.fill_value(name), compressors=_codecs(dtype), overwrite=True,
                              attributes={EVERY_CHUNK: True}, config=_WRITE_EVERY_CHUNK)


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


# ---------------------------------------------------------------- building beside, then swapping in


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


def index_row(cache: str | Path, dataset: str, video: str) -> dict:
    """An index row rebuilt from a done group's attrs (the group is the truth; the index is a summary)."""
    g = open_video(cache, dataset, video)
    a = dict(g.attrs)
    row = {c: a.get(c) for c in INDEX_COLUMNS}
    bad = unusable_arrays(g)
    error = ("unusable arrays: " + "; ".join(f"{k} {v}" for k, v in bad.items())) if bad else None
    row.update(video=video, status=a.get("status"), error=error, n_frames=int(a.get("n_frames", 0)),
               faces=a.get("faces") or "video",   # groups made before the face source was recorded: the video path
               label_frame_diff=int(a.get("label_frame_diff") or 0),
               faces_frame_diff=int(a.get("faces_frame_diff") or 0),
               n_valid=_count_valid(g),
               fingerprints=json.dumps(a.get("fingerprints", {}), sort_keys=True),
               video_arousal=(a.get("video_labels") or {}).get("arousal"),
               video_valence=(a.get("video_labels") or {}).get("valence"),
               labelled=labelled(a))
    row["note"] = video_note(a, row["n_valid"], "valid" not in bad) or None
    return row


def video_note(attrs, n_valid: int, valid_usable: bool = True) -> str:
    """What a done video's index row says though nothing failed: no face in any frame (kept: a real result, read as
    all frames masked), or fewer frames decoded than the header declares (kept: headers are often approximate)."""
    notes = []
    if attrs.get(UNLISTED):
        notes.append(f"{attrs[UNLISTED]}: kept, used by no reader (`features --prune` deletes it)")
    if valid_usable and int(attrs.get("n_frames", 0)) and n_valid == 0:
        notes.append(f"{NO_FACE}: check the video, or take faces from elsewhere with --faces cropped_aligned or "
                     "--faces openface")
    declared = int(attrs.get("declared_frames") or 0)
    if declared:
        notes.append(f"decoded {int(attrs.get('n_frames', 0))} of the {declared} frames its header declares: the "
                     "file may be cut or damaged (re-copy or re-encode it), or its header is wrong")
    return "; ".join(notes)


def _count_valid(g: zarr.Group) -> int:
    try:
        return int(np.asarray(g["valid"][:]).sum())
    except Exception:   # missing or damaged: the error column says which arrays are unusable
        return 0


def write_index(cache: str | Path, dataset: str, rows: list[dict]) -> Path:
    """Write index.parquet atomically (a temporary file of this process, then rename)."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    for c in ("n_frames", "n_valid", "width", "height", "source_size", "label_frame_diff", "faces_frame_diff"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype("int64")
    for c in ("fps", "seconds", "source_mtime", "video_arousal", "video_valence"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in ("video", "split", "source", "status", "error", "fingerprints", "faces", "note"):
        df[c] = df[c].astype("string")
    df["labelled"] = df["labelled"].astype("boolean")   # NA: not recorded (rows made before the column)
    tmp = path.with_suffix(f".parquet.{os.getpid()}.tmp")
    df.sort_values("video").to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
