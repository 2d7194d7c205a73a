"""Micro-motion inputs of the temporal stream: ΔPhase (the paper's), and phase and optical flow (its ablations).

All functions take aligned gray faces [T, H, W] (48x48 in the paper), uint8 or float in 0..255, numpy or
torch, and return numpy float32 arrays in a dict. They can run on a long video in chunks: ``delta_phase(...,
return_state=True)`` also returns a :class:`MotionState` to pass to the next chunk as ``previous`` (for the
mimamo variant and optical flow the last face of the previous chunk is enough), and the rows equal those of a
whole-video run exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from .dphase import mimamo_band, paper_band
from .errors import BadInputError
from .filters import gaussian_blur
from .motion_config import MOTION_V1, MOTION_VERSION, VARIANTS, MotionConfig  # noqa: F401 (re-exported: the API)
from .pyramid import MirroredFacePyramid
from .scratch import Scratch, take, thread_scratch

CPU_BLOCK = 256  # most frames per product on CPU: the fastest block measured (4096: ~15% slower, 16x the buffers)

_PYRAMIDS: dict[tuple[int, int], MirroredFacePyramid] = {}


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


@dataclass(frozen=True, eq=False)
class MotionState:
    """What a chunk of a video hands the next (``delta_phase(..., return_state=True)``), so that chunked ΔPhase
    equals a whole-video run.

    ``face``: the chunk's last face [H, W] (it was valid). ``turns``, for the paper variant: the integer turns k
    (see ``MotionConfig``) of that face's unwrapped phase, per scale {"s0": int32 [2, H, W], "s1": int32
    [2, H/2, W/2]}; None for the mimamo variant, which needs only the face. Integers, so the state is exact
    however long the video (the unwrapped phase is never accumulated in floating point). :func:`motion_state`
    rebuilds it from the faces since the last gap, to resume a video mid-way from cached faces.
    """

    face: np.ndarray | torch.Tensor
    turns: dict[str, np.ndarray] | None = None


def _as_faces(faces, name: str = "faces") -> np.ndarray | torch.Tensor:
    """Check a [T, H, W] stack of faces with even H and W; keep numpy or torch as given."""
    shape = tuple(faces.shape)
    if len(shape) != 3 or shape[1] % 2 or shape[2] % 2 or shape[1] < 16 or shape[2] < 16:
        raise BadInputError(None, f"{name} must be gray faces [T, H, W] with even H, W >= 16, got {shape}",
                            "pass the aligned 48x48 crops (face48), one row per frame")
    return faces


def _batch_last(x) -> torch.Tensor:
    """Faces [T, H, W] (numpy or torch, any dtype) as a [H, W, T] view: the assignment that takes it converts
    dtype and device and transposes in one copy."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.permute(1, 2, 0)


def _pyramid(h: int, w: int) -> MirroredFacePyramid:
    if (h, w) not in _PYRAMIDS:
        _PYRAMIDS[(h, w)] = MirroredFacePyramid((h, w), scales=2, orientations=2)
    return _PYRAMIDS[(h, w)]


def face_bands(faces: torch.Tensor) -> list[torch.Tensor]:
    """Bands of faces [N, H, W] mirror-extended to 2H x 2W, cropped back to the face: [N, 2, H/2^s, W/2^s].

    The extension is the released code's, [[x, flip_w x], [flip_h x, flip_hw x]] with the face top-left:
    periodic without seams, so the FFT's circular boundary sees no edges (it equals symmetric padding by
    H/2 on each side up to a circular shift, which the pyramid commutes with). The bands are those of
    ``ComplexSteerablePyramid((2H, 2W))`` on the extended image.
    """
    return _pyramid(*faces.shape[-2:])(faces)


def mirror_faces(faces):
    """Faces [..., H, W] (numpy or torch) mirrored left-right, for the flip augmentation.

    Compute a flipped video's motion arrays from its mirrored faces: the rule "mirror the maps and negate
    orientation 0" holds at scale 0 only (to rounding); at scale 1 the pyramid's factor-2 subsampling breaks the
    symmetry (~20% RMS; ``test_mirroring_faces_mirrors_delta_phase_exactly_at_scale_0_only`` measures it).
    """
    if isinstance(faces, torch.Tensor):
        return faces.flip(-1)
    return np.ascontiguousarray(np.asarray(faces)[..., ::-1])


