"""The demo's script: what happens in each frame (events, head pose, lighting) and the labels it implies.

Pure numpy and cheap, so tests can draw long label sequences without rendering a pixel. Every random
quantity comes from its own RNG stream (``numpy.random.SeedSequence(seed).spawn``), so head motion and
lighting are independent of both labels by construction, not by luck.

Labels (per frame, in [-1, 1]):

- arousal is *defined from the realised micro-motions*: event e moves its face site by
  ``a_e(t) = amp_e * sin(pi * (t - start_e) / duration_e)`` for ``start_e <= t <= start_e + duration_e``
  (out and back, frame px); its speed is ``v_e(t) = |a_e(t) - a_e(t-1)|``; the motion energy is
  ``E(t) = gauss_{sigma=AROUSAL_SIGMA}( sum_e v_e(t)^2 )`` (reflect at the ends) and
  ``arousal(t) = 2 * (1 - exp(-sqrt(E(t)) / AROUSAL_SCALE)) - 1``. A slowly varying latent sets the rate,
  amplitude and speed of events, but the label is the realised energy, so it is exactly recomputable
  from ``DemoScript.events`` and invisible in any single frame.
- valence is a slowly varying static appearance level (smile/frown of the mouth corners, brows, cheeks):
  piecewise-constant levels held 2-4 s, joined by raised-cosine ramps of VALENCE_RAMP_S (0.8 s).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

FPS = 30.0
AROUSAL_SIGMA = 6.0  # frames: about the reach of the temporal stream's 12-frame window
AROUSAL_SCALE = 0.35  # px/frame of RMS speed that maps to arousal 0.26; chosen so labels spread over [-1, 1]
VALENCE_RAMP_S = 0.8  # s; longer than the issue's ~0.5 s: ramps move mouth pixels, which ΔPhase sees

# Micro-motion sites: index -> name. Their positions and directions live in demo_render.py (image geometry);
# the script only needs to know how many there are and how often each is picked.
SITES = (
    "brow_left", "brow_right", "lid_left", "lid_right",
    "mouth_left", "mouth_right", "lip_lower", "nose",
)
SITE_WEIGHTS = np.array([2, 2, 1.5, 1.5, 2, 2, 1, 0.5])

EVENT_DTYPE = np.dtype([
    ("site", np.int16), ("start", np.int32), ("duration", np.int16), ("amp", np.float32),
])


@dataclass(frozen=True)
class DemoScript:
    """Everything one demo video is made of; all arrays have one row per frame."""

    seed: int
    n_frames: int
    fps: float
    events: np.ndarray  # EVENT_DTYPE records: site index, start frame, duration (frames), amplitude (frame px)
    head: np.ndarray  # float64 [T, 4]: rotation (deg), scale (relative), tx, ty (frame px) of the face
    light: np.ndarray  # float64 [T, 3]: gain, horizontal and vertical gradient (relative change across the frame)
    arousal_latent: np.ndarray  # float64 [T] in [0, 1]: drives event rate/amplitude, not itself the label
    valence_latent: np.ndarray  # float64 [T] in [-1, 1]: the smile/frown level rendered in the frame
    arousal: np.ndarray  # float32 [T] label
    valence: np.ndarray  # float32 [T] label

    @property
    def site_displacement(self) -> np.ndarray:
        """Micro-motion displacement per site and frame, float64 [len(SITES), T] in frame px."""
        return site_displacement(self.events, self.n_frames)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    names = ("head", "light", "arousal", "valence", "background")
    kids = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(k) for n, k in zip(names, kids)}


def _smooth_random(rng: np.random.Generator, t: np.ndarray, periods: tuple[float, float], n: int = 4) -> np.ndarray:
    """Sum of n random sinusoids with periods (s) drawn in the range, normalised to peak ~1."""
    out = np.zeros_like(t)
    for _ in range(n):
        period = rng.uniform(*periods)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return out / (0.75 * n) ** 0.5 / 1.6


def _valence_levels(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """Levels held 2-4 s, consecutive levels at least 0.5 apart, raised-cosine ramps of VALENCE_RAMP_S."""
    bounds, levels = [0], [rng.uniform(-1, 1)]
    while bounds[-1] < n_frames:
        bounds.append(bounds[-1] + round(rng.uniform(2.0, 4.0) * fps))
        nxt = rng.uniform(-1, 1)
        while abs(nxt - levels[-1]) < 0.5:
            nxt = rng.uniform(-1, 1)
        levels.append(nxt)
    t = np.arange(n_frames, dtype=np.float64)
    out = np.full(n_frames, levels[0])
    ramp = VALENCE_RAMP_S * fps
    for b, lo, hi in zip(bounds[1:], levels[:-1], levels[1:]):
        u = np.clip((t - (b - ramp / 2)) / ramp, 0, 1)
        out += (hi - lo) * (0.5 - 0.5 * np.cos(np.pi * u))
    return out


def _events(rng: np.random.Generator, latent: np.ndarray, fps: float) -> np.ndarray:
    """Draw micro-motion events whose rate, amplitude and speed grow with the latent in [0, 1]."""
    rate = 0.4 + 7.0 * latent ** 1.5  # events per second, all sites together
    counts = rng.poisson(rate / fps)
    starts = np.repeat(np.arange(latent.size), counts)
    z = latent[starts]
    n = starts.size
    ev = np.empty(n, EVENT_DTYPE)
    ev["site"] = rng.choice(len(SITES), size=n, p=SITE_WEIGHTS / SITE_WEIGHTS.sum())
    ev["start"] = starts
    # Faster (shorter) and larger at high arousal; 2..10 frames, 0.3..3 px.
    dur = 10 - 8 * z * rng.uniform(0.4, 1.0, n) + rng.uniform(-1.5, 1.5, n)
    ev["duration"] = np.clip(np.round(dur), 2, 10)
    ev["amp"] = np.clip(0.3 + 2.7 * z * rng.uniform(0.5, 1.0, n) + rng.uniform(-0.2, 0.4, n), 0.3, 3.0)
    ev["amp"] *= rng.choice([-1.0, 1.0], size=n, p=[0.3, 0.7])  # mostly along the site's direction
    return ev


def site_displacement(events: np.ndarray, n_frames: int) -> np.ndarray:
    """Displacement of each site (frame px) per frame from the events: [len(SITES), T]."""
    out = np.zeros((len(SITES), n_frames))
    for e in events:
        t = np.arange(int(e["start"]), min(int(e["start"]) + int(e["duration"]) + 1, n_frames))
        out[int(e["site"]), t] += float(e["amp"]) * np.sin(np.pi * (t - int(e["start"])) / int(e["duration"]))
    return out


def micro_speed_sq(events: np.ndarray, n_frames: int) -> np.ndarray:
    """Sum over events of the squared per-frame speed v_e(t)^2 (px/frame)^2, float64 [T]."""
    out = np.zeros(n_frames)
    for e in events:
        s, d = int(e["start"]), int(e["duration"])
        t = np.arange(s, min(s + d + 1, n_frames))
        a = float(e["amp"]) * np.sin(np.pi * (t - s) / d)
        prev = float(e["amp"]) * np.sin(np.pi * (t - 1 - s) / d)
        prev[t == s] = 0.0
        out[t] += (a - prev) ** 2
    return out


def arousal_from_events(events: np.ndarray, n_frames: int) -> np.ndarray:
    """The arousal label implied by the events (see the module docstring), float32 [T]."""
    energy = gaussian_filter1d(micro_speed_sq(events, n_frames), AROUSAL_SIGMA, mode="reflect")
    return (2.0 * (1.0 - np.exp(-np.sqrt(np.maximum(energy, 0.0)) / AROUSAL_SCALE)) - 1.0).astype(np.float32)


def demo_script(seed: int, n_frames: int, fps: float = FPS) -> DemoScript:
    """Draw one video's events, head motion, lighting and latents for a seed, and derive its labels."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    rng = _streams(seed)
    t = np.arange(n_frames) / fps
    # Arousal latent: slow (periods 4-16 s), squashed into [0, 1].
    latent = 0.5 + 0.5 * np.tanh(1.6 * _smooth_random(rng["arousal"], t, (4.0, 16.0)))
    events = _events(rng["arousal"], latent, fps)
    valence = _valence_levels(rng["valence"], n_frames, fps)
    # Head: rotation +-4 deg, scale +-4 %, translation +-40 px x / +-20 px y, slow (periods 3-20 s).
    h = rng["head"]
    head = np.stack([
        4.0 * _smooth_random(h, t, (3.0, 15.0)),
        1.0 + 0.04 * _smooth_random(h, t, (4.0, 20.0)),
        40.0 * _smooth_random(h, t, (4.0, 20.0)),
        20.0 * _smooth_random(h, t, (3.0, 15.0)),
    ], axis=1)
    lr = rng["light"]
    light = np.stack([
        1.0 + 0.15 * _smooth_random(lr, t, (5.0, 25.0)),
        0.25 * _smooth_random(lr, t, (6.0, 30.0)),
        0.15 * _smooth_random(lr, t, (6.0, 30.0)),
    ], axis=1)
    return DemoScript(
        seed=seed, n_frames=n_frames, fps=fps, events=events, head=head, light=light,
        arousal_latent=latent, valence_latent=valence,
        arousal=arousal_from_events(events, n_frames), valence=np.clip(valence, -1, 1).astype(np.float32),
    )


def background_rng(seed: int) -> np.random.Generator:
    """The RNG stream for the background texture (its own stream, like every other part)."""
    return _streams(seed)["background"]
