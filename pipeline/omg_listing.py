"""The OMG-Emotion layout: one entry per utterance of each split's CSV, clips at `<videos>/<video>/<utterance>`, one
label per utterance (pipeline/entries.py). A row that cannot be an entry fails alone, naming the file and line; what
the listing passes over (a split without its CSV, the clips the labelled test CSV has no row for, clips in no CSV) is
said through ``echo``."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from features.errors import BadInputError
from pipeline.entries import Dataset, VideoEntry, failed_entry, videos_in
from pipeline.ids import id_problem
from pipeline.text_files import open_text
from pipeline.wording import counted


def list_omg(ds: Dataset, echo=None) -> list[VideoEntry]:
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
    for lineno, row in read_csv_rows(path, ("video", "utterance") + (("arousal", "valence") if labelled else ())):
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
            out.append(failed_entry(path, problem, "a labelled row needs a number in both columns, arousal in [0, 1] "
                                    "and valence in [-1, 1]: correct it, or remove the row", split, lineno, labelled=True))
            continue
        out.append(VideoEntry(video, vid_root / row["video"] / row["utterance"], split, {}, labels,
                              label_table=path if labelled else None, labels_absent=absent, named_in=(path, lineno)))
    return out, named


# OMG-Emotion's label ranges (Barros et al. 2018; the paper, Datasets): arousal from calm (0) to excited (1), valence
# from negative (-1) to positive (1)
RANGES = {"arousal": (0.0, 1.0), "valence": (-1.0, 1.0)}


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
        lo, hi = RANGES[c]
        if not lo - 1e-6 <= value <= hi + 1e-6:   # another scale, or a column of something else: not a label
            return None, f"column {c}: {cell!r} is outside [{lo:g}, {hi:g}], OMG's range of {c}"
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
        # recorded as where their labels would be: a later release of the labelled CSV with their rows is then seen
        # (train refuses until `features` reads it), and until then train says it has no row for them
        entries, there = _csv_entries(path, split, vid_root, False, (labelled,))
        out += [e for e in entries if e.problem or e.video not in named]   # a bad row fails, as it would alone
        named |= set(there)
        clips.update(there)
    rest = [e for e in out if e.problem is None]
    if rest and echo is not None:
        where = ", ".join(f"{e.path.relative_to(vid_root)} (line {e.named_in[1]})" for e in rest[:4]) + (
            f" and {len(rest) - 4} more" if len(rest) > 4 else "")
        echo(f"note: {ds.name}: {counted(len(rest), 'clip')} of {rest[0].named_in[0].name} "
             f"{'has' if len(rest) == 1 else 'have'} no row in {labelled.name}: "
             f"{where}; extracted without labels (for `predict`), the {split} split is scored without "
             f"{'it' if len(rest) == 1 else 'them'}")
    return out, clips


def _say_unlisted_clips(name: str, folders: list[Path], listed: set[Path], echo) -> None:
    """Say the video files under the clips' folders that no CSV names: they are not extracted, so not in any score
    (a CSV cut short, or one of another release, leaves its clips out this way)."""
    for folder in folders:
        found = [p for p in videos_in(folder) if p not in listed] if folder.is_dir() else []
        if found:
            names = ", ".join(str(p.relative_to(folder)) for p in found[:4]) + (
                f" and {len(found) - 4} more" if len(found) > 4 else "")
            echo(f"note: {name}: {counted(len(found), 'video file')} under {folder} "
                 f"{'is' if len(found) == 1 else 'are'} in no CSV ({names}): not extracted")


def omg_id(video: str, utterance: str) -> str:
    """The cache id of an OMG utterance: `<video>__<utterance without its suffix>` (utterance_1.mp4 repeats across
    videos)."""
    return f"{video}__{Path(utterance).stem}"


def _csv_columns(path: Path) -> list[str]:
    with open_text(path, newline="") as fh:
        return [c.strip() for c in next(csv.reader(fh), [])]


# Text files are read as utf-8-sig (pipeline.text_files): one saved on Windows starts with a byte-order mark, which
# would otherwise stick to the first header or value ("line 1: is not a number" on a good file).
def read_csv_rows(path: Path, required: tuple[str, ...]):
    """(line, row) of a CSV's rows. The line is the reader's: DictReader passes blank lines over, so counting rows
    named every line after a blank one a line too early."""
    with open_text(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BadInputError(path, f"line 1: missing columns {missing}", f"expected at least {list(required)}")
        for row in reader:
            yield reader.line_num, row
