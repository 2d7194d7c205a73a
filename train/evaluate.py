"""A model over held-out sequences: per-video predictions (every frame once) and their scores, as the protocol says.

Frame level: every labelled frame is scored, frames without a face taking the nearest prediction in time
(``fill_nearest``), and the face-only scores go beside them in ``face_only`` (train/protocol.py says why). Video
level: one prediction per video (utterance), CCC over the videos.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from train import data
from train.metrics import scores
from train.rescale import rescale


def inputs(batch: dict, window: int, device) -> tuple:
    """(rgb, m0, m1) on the device, motion rows unfolded into windows; None for what the model does not read."""
    def motion(key):
        if key not in batch:
            return None
        rows = batch[key].to(device).float()
        return data.snippet_windows(rows) if rows.ndim == 6 else data.windows(rows, window)

    rgb = batch["rgb"].to(device).float() if "rgb" in batch else None
    return rgb, motion("m0"), motion("m1")


def present(batch: dict, device) -> torch.Tensor | None:
    """[B, L] positions that hold a frame of the video (the rest is padding the model leaves out); None: all."""
    return (batch["frames"] >= 0).to(device) if "frames" in batch else None


@torch.no_grad()
def predict(model, ds: data.SequenceDataset, window: int, batch_size: int, num_workers: int, device,
            progress: str | None = None) -> dict:
    """Per-video arrays: pred/labels [T, 2], valid [T], and the video-level output (weighted by frames).
    ``progress``: a progress bar (on stderr) with this label: a test set of ~10^6 frames is a long pass on a CPU."""
    from tqdm import tqdm

    model.eval()
    res = {}
    for i, v in enumerate(ds.videos):
        n = int(v["n_frames"])
        res[i] = {"pred": np.full((n, 2), np.nan, np.float32), "labels": np.full((n, 2), np.nan, np.float32),
                  "valid": np.zeros(n, bool), "vsum": np.zeros(2), "vw": 0.0}
    batches = data.loader(ds, batch_size, None, num_workers)
    for batch in tqdm(batches, desc=progress, total=len(batches), unit="batch", leave=False, file=sys.stderr,
                      disable=progress is None):
        own = batch["own"].to(device)
        out = model(*inputs(batch, window, device), mask=own & batch["valid"].to(device),
                    present=present(batch, device))
        frame = out["frame"].float().cpu().numpy()
        video = out["video"].float().cpu().numpy()
        for b, vi in enumerate(batch["video_idx"].tolist()):
            o = batch["own"][b].numpy()
            fr = batch["frames"][b].numpy()[o]
            r = res[vi]
            r["pred"][fr] = frame[b][o]
            r["labels"][fr] = batch["labels"][b].numpy()[o]
            r["valid"][fr] = batch["valid"][b].numpy()[o]
            w = float((o & batch["valid"][b].numpy()).sum())
            r["vsum"] += w * video[b]   # the head is linear: the weighted mean of outputs = head(mean f_t)
            r["vw"] += w
    for r in res.values():
        r["video"] = r["vsum"] / r["vw"] if r["vw"] else np.full(2, np.nan)
    return res


def fill_nearest(pred: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Predictions [T, 2] where each frame without a face takes the prediction of the nearest frame with one (the
    earlier on a tie), as DESIGN.md's protocol says; all NaN when no frame has a face. (The released code's test
    files carried the previous face frame's prediction forward, 0 before the first: Aff-wild-exps/main.py.)"""
    valid = np.asarray(valid, bool)
    idx = np.flatnonzero(valid)
    if not len(idx):
        return np.full_like(pred, np.nan)
    t = np.arange(len(pred))
    after = np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)        # first face frame at or after t
    before = np.clip(after - 1, 0, len(idx) - 1)
    take_before = np.abs(t - idx[before]) <= np.abs(idx[after] - t)
    return pred[np.where(take_before, idx[before], idx[after])]


def evaluate(res: dict, videos: list[dict], level: str, label_std: list[float] | None = None) -> dict:
    """Overall and per-video scores from ``predict``'s output, as the protocol scores (module docstring); with the
    training labels' ``label_std``, also the scores of the predictions rescaled as the released code did
    (``rescaled``: train/rescale.py).

    Frame level also fills ``res[i]["scored"]``: the predictions that were scored (no face: the nearest one).
    """
    out = _evaluate(res, videos, level)
    if label_std is not None:
        out["rescaled"] = {**scores(rescale(scored(res, videos, level), label_std, faces(res, videos, level)),
                                    labels(res, videos, level)), "label_std": [float(x) for x in label_std]}
    return out


def faces(res: dict, videos: list[dict], level: str) -> np.ndarray | None:
    """The predictions of the frames with a face, all videos in one [n, 2] array (None for video level: all are)."""
    if level == "video":
        return None
    return np.concatenate([res[i]["pred"][np.asarray(res[i]["valid"], bool)] for i in range(len(videos))])


def scored(res: dict, videos: list[dict], level: str) -> np.ndarray:
    """The predictions ``evaluate`` scored, all videos in one [n, 2] array (after ``evaluate`` for frame level)."""
    if level == "video":
        return np.stack([res[i]["video"] for i in range(len(videos))])
    return np.concatenate([res[i]["scored"] for i in range(len(videos))])


def labels(res: dict, videos: list[dict], level: str) -> np.ndarray:
    """The labels they are scored against, in the same order."""
    if level == "video":
        return np.array([[v["video_arousal"], v["video_valence"]] for v in videos])
    return np.concatenate([res[i]["labels"] for i in range(len(videos))])


def _evaluate(res: dict, videos: list[dict], level: str) -> dict:
    if level == "video":
        pred, lab = scored(res, videos, level), labels(res, videos, level)
        out = scores(pred, lab)
        out["unscored"] = int((~np.isfinite(pred).all(1)).sum())     # utterances without a face in any snippet
        out["per_video"] = {v["video"]: {"arousal": float(pred[i, 0]), "valence": float(pred[i, 1]),
                                         "label_arousal": float(lab[i, 0]), "label_valence": float(lab[i, 1]),
                                         "snippets": int(res[i]["vw"])}
                            for i, v in enumerate(videos)}
        return out
    for i in range(len(videos)):
        res[i]["scored"] = fill_nearest(res[i]["pred"], res[i]["valid"])
    cat = {k: np.concatenate([res[i][k] for i in range(len(videos))]) for k in ("pred", "scored", "labels", "valid")}
    out = scores(cat["scored"], cat["labels"])
    labelled = np.isfinite(cat["labels"]).all(1)
    out["unscored"] = int((labelled & ~np.isfinite(cat["scored"]).all(1)).sum())   # 0 unless a video has no face: select() leaves those out
    out["face_only"] = scores(cat["pred"], cat["labels"], cat["valid"])
    out["per_video"] = {v["video"]: {**scores(res[i]["scored"], res[i]["labels"]),
                                     "face_only": scores(res[i]["pred"], res[i]["labels"], res[i]["valid"])}
                        for i, v in enumerate(videos)}
    return out
