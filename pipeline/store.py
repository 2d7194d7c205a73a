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

This module is the cache's one entry point: readers and writers use its names as ``store.X``. It holds the index
and what readers check in a group; the rest lives in modules it re-exports, which never import it: paths, schema and
opening a group in pipeline/cache_layout.py, writing and swapping in pipeline/group_writer.py, where labels were read
from in pipeline/label_files.py.
"""
from __future__ import annotations

import functools
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from features.errors import BadInputError
from pipeline import arrays, rerun
from pipeline.cache_layout import (
    CHUNK_T,
    EVERY_CHUNK,
    NO_FACE,
    REQUIRED,
    SCHEMA,
    UNLISTED,
    UNUSABLE,
    codecs,
    dataset_dir,
    fingerprint,
    group_status,
    open_video,
    video_dir,
    video_fingerprints,
)
from pipeline.group_writer import (
    Superseded,
    VideoWriter,
    create_array,
    mark_damaged,
    mark_stale,
    set_fingerprints,
    staging_dir,
    swap_arrays,
    swap_group,
    write_video,
)
from pipeline.label_files import (
    absent_labels,
    appeared_labels,
    changed_labels,
    known_unlabelled,
    label_record,
    label_source,
    labelled,
    labels_fingerprint,
)

__all__ = [  # the cache's names, wherever they are defined: readers and writers use them as store.X
    "CHUNK_T", "EVERY_CHUNK", "INDEX_COLUMNS", "NO_FACE", "REQUIRED", "SCHEMA", "UNLISTED", "UNUSABLE",
    "Superseded", "UnreadableIndex", "UnusableVideo", "VideoWriter",
    "absent_chunks", "absent_labels", "appeared_labels", "changed_labels", "check_arrays", "chunk_path", "codecs",
    "create_array", "dataset_dir", "done_videos", "fingerprint", "group_status", "index_row", "known_unlabelled",
    "label_record", "label_source", "labelled", "labels_fingerprint", "mark_damaged", "mark_stale", "missing_chunks",
    "open_video", "read_index", "rebuild_names", "repair_command", "repair_hint", "set_fingerprints", "staging_dir",
    "swap_arrays", "swap_group", "unusable_arrays", "video_dir", "video_fingerprints", "video_note", "write_index",
    "write_video", "extract_command", "no_index",
]

# faces: where the faces came from (video, cropped_aligned, openface); label_frame_diff: label lines minus frames,
# accepted by --label-slack (labels truncated or padded with NaN at the end); faces_frame_diff: the same for the
# crop folder (crops numbered past the last frame) or the OpenFace CSV (CSV frames minus video frames).
# note: what a reader of a done video should know though nothing failed (video_note): no face in any frame, or a
# video that decoded to fewer frames than its header declares.
INDEX_COLUMNS = ["video", "split", "n_frames", "fps", "width", "height", "source", "source_size", "source_mtime",
                 "n_valid", "status", "error", "seconds", "fingerprints", "video_arousal", "video_valence",
                 "faces", "label_frame_diff", "faces_frame_diff", "note", "labelled"]


# ---------------------------------------------------------------- the index


def read_index(cache: str | Path, dataset: str) -> pd.DataFrame | None:
    """The dataset's index (one row per video), or None when there is none; BadInputError when it cannot be read."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:   # a damaged file (disk full, a copy cut short): the groups still hold everything
        raise UnreadableIndex(path, f"the index cannot be read ({type(e).__name__}: {str(e)[:200]})",
                              f"it is a summary of the groups: rerun `{extract_command(cache, dataset)}`, which "
                              "rebuilds it (videos already done are skipped)") from None


class UnreadableIndex(BadInputError):
    """index.parquet exists but is not a readable Parquet file."""


def done_videos(cache: str | Path, dataset: str, split: str | None = None) -> pd.DataFrame:
    """Index rows of the videos whose group is complete (optionally one split), sorted by video."""
    idx = read_index(cache, dataset)
    if idx is None:
        raise no_index(cache, dataset)
    idx = idx[idx.status == "done"]
    if split is not None:
        idx = idx[idx.split == split]
    return idx.sort_values("video").reset_index(drop=True)


# ---------------------------------------------------------------- what readers check in a group


class UnusableVideo(BadInputError):
    """A reader met a video whose group cannot give the arrays it needs (not done, missing, stale)."""


def repair_command(cache: str | Path, dataset: str, names=(), extra=()) -> str:
    """The `features` command that (re)makes these arrays of a dataset in this cache, as a shell line to paste.

    It repeats what the dataset's last run and done videos recorded (pipeline/rerun.py: the --root given, the face
    source and its folders, the label slack, weights, seed, jitter), so the group it makes is accepted and made like
    the others; ``extra``: further argv tokens (a flag there replaces the recorded one of that name). Each token is
    shell-quoted: roots and cache folders have spaces."""
    recorded = rerun.flags(cache, dataset, skip={t for t in extra if t.startswith("--")})
    return _features_line(cache, dataset, [*arrays.make_flags(names), *recorded, *extra])


def _features_line(cache: str | Path, dataset: str, flags) -> str:
    what = ["VIDEO_FILES..."] if dataset == "videos" else ["--dataset", dataset]   # `features a.mp4 ...` makes 'videos'
    args = ["features", *what, "--cache", str(cache), *flags]
    return "python cli.py " + " ".join(t if t == "VIDEO_FILES..." else shlex.quote(t) for t in args)


