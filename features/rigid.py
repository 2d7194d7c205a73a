"""Rigid-motion removal for ΔPhase: a robust global affine motion fitted to the phase changes, and subtracted.

Why: an aligned face still moves as a whole between frames (landmark error of a pixel turns into a small shift,
rotation and scale of the crop), and that motion is in ΔPhase everywhere, where the micro-motions are local and
small. The paper (and its released code) subtracts the mean ΔPhase of the map, which is right only for a
translation of a pure sinusoid: a band's local frequency varies by an octave across the face, so even a
translation leaves ``omega(p) . d`` varying with p, and a rotation or scale leaves a field growing with the
distance from the centre. A box mean (``mean_window``) removes the micro-motion itself.

The model (phase constancy, Fleet & Jepson 1990): a band's phase moves with the image, phi_t(p) = phi_{t-1}(p - d(p)),
so for small d the wrapped phase change is

    dphi(p) = -omega(p) . d(p),     omega(p) = grad phi(p)  (the band's local frequency, rad/px),

and for an affine motion d(p) = t + A p (p centred on the map) this is linear in the six parameters
theta = (t_o, t_i, A_oo, A_oi, A_io, A_ii) (o, i: the band's outer and inner axes):

    dphi(p) = x(p) . theta,  x(p) = -(w_o, w_i, w_o p_o, w_o p_i, w_i p_o, w_i p_i).

Per frame pair and band, theta minimises sum_p a(p) rho(dphi(p) - x(p) . theta) by iteratively reweighted least
squares: a(p) = |c_t(p)| |c_{t-1}(p)| (phase noise has variance ~ 1/amplitude^2, so this is the inverse variance)
and rho is Tukey's biweight with scale 4.685 x 1.4826 x median|residual| (over the pixels of at least median
amplitude), so pixels that move on their own (micro-motions, background seen past the face) get weight 0 and
do not pull the fit. omega comes from central differences of the complex band, angle(c(p+1) conj(c(p-1))) / 2,
summed over both frames (robust to phase wraps); the outermost pixel ring is left out of the fit. The fitted
field x(p) . theta is subtracted from the wrapped phase change everywhere (and wrapped again to (-pi, pi]).
A motion exactly affine leaves ~0 (up to the linearisation); a local motion is kept (it is an outlier of the
fit) apart from the tiny share an affine field can explain of it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

TUKEY = 4.685  # 95 % efficiency under Gaussian noise
MAD = 1.4826  # median |r| -> standard deviation for Gaussian noise
GRID = 4  # the start's candidate fits use halves of a GRID x GRID partition of the map
CANDIDATES = 24  # how many halves: a compact motion within 2 blocks is missed by ~1 in 4.4 of them


def local_frequency(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A band's local frequency (rad/px) along its outer and inner axes, from [O, I, B] maps of consecutive frames.

    Returns (w_o, w_i) [O, I, B-1]: angle(c(p+1) conj(c(p)) + c(p) conj(c(p-1))), one-pixel steps (|omega| < pi,
    no aliasing up to Nyquist) on either side of p (one side at the edges), summed over frames t-1 and t with each
    frame divided by its mean |c|^2, so a change of contrast between the two frames changes nothing.
    """
    energy = (re * re + im * im).mean(dim=(0, 1)).clamp_min(1e-30)  # [B]
    re, im = re / energy.sqrt(), im / energy.sqrt()

    def grad(dim: int) -> torch.Tensor:
        n = re.shape[dim]
        a, b = re.narrow(dim, 1, n - 1), im.narrow(dim, 1, n - 1)
        c, d = re.narrow(dim, 0, n - 1), im.narrow(dim, 0, n - 1)
        fr, fi = a * c + b * d, b * c - a * d  # c(p+1) conj(c(p)), at the n-1 half-pixel positions
        fr, fi = fr[..., 1:] + fr[..., :-1], fi[..., 1:] + fi[..., :-1]  # both frames of each pair
        zero = torch.zeros_like(fr.narrow(dim, 0, 1))
        sr = torch.cat([zero, fr], dim) + torch.cat([fr, zero], dim)  # the steps on both sides of p
        si = torch.cat([zero, fi], dim) + torch.cat([fi, zero], dim)
        return torch.atan2(si, sr)

    return grad(0), grad(1)


