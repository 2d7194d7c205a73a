"""Whether a label file recorded as absent when a video was cached without labels (attrs ``labels_absent``) labels
that video now that it is there.

A per-video annotation file (Aff-Wild's `<id>.txt`) labels its one video by existing. A table of many videos (OMG's
omg_TestVideos_WithLabels.csv) does not: a release can lack some clips of the unlabelled CSV, and judging by the
file alone made `train` claim labels had "appeared" for clips the table has no row for. So a CSV is read, and only
the ids its rows name count.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path

from features.errors import BadInputError
from pipeline.omg_listing import omg_id, read_csv_rows


def labels_video(path: Path, video: str | None) -> bool:
    """Whether the existing label file ``path`` holds labels for ``video`` (every file does when no video is given)."""
    if video is None or path.suffix.lower() != ".csv":
        return True
    st = path.stat()
    ids = _row_ids(str(path), st.st_mtime_ns, st.st_size)
    return ids is None or video in ids


# keyed on the file's stamp: `train` asks once per unlabelled clip (thousands in OMG's test set), and an edited file
# is read again
@functools.lru_cache(maxsize=8)
def _row_ids(path: str, mtime_ns: int, size: int) -> frozenset[str] | None:
    """The cache ids the CSV's rows name, or None where it cannot be read as an OMG table: it then counts as
    labelling every video, so the refusal sends the user to `features`, which names what is wrong with it."""
    try:
        return frozenset(omg_id(row["video"] or "", row["utterance"] or "")
                         for _, row in read_csv_rows(Path(path), ("video", "utterance")))
    except (BadInputError, OSError, UnicodeDecodeError, csv.Error):
        return None
