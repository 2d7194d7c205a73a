"""The OMG-Emotion challenge's submission: the organisers' CSV of utterances, in its order, with our values.

The organisers' scripts (knowledgetechnologyuhh/OMGEmotionChallenge) score a CSV `video,utterance,arousal,valence`,
one row per utterance, "in the same order as the videos and utterances" of their split's CSV: the score pairs rows
by position, not by name. So the submission takes its rows, and their order, from that CSV (e.g.
`omg_TestVideos_WithoutLabels.csv`, or `omg_ValidationVideos.csv` to check a model with their script), with the
utterance written as there (`utterance_1.mp4`); each row's cache entry is `<video>__<utterance stem>`
(pipeline.manifest.omg_id). A row without a prediction is refused, not filled or dropped (either would shift or
invent what the script pairs); a CSV of only some of the organisers' rows, in their order, submits those.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.errors import BadInputError
from pipeline.manifest import omg_id
from train.organisers import read_text, record

FILE = "omg_submission.csv"   # the file written into predict's --out
COLUMNS = ("video", "utterance", "arousal", "valence")


@dataclass(frozen=True)
class OmgTable:
    """The organisers' CSV: its path and, per row, the video and utterance as written and the cache entry."""

    path: Path
    videos: list[str]
    utterances: list[str]
    entries: list[str]
    FIX = ("extract the split's utterances (`features --dataset omg`; data_manifest.yaml names its CSV), predict that "
           "split (--split), and repair the failed ones; or pass a CSV of only the rows you have, in their order")

    def order(self) -> list[str]:
        """The cache entries, in the CSV's order (each once: a repeated row is refused when read)."""
        return list(self.entries)

    def describe(self) -> dict:
        """What predict.json records about it."""
        return {**record(self.path), "rows": len(self.entries)}


def _fail(path: Path, line: int, what: str) -> BadInputError:
    return BadInputError(path, f"line {line}: {what}", "pass the organisers' OMG CSV of the split (its header names "
                         "the columns video and utterance, e.g. omg_TestVideos_WithoutLabels.csv)")


def read_table(path: str | Path) -> OmgTable:
    """Parse the organisers' CSV; a missing column, an empty cell or a repeated utterance names the file and line."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path, "OMG CSV"), newline="")))
    header = [c.strip() for c in rows[0]] if rows else []
    if "video" not in header or "utterance" not in header:
        raise _fail(path, 1, f"the header is {','.join(header) or '(empty file)'!r}, without video and utterance")
    iv, iu = header.index("video"), header.index("utterance")
    videos, utterances, entries, seen = [], [], [], {}
    for n, cells in enumerate(rows[1:], 2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) <= max(iv, iu) or not cells[iv].strip() or not cells[iu].strip():
            raise _fail(path, n, f"no video or utterance in {','.join(cells)!r}")
        video, utterance = cells[iv].strip(), cells[iu].strip()
        entry = omg_id(video, utterance)
        if entry in seen:
            raise _fail(path, n, f"{video},{utterance} is also on line {seen[entry]}")
        seen[entry] = n
        videos.append(video)
        utterances.append(utterance)
        entries.append(entry)
    if not entries:
        raise _fail(path, 2, "no rows after the header")
    return OmgTable(path, videos, utterances, entries)


def write_submission(out: Path, table: OmgTable, values: dict[str, np.ndarray]) -> Path:
    """OUT/omg_submission.csv: per row of ``table`` its video, utterance and our (arousal, valence) ``values``."""
    body = [f"{v},{u},{values[e][0]:.6f},{values[e][1]:.6f}"
            for v, u, e in zip(table.videos, table.utterances, table.entries)]
    path = out / FILE
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(body) + "\n")
    return path
