"""ΔPhase of one band of a batch of frames, in both variants' maths (see ``features.motion.MotionConfig``).

A band is [re/im, O, I, n]: O and I the map axes (O = x for orientation 0, y for 1), n frames, batch last.
Everything is written in place or into ``Scratch`` buffers (see features/scratch.py for why).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .filters import box_mean, gaussian_blur
from .rigid import remove_affine
from .scratch import Scratch, take
from .window import native_window

if TYPE_CHECKING:
    from .motion import MotionConfig


def _remove_mean(x: torch.Tensor, scale: int, cfg: MotionConfig, ws: Scratch | None = None) -> torch.Tensor:
    """rigid="mean": subtract, in place, the mean over the map, or over a k x k box (fewer pixels counted at the
    borders)."""
    if cfg.rigid != "mean":
        return x
    if cfg.mean_window is None:
        return x.sub_(x.mean(dim=(0, 1), keepdim=True))
    k = (cfg.mean_window >> scale) | 1  # the same window in face pixels: half as many at the coarser scale
    return x.sub_(box_mean(x, k, ws))


def _weighted_mean(pair: torch.Tensor, cfg: MotionConfig, ws: Scratch | None) -> torch.Tensor:
    """G*(w x) / G*w from pair = [w x, w] (Wadhwa et al. 2013: phase is unreliable where the amplitude is low);
    a flat image has zero weight and numerator: 0, not NaN. In place in the blur's buffers."""
    smooth = gaussian_blur(pair, cfg.sigma, cfg.taps, ws)
    return smooth[0].div_(smooth[1].clamp_min_(torch.finfo(smooth.dtype).tiny))


def mimamo_band(band: torch.Tensor, scale: int, orientation: int, cfg: MotionConfig,
                ws: Scratch | None = None) -> torch.Tensor:
    """mimamo's ΔPhase [O, I, B-1] between consecutive frames of one band [re/im, O, I, B] (orientation 0: O = x)."""
    re, im = band[0], band[1]
    win = None
    if cfg.window is not None:  # the face window in the band's native layout [O, I, 1]
        o, i = re.shape[:2]
        hw = (o, i) if orientation == 1 else (i, o)
        win = native_window(*hw, orientation, cfg.window, cfg.window_edge, re.dtype, str(re.device))
    cr, ci, pr, pi_ = re[..., 1:], im[..., 1:], re[..., :-1], im[..., :-1]
    # in-place or into scratch buffers: fresh multi-MB temporaries cost page faults that rivalled the arithmetic
    # c_t conj(c_{t-1}): its angle is the phase step wrapped to (-pi, pi], right in both directions
    p_re = torch.mul(cr, pr, out=take(ws, "dp.re", tuple(cr.shape), re)).addcmul_(ci, pi_)
    p_im = torch.mul(ci, pr, out=take(ws, "dp.im", tuple(cr.shape), re)).addcmul_(cr, pi_, value=-1)
    both = take(ws, "dp.pair", (2, *p_re.shape), re)
    if cfg.amplitude == "geometric":  # sqrt(|c_t| |c_t-1|) = sqrt(|p|)
        torch.sqrt(torch.hypot(p_re, p_im, out=both[0]), out=both[1])
    elif cfg.amplitude == "product":  # |c_t| |c_t-1| = |p|: the inverse variance of the phase step
        torch.hypot(p_re, p_im, out=both[1])
    else:
        torch.hypot(cr, ci, out=both[1])
    step = torch.atan2(p_im, p_re, out=p_im)
    if cfg.rigid == "affine":
        remove_affine(step, re, im, cfg.rigid_iterations, weight=win, ws=ws)
    if win is not None:  # a normalised blur inside the window: nothing from outside the face bleeds in
        both[1].mul_(win)
    torch.mul(step, both[1], out=both[0])
    out = _remove_mean(_weighted_mean(both, cfg, ws), scale, cfg, ws)
    if win is not None:
        out.mul_(win)
    return out.clamp_(-cfg.clamp, cfg.clamp)


def _unwrap_turns(phase_: torch.Tensor, runs: list[tuple[int, int]], before: torch.Tensor | None,
                  k: torch.Tensor) -> torch.Tensor:
    """Turns k [O, I, n] (exact integers) such that phase_ + 2 pi k is phase_ [O, I, n] unwrapped along time.

    The unwrap runs within each run [a, e) of consecutive valid slots: from k = 0 at its first slot, or, for a
    run that starts at slot 0, from ``before`` (that frame's turns, carried from the previous batch; None: 0).
    """
    k[..., 0] = 0
    step = torch.sub(phase_[..., 1:], phase_[..., :-1], out=k[..., 1:])
    step.div_(-2 * math.pi).round_()  # -round(dphi / 2 pi) in {-1, 0, 1}: numpy.unwrap's correction
    k.cumsum_(-1)
    for a, e in runs:
        if a > 0:
            k[..., a:e] -= k[..., a:a + 1].clone()
        elif before is not None:  # the cumulative sum is 0 at slot 0
            k[..., a:e] += before[..., None]
    return k


def paper_band(band: torch.Tensor, scale: int, cfg: MotionConfig, runs: list[tuple[int, int]],
                before: torch.Tensor | None, ws: Scratch | None, maps: bool = True):
    """The paper's ΔPhase [O, I, n-1] (None unless ``maps``) and the turns k [O, I, n] of one band [re/im, O, I, n]."""
    re, im = band[0], band[1]
    shape = tuple(re.shape)
    phase_ = torch.atan2(im, re, out=take(ws, "dp.phase", shape, re))
    turns = _unwrap_turns(phase_, runs, before, take(ws, "dp.turns", shape, re))
    if not maps:
        return None, turns
    pair = take(ws, "dp.pair", (2, *shape), re)  # [A Phi, A]
    torch.hypot(re, im, out=pair[1])
    torch.mul(turns, 2 * math.pi, out=pair[0]).add_(phase_).mul_(pair[1])
    smooth = _weighted_mean(pair, cfg, ws)  # Psi_t [O, I, n]
    diff = torch.sub(smooth[..., 1:], smooth[..., :-1], out=take(ws, "dp.diff", (*shape[:2], shape[2] - 1), re))
    return _remove_mean(diff, scale, cfg, ws).clamp_(-cfg.clamp, cfg.clamp), turns
