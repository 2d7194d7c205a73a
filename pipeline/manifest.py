"""Datasets: where their videos and labels live (data_manifest.yaml) and how their label files read."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from features.errors import BadInputError

MANIFEST = Path(__file__).resolve().parent.parent / "data_manifest.yaml"
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
LAYOUTS = ("affwild", "affwild2", "omg", "videos")


@dataclass
class Dataset:
    """One dataset of the manifest, with its root resolved."""

    name: str
    layout: str
    root: Path
    fps: float | None
    options: dict = field(default_factory=dict)


@dataclass
class VideoEntry:
    """One video to process: its cache id, file, split and where its labels come from."""

    video: str
    path: Path
    split: str
    label_files: dict = field(default_factory=dict)   # per-frame: {"arousal": path, "valence": path} or {"both": path}
    video_labels: dict | None = None                   # video level (OMG): {"arousal": a, "valence": v}


def load_manifest(path: str | Path | None = None) -> dict:
    """Read the manifest (default: data_manifest.yaml beside the code, or $MIMAMO_MANIFEST)."""
    path = Path(path or os.environ.get("MIMAMO_MANIFEST") or MANIFEST)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInputError(path, "manifest not found", "set MIMAMO_MANIFEST or pass --manifest") from None
    except yaml.YAMLError as e:
        raise BadInputError(path, f"malformed YAML: {e}", "fix the manifest") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise BadInputError(path, "malformed manifest: no 'datasets' mapping", "see data_manifest.yaml in the repo")
    for name, spec in data["datasets"].items():
        if not isinstance(spec, dict) or spec.get("layout") not in LAYOUTS or "root_env" not in spec:
            raise BadInputError(path, f"malformed manifest entry {name!r}: needs 'layout' (one of {', '.join(LAYOUTS)}) "
                                "and 'root_env'", "fix the manifest")
    return data


def dataset_names(manifest: dict | None = None) -> list[str]:
    """The names of the datasets the manifest knows."""
    return sorted((manifest or load_manifest())["datasets"])


def resolve_root(name: str, spec: dict, root: str | Path | None = None) -> tuple[Path, str]:
    """The dataset's root and where it came from: --root, the environment variable, or the default."""
    if root is not None:
        return Path(root).expanduser(), "--root"
    env = spec["root_env"]
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser(), f"${env}"
    return Path(str(spec.get("root_default", ""))).expanduser(), "default"


def get_dataset(name: str, root: str | Path | None = None, manifest: dict | None = None,
                must_exist: bool = True) -> Dataset:
    """Look a dataset up by name; an unknown name lists the known ones, a missing root names the variable."""
    manifest = manifest or load_manifest()
    specs = manifest["datasets"]
    if name not in specs:
        raise BadInputError(None, f"unknown dataset {name!r}", f"known datasets: {', '.join(sorted(specs))}")
    spec = specs[name]
    path, origin = resolve_root(name, spec, root)
    if must_exist and not path.is_dir():
        hint = f"set {spec['root_env']}=/path/to/{name} or pass --root DIR"
        if name == "demo":
            hint += "; `python cli.py demo-data --out DIR` makes the demo"
        raise BadInputError(path, f"root of dataset {name!r} ({origin}) does not exist", hint)
    opts = {k: v for k, v in spec.items() if k not in ("layout", "root_env", "root_default", "fps")}
    return Dataset(name, spec["layout"], path, spec.get("fps"), opts)


# ---------------------------------------------------------------- listing videos


def list_videos(ds: Dataset) -> list[VideoEntry]:
    """Every video of the dataset with its split and label sources, sorted by id."""
    lister = {"affwild": _list_affwild, "affwild2": _list_affwild2, "omg": _list_omg}[ds.layout]
    entries = lister(ds)
    if not entries:
        raise BadInputError(ds.root, f"no videos found for dataset {ds.name!r} (layout {ds.layout})",
                            "check the root and the layout described in data_manifest.yaml")
    return sorted(entries, key=lambda e: e.video)


def videos_from_files(files: list[str | Path]) -> list[VideoEntry]:
    """Unlabelled entries for explicit video files (`--videos`); ids must be unique."""
    entries, seen = [], {}
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise BadInputError(p, "no such video file", "check the path")
        if p.stem in seen:
            raise BadInputError(p, f"two videos share the id {p.stem!r} (also {seen[p.stem]})", "rename one")
        seen[p.stem] = p
        entries.append(VideoEntry(p.stem, p, "predict"))
    return entries


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())


def _list_affwild(ds: Dataset) -> list[VideoEntry]:
    vroot = ds.root / "videos"
    if not vroot.is_dir():
        raise BadInputError(vroot, "missing the videos/ folder of an Aff-Wild layout",
                            "expected videos/{train,test}/<id>.mp4")
    out = []
    for split_dir in sorted(p for p in vroot.iterdir() if p.is_dir()):
        for p in _videos_in(split_dir):
            ann = ds.root / "annotations" / split_dir.name
            files = {d: ann / d / f"{p.stem}.txt" for d in ("arousal", "valence")}
            out.append(VideoEntry(p.stem, p, split_dir.name,
                                  files if all(f.is_file() for f in files.values()) else {}))
    return out


