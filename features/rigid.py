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

and for an affine motion d(p) = t + A p (p centred on the map, in units of its half size) this is linear in the six
parameters theta = (t_o, t_i, A_oo, A_oi, A_io, A_ii) (o, i: the band's outer and inner axes):

    dphi(p) = x(p) . theta,  x(p) = -(w_o, w_i, w_o p_o, w_o p_i, w_i p_o, w_i p_i).

Per frame pair and band, theta minimises sum_p a(p) rho(dphi(p) - x(p) . theta) over a grid of samples (every other
pixel at the finer scale, every pixel at the coarser; six parameters need no more), with a(p) = |c_t(p)| |c_{t-1}(p)|
times the caller's weight (phase noise has variance ~ 1/amplitude^2, so this is the inverse variance) and rho
Tukey's biweight, so that pixels that move on their own (micro-motions, background seen past the face) get weight 0
and do not pull the fit:

1. start (block-trimmed least squares, the "concentration steps" of FAST-LTS at the scale of blocks): the grid is cut
   into GRID x GRID blocks; the weighted least-squares fit on all blocks, then twice: drop the TRIM blocks whose
   weighted mean square residual is largest and refit on the rest. A compact micro-motion lies in a few blocks,
   which the steps find and drop; a head motion leaves every block alike.
2. scale: s = the weighted RMS residual over the kept blocks (at least ``floor``); c = 4.685 s.
3. ``iterations`` IRLS steps with Tukey weights a (1 - (r / c)^2)^2 (zero beyond c), c fixed.

omega comes from one-pixel steps of the complex band, angle(c(p+1) conj(c(p)) + c(p) conj(c(p-1))) summed over both
frames (robust to phase wraps); the outermost pixel ring is left out of the fit. The fitted field x(p) . theta is
subtracted from the wrapped phase change everywhere (and wrapped again to (-pi, pi]). A motion exactly affine leaves
~0 (up to the linearisation); a local motion is kept (it is an outlier of the fit) apart from the tiny share an
affine field can explain of it.

Everything is batched over the frame pairs, with no per-frame selection over pixels (the median-based start this
replaced cost more than the rest of ΔPhase). The normal equations are the weighted sums of the products of two
frequencies times two coordinate monomials: one batched matrix product per fit, block by block, each block's
monomials [6, P] times its weighted products [P, 5 x frames], with the frames as the product's columns, as in the
pyramid's products; the GRID^2 blocks' moments are then added in a fixed order. So a frame's bits depend only on
its column in products of one fixed shape, which batches fixed by frame number keep (see
``features.motion.delta_phase``), and not on the thread count: one product over all N samples let MKL split its
long inner dimension between threads on some CPUs (AMD EPYC here), so 1 and 2 threads rounded differently; the
blocks' products are short and split by block. The product replaced 30 elementwise passes per fit (summed along
each frame's own row): the same sums to rounding (~1e-6 of ΔPhase's RMS), in a third of the time (2.9x); the
blocked form changed a float16 bit in ~0.3% of the values, at no cost in time (bench/motion.py).