def _store(out: dict, s: int, b: int, maps: torch.Tensor, first: int, stop: int) -> None:
    """Write one band's maps [O, I, B] (O = x for orientation 0, y for 1) into out[f"s{s}"][first:stop, b]."""
    rows = maps.permute(2, 1, 0) if b == 0 else maps.permute(2, 0, 1)
    # torch's strided copy transposes about twice as fast as numpy's assignment from a permuted view
    torch.from_numpy(out[f"s{s}"])[first:stop, b].copy_(rows)


def _block(batch_size: int, device) -> int:
    """Frames per matrix product: batch_size rounded up to a multiple of 16 (tiny products were seen to round
    differently by position; fixed shapes of this size did not), at most CPU_BLOCK on CPU."""
    block = max(16, -(-int(batch_size) // 16) * 16)
    return min(block, CPU_BLOCK) if torch.device(device).type == "cpu" else block


def _frame_flags(t: int, valid) -> np.ndarray:
    """``valid`` as one bool per frame (all True when None), checked against the t faces."""
    v = np.ones(t, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if v.shape[0] != t:
        raise BadInputError(None, f"valid has {v.shape[0]} entries for {t} faces", "give one flag per frame")
    return v


def _row_mask(t: int, valid, has_previous: bool) -> np.ndarray:
    """Rows whose frame and previous frame are both valid (row 0 needs ``previous``)."""
    v = _frame_flags(t, valid)
    ok = v.copy()
    ok[1:] &= v[:-1]
    if t:
        ok[0] &= has_previous
    return ok


def _maps(t: int, h: int, w: int) -> dict[str, np.ndarray]:
    return {"s0": np.zeros((t, 2, h, w), np.float32), "s1": np.zeros((t, 2, h // 2, w // 2), np.float32)}


def _batches(faces, ok: np.ndarray, batch_size: int, lead: int, previous, dtype, device, ws: Scratch | None):
    """(start, stop, frames) for each batch of rows [start, stop) with at least one ``ok`` row.

    frames is [H, W, lead + batch_size] (batch last: see ``MirroredFacePyramid.native``): ``lead`` (0 or 1) slots
    for the face before the batch (zero when there is none), the batch, then zero padding. Every batch has this
    one fixed shape, so matrix products give each frame the same bits wherever it sits and chunked runs equal
    whole ones. It is a ``ws`` buffer, overwritten by the next batch.
    """
    t, h, w = faces.shape
    shape = (h, w, lead + batch_size)
    for start in range(0, t, batch_size):
        stop = min(t, start + batch_size)
        if not ok[start:stop].any():
            continue
        frames = ws.take("frames", shape, dtype, device) if ws is not None else torch.empty(shape, dtype=dtype, device=device)
        frames.zero_()
        frames[..., lead:lead + stop - start] = _batch_last(faces[start:stop])
        if lead and start > 0:
            frames[..., 0] = _batch_last(faces[start - 1:start])[..., 0]
        elif lead and previous is not None:
            frames[..., 0] = _batch_last(previous[-1:])[..., 0]
        yield start, stop, frames


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[a, e) of each run of consecutive True entries."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], flags, [False]]).astype(np.int8)))
    return [(int(a), int(e)) for a, e in zip(edges[::2], edges[1::2])]


def _previous(previous, cfg: MotionConfig, h: int, w: int):
    """(face [1, H, W] or None, turns per band (s, b) in the bands' native layout or None) from ``previous``."""
    if previous is None:
        return None, None
    face, turns = (previous.face, previous.turns) if isinstance(previous, MotionState) else (previous, None)
    if cfg.variant == "paper" and turns is None:
        raise BadInputError(None, "the paper variant continues the previous chunk's unwrapped phase, which a face "
                            "(or a mimamo state) does not carry",
                            "pass the MotionState that delta_phase(..., return_state=True) returned for the previous "
                            "chunk, or rebuild it with motion_state(faces since the last gap)")
    face = _as_faces(face[None] if face.ndim == 2 else face, "previous")
    if tuple(face.shape[1:]) != (h, w):
        raise BadInputError(None, f"previous face is {tuple(face.shape[1:])}, faces are {(h, w)}")
    if turns is not None:  # orientation 0's native layout is [x, y]
        turns = {(s, b): torch.from_numpy(np.asarray(turns[f"s{s}"][b])) for s in range(2) for b in range(2)}
        turns = {(s, b): (k.T if b == 0 else k) for (s, b), k in turns.items()}
    return face, turns


def _state(faces, v: np.ndarray, previous, turns: dict | None, cfg: MotionConfig) -> MotionState | None:
    """The state after the last face (None if it is invalid); ``turns`` per band (s, b), native, or None (= 0)."""
    if len(v) == 0:  # nothing new: the previous state carries over
        if previous is None or isinstance(previous, MotionState):
            return previous
        return MotionState(previous if previous.ndim == 2 else previous[-1])
    if not v[-1]:
        return None
    face = faces[-1].clone() if isinstance(faces, torch.Tensor) else np.array(faces[-1])
    if cfg.variant != "paper":
        return MotionState(face)
    h, w = faces.shape[1:]
    out = {f"s{s}": np.zeros((2, h >> s, w >> s), np.int32) for s in range(2)}
    for (s, b), k in (turns or {}).items():
        out[f"s{s}"][b] = (k.T if b == 0 else k).round().to(torch.int32).cpu().numpy()
    return MotionState(face, out)


def _mimamo_rows(faces, ok, prev_face, cfg, out, block, dtype, device, ws) -> None:
    """Fill ``out`` with the mimamo variant's rows; each batch carries the face before it (slot 0)."""
    h, w = faces.shape[1:]
    for start, stop, frames in _batches(faces, ok, block, 1, prev_face, dtype, device, ws):
        for s, b, band in _pyramid(h, w).native(frames, ws):  # band by band: one band's temporaries at a time
            _store(out, s, b, mimamo_band(band, s, b, cfg, ws)[..., :stop - start], start, stop)


def _paper_rows(faces, v, ok, prev_face, turns, cfg, out, block, dtype, device, ws) -> dict | None:
    """Fill ``out`` (None: compute the turns only) with the paper variant's rows; return the last face's turns.

    The turns of the face before each batch come from the previous batch (or ``turns``, from the previous
    chunk). A batch with no valid row is skipped: its last face, if valid, starts a run (its turns are 0).
    """
    h, w = faces.shape[1:]
    carried, expected = turns, 0
    for start, stop, frames in _batches(faces, ok, block, 1, prev_face, dtype, device, ws):
        if start != expected:  # the batches in between were skipped
            carried = None
        slots = np.zeros(block + 1, bool)  # slot 0: the face before the batch
        slots[0] = v[start - 1] if start else prev_face is not None
        slots[1:stop - start + 1] = v[start:stop]
        runs, nxt = _runs(slots), {}
        for s, b, band in _pyramid(h, w).native(frames, ws):
            before = None if carried is None else carried[(s, b)].to(band.device, band.dtype)
            maps, k = paper_band(band, s, cfg, runs, before, ws, maps=out is not None)
            if out is not None:
                _store(out, s, b, maps[..., :stop - start], start, stop)
            nxt[(s, b)] = k[..., stop - start].clone()
        carried, expected = nxt, stop
    return carried if expected == len(v) else None


def delta_phase(faces, valid=None, previous=None, *, variant: str | None = None, config: MotionConfig = MotionConfig(),
                device: str = "cpu", batch_size: int = 256, dtype: torch.dtype = torch.float32,
                return_state: bool = False):
    """ΔPhase of consecutive faces [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32.

    Row t is the denoised, rigid-motion-free phase change from frame t-1 to t, per orientation (0: motion
    along x, 1: along y); a translation by d gives about -omega.d with omega the band's centre frequency.
    ``variant`` ("mimamo" or "paper", default ``config.variant``) picks the maths: see :class:`MotionConfig`.
    Row 0 is 0 unless ``previous`` (what precedes ``faces[0]``, which must be valid) is given; rows whose
    frame or previous frame is invalid (``valid`` [T] bool) are 0; the paper variant's unwrap restarts after
    each invalid frame. ``previous`` is the :class:`MotionState` of the previous chunk (``return_state=True``
    returns ``(maps, state)``, state None when the last face is invalid); for mimamo the face alone also does.

    ``batch_size`` frames (rounded up to a multiple of 16; at most ``CPU_BLOCK`` on CPU) go through the pyramid
    at a time, bounding memory; a short last batch is zero-padded so every matrix product has one shape. Hence
    chunked calls equal one whole call bit for bit when they use the same ``batch_size`` and every chunk starts
    at a multiple of it (as the pipeline's blocks do): each frame then sits in the same column of the same
    products and sums (as measured with MKL and tested). A chunk cut elsewhere moves frames between columns, and
    with ``rigid="affine"`` (the default) some of the removal's sums over a frame's pixels round differently by
    column: 4 random sets of 3 cuts in 600 frames changed 72 rows at batch 32 and 13 at 256, by at most 1.5e-7
    rad; the old defaults (``MOTION_V1``) and the paper variant changed none. Other
    batch sizes agree to rounding (~1e-6 rad; for the paper variant, except at the rare pixel whose phase step
    is within rounding of ±π, where the unwrap may turn the other way). The batch buffers stay allocated in
    this thread for the next call (``features.scratch.thread_scratch().clear()`` frees them).
    """
    cfg = config.with_variant(variant)
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = _maps(t, h, w)
    prev_face, prev_turns = _previous(previous, cfg, h, w)
    v = _frame_flags(t, valid)
    ok = _row_mask(t, v, prev_face is not None)
    last_turns, ws = None, thread_scratch()
    with torch.no_grad():
        if cfg.variant == "paper":
            last_turns = _paper_rows(faces, v, ok, prev_face, prev_turns, cfg, out, _block(batch_size, device),
                                     dtype, device, ws)
        else:
            _mimamo_rows(faces, ok, prev_face, cfg, out, _block(batch_size, device), dtype, device, ws)
    for m in out.values():
        m[~ok] = 0
    return (out, _state(faces, v, previous, last_turns, cfg)) if return_state else out


def motion_state(faces, valid=None, *, variant: str | None = None, config: MotionConfig = MotionConfig(),
                 device: str = "cpu", batch_size: int = 256, dtype: torch.dtype = torch.float32) -> MotionState | None:
    """The state a whole-video run carries after the last of ``faces``, rebuilt from faces alone (to resume
    extraction mid-video from cached faces); None if that face is invalid.

    ``faces`` [T, H, W] (and ``valid``) must start at the video's first frame or just after an invalid frame;
    only the faces after the last invalid one are used (the paper variant's unwrap restarts there), so passing
    the whole video so far is fine. The paper variant recomputes their phases (no blur): same turns as the
    whole run, bit for bit with the same ``batch_size`` and ``dtype``; the mimamo variant needs only the face.
    """
    cfg = config.with_variant(variant)
    faces = _as_faces(faces)
    v = _frame_flags(faces.shape[0], valid)
    if cfg.variant != "paper" or not len(v):
        return _state(faces, v, None, None, cfg)
    first = int(np.flatnonzero(~v)[-1]) + 1 if not v.all() else 0
    faces, v = faces[first:], v[first:]
    ok = _row_mask(len(v), v, False)
    with torch.no_grad():
        turns = _paper_rows(faces, v, ok, None, None, cfg, None, _block(batch_size, device), dtype, device,
                            thread_scratch())
    return _state(faces, v, None, turns, cfg)


def phase(faces, valid=None, *, config: MotionConfig = MotionConfig(), device: str = "cpu",
          batch_size: int = 256, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """Denoised phase of each face [T, H, W] -> {"s0": [T, 2, H, W], "s1": [T, 2, H/2, W/2]} float32 in (-pi, pi].

    The denoising is the amplitude-weighted mean taken on the circle, angle(blur(A e^{i phi})), since a
    plain blur(A phi)/blur(A) averages across the 2 pi wraps of a phase map. No mean is removed (a
    circular quantity has no meaningful offset to subtract). Invalid rows are 0. ``config.variant`` does not
    apply (there is no difference in time).
    """
    faces = _as_faces(faces)
    t, h, w = faces.shape
    out = _maps(t, h, w)
    ok, ws = _frame_flags(t, valid), thread_scratch()
    with torch.no_grad():
        for start, stop, frames in _batches(faces, ok, _block(batch_size, device), 0, None, dtype, device, ws):
            for s, b, band in _pyramid(h, w).native(frames, ws):
                smooth = gaussian_blur(band, config.sigma, config.taps, ws)[..., :stop - start]
                angle = torch.atan2(smooth[1], smooth[0], out=take(ws, "ph.angle", tuple(smooth.shape[1:]), band))
                _store(out, s, b, angle, start, stop)
    for m in out.values():
        m[~ok] = 0
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