def _design(w_o: torch.Tensor, w_i: torch.Tensor) -> torch.Tensor:
    """x(p) of the module docstring for every pixel: [6, O, I, B], coordinates centred and in units of the half size."""
    o, i = w_o.shape[:2]
    po = ((torch.arange(o, dtype=w_o.dtype, device=w_o.device) - (o - 1) / 2) / (o / 2)).view(o, 1, 1)
    pi_ = ((torch.arange(i, dtype=w_o.dtype, device=w_o.device) - (i - 1) / 2) / (i / 2)).view(1, i, 1)
    return -torch.stack([w_o, w_i, w_o * po, w_o * pi_, w_i * po, w_i * pi_])


def _median_scale(r: torch.Tensor, strong: torch.Tensor) -> torch.Tensor:
    """Robust scale per frame [B]: 1.4826 median |r| over the strong pixels (indices [B, M] into r's last axis)."""
    return MAD * r.gather(-1, strong).abs().median(dim=-1).values


@lru_cache(maxsize=8)
def _subsets(grid: int, count: int) -> np.ndarray:
    """[grid^2, count + 1] 0/1: which blocks each start candidate is fitted on: every block, then ``count``
    fixed pseudo-random halves (seeded: the result does not depend on the run)."""
    g = grid * grid
    rng = np.random.default_rng(17)
    cols = [np.ones(g)] + [np.isin(np.arange(g), rng.choice(g, g // 2, replace=False)) for _ in range(count)]
    return np.stack(cols, 1).astype(np.float64)


def _blocks(o: int, i: int, st: int, grid: int) -> np.ndarray:
    """Block number (0..grid^2-1) of every pixel of the [o, i] map read with stride st, flattened as the fit's N."""
    bo = (np.arange(0, o, st) * grid) // o
    bi = (np.arange(0, i, st) * grid) // i
    return (bo[:, None] * grid + bi[None, :]).ravel()


_PAIRS = [(k, m) for k in range(6) for m in range(k, 6)]


def _start(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, strong: torch.Tensor, blocks: np.ndarray,
           subsets: np.ndarray) -> torch.Tensor:
    """A start theta [B, 6] that a compact local motion did not pull: the least-squares fits on several halves of
    the face (and on all of it, and no motion at all), the one with the smallest median |residual| on the strong
    pixels (least median of squares over candidates: a half that misses the moving feature fits the rest best)."""
    b, _, n = x.shape
    onehot = torch.zeros((n, subsets.shape[0]), dtype=x.dtype, device=x.device)
    onehot[torch.arange(n), torch.as_tensor(blocks, device=x.device)] = 1.0
    pick = torch.as_tensor(subsets, dtype=x.dtype, device=x.device)  # [G, K]
    ku, km = zip(*_PAIRS)
    prod = x[:, list(ku)] * x[:, list(km)] * a[:, None, :]  # [B, 21, N]
    lhs21 = (prod @ onehot) @ pick  # [B, 21, K]: per-block sums, then per candidate
    rhs = ((x * (a * y)[:, None, :]) @ onehot) @ pick  # [B, 6, K]
    k = pick.shape[1]
    lhs = torch.zeros((b, k, 6, 6), dtype=x.dtype, device=x.device)
    for j, (u, v) in enumerate(_PAIRS):
        lhs[:, :, u, v] = lhs[:, :, v, u] = lhs21[:, j]
    scale = lhs.diagonal(dim1=2, dim2=3).mean(2).clamp_min(1e-12)
    ridge = torch.eye(6, dtype=x.dtype, device=x.device) * 1e-6
    theta = torch.linalg.solve(lhs + ridge * scale[..., None, None], rhs.transpose(1, 2)[..., None])[..., 0]
    theta = torch.cat([torch.zeros_like(theta[:, :1]), theta], 1)  # [B, K + 1, 6]: "no motion" competes too
    xs = x.gather(2, strong[:, None, :].expand(-1, 6, -1))  # the strong pixels only: [B, 6, M]
    r = y.gather(1, strong)[:, None, :] - theta @ xs  # [B, K + 1, M]
    cost = r.abs().median(dim=2).values
    return theta[torch.arange(b, device=x.device), cost.argmin(1)]


def remove_affine(delta: torch.Tensor, re: torch.Tensor, im: torch.Tensor, iterations: int = 4,
                  floor: float = 1e-3, weight: torch.Tensor | None = None, ws=None) -> torch.Tensor:
    """Subtract, in place, the robust affine motion field from wrapped phase changes delta [O, I, B-1].

    re, im [O, I, B] are the band of the B frames delta was taken from (delta[..., k] = frame k+1 against k).
    The fit starts from the best of several least-squares fits on halves of the face (``_start``), then takes
    ``iterations`` IRLS steps; ``floor`` (rad) bounds the robust scale from below, so a still face (all residuals
    ~0) keeps a well-posed fit. ``weight`` [O, I, 1] (e.g. a face window) multiplies every pixel's weight.
    """
    o, i, b = delta.shape
    if b == 0:
        return delta
    w_o, w_i = local_frequency(re, im)
    full = _design(w_o, w_i)  # [6, O, I, B]
    amp = torch.hypot(re, im)
    a = amp[..., 1:] * amp[..., :-1]
    inner = torch.zeros((o, i, 1), dtype=a.dtype, device=a.device)
    inner[1:-1, 1:-1] = 1.0  # the outermost ring's frequencies come from one-sided differences
    if weight is not None:
        inner = inner * weight
    # Six parameters need no 2304 samples: at the finer scale the fit reads every other pixel of each axis
    # (cost / 4), so the maps' 2-pixel-wide blur and amplitude structure are still sampled.
    st = 2 if min(o, i) >= 32 else 1
    x = full[:, ::st, ::st].reshape(6, -1, b).permute(2, 0, 1).contiguous()  # [B, 6, N]: batched products
    a = (a * inner)[::st, ::st].reshape(-1, b).T.contiguous()  # [B, N]
    y = delta[::st, ::st].reshape(-1, b).T  # [B, N]
    strong = torch.topk(a, max(1, a.shape[1] // 2), dim=1, sorted=False).indices  # the half of larger amplitude
    theta = _start(x, a, y, strong, _blocks(o, i, st, GRID), _subsets(GRID, CANDIDATES))[:, :, None]
    ridge = torch.eye(6, dtype=a.dtype, device=a.device) * 1e-6
    for _ in range(iterations):
        r = y - torch.bmm(theta.transpose(1, 2), x)[:, 0]
        c = TUKEY * _median_scale(r, strong).clamp_min(floor)
        u = (r / c[:, None]).clamp(-1, 1)
        xw = x * (a * (1 - u * u) ** 2)[:, None, :]
        lhs = torch.bmm(xw, x.transpose(1, 2))
        rhs = torch.bmm(xw, y[:, :, None])
        scale = lhs.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)  # a blank (padding) frame: theta = 0
        theta = torch.linalg.solve(lhs + ridge * scale[:, None, None], rhs)  # [B, 6, 1]
    theta = theta[:, :, 0].T  # [6, B]
    for k in range(6):
        delta.sub_(full[k] * theta[k])
    # wrap back to (-pi, pi]: the fitted field is subtracted from a wrapped difference
    return delta.sub_(torch.round(delta / (2 * math.pi)) * (2 * math.pi))
