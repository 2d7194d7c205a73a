"""Where a video's labels were read from, and whether the dataset's files still hold them (store.check_arrays); what a
labels array is made from (its fingerprint: the files' contents) and whether a video came with labels.

Each group records the files its labels were read from (attrs ``label_files``: {role: {"path", "sha256",
"relative"}}) and readers (train, predict, export, inspect) compare them with the files as they are now, so a
corrected annotation release is not trained or scored on from the old values. The files are those of the dataset's
root as it is configured NOW, not the absolute path recorded when the group was made: a root and cache copied with
`cp -r` (to a node's scratch) and a label edited in the copy, compared at the old path, scored the old labels without
a word, and a label file gone from that path (the old copy deleted, an annotation moved to another split by a new
release) was taken for "the cache moved, nothing to compare".

So each file is recorded relative to the root (``relative``), and every `features` run records the root it read
(``<cache>/<dataset>/dataset_root.json``: the root, where it came from, where the cache was). The root a reader
compares against (``current_root``), the first of these that is a folder:

- the `--root` of the last `features` run (readers have no --root), or, if the cache has moved since, the folder at
  the same place relative to the cache (a root and cache copied together);
- the root as configured now: the dataset's environment variable, else the manifest's default;
- where the last `features` run read it (a root from the environment of that one command, say).

A recorded file that is not under that root is said, with where a file of its name is now (another split's folder)
and the `features` run that reads the dataset again; only a cache read where no root is found at all (moved without
its dataset) has nothing to compare, and train and predict say so (``unchecked_note``). Groups made before files
were recorded relative to the root are compared at their recorded paths where those lie under the root found, and
refused where they lie outside it (read from another copy), until `features` records them anew (nothing else is
extracted again).
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from pipeline import arrays, label_tables
from pipeline.cache_layout import fingerprint

RECORD = "dataset_root.json"


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


def relative(path, root) -> str | None:
    """``path`` relative to ``root`` (posix), or None when it is not under it. Not resolved: a symlinked file (a
    git-annex or DVC checkout) stays where the dataset names it."""
    if root is None:
        return None
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return None


# ---------------------------------------------------------------- recording (features)


def label_record(entry) -> dict[str, dict]:
    """A group's attrs["label_files"]: each file a video's labels were read from, {role: {"path": absolute path,
    "sha256": of its contents, "relative": to the dataset's root}}: its label files, and OMG's label table (role
    "table")."""
    files = {**entry.label_files, **({"table": entry.label_table} if entry.label_table else {})}
    root = getattr(entry, "root", None)
    out = {}
    for role, p in files.items():
        if Path(p).is_file():   # relative None: read from outside the root (an entry made without one)
            out[role] = {"path": str(Path(p).resolve()), "sha256": _sha256(p), "relative": relative(p, root)}
    return out


def absent_labels(entry) -> list[str]:
    """A group's attrs["labels_absent"]: where an unlabelled entry's labels would be (VideoEntry.labels_absent),
    relative to the dataset's root where under it (else absolute)."""
    root = getattr(entry, "root", None)
    return [relative(p, root) or str(Path(p).resolve()) for p in entry.labels_absent]


def record_root(cache, dataset: str, root, origin: str) -> None:
    """Record the root a `features` run reads (dataset_root.json, written whole through a rename)."""
    here = Path(cache) / dataset
    here.mkdir(parents=True, exist_ok=True)
    rec = {"root": str(Path(root).resolve()), "from": origin, "cache": str(here.resolve())}
    path = here / RECORD
    if _read(path) == rec:
        return
    tmp = path.with_name(f".{RECORD}.{os.getpid()}")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)


def _read(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("root"), str) else None


# ---------------------------------------------------------------- the root now


@functools.lru_cache(maxsize=4)
def _manifest_spec(path: str, mtime_ns: int, dataset: str) -> dict | None:
    from pipeline.manifest import load_manifest

    try:
        return dict(load_manifest(path)["datasets"].get(dataset) or {}) or None
    except Exception:   # an unreadable manifest configures nothing here; `features` says what is wrong with it
        return None


def dataset_spec(dataset: str) -> dict | None:
    """The dataset's entry in the manifest as it is now (read once per version of the file), or None."""
    from pipeline.manifest import MANIFEST

    path = Path(os.environ.get("MIMAMO_MANIFEST") or MANIFEST)
    try:
        return _manifest_spec(str(path), path.stat().st_mtime_ns, dataset)
    except OSError:
        return None


def _configured(dataset: str) -> tuple[Path, str] | None:
    """The dataset's root as configured now (its environment variable, else the manifest's default), and how."""
    from pipeline.manifest import resolve_root

    spec = dataset_spec(dataset)
    if spec is None or "root_env" not in spec:
        return None
    root, origin = resolve_root(dataset, spec)
    if not str(root):
        return None
    how = f"from ${spec['root_env']}" if origin.startswith("$") else "the manifest's root_default"
    return root, how


def last_root(cache, dataset: str) -> tuple[Path, str] | None:
    """(the root the last `features` run read, where it came from: "--root", "$VAR" or "default"), or None where none
    is recorded. The root is found as readers find it: at the same place beside the cache if the cache has moved and
    a folder is there (a root and cache copied together), else where it was read."""
    rec = _read(Path(cache) / dataset / RECORD)
    if rec is None:
        return None
    return beside_cache(cache, dataset, rec["root"]), str(rec.get("from"))


def recorded_root(cache, dataset: str) -> Path | None:
    """The root the last `features` run read, as it recorded it (where it was then), or None."""
    rec = _read(Path(cache) / dataset / RECORD)
    return Path(rec["root"]) if rec is not None else None


def beside_cache(cache, dataset: str, path) -> Path:
    """A folder the last `features` run read (its root, a crops folder), at the same place beside the cache if the
    cache has moved since and a folder is there (copied together), else ``path`` as recorded."""
    rec = _read(Path(cache) / dataset / RECORD)
    here = Path(cache) / dataset
    try:
        if rec is not None and here.resolve() != Path(rec["cache"]):
            beside = Path(os.path.normpath(here.resolve() / os.path.relpath(path, rec["cache"])))
            if beside.is_dir():
                return beside
    except (KeyError, TypeError, ValueError):
        pass
    return Path(path)


def current_root(cache, dataset: str) -> tuple[Path | None, str]:
    """(the dataset's root to compare label files against, how it was found), or (None, what was looked for)."""
    here = Path(cache) / dataset
    rec = _read(here / RECORD)
    tried: list[tuple[Path, str]] = []

    def recorded(how: str) -> None:
        try:
            moved = here.resolve() != Path(rec["cache"])
            beside = Path(os.path.normpath(here.resolve() / os.path.relpath(rec["root"], rec["cache"])))
        except (KeyError, TypeError, ValueError):
            moved, beside = False, None
        if moved and beside is not None:
            tried.append((beside, f"{how}, at the same place beside the cache, which has moved"))
        tried.append((Path(rec["root"]), how))

    if rec and rec.get("from") == "--root":
        recorded("the --root of the last `features` run")
    if (conf := _configured(dataset)) is not None:
        tried.append(conf)
    if rec and rec.get("from") != "--root":
        recorded(f"where the last `features` run read it ({rec.get('from')} then)")
    for path, how in tried:
        if path.is_dir():
            return path.resolve(), how
    return None, "; ".join(f"{p} ({how})" for p, how in tried) or "none recorded or configured"


# ---------------------------------------------------------------- reading


def appeared_labels(attrs, cache=None, dataset: str | None = None, video: str | None = None) -> list[str]:
    """The files a group recorded as holding no labels for it yet (attrs labels_absent) that are there now and label
    ``video`` (a table of many videos only where a row names it: label_tables), under the dataset's root as it is now
    (absolute ones, recorded before, where they were)."""
    return released(attrs, cache, dataset, video)[0]


def released(attrs, cache=None, dataset: str | None = None, video: str | None = None) -> tuple[list[str], list[str]]:
    """(the files of attrs labels_absent that are there now and label ``video``, those there now that have no row
    for it): appeared_labels, and the tables a refusal says the video is not in."""
    names = list(attrs.get("labels_absent") or [])
    if not names:
        return [], []
    root = current_root(cache, dataset)[0] if cache is not None and any(not Path(p).is_absolute() for p in names) \
        else None
    labelling, without = [], []
    for p in names:
        path = Path(p) if Path(p).is_absolute() else (root / p if root is not None else None)
        if path is not None and path.is_file():
            (labelling if label_tables.labels_video(path, video) else without).append(str(path))
    return sorted(labelling), sorted(without)


def _elsewhere(root: Path, rel: str) -> list[str]:
    """Files of the same name at the same depth under ``root``, one folder of ``rel`` changed (an annotation moved
    from Validation_Set/ to Train_Set/, from annotations/test/ to annotations/train/)."""
    parts = Path(rel).parts
    found = set()
    for k in range(len(parts) - 1):
        pattern = "/".join([*map(glob.escape, parts[:k]), "*", *map(glob.escape, parts[k + 1:])])
        found |= {p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file()}
    return sorted(found - {rel})


def changed_labels(attrs, cache=None, dataset: str | None = None, video: str | None = None) -> str | None:
    """Why a group's cached labels may no longer be what the dataset's files hold, or None.

    Compared with the files under the dataset's root now (module docstring). None when they match, or when there is
    nothing to compare: no root found at all (a cache moved without its dataset: ``unchecked_note``), or a group
    that records no files (made before they were recorded; no labels).
    """
    if found := appeared_labels(attrs, cache, dataset, video):   # cached as unlabelled; its labels were released since
        return (f"it was cached without labels, and labels for it have appeared since: {', '.join(found)}; "
                "`features` reads them")
    files = [r for r in dict(attrs.get("label_files") or {}).values() if isinstance(r, dict) and "path" in r]
    if not files:
        return None
    root, how = current_root(cache, dataset) if cache is not None else (None, "")
    edited, gone, outside = [], [], []
    for r in files:
        rel = r.get("relative")
        if "relative" not in r and root is not None:   # recorded before paths were relative to the root
            rel = relative(r["path"], root)
            if rel is None:   # read from another root (the copy it was made from): not this dataset's file
                outside.append(r["path"])
                continue
        if rel is not None and root is None:
            continue   # no dataset here to compare with
        path = root / rel if rel is not None else Path(r["path"])   # else read from outside any root: there
        if not path.is_file():
            if rel is not None:
                gone.append(rel)
            continue
        if _sha256(path) != r.get("sha256"):
            edited.append(str(path))
    where = f" (the dataset's root {root}: {how})" if root is not None else ""
    why = []
    if edited:
        why.append(f"labels were cached from files that have changed since: {', '.join(sorted(edited))}{where}")
    if outside:
        why.append(f"its labels were read from {', '.join(sorted(outside))}, outside the dataset's root {root} "
                   f"({how}), by a version that recorded no path relative to the root; `features` reads them from the "
                   "root (nothing else is extracted again)")
    for rel in gone:
        moved = _elsewhere(root, rel)
        why.append(f"its label file {rel} is not there any more{where}"
                   + (f"; the dataset now has {' and '.join(moved)}: moved to another split?" if moved else
                      ": deleted, or the video taken out of the dataset?")
                   + " `features` reads the dataset as it is now (the video's labels and split, or marks a video no "
                     "longer in it)")
    return "; ".join(why) or None


def unchecked_note(cache, dataset: str) -> str | None:
    """A note for a reader of labels that cannot be compared with their files, since no root of the dataset is
    found here (a cache moved without its dataset); None where one is, or where the cache records none."""
    here = Path(cache) / dataset
    if not (here / RECORD).is_file():
        return None
    root, tried = current_root(cache, dataset)
    if root is not None:
        return None
    return (f"note: the labels were not compared with their files: no root of dataset {dataset!r} is found here "
            f"(looked at {tried}); set the dataset's root (its environment variable, or `features --root DIR`) to "
            "have them compared. The labels' fingerprints still say which labels made the numbers")
