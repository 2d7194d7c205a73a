"""The Aff-Wild and Aff-Wild2 layouts: their videos, annotation files and splits, and the ABAW test-set list, as
entries (pipeline/entries.py). A bad name, a missing video or half a pair of label files is an entry that fails
alone, naming the file (and line)."""
from __future__ import annotations

from pathlib import Path

from features.errors import BadInputError
from pipeline.entries import VIDEO_EXTS, Dataset, VideoEntry, failed_entry, videos_in
from pipeline.ids import id_problem


def list_affwild(ds: Dataset) -> list[VideoEntry]:
    vroot = ds.root / "videos"
    if not vroot.is_dir():
        raise BadInputError(vroot, "missing the videos/ folder of an Aff-Wild layout",
                            "expected videos/{train,test}/<id>.mp4")
    out = []
    for split_dir in sorted(p for p in vroot.iterdir() if p.is_dir()):
        for p in videos_in(split_dir):
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


def list_affwild2(ds: Dataset, require_video: bool = True, echo=None) -> list[VideoEntry]:
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
    by_stem = {p.stem: p for p in videos_in(vid_root)} if vid_root.is_dir() else {}
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


def test_list_now(cache, dataset: str) -> tuple[Path, list[tuple[str, int]]] | None:
    """The dataset's test-set list as it is now: the manifest's `test_list` under the root readers compare label
    files against (pipeline/label_files.py), as (its path, [(entry, line)]); None where the dataset names none or
    its root or list is not found (nothing to compare with). A reader of the cached test split compares it with the
    cache: an entry the list gained after the last `features` run has no group and would be missing without a word
    from a submission written per entry."""
    from pipeline import label_files

    spec = label_files.dataset_spec(dataset)
    if not spec or spec.get("layout") != "affwild2" or not spec.get("test_list"):
        return None
    root, _ = label_files.current_root(cache, dataset)
    if root is None or not (root / spec["test_list"]).is_file():
        return None
    ds = Dataset(dataset, "affwild2", root, spec.get("fps"), {"test_list": spec["test_list"]})
    return root / spec["test_list"], [(stem, line) for stem, _, _, _, line in _test_entries(ds)]


def not_extracted(cache, dataset: str, cached: set[str]) -> list[tuple[str, str]]:
    """(entry, why) for each entry of the dataset's test list as it is now that the cache has no row for (the list
    gained it after the last `features` run): a submission of one file per entry would lack it without a word."""
    from pipeline import store

    listed = test_list_now(cache, dataset)
    if listed is None:
        return []
    path, entries = listed
    command = store.repair_command(cache, dataset, store.rebuild_names(cache, dataset))   # once, not per entry
    return [(e, f"{path}: line {line}: test entry {e!r} is not in the cache: no `features` run extracted it (the "
                f"list changed since?); run `{command}`")
            for e, line in entries if e not in cached]


def dropped(cache, dataset: str, rows: list[dict]) -> list[tuple[str, str]]:
    """(entry, why) for each unlabelled test video of index ``rows`` that the dataset's test list as it is now no
    longer names (the list lost it after the last `features` run, which would have marked it unlisted, and every
    reader would have refused it): a submission of one file per entry would still get its file without a word."""
    from pipeline import label_files, store

    listed = test_list_now(cache, dataset)
    if listed is None:
        return []
    path, entries = listed
    now = {e for e, _ in entries}
    command = store.repair_command(cache, dataset, store.rebuild_names(cache, dataset))   # once, not per entry
    return [(r["video"], f"{path}: test entry {r['video']!r} is cached but no longer in the list (taken out since the "
                         f"last `features` run?); put it back, or run `{command}` to mark it unlisted (kept in the "
                         "cache, read by no reader)")
            for r in rows if r.get("split") == "test" and label_files.known_unlabelled(r) and r["video"] not in now]
