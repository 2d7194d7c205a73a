"""Datasets: where their videos and labels live (data_manifest.yaml) and how their label files read."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from features.errors import BadInputError
from pipeline.ids import id_problem, stand_in

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
    origin: str = ""   # where the root came from (resolve_root): --root, $VARIABLE or default


@dataclass
class VideoEntry:
    """One video to process: its cache id, file, split and where its labels come from.

    `side` is the person it follows: the largest face, or in Aff-Wild2's two-person videos the left or the right
    person (two entries read one video file; each is its own cache group). `problem` marks an entry that cannot be
    processed (a bad id, a missing video file): it fails alone, with this message, and the others go on.
    """

    video: str
    path: Path | None                                  # None: no video file (faces from organiser crops)
    split: str
    label_files: dict = field(default_factory=dict)   # per-frame: {"arousal": path, "valence": path} or {"both": path}
    video_labels: dict | None = None                   # video level (OMG): {"arousal": a, "valence": v}
    label_table: Path | None = None                    # video level: the CSV they were read from
    side: str = "largest"                              # largest | left | right (features.face_side)
    problem: str | None = None                         # why it fails (names the file and line)
    fps: float | None = None                           # the dataset's frame rate, for entries without a video file
    # whether it was named as labelled (an annotation file, a labelled CSV's line), for one that fails before its
    # labels are read: a failed labelled entry must stop training, an unlabelled one not (None: from the above)
    labelled: bool | None = None
    # where an unlabelled entry's labels would be if they were released (its annotation files, or the labelled CSV of
    # its split): recorded in its group, so readers say when one appears instead of holding it as unlabelled
    labels_absent: tuple = ()
    # where it was named, for messages about the entry itself (a repeated id, a test-list name with nothing on disk):
    # (the list or CSV file, its line), (the annotation file, None); None: its video file says it
    named_in: tuple | None = None
    # the dataset's root and where it came from (Dataset.origin): label files are recorded relative to it, so readers
    # compare them with the files of the root as it is now, a copy's included (pipeline/label_files.py)
    root: Path | None = None
    root_from: str = ""

    def is_labelled(self) -> bool:
        """Whether it came with labels (the index's `labelled`, also for an entry that failed before it had a
        group): as named (``labelled``), else from its label sources."""
        if self.labelled is not None:
            return bool(self.labelled)
        return bool(self.label_files) or self.video_labels is not None or self.label_table is not None


def failed_entry(path: Path, problem: str, hint: str, split: str = "", lineno: int | None = None,
                 labelled: bool = False) -> VideoEntry:
    """An entry that fails alone with a message naming the file (and line); its id is a safe stand-in.
    ``labelled``: it was named as a labelled video (its failure then stops training: the index's `labelled`)."""
    where = f"line {lineno}: " if lineno is not None else ""
    return VideoEntry(stand_in(path.name, lineno), None, split, labelled=labelled,
                      problem=str(BadInputError(path, where + problem, hint)))


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
        entries = _list_affwild2(ds, require_video, echo)
    else:
        entries = _list_omg(ds, echo) if ds.layout == "omg" else _list_affwild(ds)
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
            have = [f.is_file() for f in files.values()]
            problem = id_problem(p.stem)
            if problem:
                out.append(failed_entry(p, f"its name cannot be a video id: {problem}",
                                        "rename or remove the file (macOS '._' files are metadata)", split_dir.name,
                                        labelled=any(have)))
                continue
            problem = None
            if any(have) and not all(have):   # half the labels: never silently an unlabelled video
                lost, kept = (files["valence"], files["arousal"]) if have[0] else (files["arousal"], files["valence"])
                problem = str(BadInputError(lost, "label file not found, but its pair exists: " + str(kept),
                                            "restore it (or remove both to treat the video as unlabelled)"))
            out.append(VideoEntry(p.stem, p, split_dir.name, files if all(have) else {}, problem=problem,
                                  labelled=any(have), labels_absent=() if any(have) else tuple(files.values())))
    return out


PERSON_SUFFIXES = {"_left": "left", "_right": "right"}


def person_of(stem: str, stems: set[str]) -> tuple[str, str, str | None]:
    """(video file stem, side, problem) of an Aff-Wild2 annotation name, given every annotation name.

    `<video>_left` / `<video>_right` are the left and right person of `<video>`. Real releases also pair a plain
    `<video>` with `<video>_right` (the plain one is then the left person) or with `<video>_left` (the right one).
    A plain `<video>` beside both suffixes cannot be placed: that entry fails.
    """
    for suffix, side in PERSON_SUFFIXES.items():
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[:-len(suffix)], side, None
    partners = [side for suffix, side in PERSON_SUFFIXES.items() if stem + suffix in stems]
    if len(partners) == 2:
        return stem, "largest", (f"annotations {stem}, {stem}_left and {stem}_right: which person the plain one "
                                 "follows is unknown")
    if partners:
        return stem, "right" if partners[0] == "left" else "left", None
    return stem, "largest", None


# The annotation folders of each split, as the ABAW releases named them: Training_Set (1st/2nd ABAW, 2020-21) and
# Train_Set (3rd on); the manifest's `splits:` replaces this.
AFFWILD2_SPLITS = {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "validation"}


def _list_affwild2(ds: Dataset, require_video: bool = True, echo=None) -> list[VideoEntry]:
    ann_root = ds.root / ds.options.get("annotations", "annotations/VA_Set")
    vid_root = ds.root / ds.options.get("videos", "videos")
    splits = ds.options.get("splits") or AFFWILD2_SPLITS
    if echo is not None:   # said: which splits there are decides the protocol
        folders = {split: [f for f, s in splits.items() if s == split] for split in splits.values()}
        absent = [split for split, fs in folders.items() if not any((ann_root / f).is_dir() for f in fs)]
        elsewhere = _elsewhere(ds.root, ann_root) if absent else ""
        for split in absent:
            echo(f"note: {ds.name}: no {split} split ({' or '.join(folders[split])} not found under {ann_root})"
                 + elsewhere)
    by_stem = {p.stem: p for p in _videos_in(vid_root)} if vid_root.is_dir() else {}
    if not by_stem and require_video:
        raise BadInputError(vid_root, "no videos under the Aff-Wild2 videos folder", "set 'videos' in the manifest")
    files = [(split, txt) for folder, split in splits.items() for txt in sorted((ann_root / folder).glob("*.txt"))]
    # (name, where it is named, labels): the annotation files, then the unlabelled test entries of `test_list`
    named = [(txt.stem, txt, split, {"both": txt}, None) for split, txt in files] + _test_entries(ds)
    stems = {stem for stem, *_ in named}
    out = []
    for stem, src, split, labels, lineno in named:
        problem = id_problem(stem)
        if problem:
            out.append(failed_entry(src, f"its name cannot be a video id: {problem}",
                                    "rename or remove the file (macOS '._' files are metadata)" if lineno is None
                                    else "fix the line", split, lineno, labelled=lineno is None))
            continue
        # two-person videos: <video>_left / <video>_right (or a plain <video> paired with one) share one file
        base, side, problem = person_of(stem, stems)
        if base not in by_stem and stem in by_stem:   # a video file named like the entry: one person
            base, side = stem, "largest"
        path = by_stem.get(base)
        if problem is None and path is None and require_video:
            problem = f"no video file for {'annotation' if lineno is None else 'test entry'} {stem!r} under {vid_root}"
        where = "" if lineno is None else f"line {lineno}: "
        out.append(VideoEntry(stem, path, split, labels, side=side, named_in=(src, lineno),
                              problem=None if problem is None else str(BadInputError(
                                  src, where + problem, "check the videos folder in the manifest (or use --faces "
                                                        "cropped_aligned, which needs no video)"))))
    return out


def _elsewhere(root: Path, ann_root: Path) -> str:
    """Where the 3rd ABAW's releases on put the VA annotations, when the manifest's folder is not there."""
    if ann_root.is_dir():
        return ""
    found = sorted(p for pattern in ("*/VA_Estimation_Challenge", "*/*/VA_Estimation_Challenge")
                   for p in root.glob(pattern) if p.is_dir())
    return (f"; the 3rd ABAW on put them in {found[0].relative_to(root)}: set `annotations: "
            f"{found[0].relative_to(root)}` under affwild2 in the manifest") if found else ""


def _test_entries(ds: Dataset) -> list[tuple]:
    """The unlabelled `test` entries of an Aff-Wild2 root: one name per line of the manifest's `test_list` (the
    organisers' test-set list: `<video>`, `<video>_left`, `<video>_right`), so the challenge's test videos are
    extracted by the same command, with the same faces, as the training set, and `predict --split test --format abaw`
    writes the submission. Blank lines and `#` comments are passed over."""
    name = ds.options.get("test_list")
    if not name:
        return []
    path = ds.root / name
    if not path.is_file():
        raise BadInputError(path, "the test-set list named by the manifest's test_list is not there",
                            "put the organisers' list of test videos there (one name per line), or remove test_list")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        stem = line.split("#", 1)[0].strip()
        if Path(stem).suffix.lower() in VIDEO_EXTS:   # a list of file names: the entry is the stem
            stem = Path(stem).stem
        if stem:
            out.append((stem, path, "test", {}, lineno))
    return out


def _list_omg(ds: Dataset, echo=None) -> list[VideoEntry]:
    """The utterances of each split's CSV (`csv:` in the manifest: per split a name, or a list of names of which
    the first present is read). A CSV with arousal and valence columns gives labelled entries; one without them (the
    challenge's `omg_TestVideos_WithoutLabels.csv`) unlabelled ones, extracted for `predict` and left out of
    training. A split whose CSV is absent is said through ``echo``: the protocol depends on it (a labelled test
    split is held out; without one, a fold of Train+Validation is). So are the clips of the unlabelled CSV that the
    labelled one read instead has no row for, and the clips on disk in no CSV: neither is in any score."""
    videos = ds.options.get("videos", "videos")   # one folder, or one per split (as the released code's Train/...)
    out, clips, folders = [], set(), set()
    for split, names in (ds.options.get("csv") or {}).items():
        vid_root = ds.root / (videos.get(split, "videos") if isinstance(videos, dict) else videos)
        folders.add(vid_root)
        names = [names] if isinstance(names, str) else list(names)
        path = next((ds.root / n for n in names if (ds.root / n).is_file()), None)
        if path is None:
            if echo is not None:
                echo(f"note: {ds.name}: no {split} split ({' or '.join(names)} not found under {ds.root})")
            continue
        labelled = _is_labelled(path)
        # the labelled release of this split, read first once it is there (omg_TestVideos_WithLabels.csv)
        chosen = next(k for k, n in enumerate(names) if ds.root / n == path)
        absent = () if labelled else tuple(ds.root / n for n in names[:chosen])
        entries, named = _csv_entries(path, split, vid_root, labelled, absent)
        if labelled:   # the unlabelled release named after it: its clips this one has no label for
            more, named_there = _unlabelled_beyond(ds, split, vid_root, path,
                                                   [ds.root / n for n in names[chosen + 1:]], set(named), echo)
            entries, named = entries + more, {**named_there, **named}
        out += entries
        clips |= set(named.values())
    if echo is not None:
        _say_unlisted_clips(ds.name, sorted(folders), clips, echo)
    return out


def _is_labelled(path: Path) -> bool:
    """Whether an OMG CSV holds labels. Either column (in any case) makes a labelled table: one without the other,
    or "Arousal", then fails in _read_csv_rows, naming the file, rather than its labels being silently dropped."""
    return any(c.lower() in ("arousal", "valence") for c in _csv_columns(path))


def _csv_entries(path: Path, split: str, vid_root: Path, labelled: bool,
                 absent: tuple) -> tuple[list[VideoEntry], dict[str, Path]]:
    """(the entries of one OMG CSV's rows, {id: clip} of every row with a good video and utterance). A row that
    cannot be an entry fails alone, naming the file and line; its clip is still one the CSV names."""
    out, named = [], {}
    for lineno, row in _read_csv_rows(path, ("video", "utterance") + (("arousal", "valence") if labelled else ())):
        # both columns become paths (the clip) and the cache id: check them before either is used
        problem = next((f"column {c}: {p}" for c in ("video", "utterance")
                        if (p := id_problem(row[c] or "")) is not None), None)
        if problem:
            out.append(failed_entry(path, problem, "fix the CSV", split, lineno, labelled=labelled))
            continue
        # utterance names repeat across videos (utterance_1.mp4): the id joins both
        video = omg_id(row["video"], row["utterance"])
        named.setdefault(video, vid_root / row["video"] / row["utterance"])
        labels, problem = _row_labels(row) if labelled else (None, None)
        if problem:   # not a NaN label kept: training and scoring would pass the utterance over without a word
            out.append(failed_entry(path, problem, "a labelled row needs a number in both columns: correct it, or "
                                    "remove the row", split, lineno, labelled=True))
            continue
        out.append(VideoEntry(video, vid_root / row["video"] / row["utterance"], split, {}, labels,
                              label_table=path if labelled else None, labels_absent=absent, named_in=(path, lineno)))
    return out, named


def _row_labels(row: dict) -> tuple[dict | None, str | None]:
    """({"arousal": a, "valence": v}, None) of a labelled CSV row, or (None, what is wrong with it)."""
    out = {}
    for c in ("arousal", "valence"):
        cell = (row[c] or "").strip()   # None: a row shorter than the header
        try:
            value = float(cell)
        except ValueError:
            return None, f"column {c}: {cell!r} is not a number" if cell else f"column {c} is empty"
        if not math.isfinite(value):   # float() reads 'nan' and 'inf'; neither is a label
            return None, f"column {c}: {cell!r} is not a finite number"
        out[c] = value
    return out, None


def _unlabelled_beyond(ds: Dataset, split: str, vid_root: Path, labelled: Path, later: list[Path], named: set[str],
                       echo) -> tuple[list[VideoEntry], dict[str, Path]]:
    """The clips of the split's unlabelled CSV (omg_TestVideos_WithoutLabels.csv, no longer read once the labelled
    release is there) that the labelled one has no row for: unlabelled entries, extracted for `predict` (a submission
    takes every row of the unlabelled CSV), and said, since the split is then scored without them (`train` also
    lists them in metrics.json's left_out). ``named``: the ids the labelled CSV has rows for. Also returns
    {id: clip} of the rows read, as _csv_entries does."""
    out, clips = [], {}
    for path in later:
        if not path.is_file() or _is_labelled(path):
            continue
        entries, there = _csv_entries(path, split, vid_root, False, ())
        out += [e for e in entries if e.problem or e.video not in named]   # a bad row fails, as it would alone
        named |= set(there)
        clips.update(there)
    rest = [e for e in out if e.problem is None]
    if rest and echo is not None:
        where = ", ".join(f"{e.path.relative_to(vid_root)} (line {e.named_in[1]})" for e in rest[:4]) + (
            f" and {len(rest) - 4} more" if len(rest) > 4 else "")
        echo(f"note: {ds.name}: {len(rest)} clips of {rest[0].named_in[0].name} have no row in {labelled.name}: "
             f"{where}; extracted without labels (for `predict`), the {split} split is scored without them")
    return out, clips


def _say_unlisted_clips(name: str, folders: list[Path], listed: set[Path], echo) -> None:
    """Say the video files under the clips' folders that no CSV names: they are not extracted, so not in any score
    (a CSV cut short, or one of another release, leaves its clips out this way)."""
    for folder in folders:
        found = [p for p in _videos_in(folder) if p not in listed] if folder.is_dir() else []
        if found:
            names = ", ".join(str(p.relative_to(folder)) for p in found[:4]) + (
                f" and {len(found) - 4} more" if len(found) > 4 else "")
            echo(f"note: {name}: {len(found)} video files under {folder} are in no CSV ({names}): not extracted")


def omg_id(video: str, utterance: str) -> str:
    """The cache id of an OMG utterance: `<video>__<utterance without its suffix>` (utterance_1.mp4 repeats across
    videos)."""
    return f"{video}__{Path(utterance).stem}"


def _csv_columns(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [c.strip() for c in next(csv.reader(fh), [])]


# Text files are read as utf-8-sig: one saved on Windows starts with a byte-order mark, which would otherwise
# stick to the first header or value ("line 1: is not a number" on a good file).
def _read_csv_rows(path: Path, required: tuple[str, ...]):
    """(line, row) of a CSV's rows. The line is the reader's: DictReader passes blank lines over, so counting rows
    named every line after a blank one a line too early."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BadInputError(path, f"line 1: missing columns {missing}", f"expected at least {list(required)}")
        for row in reader:
            yield reader.line_num, row


# ---------------------------------------------------------------- label files


def _blank_before(path: Path, blank: int | None, lineno: int) -> None:
    """A value after a blank line: an error naming both lines. Line i is frame i: skipping the blank line would shift
    every later frame's labels by one, and --label-slack would then accept the count it leaves."""
    if blank is not None:
        raise BadInputError(path, f"line {blank}: blank line before the value on line {lineno} (line i is frame i: "
                            "leaving it out would shift every later label by a frame)",
                            "fix the file: every frame needs its line (-5 marks an unannotated one in Aff-Wild2); "
                            "only trailing blank lines are passed over")


def read_value_file(path: Path) -> np.ndarray:
    """Aff-Wild label file: one float per line; a bad line, or a blank one before the last value, is an error
    naming file and line (trailing blank lines are passed over)."""
    vals, blank = [], None
    with open(path, encoding="utf-8-sig") as fh:
        for i, line in enumerate(fh, start=1):
            s = line.strip()
            if not s:
                blank = blank or i
                continue
            _blank_before(path, blank, i)
            try:
                vals.append(float(s))
            except ValueError:
                raise BadInputError(path, f"line {i}: {s[:40]!r} is not a number", "one float per line") from None
    return np.asarray(vals, dtype=np.float32)


def read_affwild2_file(path: Path) -> np.ndarray:
    """Aff-Wild2 VA file: header valence,arousal; -5 marks unannotated frames (NaN here). Returns [T, 2] (a, v).
    A bad line, or a blank one before the last value, is an error naming file and line (trailing ones are passed
    over)."""
    rows, blank = [], None
    with open(path, encoding="utf-8-sig") as fh:
        header = fh.readline().strip().replace(" ", "").lower()
        if header != "valence,arousal":
            raise BadInputError(path, f"line 1: header {header!r}, expected 'valence,arousal'", "is this a VA_Set file?")
        for i, line in enumerate(fh, start=2):
            s = line.strip()
            if not s:
                blank = blank or i
                continue
            _blank_before(path, blank, i)
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


def fit_labels(labels: np.ndarray, n_frames: int, path: Path | str, slack: int = 0,
               counted: str = "the video decodes to") -> tuple[np.ndarray, int]:
    """(labels with one row per frame, label rows minus frames). Strict by default: the error gives both numbers.

    With `slack` N (`--label-slack`), a difference of at most N rows is accepted: extra rows at the end are cut,
    missing ones are NaN (unlabelled). Decoders disagree by a frame or two, so real label files often do.
    """
    diff = len(labels) - n_frames
    if abs(diff) > slack:
        raise BadInputError(path, f"label count mismatch: {len(labels)} label lines but {counted} {n_frames} frames"
                            + (f" (difference {diff:+d}, more than --label-slack {slack})" if slack else ""),
                            "labels need one line per frame; accept a small difference with --label-slack N")
    if diff > 0:
        labels = labels[:n_frames]
    elif diff < 0:
        labels = np.concatenate([labels, np.full((-diff, *labels.shape[1:]), np.nan, np.float32)])
    return labels, diff
