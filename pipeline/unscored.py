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
from pathlib import Path

from pipeline import store
from pipeline.wording import counted

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


def not_labels(cache, dataset: str, videos) -> dict[str, str]:
    """{video: why (not_a_label)} of the done ``videos`` whose video-level label is not two finite numbers."""
    out = {}
    for video in videos:
        attrs = store.open_video(cache, dataset, video).attrs
        label = attrs.get("video_labels")
        if label is not None and not finite_label(label.get("arousal"), label.get("valence")):
            out[video] = not_a_label(label.get("arousal"), label.get("valence"), table_of(attrs))
    return out


def unlabelled_beside(rows: list[dict], scored_splits: set[str], no_row: dict | None = None) -> dict[str, str]:
    """{video: why} of the index ``rows`` that came without labels in a split of ``scored_splits`` (the splits of the
    labelled videos read): a split of only unlabelled videos (ABAW's test list) is not scored at all, so is not it.
    ``no_row``: {video: the label tables there now that have no row for it} (a labelled CSV released since), said."""
    def why(video: str) -> str:
        tables = (no_row or {}).get(video)
        return (f"{', '.join(tables)}, there now, has no row for it" if tables else
                "none were found for it when `features` listed it")

    return {r["video"]: f"came without labels ({why(r['video'])}), unlike the other videos of split {r['split']!r}: "
            "neither trained on nor scored" for r in rows if store.known_unlabelled(r) and str(r["split"]) in scored_splits}


def cache_line(cache, dataset: str, done: list[dict]) -> str | None:
    """`info`'s line for the ``done`` index rows of a dataset that train and predict read past (a label that is not
    two finite numbers, in a cache made before the lister refused such rows; no labels in a split whose other videos
    have them), or None: otherwise a user sees them only in a run's output, after it."""
    labelled = [r["video"] for r in done
                if not store.known_unlabelled(r) and store.group_status(cache, dataset, r["video"]) == "done"]
    why = dict.fromkeys(not_labels(cache, dataset, labelled), "label not two finite numbers")
    scored = {str(r["split"]) for r in done if not store.known_unlabelled(r) and r["video"] not in why}
    why.update({v: f"no labels, in split {r['split']!r} whose others have them"
                for r in done if (v := r["video"]) in unlabelled_beside([r], scored)})
    if not why:
        return None
    names = sorted(why)
    shown = "; ".join(f"{v} ({why[v]})" for v in names[:4]) + (f"; and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"    {counted(len(names), 'done video')} neither trained on nor scored, though in a labelled split: "
            f"{shown}; train and predict leave {'it' if len(names) == 1 else 'them'} out and list "
            f"{'it' if len(names) == 1 else 'them'} (metrics.json's left_out, predict.json's scores.left_out)")


def outside_sample(before: list[dict], kept: list[dict], sample_path) -> dict[str, str]:
    """{video: why} of the labelled index rows ``before`` (a split's) that the organisers' file passed with --sample
    leaves out (``kept``: the rows predicted). `predict` scores only the videos it submits: "scores of the 3 labelled
    videos of split test" read as the split's score when the file held 3 of its 4, with nothing naming the fourth."""
    if sample_path is None:
        return {}
    kept_ids = {r["video"] for r in kept}
    return {r["video"]: f"not a row of {Path(sample_path).name} (--sample): the scores are of its rows only"
            for r in before if r["video"] not in kept_ids and not store.known_unlabelled(r)
            and (r.get("video_arousal") is None or finite_label(r.get("video_arousal"), r.get("video_valence")))}
