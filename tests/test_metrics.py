"""Masked CCC/PCC/RMSE against float64 NumPy references; the loss ignores what the mask excludes."""
import numpy as np
import torch

from train.metrics import ccc, ccc_loss, ccc_torch, pcc, rmse, scores


def _ref_ccc(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_matches_float64_reference():
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, 500)
    x = 0.6 * y + 0.2 + 0.3 * rng.standard_normal(500)
    ref = _ref_ccc(x, y)
    assert abs(ccc(x, y) - ref) < 1e-12
    got = ccc_torch(torch.tensor(np.stack([x, y], 1)), torch.tensor(np.stack([y, x], 1)), torch.ones(500, dtype=bool))
    np.testing.assert_allclose(got.numpy(), [ref, ref], rtol=1e-10)
    got32 = ccc_torch(torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.float32)[:, None],
                      torch.ones(500, dtype=bool))
    assert abs(float(got32[0]) - ref) < 1e-5
    assert abs(pcc(x, y) - np.corrcoef(x, y)[0, 1]) < 1e-12
    assert abs(rmse(x, y) - np.sqrt(np.mean((x - y) ** 2))) < 1e-12
    assert abs(ccc(y, y) - 1) < 1e-12 and ccc(y, -y) < -0.9


def test_mask_and_nan_labels_are_excluded():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (200, 2))
    x = y + 0.2 * rng.standard_normal((200, 2))
    clean = scores(x, y)
    # corrupt: invalid frames get wild predictions, unlabelled frames get NaN labels and wild predictions
    xb, yb = x.copy(), y.copy()
    invalid = np.zeros(200, bool)
    invalid[::7] = True
    xb[invalid] = 50.0
    yb[3::11] = np.nan
    xb[3::11] = -50.0
    keep = ~invalid & np.isfinite(yb).all(1)
    masked = scores(xb, yb, ~invalid)
    expect = scores(x[keep], y[keep])
    for k in ("ccc_arousal", "ccc_valence", "pcc_valence", "rmse_arousal"):
        assert abs(masked[k] - expect[k]) < 1e-12
    assert masked["n"] == keep.sum() < 200
    # including the invalid frames would change the figure a lot: the mask is doing the work
    assert scores(xb, yb)["ccc_arousal"] < clean["ccc_arousal"] - 0.3
    # torch loss: same exclusion, and gradients never see the NaN labels
    xt = torch.tensor(xb, requires_grad=True)
    mask = torch.tensor(keep)
    loss = ccc_loss(xt, torch.tensor(yb), mask)
    loss.backward()
    ref = 1 - (_ref_ccc(x[keep, 0], y[keep, 0]) + _ref_ccc(x[keep, 1], y[keep, 1])) / 2
    assert abs(loss.item() - ref) < 1e-9
    assert torch.isfinite(xt.grad).all() and (xt.grad[~mask] == 0).all()