def _list_affwild2(ds: Dataset) -> list[VideoEntry]:
    ann_root = ds.root / ds.options.get("annotations", "annotations/VA_Set")
    vid_root = ds.root / ds.options.get("videos", "videos")
    splits = ds.options.get("splits") or {"Train_Set": "train", "Validation_Set": "validation"}
    by_stem = {p.stem: p for p in _videos_in(vid_root)} if vid_root.is_dir() else {}
    if not by_stem:
        raise BadInputError(vid_root, "no videos under the Aff-Wild2 videos folder", "set 'videos' in the manifest")
    out = []
    for folder, split in splits.items():
        for txt in sorted((ann_root / folder).glob("*.txt")):
            # two-person videos: <video>_left / <video>_right share one file but are two cache entries
            stem = txt.stem
            base = stem.rsplit("_", 1)[0] if stem.endswith(("_left", "_right")) else stem
            if base not in by_stem:
                raise BadInputError(txt, f"no video file for annotation {stem!r} under {vid_root}",
                                    "check the videos folder in the manifest")
            out.append(VideoEntry(stem, by_stem[base], split, {"both": txt}))
    return out


def _list_omg(ds: Dataset) -> list[VideoEntry]:
    vid_root = ds.root / ds.options.get("videos", "videos")
    out = []
    for split, name in (ds.options.get("csv") or {}).items():
        path = ds.root / name
        if not path.is_file():
            continue
        for lineno, row in _read_csv_rows(path, ("video", "utterance", "arousal", "valence")):
            clip = vid_root / row["video"] / row["utterance"]
            try:
                labels = {"arousal": float(row["arousal"]), "valence": float(row["valence"])}
            except ValueError:
                raise BadInputError(path, f"line {lineno}: arousal/valence are not numbers", "fix the CSV") from None
            # utterance names repeat across videos (utterance_1.mp4): the id joins both
            out.append(VideoEntry(f"{row['video']}__{Path(row['utterance']).stem}", clip, split, {}, labels))
    return out


def _read_csv_rows(path: Path, required: tuple[str, ...]):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BadInputError(path, f"line 1: missing columns {missing}", f"expected at least {list(required)}")
        yield from enumerate(reader, start=2)


# ---------------------------------------------------------------- label files


def read_value_file(path: Path) -> np.ndarray:
    """Aff-Wild label file: one float per line; a bad line is an error naming file and line."""
    vals = []
    with open(path) as fh:
        for i, line in enumerate(fh, start=1):
            s = line.strip()
            if not s:
                continue
            try:
                vals.append(float(s))
            except ValueError:
                raise BadInputError(path, f"line {i}: {s[:40]!r} is not a number", "one float per line") from None
    return np.asarray(vals, dtype=np.float32)


def read_affwild2_file(path: Path) -> np.ndarray:
    """Aff-Wild2 VA file: header valence,arousal; -5 marks unannotated frames (NaN here). Returns [T, 2] (a, v)."""
    rows = []
    with open(path) as fh:
        header = fh.readline().strip().replace(" ", "").lower()
        if header != "valence,arousal":
            raise BadInputError(path, f"line 1: header {header!r}, expected 'valence,arousal'", "is this a VA_Set file?")
        for i, line in enumerate(fh, start=2):
            s = line.strip()
            if not s:
                continue
            parts = s.split(",")
            try:
                v, a = float(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                raise BadInputError(path, f"line {i}: {s[:40]!r} is not 'valence,arousal'", "fix the file") from None
            rows.append((a, v))
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 2)
    arr[(arr <= -5 + 1e-6).any(axis=1)] = np.nan
    return arr


def load_labels(entry: VideoEntry) -> np.ndarray | None:
    """Per-frame labels [T, 2] (arousal, valence) float32, NaN = unlabelled; None when the video has none."""
    files = entry.label_files
    if "both" in files:
        return read_affwild2_file(files["both"])
    if files:
        a, v = read_value_file(files["arousal"]), read_value_file(files["valence"])
        if len(a) != len(v):
            raise BadInputError(files["arousal"], f"{len(a)} arousal lines but {len(v)} valence lines "
                                f"in {files['valence']}", "both files need one line per frame")
        return np.stack([a, v], axis=1)
    return None


def fit_labels(labels: np.ndarray, n_frames: int, path: Path | str) -> np.ndarray:
    """Check that a label file has one row per decoded frame; the error gives both numbers."""
    if len(labels) != n_frames:
        raise BadInputError(path, f"label count mismatch: {len(labels)} label lines but the video decodes to "
                            f"{n_frames} frames", "labels must have one line per frame")
    return labels
