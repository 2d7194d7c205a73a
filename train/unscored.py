"""Videos of the cache that a run reads past without anything about them failing, and why, so that they are listed
(metrics.json's `left_out`, predict.json's `scores.left_out`, and printed) rather than dropped without a word.

- A video labelled as a whole (OMG) whose label is not a finite number: the lister now refuses such a CSV row, but a
  cache made before, or an entry made by other code, holds one; the runs kept finite labels only.
- A video cached without labels in a split whose other videos have them: an OMG clip of the unlabelled test CSV that
  the labelled release has no row for, an Aff-Wild test video without annotation files. The split is scored without
  it, and "split=test" reads as the whole test set.
- A labelled video without a prediction (no face in any frame or snippet): `train` leaves those out already; `predict`
  counted them among "the N labelled videos" it scored while scoring N-1.
"""
from __future__ import annotations

import math

from pipeline import store

NO_PREDICTION = f"{store.NO_FACE}: no prediction to score"


def finite_label(arousal, valence) -> bool:
    """Whether a video-level label is two finite numbers."""
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
               for x in (arousal, valence))


def not_a_label(arousal, valence, table: str | None = None) -> str:
    """Why a labelled video with the label (arousal, valence) is neither trained on nor scored."""
    where = f" in {table}" if table else ""
    return (f"its label is not two finite numbers (arousal {arousal}, valence {valence}{where}): nothing to train on "
            "or score; correct its row and run `features` again (it reads the labels, nothing else)")


def table_of(attrs) -> str | None:
    """The CSV a video's label was read from, as its group records it (OMG), or None."""
    return ((attrs.get("label_files") or {}).get("table") or {}).get("path")


def unlabelled_beside(rows: list[dict], scored_splits: set[str]) -> dict[str, str]:
    """{video: why} of the index ``rows`` that came without labels in a split of ``scored_splits`` (the splits of the
    labelled videos read): a split of only unlabelled videos (ABAW's test list) is not scored at all, so is not it."""
    return {r["video"]: f"came without labels (none were found for it when `features` listed it), unlike the other "
            f"videos of split {r['split']!r}: neither trained on nor scored"
            for r in rows if store.known_unlabelled(r) and str(r["split"]) in scored_splits}
