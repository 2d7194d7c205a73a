"""The `features` flags that run a dataset's extraction again as it was run before: what a repair command repeats.

A reader (train, predict, export, inspect, info) that meets an unusable video prints the `features` command that
repairs it (store.repair_command), and a researcher pastes it into a shell. So the command must make the group as the
dataset's other videos were made. Without the settings of the run that made them it was refused (a face source other
than the done videos': features_cmd.keep_face_source), failed (the default root or crop folder not found; a label file
a frame longer than the video without --label-slack), or made arrays under other fingerprints (other weights, seed,
gamma jitter or tracker settings), which every reader then refuses as made with different settings across videos.

The values come from what `features` recorded, never from the reader's own arguments or environment:

- ``--root``: the root the last run read (``dataset_root.json``, label_files.last_root), where that run was given
  --root or took it from the dataset's environment variable: the command is pasted into another shell (a login
  node, a batch script) that may not set it, and would then read the manifest's default root. A root from the
  manifest's default is found the same way again. A cache copied or moved (to a cluster) reads the root readers
  compare labels with there: beside the cache where the two were copied together (label_files.last_root), else,
  the recorded root gone, the one found now (label_files.current_root: the dataset's variable); it is given as
  --root wherever it is not the recorded one.
- ``--faces``: the source most done videos came from (the index's ``faces``, counted as keep_face_source counts), so
  the command is never refused; ``--crops-dir``/``--openface-dir``: the folders a group of that source read (its
  attrs ``settings.faces_dir``), left out where the manifest names those same folders under that root. A folder
  under the recorded root is given at the same place under the root above, one outside it beside a moved cache
  where copied with it: else a copy's command read the original's crops (silently, the original still there) or
  failed (it deleted).
- ``--label-slack``: the largest label-file or crop/CSV difference the done videos recorded (index columns
  ``label_frame_diff``, ``faces_frame_diff``) or their run was given: a larger slack accepts more, changes nothing.
- ``--weights``/``--seed``/``--gamma-jitter``/``--detect-every``: what made the group's resnet50 and faces
  (attrs ``made_with``; ``settings`` for groups made before it), where they differ from a run's defaults.

Motion settings are not here: ``--motion-variant NAME`` (arrays.make_flags) makes a run re-read a named variant's
settings from the groups (features_cmd.recorded_variant). How a run is run (device, workers, scheduler,
--chunk-frames) decides no array and is left to the user.
"""
from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from pipeline import label_files
from pipeline.cache_layout import dataset_dir, group_status, open_video

GROUPS_READ = 20   # done groups read at most for one record: the first usually holds everything (cheap either way)
_FOLDER_FLAG = {"cropped_aligned": ("--crops-dir", "crops"), "openface": ("--openface-dir", "openface_dir")}


def flags(cache, dataset: str, skip=()) -> list[str]:
    """The flags (argv tokens, unquoted) that make a `features` run of this dataset read and make what its last run
    and its done videos recorded, beside the stages and variants a repair names; ``skip``: flags the caller gives
    itself (train --augment flip names the clean arrays' --weights). [] for a cache that records nothing."""
    rec = recorded(cache, dataset)
    out: list[tuple[str, str]] = []
    last = label_files.last_root(cache, dataset)
    was = label_files.recorded_root(cache, dataset)
    root = _root_now(cache, dataset, last)
    if root is not None and (last[1] == "--root" or last[1].startswith("$") or root.resolve() != was.resolve()):
        out.append(("--root", str(root)))
    faces = rec.get("faces")
    spec = label_files.dataset_spec(dataset) or {}
    if faces and (faces != "video" or spec.get("faces", "video") != "video"):   # else a run's default gives it
        out.append(("--faces", faces))
    flag, key = _FOLDER_FLAG.get(faces, (None, None))
    folders = [_folder_now(cache, dataset, f, was, root) for f in rec.get("faces_dir") or []]
    if flag and folders != _manifest_folders(spec.get(key), root):
        out += [(flag, folder) for folder in folders]
    if rec.get("label_slack"):
        out.append(("--label-slack", str(rec["label_slack"])))
    out += _made_flags(rec)
    return [t for pair in out if pair[0] not in skip for t in pair]


def _root_now(cache, dataset: str, last: tuple[Path, str] | None) -> Path | None:
    """The root a repair reads: the last run's (beside the cache if both were copied: label_files.last_root), or,
    where that folder is gone (a cache copied to a cluster, the dataset elsewhere there), the root readers compare
    label files with now (label_files.current_root: the dataset's variable, the manifest's default); the recorded
    one where neither is found (the command then says it does not exist)."""
    if last is None or last[0].is_dir():
        return last[0] if last else None
    return label_files.current_root(cache, dataset)[0] or last[0]


def _folder_now(cache, dataset: str, folder: str, was: Path | None, root: Path | None) -> str:
    """A face folder the groups recorded, where the repair finds it: one under the recorded root at the same place
    under the root a repair reads (never the other copy's), one outside it beside the cache if both were copied."""
    rel = label_files.relative(folder, was)
    if rel is not None and root is not None:
        return str((root / rel).resolve())
    return str(label_files.beside_cache(cache, dataset, folder))


