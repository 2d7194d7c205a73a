"""Masked CCC, PCC and RMSE (torch for the loss, NumPy float64 for reported figures).

CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2), with population (1/n) moments, as in the paper's Eq. 6
and the AVEC/Aff-Wild evaluation scripts. The loss is 1 - CCC per dimension, averaged over arousal and valence
(so it lies in [0, 2] and its gradient scale does not depend on the number of dimensions).
"""
from __future__ import annotations

import numpy as np
import torch

DIMS = ("arousal", "valence")


def ccc_torch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Masked CCC per dimension: pred/target [..., D], mask [...] bool -> [D]."""
    m = mask.reshape(-1)
    x = pred.reshape(-1, pred.shape[-1])[m]
    # NaN labels are masked already; nan_to_num keeps NaN out of the (masked-away) autograd graph too.
    y = torch.nan_to_num(target.reshape(-1, target.shape[-1])[m])
    if x.shape[0] < 2:
        return x.sum(0) * 0   # nothing to score: zero, but still part of the graph so backward() works
    mx, my = x.mean(0), y.mean(0)
    vx, vy = ((x - mx) ** 2).mean(0), ((y - my) ** 2).mean(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return 2 * cov / (vx + vy + (mx - my) ** 2 + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - CCC per dimension, averaged over the dimensions (arousal, valence)."""
    return (1 - ccc_torch(pred, target, mask)).mean()


def _masked(pred, target, mask):
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    keep = np.isfinite(target) & np.isfinite(pred)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    return pred[keep], target[keep]


def ccc(pred, target, mask=None) -> float:
    """CCC of one dimension over the frames where mask is true and both values are finite (float64)."""
    x, y = _masked(pred, target, mask)
    if len(x) < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    den = x.var() + y.var() + (mx - my) ** 2
    return float(2 * ((x - mx) * (y - my)).mean() / den) if den > 0 else float("nan")


def pcc(pred, target, mask=None) -> float:
    """Pearson correlation of one dimension (masked; NaN when either side is constant)."""
    x, y = _masked(pred, target, mask)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).mean() / (x.std() * y.std()))


def rmse(pred, target, mask=None) -> float:
    """Root mean squared error of one dimension (masked)."""
    x, y = _masked(pred, target, mask)
    return float(np.sqrt(((x - y) ** 2).mean())) if len(x) else float("nan")


def scores(pred: np.ndarray, target: np.ndarray, mask=None) -> dict:
    """ccc/pcc/rmse per dimension and their mean CCC, from [n, 2] arrays of (arousal, valence)."""
    out = {}
    for d, name in enumerate(DIMS):
        md = None if mask is None else np.asarray(mask, bool)
        out[f"ccc_{name}"] = ccc(pred[:, d], target[:, d], md)
        out[f"pcc_{name}"] = pcc(pred[:, d], target[:, d], md)
        out[f"rmse_{name}"] = rmse(pred[:, d], target[:, d], md)
    out["ccc_mean"] = (out["ccc_arousal"] + out["ccc_valence"]) / 2
    out["n"] = len(_masked(pred[:, 0], target[:, 0], mask)[0])
    return out
