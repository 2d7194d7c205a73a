"""Micro-motion inputs of the temporal stream: ΔPhase (the paper's), and phase and optical flow (its ablations).

All functions take aligned gray faces [T, H, W] (48x48 in the paper), uint8 or float in 0..255, numpy or
torch, and return numpy float32 arrays in a dict. They can run on a long video in chunks: pass the last
face of the previous chunk as ``previous`` and the rows equal those of a whole-video run exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import BadInputError
from .pyramid import ComplexSteerablePyramid

MOTION_VERSION = "1"  # bump whenever the maths of delta_phase/phase/optical_flow changes (cache fingerprints)

_PYRAMIDS: dict[tuple[int, int], ComplexSteerablePyramid] = {}


@dataclass(frozen=True)
class MotionConfig:
    """Settings of the ΔPhase/phase maths; defaults are the paper's released code."""

    sigma: float = 2.0  # Gaussian of the amplitude-weighted denoising blur, pixels
    taps: int = 11  # blur support (taps x taps), zero-padded at the map borders as the released code
    remove_mean: bool = True  # subtract the spatial mean of ΔPhase (rigid head motion)
    mean_window: int | None = None  # None: mean over the whole map (released code); odd k: k x k box at scale 0
    clamp: float = 5 * math.pi  # ΔPhase is clamped to ±clamp after mean removal
    amplitude: str = "geometric"  # blur weight: "geometric" sqrt(A_t A_{t-1}) or "current" A_t

    def __post_init__(self):
        if self.taps < 1 or self.taps % 2 == 0:
            raise ValueError(f"taps must be odd and positive, got {self.taps}")
        if self.mean_window is not None and (self.mean_window < 1 or self.mean_window % 2 == 0):
            raise ValueError(f"mean_window must be None or odd and positive, got {self.mean_window}")
        if self.amplitude not in ("geometric", "current"):
            raise ValueError(f"amplitude must be 'geometric' or 'current', got {self.amplitude!r}")

    def as_dict(self) -> dict:
        """Every setting plus the code version, for cache fingerprints."""
        return {**asdict(self), "version": MOTION_VERSION}


