"""Datasets: where their videos and labels live (data_manifest.yaml), read and checked here, and the listing of a
dataset's videos: ids unique, each named where it came from. The per-layout listers are pipeline/affwild_listing.py
and pipeline/omg_listing.py, the entries pipeline/entries.py, the label files' reading pipeline/annotations.py; their
names are also importable from here, as they were when all of it lived in this module."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from features.errors import BadInputError
from pipeline.affwild_listing import AFFWILD2_SPLITS, PERSON_SUFFIXES, list_affwild, list_affwild2, person_of
from pipeline.annotations import fit_labels, load_labels, read_affwild2_file, read_value_file
from pipeline.entries import VIDEO_EXTS, Dataset, VideoEntry, failed_entry, videos_in
from pipeline.ids import id_problem
from pipeline.omg_listing import list_omg, omg_id, read_csv_rows

__all__ = [   # what other modules and tests import from here, defined in the modules named above
    "AFFWILD2_SPLITS", "LAYOUTS", "MANIFEST", "PERSON_SUFFIXES", "VIDEO_EXTS", "Dataset", "VideoEntry", "dataset_names",
    "failed_entry", "fit_labels", "get_dataset", "guard_ids", "list_videos", "load_labels", "load_manifest", "named_in",
    "omg_id", "person_of", "read_affwild2_file", "read_value_file", "resolve_root", "unique_ids", "videos_from_files",
    "videos_in",
]
_read_csv_rows = read_csv_rows   # its name before the split (tests/test_text_files.py)

MANIFEST = Path(__file__).resolve().parent.parent / "data_manifest.yaml"
LAYOUTS = ("affwild", "affwild2", "omg", "videos")


def load_manifest(path: str | Path | None = None) -> dict:
    """Read the manifest (default: data_manifest.yaml beside the code, or $MIMAMO_MANIFEST)."""
    path = Path(path or os.environ.get("MIMAMO_MANIFEST") or MANIFEST)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInputError(path, "manifest not found", "set MIMAMO_MANIFEST=/path/to/data_manifest.yaml, or "
                            "unset it to use the one beside cli.py") from None
    except yaml.YAMLError as e:
        raise BadInputError(path, f"malformed YAML: {e}", "fix the manifest") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise BadInputError(path, "malformed manifest: no 'datasets' mapping", "see data_manifest.yaml in the repo")
    for name, spec in data["datasets"].items():
        if not isinstance(spec, dict) or spec.get("layout") not in LAYOUTS or "root_env" not in spec:
            raise BadInputError(path, f"malformed manifest entry {name!r}: needs 'layout' (one of {', '.join(LAYOUTS)}) "
                                "and 'root_env'", "fix the manifest")
        for key, value in spec.items():
            problem = _entry_value_problem(key, value)
            if key == "videos" and isinstance(value, dict) and spec["layout"] != "omg":
                problem = "a mapping of splits to folders is for the omg layout (one folder per split's clips)"
            if problem:
                raise BadInputError(path, f"manifest entry {name!r}: {key}: {problem}, got {value!r}",
                                    "fix the manifest (see data_manifest.yaml in the repo)")
    return data


_FOLDER_KEYS = ("root_env", "root_default", "annotations", "openface_dir", "test_list")


def _entry_value_problem(key: str, value) -> str | None:
    """What is wrong with one value of a manifest entry (None if fine): a wrong type fails here, naming the key,
    not later as a traceback deep in a run."""
    if key in _FOLDER_KEYS and not isinstance(value, str):
        return "expected a string"
    if key == "crops" and not (isinstance(value, str) or (isinstance(value, list) and value and all(
            isinstance(v, str) for v in value))):
        return "expected a folder, or a list of them (searched in order)"
    if key == "videos" and not (isinstance(value, str) or (isinstance(value, dict) and value and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()))):
        return "expected a folder, or (omg) a mapping of splits to folders, e.g. {train: Train, test: Test}"
    if key == "fps" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                               or value <= 0):
        return "expected a positive number of frames per second"
    if key == "splits" and not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                 for k, v in value.items())):
        return "expected a mapping of names to names, e.g. {Train_Set: train}"
    if key == "csv" and not (isinstance(value, dict) and all(
            isinstance(k, str) and (isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(n, str)
                                                                                            for n in v)))
            for k, v in value.items())):
        return "expected a mapping of splits to a CSV name or a list of them, e.g. {train: omg_TrainVideos.csv}"
    if key == "faces" and value not in ("video", "cropped_aligned", "openface"):
        return "expected video, cropped_aligned or openface"
    return None


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
    return Dataset(name, spec["layout"], path, spec.get("fps"), opts, origin)


# ---------------------------------------------------------------- listing videos


def list_videos(ds: Dataset, require_video: bool = True, echo=None) -> list[VideoEntry]:
    """Every video of the dataset with its split and label sources, sorted by id.

    Ids are checked where they are made (pipeline.ids): a bad one, a second entry with the same id, or (with
    `require_video`) an annotation without its video file is an entry that fails alone, naming the file and line.
    ``echo`` gets the notes of the listing: a split whose CSV (OMG) or annotation folder (Aff-Wild2) is absent.
    """
    if ds.layout == "affwild2":
        entries = list_affwild2(ds, require_video, echo)
    else:
        entries = list_omg(ds, echo) if ds.layout == "omg" else list_affwild(ds)
    if not entries:
        raise BadInputError(ds.root, f"no videos found for dataset {ds.name!r} (layout {ds.layout})",
                            "check the root and the layout described in data_manifest.yaml")
    for e in entries:
        e.fps = e.fps or ds.fps
        e.root, e.root_from = ds.root, ds.origin
    return sorted(unique_ids(entries), key=lambda e: e.video)


def unique_ids(entries: list[VideoEntry]) -> list[VideoEntry]:
    """A second entry with an id already taken fails (two videos cannot share one cache group)."""
    seen: dict[str, VideoEntry] = {}
    out = []
    for e in entries:
        first = seen.setdefault(e.video, e)
        if first is not e and e.problem is None:
            e = _second_entry(e, first)
        k = 1
        while e.video in seen and seen[e.video] is not e:   # failed entries' stand-ins stay unique too
            k += 1
            e.video = f"{e.video.rsplit('#', 1)[0]}#{k}"
        seen[e.video] = e
        out.append(e)
    return out


def named_in(e: VideoEntry) -> tuple[Path, int | None]:
    """(file, line or None) where an entry was named: its list or CSV line, else its annotation or video file."""
    if e.named_in is not None:
        return Path(e.named_in[0]), e.named_in[1]
    return Path(str(next(iter(e.label_files.values()), e.path))), None


def _second_entry(e: VideoEntry, first: VideoEntry) -> VideoEntry:
    """The failed entry of a second `e` with the id of `first`, named where `e` was named (file and line) and saying
    where `first` was: a row repeated in one file, an annotated entry in the test list, or two files' entries."""
    (src, line), (was, was_line) = named_in(e), named_in(first)
    if e.split == "test" and line is not None and first.is_labelled():   # a test list's name of an annotated entry
        problem = f"{e.video!r} is an annotated entry ({was}), not one of the test set's"
        hint = ("the test set's entries have no annotations: remove this line, or check that the manifest's test_list "
                "is the test set's list")
    elif src == was:   # one file names it twice
        problem = f"a second entry with the id {e.video!r} (the first is on line {was_line})"
        hint = "an entry is named once: remove the repeated line, or correct its name"
    else:
        problem = f"a second entry with the id {e.video!r} (also from {was}" + (
            f" line {was_line})" if was_line is not None else ")")
        hint = "ids must be unique across splits: rename one"
    return failed_entry(src, problem, hint, e.split, line, labelled=e.is_labelled())


def guard_ids(entries: list[VideoEntry]) -> list[VideoEntry]:
    """Entries as the stage graph may use them: one whose id would leave the cache (made by code other than the
    listers) becomes an entry that fails alone, so no path is ever built from it."""
    out = []
    for e in entries:
        problem = None if e.problem else id_problem(e.video)
        if problem:
            src = Path(str(next(iter(e.label_files.values()), e.path or "entry")))
            e = failed_entry(src, f"video id refused: {problem}", "a video id is a folder name in the cache", e.split,
                             labelled=e.is_labelled())
        out.append(e)
    return unique_ids(out)


def videos_from_files(files: list[str | Path]) -> list[VideoEntry]:
    """Unlabelled entries for explicit video files (`--videos`); ids must be unique, and safe as folder names."""
    entries, seen = [], {}
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise BadInputError(p, "no such video file", "check the path")
        if p.stem in seen:
            raise BadInputError(p, f"two videos share the id {p.stem!r} (also {seen[p.stem]})", "rename one")
        seen[p.stem] = p
        problem = id_problem(p.stem)
        entries.append(VideoEntry(p.stem, p, "predict") if problem is None else
                       failed_entry(p, f"its name cannot be a video id: {problem}", "rename the file", "predict"))
    return entries