def extract_command(cache: str | Path, dataset: str) -> str:
    """The `features` command for a dataset without an index, quoted. Where its folder records how a run read it
    (the groups of a first run stopped before it wrote its index, its dataset_root.json) it is repair_command's, with
    the stages of a default run (without arrays it would ask for align only)."""
    if not rerun.flags(cache, dataset):
        # nothing recorded: no cache of this dataset yet (or one made with the defaults), so there is no flag to
        # repeat; --root, --faces, --weights are the user's choice, which nothing here can tell
        return _features_line(cache, dataset, [])
    from pipeline.settings import Settings, wanted_arrays  # here: pipeline.settings imports this module

    return repair_command(cache, dataset, wanted_arrays(Settings()))


def no_index(cache: str | Path, dataset: str) -> BadInputError:
    """What a reader raises where the dataset has no index: nothing of it is known as done."""
    return BadInputError(dataset_dir(cache, dataset), f"no feature cache for dataset {dataset!r}",
                         f"run `{extract_command(cache, dataset)}` first")


def repair_hint(cache: str | Path, dataset: str, names=(), first=(), every=()) -> str:
    """The `features` command(s), quoted, that (re)make these arrays: one per run (arrays.runs: a run makes one
    motion variant), "`A`, then `B`" where they are of several variants. ``first``: argv tokens for the first run
    only (the one that makes a group anew, e.g. --force); ``every``: for each run (--replace-variant, which each
    variant's run needs for its own arrays)."""
    runs = arrays.runs(names) or [()]
    return ", then ".join(f"`{repair_command(cache, dataset, run, [*(first if k == 0 else ()), *every])}`"
                          for k, run in enumerate(runs))


def rebuild_names(cache: str | Path, dataset: str, names=()) -> list[str]:
    """The arrays to make for a video whose group is made anew: ``names`` (what a reader needs) and every array the
    dataset's done videos hold (by the index), named variants included (`dphase_s0@paper`, `flow@gamma0.2`): a
    repair that made only the default ones left the video without them, refused again by the next reader of a
    variant. Each variant is a `features` run of its own; repair_hint names them all."""
    try:
        held = held_arrays(cache, dataset) or ()
    except UnreadableIndex:   # a damaged index: only what the reader named
        held = ()
    return list(dict.fromkeys([*names, *held]))


def held_arrays(cache: str | Path, dataset: str) -> tuple[str, ...] | None:
    """Every array (of a kind this code knows) that some done video of the dataset holds, by the index; None without
    an index. Raises UnreadableIndex for a damaged one."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        return None
    return _held_arrays(str(path), mtime_ns)


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


def check_arrays(cache: str | Path, dataset: str, video: str, names) -> dict[str, str]:
    """The fingerprints, read from the video's group itself, of the arrays a reader needs.

    The group must be done, and each array present, as long as the video, and under a real fingerprint (not
    'stale' or missing). Otherwise UnusableVideo names the video, what is wrong and the command that repairs it.
    The index is a summary; this is the check readers (train, predict, export, inspect) rely on.
    """
    names = list(names)
    where = video_dir(cache, dataset, video)
    status = group_status(cache, dataset, video)

    def fix() -> str:   # built only for a video refused: a reader checks thousands that pass
        # a group not done is made again whole by the command: it must make what the dataset's other videos hold
        # too (a reader that cannot see in it, as export, asks for nothing), not only the arrays this reader named
        return repair_hint(cache, dataset, names if status == "done" else rebuild_names(cache, dataset, names))

    if status is None:   # no group: its extraction failed (the caller adds why) or never ran
        raise UnusableVideo(where, f"video {video!r} has no features in the cache", f"fix what its extraction failed "
                            f"on, if it did, then run {fix()}")
    if status != "done":
        raise UnusableVideo(where, f"video {video!r} is not complete in the cache (status {status})", f"run {fix()}")
    g = open_video(cache, dataset, video)
    if why := g.attrs.get(UNLISTED):
        raise UnusableVideo(where, f"video {video!r} {why}", f"put it back in the dataset and rerun {fix()}, or "
                            f"delete it with `{repair_command(cache, dataset, extra=['--prune'])}`")
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
        elif name == "labels" and (why := changed_labels(g.attrs, cache, dataset, video)):
            bad.append(why)
    if bad:
        raise UnusableVideo(where, f"video {video!r}: " + "; ".join(bad), f"run {fix()}")
    return {name: fps[name] for name in names}


# ---------------------------------------------------------------- index rows, from the groups


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
    all frames masked), fewer frames decoded than the header declares (kept: headers are often approximate), or
    organiser crops that stop well before the video's end (kept: the person may have left)."""
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
    n, last = int(attrs.get("n_frames", 0)), int(attrs.get("crops_last_frame") or 0)
    if last and n - last > max(float(attrs.get("fps") or 30), n / 4):   # over a second and a quarter of it
        counted = attrs.get("frames_counted") or "the cache has"
        notes.append(f"its organiser crops stop at frame {last} of {n} ({counted} {n}): the crop folder may be "
                     "incomplete (a partly unpacked archive: unpack it again), or the person is not shown after that "
                     "frame")
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
    try:
        df.sort_values("video").to_parquet(tmp, index=False)
        tmp.replace(path)
    except OSError as e:   # a full disk, a quota: the run stopped with a traceback and left its half-written file
        tmp.unlink(missing_ok=True)
        raise BadInputError(path, f"could not write the index ({e.strerror or e}); the index there is as before",
                            "free space on the cache's disk (or raise its quota) and run the same command again: "
                            "videos already done are kept in their groups, and its run records them") from None
    return path
