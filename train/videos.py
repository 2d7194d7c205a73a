"""Which videos a run reads, checked in their own groups, and how they are split by video.

Every video the dataset's index lists is checked in its group (``store.check_arrays``: done, each array the run
reads present, complete and under a real fingerprint), not only in the index, which is a summary. A video that
cannot be read is refused, naming it and the `features` command that repairs it: leaving it out silently would
change the folds (they are drawn over the video list), and a researcher must never get a table from a different
video set than the one they think. ``--skip-unusable`` leaves such videos out instead; they are then listed with
the reason in metrics.json, and the run's identity (its video lists) changes with them. So is a done group the
index has no row for (pipeline/unindexed.py): the run's videos come from the index, which would leave it out.

Every array the run reads must carry one fingerprint across the videos it trains and scores on: a cache half
updated under other settings is an error naming the array and the videos on each side.

Fingerprints say how arrays were made, not from what: a video file replaced (or its crops, its OpenFace CSV) is
extracted again under the same fingerprints. So each video's source, as its group records it (``source_record``:
frames, the video file's identity, the face source's identity), is part of the run's identity too. Identities follow
the files' contents (pipeline/sources.py), so a copied dataset root, which `features` does not extract again, leaves
every run's identity as it was.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from features.errors import BadInputError
from pipeline import chunks, label_files, store, unindexed, unscored
from pipeline import not_updated as pipeline_not_updated
from pipeline import settings as feature_settings
from pipeline.uniform import listing as _listing
from pipeline.uniform import one_fingerprint
from pipeline.wording import counted
from train.protocol import recording

# why a labelled video none of whose frames is annotated (Aff-Wild2's -5 on every line) is neither trained on nor scored
NO_ANNOTATED_FRAME = "no annotated frame (every label is missing or -5): nothing to train on or score"


@dataclass
class Selection:
    """The labelled, usable videos of a dataset and what the run reads from them."""

    rows: list[dict]                 # video, split, n_frames, fps, video_arousal, video_valence (from each group)
    level: str                       # "frame" (per-frame labels) or "video" (OMG: one label per video)
    fingerprints: dict[str, str]     # array -> its one fingerprint; "labels" -> a digest of the per-video ones
    left_out: dict[str, str] = field(default_factory=dict)   # video -> why (unusable with skip_unusable; no face)
    feature_settings: dict = field(default_factory=dict)     # how the features were made (for `predict`)
    sources: dict[str, list] = field(default_factory=dict)   # video -> what its group was made from (source_record)
    per_video: dict[str, dict] = field(default_factory=dict)  # video -> the fingerprints of the arrays read from it
    notes: list[str] = field(default_factory=list)           # for the run to say (labels not compared with files)
    not_updated: dict[str, str] = field(default_factory=dict)  # video read -> the error of its last `features` run


def changed_since(cache, dataset: str, per_video: dict[str, dict], sources: dict | None = None) -> dict[str, str]:
    """{video: what changed} for the videos whose groups no longer hold the arrays of ``per_video`` ({video: the
    fingerprints read}) or, with ``sources``, the sources recorded then (Selection.per_video, Selection.sources).

    A `features` run may update a group while a training run reads it (edited labels, --replace-variant, a rebuild
    after an upgrade): arrays are swapped in whole (pipeline/store.py), but a run that started on the old ones would
    go on with the new, and its numbers would mix both under the old fingerprints. Reading each group's attrs is
    cheap (milliseconds a video), so a run checks after every epoch and before it writes its scores.
    """
    out, sources = {}, sources or {}
    for video, fps in per_video.items():
        try:
            attrs = store.open_video(cache, dataset, video).attrs
        except Exception:   # between the two renames of a rebuild there is no group
            out[video] = "its group is gone (being rebuilt?)"
            continue
        have = dict(attrs.get("fingerprints") or {})
        what = [name for name, fp in fps.items() if have.get(name) != fp]
        if video in sources and source_record(attrs) != sources[video]:
            what.append("its source")
        if what:
            out[video] = ", ".join(what)
    return out


def check_fingerprints(checkpoint_fps: dict, cache_fps: dict, path=None) -> None:
    """Raise BadInputError unless every array the checkpoint was trained on has the same fingerprint here."""
    bad = [f"{k}: trained on {v}, cache has {cache_fps.get(k, 'nothing')}"
           for k, v in sorted(checkpoint_fps.items()) if cache_fps.get(k) != v]
    if bad:
        raise BadInputError(path, "features were made differently from those the model was trained on ("
                            + "; ".join(bad) + ")", "recompute the features with the settings of the training "
                            "cache, or train a model on this cache")


def changed_listing(changed: dict[str, str]) -> str:
    """changed_since's result as a reader's error says it: "video: what changed; ..." (the first four)."""
    return _listing([f"{v}: {what}" for v, what in sorted(changed.items())], sep="; ")


def one_data(runs: dict[str, dict], where, command: str) -> dict[str, str]:
    """The fingerprints the runs of one table read ({array: fingerprint}), refused when they differ between runs.

    Each run of an ablation or robustness table is consistent in itself (train checks after every epoch), but a
    `features` run between two of them leaves the table comparing runs made on different data. Reused runs match
    the cache as it is now (their identity is checked), so running the same command again retrains only the runs
    made before the change."""
    # labels per video where every run records them: runs over other video sets (--skip-unusable leaves out other
    # videos per input) have other digests of the same labels
    per_video = all("labels_by_video" in m for m in runs.values())
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, m in runs.items():
        for array, fp in (m.get("fingerprints") or {}).items():
            if not (per_video and array == "labels"):
                seen[array][fp].append(name)
        for video, fp in (m.get("labels_by_video") or {}).items() if per_video else ():
            seen[f"labels of {video}"][fp].append(name)
        # the video each group was made from: a file replaced and extracted again under the same settings between
        # two runs keeps every fingerprint, but the runs read different frames
        for video, rec in ((m.get("identity") or {}).get("sources") or {}).items():
            seen[f"source of {video}"][record_text(rec)].append(name)
    _video_sets(runs, seen)
    mixed = {a: fps for a, fps in seen.items() if len(fps) > 1}
    if mixed:
        desc = "; ".join(f"{a}: " + ", ".join(f"{fp} in {_listing(sorted(names), 2)}" for fp, names in fps.items())
                         for a, fps in sorted(mixed.items())[:3]) + (f"; and {len(mixed) - 3} more" if len(mixed) > 3
                                                                      else "")
        raise BadInputError(where, f"the cache changed during this {command}: its runs read different data ({desc}); "
                            "no table is written", f"run the same {command} command again: the runs made on the "
                            "cache as it is now are reused, the others are trained again")
    read = {a: next(iter(fps)) for a, fps in sorted(seen.items())
            if not a.startswith(("labels of ", "source of ", "video ", "split of "))}
    if per_video and runs:
        read["labels"] = f"per video, the same in every run ({sum(a.startswith('labels of ') for a in seen)} videos)"
    return read


def _video_sets(runs: dict[str, dict], seen: dict) -> None:
    """Add to ``seen`` ({what: {value: runs}}) whether each run had each video, and held it out: a `features` run that
    extracts a new video, or moves one to another split (a new annotation release), between two runs changes no
    fingerprint, label or source the runs share, but the later ones draw their folds over the new video, or score the
    moved one where the earlier trained on it. A run had a video it read or left out with a reason (--skip-unusable,
    no face), so cells that leave out other videos per input are not a change; runs reading other splits (--splits, a
    grid axis) are compared only with those reading the same ones, held-out sets only between runs that hold out the
    same split (not a fold), and runs without a recorded video list not at all."""
    had: dict[str, dict[str, set[str]]] = defaultdict(dict)         # splits read -> {run: videos read or left out}
    held: dict[str, dict[str, tuple[set, set]]] = defaultdict(dict)  # and split held out -> {run: (test, read)}
    for name, m in runs.items():
        ident = m.get("identity") or {}
        if "videos" not in ident:
            continue
        read = {v for vs in ident["videos"].values() for v in vs}
        splits = json.dumps((ident.get("config") or {}).get("splits"))
        had[splits][name] = read | set(m.get("left_out") or {})
        split = str((ident.get("protocol") or {}).get("held_out") or "fold ")
        if not split.startswith("fold "):   # cross-validation: each fold holds out other videos
            held[json.dumps([splits, split])][name] = (set(ident["videos"].get("test") or []), read)
    for group in had.values():
        for video in set().union(*group.values()):
            for name, videos in group.items():
                seen[f"video {video}"]["present" if video in videos else "absent"].append(name)
    for group in held.values():
        for video in set().union(*(test for test, _ in group.values())):
            for name, (test, read) in group.items():
                if video in read:   # one that left it out has no split for it
                    seen[f"split of {video}"]["held out" if video in test else "trained or selected on"].append(name)


def usable(cache, dataset: str, videos: list[str], names: list[str], failed: dict | None = None,
           skip: bool = False, hints: dict | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """({video: its arrays' fingerprints}, {video: why it cannot be read}); refuses unless ``skip``. ``hints``, if
    given, gets {video: what repairs it} for the videos that cannot be read."""
    fps, bad = {}, {}
    hints = {} if hints is None else hints
    for video in videos:
        try:
            fps[video] = store.check_arrays(cache, dataset, video, names)
        except store.UnusableVideo as e:
            bad[video] = e.problem + (f" (extraction failed: {failed[video]})" if (failed or {}).get(video) else "")
            hints[video] = e.hint
    if bad and not skip:
        fixes = dict.fromkeys(hints.values())   # what repairs each kind of problem (arrays, a video out of the dataset)
        first = "; ".join(list(bad.values())[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise BadInputError(store.dataset_dir(cache, dataset), f"{len(bad)} of {counted(len(videos), 'video')} cannot be "
                            f"read: {first}", "; ".join(fixes) + ". Or pass --skip-unusable to leave them out (they "
                            "are then listed in metrics.json)")
    return fps, bad


def select(cache, dataset: str, names: list[str], skip_unusable: bool = False, extra: list[str] = (),
           splits: tuple[str, ...] | None = None) -> Selection:
    """The labelled videos a run reads ``names`` (model inputs) from, checked as the module docstring says.

    ``extra``: arrays read besides the model's inputs (the flip augmentation's), checked and fingerprinted alike.
    ``splits``: only the videos of these splits (--splits); the others are not read at all, as if not extracted.
    """
    idx = store.read_index(cache, dataset)
    if idx is None:
        raise store.no_index(cache, dataset)
    # an entry known to have no labels (a test list's) is never read: failed or stale, it must not stop the run
    records = idx.to_dict("records")
    known = [r for r in records if not store.known_unlabelled(r)]
    no_row = _no_labels_released_since(cache, dataset, [r for r in records if store.known_unlabelled(r)])
    if splits is not None:
        absent = sorted(set(splits) - {str(r["split"]) for r in known})
        if absent:
            have = ", ".join(sorted({str(s) for s in idx.split}))
            raise BadInputError(store.dataset_dir(cache, dataset), f"--splits names {', '.join(absent)}, which no "
                                f"labelled video of the cache is in", f"splits there: {have}")
        known = [r for r in known if str(r["split"]) in splits]
    failed = {r["video"]: r["error"] for r in known if r.get("status") == "failed"}
    orphans = _without_row(cache, dataset, idx, splits, skip_unusable)
    fps, left_out = usable(cache, dataset, sorted(r["video"] for r in known), [*names, *extra, "valid", "labels"],
                           failed, skip_unusable)
    left_out.update(orphans)
    rows = [_row(cache, dataset, v) for v in fps]
    framed = [r for r in rows if has_frame_labels(cache, dataset, r["video"])]
    level = "frame" if framed else "video"
    if framed:   # a labelled video without one annotated frame (every line -5) is left out with the reason, not lost
        kept = {r["video"] for r in framed}
        left_out.update({r["video"]: NO_ANNOTATED_FRAME for r in rows if r["video"] not in kept and store.labelled(
            store.open_video(cache, dataset, r["video"]).attrs) is not False})
    else:   # one label per video (OMG): a labelled one whose label is not a number is left out with the reason
        left_out.update(unscored.not_labels(cache, dataset, [r["video"] for r in rows]))
    rows = framed or [r for r in rows if unscored.finite_label(r["video_arousal"], r["video_valence"])]
    # unlabelled videos of the splits read (a clip the labelled test CSV has no row for): their split is scored
    # without them
    left_out.update(unscored.unlabelled_beside(records, {str(r["split"]) for r in rows}, no_row))
    if not rows:
        raise BadInputError(store.dataset_dir(cache, dataset), "no video in the cache has labels",
                            "train on a labelled dataset (features of the train split with annotations)")
    # no face in any frame: nothing to learn from, and a validation fold of such videos has no CCC (it was NaN, and
    # picked best.pt); left out with the reason (metrics.json), as `features` recorded it (index note)
    faceless = {r["video"]: f"{store.NO_FACE} (n_valid 0 of {r['n_frames']} frames): nothing to train on or score"
                for r in rows if int(r.get("n_valid") or 0) == 0}
    rows = [r for r in rows if r["video"] not in faceless]
    if not rows:
        raise BadInputError(store.dataset_dir(cache, dataset), f"{store.NO_FACE} of any of the {len(faceless)} "
                            "labelled videos", "check the videos, or take faces from elsewhere with `features "
                            "--faces cropped_aligned` or `--faces openface`")
    left_out.update(faceless)
    used = {r["video"]: fps[r["video"]] for r in rows}
    out = one_fingerprint(cache, dataset, used, [*names, *extra, "valid"])
    # labels differ per video by design (each its own files' contents); one digest over them catches any change
    out["labels"] = store.fingerprint(sorted((v, f["labels"]) for v, f in used.items()))
    # how these very arrays were made (a variant's own settings, not only the run that first built the group),
    # so `predict` rebuilds them for new videos under the same fingerprints
    attrs = dict(store.open_video(cache, dataset, rows[0]["video"]).attrs)
    made = asdict(feature_settings.settings_for(attrs, names))
    sources = {r["video"]: source_record(store.open_video(cache, dataset, r["video"]).attrs) for r in rows}
    notes = [n] if (n := label_files.unchecked_note(cache, dataset)) else []
    # done videos whose last `features` run reported an error (a rebuild after the file changed, which failed): the
    # arrays read are consistent with the source they record (not the file now), so they are read, and it is said
    not_updated = pipeline_not_updated.errors(known, used)
    if not_updated:
        notes.append(pipeline_not_updated.note(not_updated))
    if no_row:   # a labelled table there now without a row for videos cached without labels: said, not read past
        tables = _files_of(no_row)
        notes.append(f"{_listing(tables, 2)} has no row for the {counted(len(no_row), 'video')} cached without "
                     f"labels ({_listing(sorted(no_row))}): {'it stays' if len(no_row) == 1 else 'they stay'} "
                     "unlabelled")
    return Selection(rows, level, out, left_out, made, sources, used, notes, not_updated)


def _without_row(cache, dataset: str, idx, splits, skip: bool) -> dict[str, str]:
    """{video: why} of the done groups the index has no row for (of these splits, labelled or not known to be
    unlabelled): refused unless ``skip``, as an unusable video is, since leaving them out would change the folds
    (pipeline/unindexed.py)."""
    videos = unindexed.without_row(cache, dataset, idx)
    videos = unindexed.labelled_ones(cache, dataset, unindexed.in_splits(cache, dataset, videos, splits))
    if videos and not skip:
        have = "has" if len(videos) == 1 else "have"
        raise BadInputError(store.dataset_dir(cache, dataset), f"{counted(len(videos), 'video')} {have} a done group "
                            f"but no row in index.parquet ({unindexed.listing(videos)}): the index is the record of what is done, "
                            "so this run would leave them out without a word", unindexed.hint(cache, dataset)
                            + ". Or pass --skip-unusable to leave them out (they are then listed in metrics.json)")
    return {v: unindexed.problem(cache, dataset, v) for v in videos}


def _no_labels_released_since(cache, dataset: str, unlabelled: list[dict]) -> dict[str, list[str]]:
    """Refuse a run while labels have appeared for videos cached as unlabelled (OMG's omg_TestVideos_WithLabels.csv,
    Aff-Wild's test annotations, released after the challenge): the run would leave them aside and, without a
    labelled test split, cross-validate instead of holding them out, where the researcher now expects test scores.
    Only the videos the new files label are named so: a labelled CSV that lacks some clips of the unlabelled one has
    no labels for those, and the message says so rather than promising labels `features` will not find.

    Returns {video: the tables there now that have no row for it}, where none labels any: the run goes on, saying so."""
    appeared, without = {}, {}
    for r in unlabelled:
        if store.group_status(cache, dataset, r["video"]) == "done":
            attrs = store.open_video(cache, dataset, r["video"]).attrs
            labelling, no_row = label_files.released(attrs, cache, dataset, r["video"])
            if labelling:
                appeared[r["video"]] = labelling
            elif no_row:
                without[r["video"]] = no_row
    if appeared:
        files = _files_of(appeared)
        rest = ""
        if without:
            tables = _files_of(without)
            rest = (f"; {counted(len(without), 'other video')} cached without labels ({_listing(sorted(without))}) "
                    f"{'has' if len(without) == 1 else 'have'} no row in {_listing(tables, 2)}: "
                    f"{'it stays' if len(without) == 1 else 'they stay'} unlabelled, listed in metrics.json's left_out")
        raise BadInputError(store.dataset_dir(cache, dataset), f"{counted(len(appeared), 'video')} "
                            f"{'was' if len(appeared) == 1 else 'were'} cached without labels "
                            f"({_listing(sorted(appeared))}), and labels for {'it' if len(appeared) == 1 else 'them'} have appeared since "
                            f"({_listing(files, 2)}); this run would leave them out{rest}",
                            f"run `{store.repair_command(cache, dataset, ['labels'])}`: it reads the labels (nothing "
                            "else is extracted again)")
    return without


def _files_of(per_video: dict[str, list[str]]) -> list[str]:
    """The label files of {video: files}, each once, sorted."""
    return sorted({f for files in per_video.values() for f in files})


def record_text(record) -> str:
    """A source record as JSON text, to compare: a checkpoint's (lists, from JSON) and a group's (tuples) alike."""
    return json.dumps(record, sort_keys=True, default=str)


def source_record(attrs) -> list:
    """What a video's group was made from, as its attrs record it: [frames, the video file's identity, the face
    source (kind, side, identity of the crop folder or OpenFace CSV; not its path, which may move)].

    The identities as recorded when the group was made: a content identity, or the `[size, mtime]` of groups made
    before; the content identity `features` later records beside the latter (extract.adopt_content) is left out, so
    a run made from such a group keeps its identity until the group is extracted again."""
    face = dict(attrs.get("face_source") or {})
    return [int(attrs.get("n_frames", -1)), attrs.get("source_identity"),
            {k: face.get(k) for k in ("faces", "side", "identity")}]


def _row(cache, dataset: str, video: str) -> dict:
    """What the loader needs of a video, read from its group (the truth), not from the index."""
    r = store.index_row(cache, dataset, video)
    for k in ("video_arousal", "video_valence"):
        r[k] = float(r[k]) if r.get(k) is not None and np.isfinite(r[k]) else float("nan")
    return r


def has_frame_labels(cache, dataset: str, video: str) -> bool:
    """True when any frame of the video has both labels."""
    g = store.open_video(cache, dataset, video)
    lab = chunks.read_rows(cache, dataset, video, g, "labels", 0, g["labels"].shape[0])
    return bool(np.isfinite(lab).all(1).any())


def split_videos(rows: list[dict], folds: int, fold: int, seed: int,
                 held_out: str | None = "test") -> dict[str, list[dict]]:
    """train/val/test video rows (rows: labelled videos only).

    The videos of the ``held_out`` split (train/protocol.py decides which) are the test set, and the validation set
    is fold I of K (seeded) over the other labelled videos; without held-out videos all labelled videos are shuffled
    (seeded) into K folds, fold I is held out and fold (I+1) mod K validates. Folds are drawn over recordings
    (``protocol.recording``), so the entries of one recording never sit on both sides.
    """
    if not 0 <= fold < folds:
        raise BadInputError(None, f"--fold {fold} is not in 0..{folds - 1}", "pick a fold below --folds")
    rows = sorted(rows, key=lambda r: r["video"])
    test = [r for r in rows if held_out is not None and r.get("split") == held_out]
    pool = [r for r in rows if held_out is None or r.get("split") != held_out]
    groups: dict[str, list[dict]] = {}
    for r in pool:
        groups.setdefault(recording(r["video"]), []).append(r)
    groups = list(groups.values())
    need = 2 if test else 3
    if folds < need or len(groups) < need:
        raise BadInputError(None, f"{len(groups)} labelled recordings outside the held-out split and --folds "
                            f"{folds}: too few to split by video", f"use --folds >= {need} and a cache with at least "
                            f"{need} labelled recordings to draw folds from")
    perm = np.random.default_rng(seed).permutation(len(groups))
    parts = [[r for i in sorted(p) for r in groups[i]] for p in np.array_split(perm, folds)]
    if test:
        val = parts[fold]
    else:
        test, val = parts[fold], parts[(fold + 1) % folds]
    held = {r["video"] for r in test + val}
    return {"train": [r for r in pool if r["video"] not in held], "val": val, "test": test}
