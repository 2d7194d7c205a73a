"""A model over held-out sequences: per-video predictions (every frame once) and their scores."""
from __future__ import annotations

import numpy as np
import torch

from train import data
from train.metrics import scores


def inputs(batch: dict, window: int, device) -> tuple:
    """(rgb, m0, m1) on the device, motion rows unfolded into windows; None for what the model does not read."""
    rgb = batch["rgb"].to(device).float() if "rgb" in batch else None
    m0 = data.windows(batch["m0"].to(device).float(), window) if "m0" in batch else None
    m1 = data.windows(batch["m1"].to(device).float(), window) if "m1" in batch else None
    return rgb, m0, m1


@torch.no_grad()
def predict(model, ds: data.SequenceDataset, window: int, batch_size: int, num_workers: int, device) -> dict:
    """Per-video arrays: pred/labels [T, 2], valid [T], and the video-level output (weighted by frames)."""
    model.eval()
    res = {}
    for i, v in enumerate(ds.videos):
        n = int(v["n_frames"])
        res[i] = {"pred": np.full((n, 2), np.nan, np.float32), "labels": np.full((n, 2), np.nan, np.float32),
                  "valid": np.zeros(n, bool), "vsum": np.zeros(2), "vw": 0.0}
    for batch in data.loader(ds, batch_size, None, num_workers):
        own = batch["own"].to(device)
        out = model(*inputs(batch, window, device), mask=own & batch["valid"].to(device))
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


def evaluate(res: dict, videos: list[dict], level: str) -> dict:
    """Overall and per-video scores from ``predict``'s output."""
    if level == "video":
        pred = np.stack([res[i]["video"] for i in range(len(videos))])
        lab = np.array([[v["video_arousal"], v["video_valence"]] for v in videos])
        out = scores(pred, lab)
        out["per_video"] = {v["video"]: {"arousal": float(pred[i, 0]), "valence": float(pred[i, 1]),
                                         "label_arousal": float(lab[i, 0]), "label_valence": float(lab[i, 1])}
                            for i, v in enumerate(videos)}
        return out
    pred = np.concatenate([res[i]["pred"] for i in range(len(videos))])
    lab = np.concatenate([res[i]["labels"] for i in range(len(videos))])
    valid = np.concatenate([res[i]["valid"] for i in range(len(videos))])
    out = scores(pred, lab, valid)
    out["per_video"] = {v["video"]: scores(res[i]["pred"], res[i]["labels"], res[i]["valid"])
                        for i, v in enumerate(videos)}
    return out