The start takes no pass over the samples after its first product: that product (a batched one, block by block)
also sums y^2, so each block g has the augmented moments S_g = sum a (y, z)(y, z)^T (z the design's columns
up to sign, [7, 7] per frame); a block's weighted squared residual is (1, theta)^T S_g (1, theta), and the fit on
the kept blocks solves with the sum of their S_g. Only the scale and the IRLS steps need the residuals
themselves. This replaced two residuals and two fits per band: ΔPhase the same to rounding (~2e-7 rad), the
default ΔPhase ~10% faster (the two versions' ``delta_phase`` on 256 frames, interleaved in one process).
"""
from __future__ import annotations

import math

import torch

from .scratch import Scratch, take

TUKEY = 4.685  # 95 % efficiency under Gaussian noise
SAMPLES = 24  # samples per axis of the fit's grid: every other pixel at 48x48, every pixel at 24x24 (fewer, 16 or
# 12, are 25-30% faster but let a small micro-motion pull the fit: an eyelid's map 58% wrong on a moving head)
GRID = 4  # the start's blocks: GRID x GRID over the sample grid
TRIM = 4  # blocks (of GRID^2) dropped in each concentration step of the start
STEPS = 2  # concentration steps of the start
RIDGE = 1e-6  # relative ridge of the normal equations: a blank (padding) frame gives theta = 0
# theta's design column k is -(frequency _F[k]) x (monomial _M[k]) of (w_o, w_i) x (1, p_o, p_i):
# w_o, w_i, w_o p_o, w_o p_i, w_i p_o, w_i p_i; the normal equations need the weighted sums of the products of two
# frequencies (w_o w_o, w_o w_i, w_i w_i) times the products of two monomials (1, p_o, p_i, p_o^2, p_o p_i, p_i^2)
_F = [0, 1, 0, 0, 1, 1]
_M = [0, 0, 1, 2, 1, 2]
_PAIR_F = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}
_PAIR_M = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (0, 2): 2, (2, 0): 2, (1, 1): 3, (1, 2): 4, (2, 1): 4, (2, 2): 5}
_FF = [[_PAIR_F[_F[k], _F[m]] for m in range(6)] for k in range(6)]
_MONO = [[_PAIR_M[_M[k], _M[m]] for m in range(6)] for k in range(6)]
_U = [[0, 2, 3], [1, 4, 5]]  # theta's (t, A row) per axis: u_o = t_o + A_oo p_o + A_oi p_i, u_i likewise


def local_frequency(re: torch.Tensor, im: torch.Tensor,
                    ws: Scratch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A band's local frequency (rad/px) along its outer and inner axes, from [O, I, B] maps of consecutive frames.

    Returns (w_o, w_i) [O, I, B-1]: angle(c(p+1) conj(c(p)) + c(p) conj(c(p-1))), one-pixel steps (|omega| < pi,
    no aliasing up to Nyquist) on either side of p (one side at the edges), summed over frames t-1 and t with each
    frame divided by its mean |c|^2, so a change of contrast between the two frames changes nothing. With ``ws``
    the results are its buffers "rg.w0", "rg.w1" (valid until those names are taken again).
    """
    o, i, b = re.shape
    # |c|^2 in the buffers the scaled bands go to next (fresh full-size temporaries cost page faults: scratch.py)
    power = torch.mul(re, re, out=take(ws, "rg.re", (o, i, b), re)).add_(
        torch.mul(im, im, out=take(ws, "rg.im", (o, i, b), re)))
    norm = power.mean(dim=(0, 1)).clamp_min(1e-30).rsqrt()  # [B]
    re = torch.mul(re, norm, out=take(ws, "rg.re", (o, i, b), re))
    im = torch.mul(im, norm, out=take(ws, "rg.im", (o, i, b), re))

    def grad(dim: int) -> torch.Tensor:
        n = re.shape[dim]
        a, bb = re.narrow(dim, 1, n - 1), im.narrow(dim, 1, n - 1)
        c, d = re.narrow(dim, 0, n - 1), im.narrow(dim, 0, n - 1)
        half = tuple(a.shape)
        fr = torch.mul(a, c, out=take(ws, "rg.fr", half, re)).addcmul_(bb, d)  # c(p+1) conj(c(p)), half pixels
        fi = torch.mul(bb, c, out=take(ws, "rg.fi", half, re)).addcmul_(a, d, value=-1)
        pair_shape = (*half[:2], b - 1)
        shape = list(pair_shape)
        shape[dim] = n
        out = []
        for name, f in (("rg.sr", fr), ("rg.si", fi)):
            pair = torch.add(f[..., 1:], f[..., :-1], out=take(ws, name + "p", pair_shape, re))  # both frames
            side = take(ws, name, tuple(shape), re)  # the steps on both sides of p (one side at the edges)
            torch.add(pair.narrow(dim, 1, n - 2), pair.narrow(dim, 0, n - 2), out=side.narrow(dim, 1, n - 2))
            side.narrow(dim, 0, 1).copy_(pair.narrow(dim, 0, 1))
            side.narrow(dim, n - 1, 1).copy_(pair.narrow(dim, n - 2, 1))
            out.append(side)
        return torch.atan2(out[1], out[0], out=take(ws, f"rg.w{dim}", tuple(shape), re))

    return grad(0), grad(1)


def _solve(lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """theta [B, 6] of the normal equations lhs [B, 6, 6] theta = rhs [B, 6], with a ridge relative to lhs's
    diagonal so that a blank (padding) frame gives theta = 0."""
    scale = lhs.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    lhs = lhs + torch.eye(6, dtype=lhs.dtype, device=lhs.device) * (RIDGE * scale)[:, None, None]
    return torch.linalg.solve(lhs, rhs[..., None])[..., 0]


def _grid(n: int) -> slice:
    """At most SAMPLES centred samples along an axis of n pixels, equally spaced over it, a multiple of GRID."""
    step = -(-n // SAMPLES)
    count = min(SAMPLES, n // step) // GRID * GRID
    start = (n - ((count - 1) * step + 1)) // 2
    return slice(start, start + (count - 1) * step + 1, step)


def _blocked(m: torch.Tensor, ws: Scratch | None = None, name: str = "") -> torch.Tensor:
    """Sampled maps [o, i, ...] -> [GRID^2 * P, ...]: the P samples of each block together, frames still last.
    With ``ws``, a copy into its buffer ``name``."""
    o, i = m.shape[:2]
    rest = tuple(m.shape[2:])
    m = m.reshape(GRID, o // GRID, GRID, i // GRID, *rest).permute(0, 2, 1, 3, *range(4, 4 + len(rest)))
    if ws is None:
        return m.reshape(o * i, *rest)
    out = take(ws, name, (o * i, *rest), m)
    out.view(GRID, GRID, o // GRID, i // GRID, *rest).copy_(m)
    return out


def _augmented_index(products: int) -> list[int]:
    """Where each entry of the augmented normal matrix S = sum a (y, z)(y, z)^T [7, 7], row by row, is among the
    weighted moments [6 monomials x ``products``] (flattened): S[0, 0] = sum a y y, S[0, k] = S[k, 0] = sum a y z_k
    and S[k, m] = sum a z_k z_m, z_k = F_k Mono_k the design's column k up to sign (see _F, _M)."""
    prod = [[5] + [3 + _F[m] for m in range(6)]] + [[3 + _F[k]] + [_FF[k][m] for m in range(6)] for k in range(6)]
    mono = [[0] + [_M[m] for m in range(6)]] + [[_M[k]] + [_MONO[k][m] for m in range(6)] for k in range(6)]
    return [mono[r][c] * products + prod[r][c] for r in range(7) for c in range(7)]


_S_INDEX = _augmented_index(6)  # all of S, from the start's moments (with y y)
_EQ_INDEX = _augmented_index(5)[7:]  # S's rows 1..6, the normal equations, from a fit's moments (no y y needed)


def _theta(rows: torch.Tensor) -> torch.Tensor:
    """theta [B, 6] from S's rows 1..6 [42, B]: the normal equations S[1:, 1:] theta = -S[1:, 0]."""
    eq = rows.view(6, 7, -1).permute(2, 0, 1)
    return _solve(eq[..., 1:], -eq[..., 0])


def remove_affine(delta: torch.Tensor, re: torch.Tensor, im: torch.Tensor, iterations: int = 2,
                  floor: float = 1e-3, weight: torch.Tensor | None = None, ws: Scratch | None = None) -> torch.Tensor:
    """Subtract, in place, the robust affine motion field from wrapped phase changes delta [O, I, B-1].

    re, im [O, I, B] are the band of the B frames delta was taken from (delta[..., k] = frame k+1 against k). The
    fit (module docstring) starts from block-trimmed least squares and takes ``iterations`` IRLS steps; ``floor``
    (rad) bounds the robust scale from below, so a still face (all residuals ~0) keeps a well-posed fit.
    ``weight`` [O, I, 1] (e.g. a face window) multiplies every pixel's weight. ``ws``: buffers for the
    temporaries (features/scratch.py).
    """
    o, i, b = delta.shape
    if b == 0:
        return delta
    w_o, w_i = local_frequency(re, im, ws)  # [O, I, B-1]
    so, si = _grid(o), _grid(i)
    # every temporary of the samples' size is a ws buffer: fresh ones cost page faults (scratch.py), which took
    # more time than the fit's arithmetic in a library caller's process
    sampled = (len(range(o)[so]), len(range(i)[si]))
    amp = torch.hypot(re[so, si], im[so, si], out=take(ws, "rg.amp", (*sampled, b + 1), re))
    a = torch.mul(amp[..., 1:], amp[..., :-1], out=take(ws, "rg.a0", (*sampled, b), re))  # [o, i, B] at the samples
    ring = torch.zeros((o, i, 1), dtype=a.dtype, device=a.device)
    ring[1:-1, 1:-1] = 1.0  # the outermost ring's frequencies come from one-sided differences
    if weight is not None:
        ring = ring * weight
    a = _blocked(a, ws, "rg.a").mul_(_blocked(ring[so, si]))  # [N, B], N = G P samples, block by block
    n_s = a.shape[0]
    g = GRID * GRID
    po = ((torch.arange(o, dtype=a.dtype, device=a.device) - (o - 1) / 2) / (o / 2)).view(o, 1, 1)
    pi_ = ((torch.arange(i, dtype=a.dtype, device=a.device) - (i - 1) / 2) / (i / 2)).view(1, i, 1)
    shape = (len(range(o)[so]), len(range(i)[si]), 1)
    qo, qi = _blocked(po[so].expand(shape)), _blocked(pi_[:, si].expand(shape))  # [N, 1]
    # the monomials (1, p_o, p_i, p_o^2, p_o p_i, p_i^2) of each sample, as the rows of the moments' product
    mono = torch.cat([torch.ones_like(qo), qo, qi, qo * qo, qo * qi, qi * qi], 1).T.contiguous()  # [6, N]
    fo, fi = _blocked(w_o[so, si], ws, "rg.fo"), _blocked(w_i[so, si], ws, "rg.fi")  # [N, B]
    y = _blocked(delta[so, si], ws, "rg.y")
    # what the normal equations sum, per sample and frame: (w_o w_o, w_o w_i, w_i w_i, y w_o, y w_i, y y)
    base = take(ws, "rg.base", (n_s, 6, b), a)  # [N, 6, B]
    for k, (u, v) in enumerate(((fo, fo), (fo, fi), (fi, fi), (y, fo), (y, fi), (y, y))):
        torch.mul(u, v, out=base[:, k])
    q = take(ws, "rg.q", (n_s, 6, b), a)
    eq_index = torch.tensor(_EQ_INDEX, device=a.device)
    blocks = mono.view(6, g, -1).transpose(0, 1)  # [G, 6, P]: each block's monomials

    def fit(v: torch.Tensor) -> torch.Tensor:
        """Weighted least squares with per-sample weights v [N, B], from the weighted moments of the design."""
        q5 = torch.mul(base[:, :5], v[:, None], out=q[:, :5])  # y y is the start's only
        # products with the frames as their columns: a frame's bits depend on its column (BLAS rounds some columns,
        # e.g. the tail's, differently), which batches fixed by frame number keep (delta_phase's docstring); per
        # block, then summed, so no thread count splits a sum differently (module docstring)
        moments = torch.bmm(blocks, q5.reshape(g, -1, 5 * b)).sum(0).view(6 * 5, b)  # [6 monomials x 5 products, B]
        return _theta(moments[eq_index])

    def residual(theta: torch.Tensor) -> torch.Tensor:
        """y - x . theta = y + w_o u_o + w_i u_i, u the displacement at each sample (elementwise, per frame)."""
        t = theta.T  # [6, B]
        u_o, u_i = (torch.addcmul(t[k0], qo, t[ko], out=take(ws, name, (n_s, b), a)).addcmul_(qi, t[ki])
                    for name, (k0, ko, ki) in zip(("rg.uo", "rg.ui"), _U))  # u = t + A p
        return torch.addcmul(y, fo, u_o, out=take(ws, "rg.r", (n_s, b), a)).addcmul_(fi, u_i)

    # the start works on each block's augmented moments S_g [49, B] (one batched product): a block's weighted
    # squared residual is (1, theta)^T S_g (1, theta) and a fit on kept blocks solves with their sum, so its
    # concentration steps take no pass over the samples
    torch.mul(base, a[:, None], out=q)
    moments = torch.bmm(mono.view(6, g, -1).transpose(0, 1), q.view(g, -1, 6 * b))  # [G, 6 monomials, 6 x B]
    index = torch.tensor(_S_INDEX, device=a.device)
    s = torch.index_select(moments.view(g, 36, b), 1, index, out=take(ws, "rg.s", (g, 49, b), a))  # [G, 49, B]
    prod = take(ws, "rg.sp", (g, 49, b), a)
    mass = a.view(g, -1, b).sum(1)  # [G, B]
    keep = torch.ones_like(mass)
    theta = _theta(s.sum(0)[7:])
    for _ in range(STEPS):  # drop the blocks that fit worst, refit on the rest
        v = torch.cat([torch.ones_like(theta[:, :1]), theta], 1).T  # [7, B]
        err = torch.mul(s, (v[:, None] * v[None]).view(1, 49, b), out=prod).sum(1) / mass.clamp_min(1e-30)
        keep = torch.ones_like(err).scatter_(0, err.topk(TRIM, dim=0).indices, 0.0)
        theta = _theta(torch.mul(s, keep[:, None], out=prod).sum(0)[7:])
    r = residual(theta)
    tmp = take(ws, "rg.tmp", (n_s, b), a)
    kept_err = (torch.mul(r, r, out=tmp).mul_(a).view(g, -1, b).sum(1) * keep).sum(0)
    scale = (kept_err / (mass * keep).sum(0).clamp_min(1e-30)).sqrt()
    c = TUKEY * scale.clamp_min(floor)  # [B]
    for k in range(iterations):
        if k:
            r = residual(theta)
        u = torch.div(r, c, out=tmp).clamp_(-1, 1)
        theta = fit(u.mul_(u).neg_().add_(1).square_().mul_(a))  # Tukey: a (1 - u^2)^2
    t = theta.T  # [6, B]: the displacement field u(p) = t + A p along each axis, then the phase it moves
    for w, (k0, ko, ki) in zip((w_o, w_i), _U):  # [O, I, B] from [O, 1, B] + [1, I, B]
        u = torch.add((po * t[ko]).add_(t[k0]), pi_ * t[ki], out=take(ws, "rg.u", (o, i, b), delta))
        delta.addcmul_(w, u)  # minus x . theta
    # wrap back to [-pi, pi): the fitted field is subtracted from a wrapped difference
    return delta.add_(math.pi).remainder_(2 * math.pi).sub_(math.pi)
