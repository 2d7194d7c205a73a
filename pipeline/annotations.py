"""How the per-frame label files read (Aff-Wild: one value per line; Aff-Wild2: `valence,arousal` lines, -5 for
none) and how they are fitted to a video's frames (--label-slack). A bad line names the file and line. Text files are
read as pipeline.text_files reads them (a byte-order mark passed over; not UTF-8: an error naming the file). A value
that is not finite ('nan', 'inf') is an error too, as in OMG's table, and so is one outside [-1, 1], the range of
Aff-Wild's and Aff-Wild2's valence and arousal (other than Aff-Wild2's -5 for an unannotated frame): a file on
another scale (0-100, 1-9) or a column of something else would be cached as labels, and train on them."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from features.errors import BadInputError
from pipeline.entries import VideoEntry
from pipeline.text_files import open_text


def _value_lines(path: Path, fh, start: int):
    """(line number, stripped text) of each non-blank line of ``fh`` from line ``start``. A value after a blank line
    is an error naming both lines: line i is frame i, so skipping the blank line would shift every later frame's
    labels by one, and --label-slack would then accept the count it leaves. Trailing blank lines are passed over."""
    blank = None
    for i, line in enumerate(fh, start=start):
        s = line.strip()
        if not s:
            blank = blank or i
            continue
        if blank is not None:
            raise BadInputError(path, f"line {blank}: blank line before the value on line {i} (line i is frame i: "
                                "leaving it out would shift every later label by a frame)",
                                "fix the file: every frame needs its line (-5 marks an unannotated one in Aff-Wild2); "
                                "only trailing blank lines are passed over")
        yield i, s


def _finite(path: Path, i: int, text: str, values, hint: str) -> None:
    """float() reads 'nan' and 'inf': neither is a label, and either read as one leaves the frame out of training and
    scoring without a word (readers take a non-finite label for an unlabelled frame)."""
    if not all(math.isfinite(v) for v in values):
        raise BadInputError(path, f"line {i}: {text[:40]!r} is not a finite number", hint)


UNANNOTATED = -5.0   # Aff-Wild2: a frame without a label
_OUT_OF_RANGE_HINT = ("a corrupt file: valence and arousal are in [-1, 1], so values on another scale (0-100?) or from "
                      "another column are not labels; fix or re-download the file")


def _in_range(path: Path, i: int, text: str, values, marker: bool = False) -> None:
    """Valence and arousal are in [-1, 1] (``marker``: Aff-Wild2's -5 for an unannotated frame is taken too)."""
    bad = [v for v in values if abs(v) > 1 + 1e-6 and not (marker and abs(v - UNANNOTATED) <= 1e-6)]
    if bad:
        raise BadInputError(path, f"line {i}: {text[:40]!r}: {bad[0]:g} is outside [-1, 1]", _OUT_OF_RANGE_HINT
                            + (" (-5 marks an unannotated frame)" if marker else ""))


def read_value_file(path: Path) -> np.ndarray:
    """Aff-Wild label file: one float per line; a bad line, or a blank one before the last value, is an error
    naming file and line (trailing blank lines are passed over)."""
    vals = []
    with open_text(path) as fh:
        for i, s in _value_lines(path, fh, 1):
            try:
                vals.append(float(s))
            except ValueError:
                raise BadInputError(path, f"line {i}: {s[:40]!r} is not a number", "one float per line") from None
            _finite(path, i, s, vals[-1:], "fix the file: one finite value per frame")
            _in_range(path, i, s, vals[-1:])
    return np.asarray(vals, dtype=np.float32)


def read_affwild2_file(path: Path) -> np.ndarray:
    """Aff-Wild2 VA file: header valence,arousal; -5 marks unannotated frames (NaN here). Returns [T, 2] (a, v).
    A bad line, or a blank one before the last value, is an error naming file and line (trailing ones are passed
    over)."""
    rows = []
    with open_text(path) as fh:
        header = fh.readline().strip().replace(" ", "").lower()
        if header != "valence,arousal":
            raise BadInputError(path, f"line 1: header {header!r}, expected 'valence,arousal'", "is this a VA_Set file?")
        for i, s in _value_lines(path, fh, 2):
            parts = s.rstrip(",").split(",")   # a third value is not passed over: which two are valence, arousal?
            try:
                v, a = map(float, parts)
            except ValueError:
                raise BadInputError(path, f"line {i}: {s[:40]!r} is not 'valence,arousal'", "fix the file") from None
            _finite(path, i, s, (v, a), "fix the file: -5 marks an unannotated frame")
            _in_range(path, i, s, (v, a), marker=True)
            rows.append((a, v))
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 2)
    arr[(arr <= UNANNOTATED + 1e-6).any(axis=1)] = np.nan
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
