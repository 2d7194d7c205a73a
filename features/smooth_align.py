"""Alignment from landmarks smoothed over time, streamed: a centred Gaussian needs a few frames of lookahead.

Why: dlib's landmarks jitter by about a pixel from frame to frame. Aligning every frame with its own raw
landmarks turns that jitter into a small rotation/scale/shift of the whole 48x48 crop, and ΔPhase measures it
as motion everywhere, burying the sub-pixel facial micro-motions the temporal stream is meant to see (on the
demo, the correlation of ΔPhase energy with arousal went from about 0.05 to about 0.55 with sigma 1.5 frames).
Rotation and scale jitter are not removed by ΔPhase's mean subtraction, which only handles translation.

The filter is zero-phase (no lag, unlike a causal one, which lagged real head motion and left the jitter's
effect half in place), normalised over the valid neighbours, and never reaches across a frame without a face.
`push` returns the frames whose window is complete; `flush` returns the rest at the end of the video. The
output does not depend on how the video was chunked.
"""
from __future__ import annotations

import math

import numpy as np

from features.face import AlignedFaces, align_faces


class SmoothAligner:
    """Align frames [n, H, W, 3] with landmarks averaged over frames t-r..t+r by a Gaussian of `sigma` frames."""

    def __init__(self, sigma: float = 1.5, **align_kwargs):
        self.sigma = float(sigma)
        self.r = int(math.ceil(3 * sigma)) if sigma > 0 else 0
        k = np.arange(-self.r, self.r + 1)
        self.kernel = np.exp(-0.5 * (k / sigma) ** 2) if sigma > 0 else np.ones(1)
        self.align_kwargs = align_kwargs
        self._frames = np.zeros((0,), np.uint8)     # frames waiting for their lookahead
        self._lm = np.zeros((0, 68, 2), np.float32)  # landmarks: r frames of history, then the waiting frames
        self._valid = np.zeros(0, bool)
        self._hist = 0                               # how many rows of _lm/_valid are history (already emitted)

    @property
    def params(self) -> dict:
        """What changes the output (for fingerprints)."""
        return {"align_smooth_sigma": self.sigma, "align_smooth_radius": self.r}

    def resume(self, landmarks: np.ndarray, valid: np.ndarray) -> None:
        """Continue a video mid-way: `landmarks`/`valid` are the raw rows of the frames just before the next one
        pushed (as `push` received them and the cache stores them; the last r are kept), and nothing is waiting."""
        keep = min(self.r, len(valid))
        self._frames = np.zeros((0,), np.uint8)
        self._lm = np.asarray(landmarks, np.float32)[len(valid) - keep:].copy()
        self._valid = np.asarray(valid, bool)[len(valid) - keep:].copy()
        self._hist = keep

    def push(self, frames: np.ndarray, landmarks: np.ndarray, valid: np.ndarray) -> AlignedFaces | None:
        """Add tracked frames; returns aligned faces for the frames whose lookahead is now complete."""
        frames = np.asarray(frames)
        self._frames = frames if self._frames.size == 0 else np.concatenate([self._frames, frames])
        self._lm = np.concatenate([self._lm, np.asarray(landmarks, np.float32)])
        self._valid = np.concatenate([self._valid, np.asarray(valid, bool)])
        ready = len(self._frames) - self.r
        return self._emit(ready) if ready > 0 else None

    def flush(self) -> AlignedFaces | None:
        """The remaining frames, at the end of the video (their window is cut at the last frame)."""
        return self._emit(len(self._frames)) if len(self._frames) else None

    def _emit(self, n: int) -> AlignedFaces:
        lm, valid, h = self._lm, self._valid, self._hist
        smooth = np.full((n, 68, 2), np.nan, np.float32)
        for i in range(n):
            t = h + i
            if valid[t]:
                smooth[i] = self._average(lm, valid, t)
        raw = lm[h:h + n].copy()
        out = align_faces(self._frames[:n], smooth, valid[h:h + n], **self.align_kwargs)
        out.landmarks = np.where(out.valid[:, None, None], raw, np.nan).astype(np.float32)   # store what was measured
        keep_from = max(0, h + n - self.r)            # keep r rows of history for the next frames' windows
        self._lm, self._valid = lm[keep_from:], valid[keep_from:]
        self._hist = h + n - keep_from
        self._frames = self._frames[n:]
        return out

    def _average(self, lm: np.ndarray, valid: np.ndarray, t: int) -> np.ndarray:
        lo, hi = t, t
        while lo > max(0, t - self.r) and valid[lo - 1]:      # stop at the first frame without a face
            lo -= 1
        while hi < min(len(valid) - 1, t + self.r) and valid[hi + 1]:
            hi += 1
        w = self.kernel[lo - t + self.r:hi - t + self.r + 1]
        return np.tensordot(w / w.sum(), lm[lo:hi + 1], axes=1)
