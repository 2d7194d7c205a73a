"""The ABAW valence-arousal submission of the 3rd challenge onward: one file, in the order of the organisers' sample.

Since the 3rd ABAW (CVPR 2022) the organisers release, with the test set's list of entries, a sample submission
(e.g. `CVPR_5th_ABAW_VA_test_set_sample.txt`): a header `image_location,valence,arousal`, then one row per frame to
predict, `<entry>/<NNNNN>.jpg,<v>,<a>`, with the frame numbers of the organisers' crops (`00001.jpg` is the video's
first frame, as in `cropped_aligned/`) and two-person videos as `<video>_left` / `<video>_right`. The submission is
that file with our values: the same rows in the same order. Its rows, not our frame count, say how many frames an
entry has (the organisers' count often differs from a decoder's or a container's by a frame or two); a row past the
last frame we have takes the last frame's prediction, as `write_abaw` pads, and the difference is noted. The 1st
and 2nd challenges' per-video `<video>.txt` files are `write_abaw`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from train.organisers import read_text, record

COLUMNS = ("image_location", "valence", "arousal")
FILE = "abaw_va_submission.txt"  # the name of the file written into predict's --out


@dataclass(frozen=True)
class Sample:
    """The organisers' sample: its path, column order, and per row the location as written, entry and frame."""

    path: Path
    columns: tuple[str, ...]
    locations: list[str]
    entries: list[str]   # per row
    frames: np.ndarray   # per row, 0-based (00001.jpg -> 0)
    FIX = ("extract the test set's entries (data_manifest.yaml `test_list:` with `features --dataset affwild2`), "
           "predict that split (--split test), and repair the failed videos")

    def order(self) -> list[str]:
        """The entries in the order they first appear."""
        return list(dict.fromkeys(self.entries))

    def rows_by_entry(self) -> dict[str, np.ndarray]:
        """Each entry's row numbers, in the sample's order (one grouping pass: a test set has ~10^6 rows)."""
        codes, names = pd.factorize(pd.Series(self.entries))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        return {name: order[bounds[k]:bounds[k + 1]] for k, name in enumerate(names)}

    def describe(self) -> dict:
        """What predict.json records about it."""
        return {**record(self.path), "entries": len(self.order()), "rows": len(self.locations)}


def _fail(path: Path, line: int, what: str) -> BadInputError:
    return BadInputError(path, f"line {line}: {what}", "pass the organisers' sample submission file "
                         "(header image_location,valence,arousal, then one <entry>/<NNNNN>.jpg row per frame)")


def read_sample(path: str | Path) -> Sample:
    """Parse the sample; a malformed header or row is an error naming the file and the line."""
    path = Path(path)
    lines = read_text(path, "ABAW sample submission").splitlines()
    header = tuple(c.strip().lower() for c in (lines[0] if lines else "").split(","))
    if sorted(header) != sorted(COLUMNS):
        raise _fail(path, 1, f"the header is {lines[0] if lines else '(empty file)'!r}, not image_location,valence,"
                             "arousal in some order")
    where = header.index("image_location")
    locations, entries, frames, seen = [], [], [], {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header):
            raise _fail(path, n, f"{len(cells)} fields, the header has {len(header)}: {line!r}")
        loc = cells[where].strip()
        entry, _, name = loc.rpartition("/")   # string methods, not a Path per row: ~10^6 rows
        stem = name.partition(".")[0]
        if not entry or not stem.isdigit() or int(stem) < 1:
            raise _fail(path, n, f"{loc!r} is not <entry>/<NNNNN>.jpg")
        key = (entry, int(stem) - 1)
        if key in seen:
            raise _fail(path, n, f"{loc!r} is also on line {seen[key]}")
        seen[key] = n
        locations.append(loc)
        entries.append(key[0])
        frames.append(key[1])
    if not locations:
        raise _fail(path, 2, "no rows after the header")
    return Sample(path, header, locations, entries, np.asarray(frames, np.int64))


def missing_entries(sample, predicted: set[str], why: dict[str, str]) -> None:
    """Refuse a submission that would lack entries: each is named with why it is missing (``why``, else absent).
    ``sample``: an ABAW Sample or an OMG table (train/omg_table.py); its FIX says how to fill the gap."""
    missing = [e for e in sample.order() if e not in predicted]
    if not missing:
        return
    shown = "; ".join(f"{e}: {why.get(e, 'not among the videos predicted')}" for e in missing[:6])
    more = f"; and {len(missing) - 6} more" if len(missing) > 6 else ""
    raise BadInputError(sample.path, f"{len(missing)} of its {len(sample.order())} entries have no prediction "
                        f"({shown}{more}); no submission written", sample.FIX)


def write_submission(out: Path, sample: Sample, filled: dict[str, np.ndarray],
                     counted=lambda entry: "the video decodes to") -> tuple[Path, dict[str, str]]:
    """OUT/abaw_va_submission.txt: the sample's rows with our values; per-entry notes where counts differ.

    ``filled`` holds each entry's predictions [T, 2] (arousal, valence), every frame filled (fill_nearest);
    ``counted(entry)`` says where its frame count came from (train.predict_files.frames_counted), for the notes.
    """
    notes = {}
    values = np.empty((len(sample.locations), 2))
    for entry, rows in sample.rows_by_entry().items():
        pred = filled[entry]
        frames = sample.frames[rows]
        values[rows] = pred[np.minimum(frames, len(pred) - 1)]
        if len(rows) != len(pred) or frames.max() >= len(pred):
            notes[entry] = (f"{len(rows)} rows in the sample (frames up to {frames.max() + 1}); {counted(entry)} "
                            f"{len(pred)} frames" + ("; the rows past its last frame repeat its last prediction"
                                                      if frames.max() >= len(pred) else ""))
    values = np.clip(values, -1, 1)
    cols = {"arousal": values[:, 0], "valence": values[:, 1]}
    body = [",".join(loc if c == "image_location" else f"{cols[c][k]:.6f}" for c in sample.columns)
            for k, loc in enumerate(sample.locations)]
    path = out / FILE
    path.write_text(",".join(sample.columns) + "\n" + "\n".join(body) + "\n")
    return path, notes