def _made_flags(rec: dict) -> list[tuple[str, str]]:
    """--weights, --gamma-jitter, --seed, --detect-every, where what made the arrays differs from a run's defaults."""
    from features.backbone import resolve_weights

    out = []
    weights = rec.get("weights")
    if weights is not None and weights != resolve_weights(None):   # the default resolves to it now: not needed
        out.append(("--weights", weights))
    gamma = float(rec.get("gamma_jitter") or 0)
    if gamma:
        out.append(("--gamma-jitter", repr(gamma)))
    # the seed decides random weights and the jitter; where the two differ (remade apart) the faces' wins: a face
    # fingerprint other than the done videos' would rebuild everything
    seed = rec.get("face_seed") if gamma else rec.get("weights_seed") if weights == "random" else None
    if seed:
        out.append(("--seed", str(seed)))
    if rec.get("detect_every"):
        out.append(("--detect-every", str(rec["detect_every"])))
    return out


def _manifest_folders(named, root: Path | None) -> list[str] | None:
    """The folders a run finds from the manifest under ``root`` (crops may be a list), resolved; None without."""
    if not named or root is None:
        return None
    return [str((root / n).resolve()) for n in ([named] if isinstance(named, str) else named)]


# ---------------------------------------------------------------- what the cache records


def recorded(cache, dataset: str) -> dict:
    """What the dataset's done videos recorded of how they were made: faces, faces_dir (a list), label_slack, weights,
    weights_seed, gamma_jitter, face_seed, detect_every (absent where unknown). Read once per version of the index."""
    path = dataset_dir(cache, dataset) / "index.parquet"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None
    try:
        return dict(_recorded(str(cache), dataset, mtime))
    except Exception:   # an unreadable group: a hint never fails for it; it names what it can
        return {}


@functools.lru_cache(maxsize=8)
def _recorded(cache: str, dataset: str, mtime: int | None) -> tuple:
    try:
        rows = _done_rows(cache, dataset) if mtime is not None else None
    except Exception:   # a damaged index (its hint names this command): the groups it summarises say the same
        rows = None
    if rows is None or rows.empty:   # no index, or none done in it: the groups themselves, in name order
        folder = dataset_dir(cache, dataset) / "videos"
        names = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        return tuple(sorted(_from_groups(cache, dataset, names).items()))
    source = Counter(rows.faces).most_common(1)[0][0]   # the source keep_face_source keeps
    out = _from_groups(cache, dataset, sorted(rows.video[rows.faces == source]))
    out["faces"] = source
    diffs = [int(d) for c in ("label_frame_diff", "faces_frame_diff") if c in rows for d in rows[c].fillna(0)]
    out["label_slack"] = max([abs(d) for d in diffs] + [int(out.get("label_slack") or 0)])
    return tuple(sorted(out.items()))


def _done_rows(cache: str, dataset: str) -> pd.DataFrame:
    idx = pd.read_parquet(dataset_dir(cache, dataset) / "index.parquet")
    idx = idx[idx.status == "done"].copy()
    idx["faces"] = idx["faces"].fillna("video") if "faces" in idx else "video"   # rows before the column: video
    return idx


def _from_groups(cache: str, dataset: str, videos: list[str]) -> dict:
    """The record of the first done group among ``videos``; the weights from the first that holds resnet50."""
    out: dict = {}
    for video in videos[:GROUPS_READ]:
        if group_status(cache, dataset, video) != "done":
            continue
        attrs = dict(open_video(cache, dataset, video).attrs)
        got = _group_record(attrs)
        if not out:
            out = {k: v for k, v in got.items() if not k.startswith("weights")}
        if "weights" in got:
            out.update(weights=got["weights"], weights_seed=got["weights_seed"])
            break
    return out


def _group_record(attrs: dict) -> dict:
    """One group's record of how it was made (made_with per array; the run's settings for older groups)."""
    run = dict(attrs.get("settings") or {})
    made = dict(attrs.get("made_with") or {})
    face = made.get("face48") or made.get("valid") or run
    diffs = [abs(int(attrs.get(k) or 0)) for k in ("label_frame_diff", "faces_frame_diff")]
    out = {"faces": attrs.get("faces") or run.get("faces") or "video",
           "label_slack": max([int(run.get("label_slack") or 0), *diffs]),
           "gamma_jitter": float(face.get("gamma_jitter") or 0), "face_seed": int(face.get("seed") or 0),
           "detect_every": (face.get("face") or {}).get("detect_every")}
    if run.get("faces_dir"):
        out["faces_dir"] = str(run["faces_dir"]).split(os.pathsep)
    elif out["faces"] != "video" and isinstance(attrs.get("face_source"), dict) and attrs["face_source"].get("path"):
        out["faces_dir"] = [str(Path(attrs["face_source"]["path"]).parent)]   # <folder>/<video>/, <folder>/<video>.csv
    enc = made.get("resnet50") or (run if "resnet50" in (attrs.get("fingerprints") or {}) else None)
    if enc is not None and enc.get("weights") is not None:
        out.update(weights=str(enc["weights"]), weights_seed=int(enc.get("seed") or 0))
    return out
