"""The released code's rescaling of predictions, scored beside the plain scores: how the paper's numbers were made.

The paper does not mention it, but its released code (Aff-wild-exps/main.py and OMG-exps/main.py, ``correct``)
rescales every set of predictions before scoring it, per dimension, so that their spread matches the training
labels' while their mean stays:

    p'_i = mean(p) + (p_i - mean(p)) * std(training labels) / std(p)

over all the predictions of the set (a validation fold, the test set). CCC punishes a spread smaller than the
labels' (models trained on 1-CCC tend to under-predict it), so this raises CCC without any label of the set scored;
the released code picked its best epoch on it and wrote its test predictions rescaled (each fold model's, before
their mean). `train` and `predict` report it as ``rescaled`` beside their plain scores, so a researcher can compare
with the paper's tables knowing what they measure; selection and best.pt stay on the plain predictions, and so do
the files `predict` writes unless `--rescale` asks for the rescaled ones (as the released code submitted them).

std(training labels) is over every labelled frame of the training videos (per-frame labels) or over their labels
(one per utterance), computed when the run starts and kept in the checkpoint (``label_std``).
"""
from __future__ import annotations

import numpy as np

from pipeline import store


def label_std(cache, dataset: str, rows: list[dict], level: str) -> list[float]:
    """Per dimension (arousal, valence), the std of the training videos' labels."""
    if level == "video":
        lab = np.array([[r["video_arousal"], r["video_valence"]] for r in rows], np.float64)
    else:
        lab = np.concatenate([store.open_video(cache, dataset, r["video"])["labels"][:].astype(np.float64)
                              for r in rows]) if rows else np.zeros((0, 2))
    return [float(np.nanstd(lab[:, d])) if np.isfinite(lab[:, d]).any() else float("nan") for d in range(2)]


def rescale(pred: np.ndarray, std: list[float], ref: np.ndarray | None = None) -> np.ndarray:
    """``pred`` [n, 2] with each dimension's spread around its mean set to ``std`` (NaN rows stay NaN); the mean and
    spread are those of ``ref`` (default ``pred``): the frames with a face, whose predictions the released code had
    (frames without one took theirs after; the map is affine, so rescaling the filled predictions is the same)."""
    out = np.array(pred, np.float64)
    ref = out if ref is None else np.asarray(ref, np.float64)
    for d in range(out.shape[1]):
        col, base = out[:, d], ref[:, d][np.isfinite(ref[:, d])]
        ok = np.isfinite(col)
        spread = base.std() if len(base) > 1 else 0.0
        if spread > 0 and np.isfinite(std[d]):
            mean = base.mean()
            out[ok, d] = mean + (col[ok] - mean) * std[d] / spread
    return out