@dataclass(frozen=True)
class FlowConfig:
    """OpenCV Farneback settings for the optical-flow ablation (OpenCV's documented example values)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2

    def as_dict(self) -> dict:
        """Every setting plus the code version, for cache fingerprints."""
        return {**asdict(self), "version": MOTION_VERSION}


def _as_faces(faces, name: str = "faces") -> np.ndarray | torch.Tensor:
    """Check a [T, H, W] stack of faces with even H and W; keep numpy or torch as given."""
    shape = tuple(faces.shape)
    if len(shape) != 3 or shape[1] % 2 or shape[2] % 2 or shape[1] < 16 or shape[2] < 16:
        raise BadInputError(None, f"{name} must be gray faces [T, H, W] with even H, W >= 16, got {shape}",
                            "pass the aligned 48x48 crops (face48), one row per frame")
    return faces


def _to_tensor(x, device: str, dtype: torch.dtype) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device, dtype=dtype)


def _pyramid(h: int, w: int) -> ComplexSteerablePyramid:
    key = (2 * h, 2 * w)
    if key not in _PYRAMIDS:
        _PYRAMIDS[key] = ComplexSteerablePyramid(key, scales=2, orientations=2)
    return _PYRAMIDS[key]


def face_bands(faces: torch.Tensor) -> list[torch.Tensor]:
    """Pyramid bands of faces [N, H, W] mirror-extended to 2H x 2W, cropped back to the face: [N, 2, H/2^s, W/2^s].

    The extension is the released code's: [[x, flip_w x], [flip_h x, flip_hw x]] with the face top-left.
    It makes the image periodic without seams (the FFT's circular boundary sees no edges); it equals
    symmetric padding by H/2 on each side up to a circular shift, which the pyramid commutes with.
    """
    h, w = faces.shape[-2:]
    top = torch.cat([faces, faces.flip(-1)], dim=-1)
    ext = torch.cat([top, top.flip(-2)], dim=-2)
    return _pyramid(h, w)(ext, out_size=(h, w))


def _gauss_matrix(n: int, cfg: MotionConfig, like: torch.Tensor) -> torch.Tensor:
    """[n, n] matrix applying the 1-D Gaussian with zero padding: G @ X @ G.T is the separable 2-D blur."""
    half = cfg.taps // 2
    i = torch.arange(n, device=like.device)
    off = (i[None, :] - i[:, None]).to(like.dtype)
    g = torch.exp(-off ** 2 / (2 * cfg.sigma ** 2))
    return torch.where(off.abs() <= half, g, torch.zeros_like(g))


def _blur(x: torch.Tensor, cfg: MotionConfig) -> torch.Tensor:
    """Separable Gaussian blur of the last two dims (unnormalised: only ratios of blurs are used)."""
    gh = _gauss_matrix(x.shape[-2], cfg, x)
    gw = gh if x.shape[-1] == x.shape[-2] else _gauss_matrix(x.shape[-1], cfg, x)
    return gh @ x @ gw.T


def _weighted_blur(value: torch.Tensor, weight: torch.Tensor, cfg: MotionConfig) -> torch.Tensor:
    """blur(weight * value) / blur(weight) (Wadhwa et al. 2013): phase is unreliable where amplitude is low."""
    both = _blur(torch.stack([weight * value, weight]), cfg)
    # a flat image has zero amplitude and zero numerator: 0, not NaN
    return both[0] / both[1].clamp_min(torch.finfo(both.dtype).tiny)


def _remove_mean(x: torch.Tensor, scale: int, cfg: MotionConfig) -> torch.Tensor:
    if not cfg.remove_mean:
        return x
    if cfg.mean_window is None:
        return x - x.mean(dim=(-2, -1), keepdim=True)
    k = (cfg.mean_window >> scale) | 1  # the same window in face pixels: half as many at the coarser scale
    n, o, h, w = x.shape
    local = F.avg_pool2d(x.reshape(n * o, 1, h, w), k, stride=1, padding=k // 2, count_include_pad=False)
    return x - local.reshape(n, o, h, w)


def _delta_rows(bands_prev: torch.Tensor, bands_cur: torch.Tensor, scale: int, cfg: MotionConfig) -> torch.Tensor:
    """ΔPhase of each current frame against its previous one, for one scale."""
    prod = bands_cur * bands_prev.conj()
    # angle(c_t conj c_{t-1}) is the phase step wrapped to (-pi, pi], right in both directions
    dphi = torch.angle(prod)
    if cfg.amplitude == "geometric":
        amp = prod.abs().sqrt()
    else:
        amp = bands_cur.abs()
    out = _remove_mean(_weighted_blur(dphi, amp, cfg), scale, cfg)
    return out.clamp(-cfg.clamp, cfg.clamp)


def _row_mask(t: int, valid, has_previous: bool) -> np.ndarray:
    """Rows whose frame and previous frame are both valid (row 0 needs ``previous``)."""
    v = np.ones(t, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if v.shape[0] != t:
        raise BadInputError(None, f"valid has {v.shape[0]} entries for {t} faces", "give one flag per frame")
    ok = v.copy()
    ok[1:] &= v[:-1]
    if t:
        ok[0] &= has_previous
    return ok


def delta_phase(faces, valid=None, previous=None, *, config: MotionConfig = MotionConfig(), device: str = "cpu",
                batch_size: int = 256, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """ΔPhase of consecutive faces [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32.

    Row t is the denoised, rigid-motion-free phase change from frame t-1 to t, per orientation (0: motion
    along x, 1: along y); a translation by d gives about -omega.d with omega the band's centre frequency.
    Row 0 is 0 unless ``previous`` (the face before ``faces[0]``, e.g. the last one of the previous chunk,
    which must be valid) is given; rows whose frame or previous frame is invalid (``valid`` [T] bool) are 0.
    The blur weight is the geometric mean of the two frames' amplitudes (``config.amplitude``).
    ``batch_size`` frames go through the pyramid at a time, bounding memory.
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = {"s0": np.zeros((t, 2, h, w), np.float32), "s1": np.zeros((t, 2, h // 2, w // 2), np.float32)}
    ok = _row_mask(t, valid, previous is not None)
    if previous is not None:
        previous = _as_faces(previous[None] if previous.ndim == 2 else previous, "previous")
        if tuple(previous.shape[1:]) != (h, w):
            raise BadInputError(None, f"previous face is {tuple(previous.shape[1:])}, faces are {(h, w)}")
    if not ok.any():
        return out
    batch_size = max(1, int(batch_size))
    with torch.no_grad():
        for start in range(0, t, batch_size):
            stop = min(t, start + batch_size)
            if not ok[start:stop].any():
                continue
            cur = _to_tensor(faces[start:stop], device, dtype)
            if start > 0:
                before = _to_tensor(faces[start - 1:start], device, dtype)
            elif previous is not None:
                before = _to_tensor(previous[-1:], device, dtype)
            else:
                before = None
            frames = cur if before is None else torch.cat([before, cur])
            first = start if before is not None else start + 1  # first row this batch can fill
            for s, bands in enumerate(face_bands(frames)):
                rows = _delta_rows(bands[:-1], bands[1:], s, config)
                out[f"s{s}"][first:stop] = rows.cpu().numpy()
    for v in out.values():
        v[~ok] = 0
    return out


def phase(faces, valid=None, *, config: MotionConfig = MotionConfig(), device: str = "cpu",
          batch_size: int = 256, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """Denoised phase of each face [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32 in (-pi, pi].

    The denoising is the amplitude-weighted mean taken on the circle, angle(blur(A e^{i phi})), since a
    plain blur(A phi)/blur(A) averages across the 2 pi wraps of a phase map. No mean is removed (a
    circular quantity has no meaningful offset to subtract). Invalid rows are 0.
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = {"s0": np.zeros((t, 2, h, w), np.float32), "s1": np.zeros((t, 2, h // 2, w // 2), np.float32)}
    ok = np.ones(t, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if ok.shape[0] != t:
        raise BadInputError(None, f"valid has {ok.shape[0]} entries for {t} faces", "give one flag per frame")
    batch_size = max(1, int(batch_size))
    with torch.no_grad():
        for start in range(0, t, batch_size):
            stop = min(t, start + batch_size)
            if not ok[start:stop].any():
                continue
            for s, bands in enumerate(face_bands(_to_tensor(faces[start:stop], device, dtype))):
                smooth = torch.complex(_blur(bands.real, config), _blur(bands.imag, config))
                out[f"s{s}"][start:stop] = torch.angle(smooth).cpu().numpy()
    for v in out.values():
        v[~ok] = 0
    return out


def _flow_input(faces) -> np.ndarray:
    """uint8 stays 8-bit; float faces go to float32 (Farneback takes both), so no rounding hides changes."""
    a = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    return a if a.dtype == np.uint8 else a.astype(np.float32)


def optical_flow(faces, valid=None, previous=None, *, config: FlowConfig = FlowConfig()) -> dict[str, np.ndarray]:
    """Farneback optical flow from face t-1 to face t -> {"flow": [T, 2, H, W]} float32 (dx, dy in pixels).

    Same row semantics as :func:`delta_phase`: row 0 needs ``previous``; rows touching invalid frames are 0.
    Float faces are used as float32 (no rounding to 8 bits).
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = np.zeros((t, 2, h, w), np.float32)
    ok = _row_mask(t, valid, previous is not None)
    gray = _flow_input(faces)
    before = None if previous is None else _flow_input(previous).astype(gray.dtype).reshape(-1, h, w)[-1]
    for i in range(t):
        prev = gray[i - 1] if i > 0 else before
        if ok[i]:
            flow = cv2.calcOpticalFlowFarneback(
                np.ascontiguousarray(prev), np.ascontiguousarray(gray[i]), None, config.pyr_scale, config.levels,
                config.winsize, config.iterations, config.poly_n, config.poly_sigma, 0)
            out[i] = flow.transpose(2, 0, 1)
    return {"flow": out}


def gamma_jitter(images: np.ndarray, b: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame gamma corruption of uint8 images [T, ...]: 255 (u)^g, u = I/255, g ~ U[1-b, 1+b] (paper Fig. 5)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise BadInputError(None, f"gamma_jitter takes uint8 images, got {images.dtype}")
    if not 0 <= b < 1:
        raise ValueError(f"b must be in [0, 1) so that the gamma stays positive, got {b}")
    t = images.shape[0]
    g = rng.uniform(1 - b, 1 + b, size=t)
    # one 256-entry table per frame: exact and fast whatever the image size
    luts = np.rint(255.0 * (np.arange(256)[None, :] / 255.0) ** g[:, None]).astype(np.uint8)
    return np.take_along_axis(luts, images.reshape(t, -1).astype(np.intp), axis=1).reshape(images.shape)
