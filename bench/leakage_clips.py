"""Clips for bench/leakage.py: a real face photograph moved by one nuisance at a time, or by all of them.

A scene is a photograph (scikit-image's astronaut, NASA; matplotlib's sample ``grace_hopper.jpg``) whose head is
cut out by a soft ellipse (``crop``: 1.0 the face only, 1.5 with hair and neck) and placed at a given size (``iod``:
frame px between the outer eye corners) on the demo's static textured backdrop in a 640x360 frame. What moves, per
frame (the demo generator's ideas, pipeline/demo_render.py, generalised to any photo by placing everything from
the photo's own dlib landmarks):

- micro-motions: Gaussian-windowed local warps at eight sites (brows raise, upper lids lower, mouth corners out
  and up, lower lip, nose wrinkle), event e moving its site by ``amp sin(pi (t - start) / duration)`` frame px,
  0.3-1.5 px over 2-10 frames, at a rate that follows a slow latent (so the speed varies over a clip);
- head: a similarity about the face centre (rotation, scale, translation), moving between random poses in
  raised-cosine moves of 0.3-1 s with holds between (rotation up to +-4 deg, scale +-3 %, translation +-15 px x,
  +-10 px y);
- lighting: gamma u^g of the whole frame, g drifting between random values in [0.75, 1.25] over 2 s moves.

The photo is sampled once per frame (``cv2.remap``, cubic) through the head transform of the displaced grid, as
the demo does; the frame is gamma-mapped last, like a camera's response. Each stream has its own RNG.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

FPS = 30.0
AA = 0.5
WIDTH, HEIGHT = 640, 360
# Sites: landmark indices whose mean is the centre, Gaussian window (sx, sy) and offset in units of the photo's
# inter-ocular distance, unit direction of the motion. From the demo's astronaut geometry (IOD 60 photo px).
SITES = {
    "brow_left": ((17, 18, 19, 20, 21), (0.15, 0.08), (0.0, -1.0)),
    "brow_right": ((22, 23, 24, 25, 26), (0.15, 0.08), (0.0, -1.0)),
    "lid_left": ((37, 38), (0.10, 0.05), (0.0, 1.0)),
    "lid_right": ((43, 44), (0.10, 0.05), (0.0, 1.0)),
    "mouth_left": ((48,), (0.08, 0.08), (-0.6, -0.8)),
    "mouth_right": ((54,), (0.08, 0.08), (0.6, -0.8)),
    "lip_lower": ((57,), (0.12, 0.07), (0.0, 1.0)),
    "nose": ((31, 35), (0.10, 0.08), (0.0, -1.0)),
}


@dataclass(frozen=True)
class FaceSpec:
    """Which photo, how large in the frame (outer-eye-corner distance, frame px), how loosely cut out."""

    photo: str
    iod: float
    crop: float

    @property
    def name(self) -> str:
        """Short id used in clip names."""
        return f"{self.photo}_iod{self.iod:g}_crop{round(100 * self.crop)}"


# The astronaut at three sizes and two cut-outs, and a second real face.
FACES = (FaceSpec("astronaut", 60, 1.5), FaceSpec("astronaut", 85, 1.1), FaceSpec("astronaut", 85, 1.5),
         FaceSpec("astronaut", 110, 1.3), FaceSpec("grace_hopper", 80, 1.4))


@lru_cache(maxsize=4)
def photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The photograph (float32 RGB) and its 68 dlib landmarks (photo px), found with the project's detector."""
    from features.face import _dlib

    if name == "astronaut":
        from skimage import data

        img = data.astronaut()
    elif name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            img = np.asarray(Image.open(fh).convert("RGB"))
    else:
        raise ValueError(f"unknown photo {name!r}")
    dlib, detector, predictor = _dlib()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rect = max(detector(gray, 1), key=lambda r: r.area())
    lm = np.array([(p.x, p.y) for p in predictor(gray, rect).parts()], np.float64)
    return img.astype(np.float32), lm


@dataclass
class Script:
    """What one clip shows, one row per frame."""

    coef: np.ndarray  # float64 [T, sites]: displacement of each site, frame px
    head: np.ndarray  # float64 [T, 4]: rotation (deg), scale (relative), tx, ty (frame px)
    gamma: np.ndarray  # float64 [T]

    @property
    def n(self) -> int:
        """Number of frames."""
        return len(self.gamma)


def moves(rng: np.random.Generator, n: int, amp: float, dur=(0.3, 1.0), hold=(0.0, 1.0), centre: float = 0.0,
          ) -> np.ndarray:
    """Piecewise raised-cosine moves between random targets in centre +- amp, each `dur` s, with `hold` s between."""
    out = np.full(n, centre + rng.uniform(-amp, amp))
    t = int(rng.uniform(*hold) * FPS)
    while t < n:
        d = max(2, int(round(rng.uniform(*dur) * FPS)))
        start, target = out[t], centre + rng.uniform(-amp, amp)
        u = np.arange(1, d + 1) / d
        seg = start + (target - start) * (0.5 - 0.5 * np.cos(np.pi * u))
        out[t:t + d] = seg[:n - t]
        out[t + d:] = target
        t += d + int(rng.uniform(*hold) * FPS)
    return out


def events(rng: np.random.Generator, n: int, amp=(0.3, 1.5), dur=(2, 10)) -> np.ndarray:
    """Micro-motion site displacements [T, sites] (frame px): events at a rate that follows a slow latent."""
    t = np.arange(n) / FPS
    latent = np.zeros(n)
    for _ in range(3):
        latent += np.sin(2 * np.pi * t / rng.uniform(3.0, 8.0) + rng.uniform(0, 2 * np.pi))
    z = 0.5 + 0.5 * np.tanh(latent)
    coef = np.zeros((n, len(SITES)))
    for s in np.flatnonzero(rng.random(n) < (0.3 + 6.0 * z ** 1.5) / FPS):
        d = int(np.clip(round(dur[1] - (dur[1] - dur[0]) * z[s] * rng.uniform(0.4, 1.0) + rng.uniform(-1.5, 1.5)),
                        *dur))
        a = np.clip(amp[0] + (amp[1] - amp[0]) * z[s] * rng.uniform(0.5, 1.0) + rng.uniform(-0.2, 0.3), *amp)
        k = rng.integers(len(SITES))
        tt = np.arange(s, min(s + d + 1, n))
        coef[tt, k] += a * rng.choice([-1.0, 1.0], p=[0.3, 0.7]) * np.sin(np.pi * (tt - s) / d)
    return coef


def steps(n: int, amp: float = 0.5, every: int = 12, hold: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The reference: each site in turn steps by `amp` px and back `hold` frames later; (coef, step frames)."""
    coef = np.zeros((n, len(SITES)))
    at = []
    for i, t0 in enumerate(range(every // 2, n - hold - 1, every)):
        coef[t0:t0 + hold, i % len(SITES)] = amp
        at += [t0, t0 + hold]
    return coef, np.array(at)


def script(kind: str, n: int, seed: int) -> Script:
    """One clip: 'static', 'micro', 'rotation', 'translation', 'scale', 'lighting' or 'mixed' (all together)."""
    rng = {k: np.random.default_rng([seed, i]) for i, k in enumerate(("micro", "rot", "tx", "ty", "scale", "light"))}
    head = np.zeros((n, 4))
    head[:, 1] = 1.0
    gamma = np.ones(n)
    coef = np.zeros((n, len(SITES)))
    if kind in ("micro", "mixed"):
        coef = events(rng["micro"], n)
    if kind in ("rotation", "mixed"):
        head[:, 0] = moves(rng["rot"], n, 4.0)
    if kind in ("translation", "mixed"):
        head[:, 2], head[:, 3] = moves(rng["tx"], n, 15.0), moves(rng["ty"], n, 10.0)
    if kind in ("scale", "mixed"):
        head[:, 1] = moves(rng["scale"], n, 0.03, centre=1.0)
    if kind in ("lighting", "mixed"):
        gamma = moves(rng["light"], n, 0.25, dur=(2.0, 2.0), hold=(0.0, 1.0), centre=1.0)
    if kind not in ("static", "micro", "rotation", "translation", "scale", "lighting", "mixed"):
        raise ValueError(f"unknown clip kind {kind!r}")
    return Script(coef, head, gamma)


class Scene:
    """One face photo placed in the frame: renders scripts to uint8 RGB frames and knows the true motions."""

    def __init__(self, spec: FaceSpec, seed: int = 0):
        from pipeline.demo_render import background

        img, lm = photo(spec.photo)
        self.spec, self.photo_landmarks = spec, lm
        iod_photo = float(np.linalg.norm(lm[45] - lm[36]))
        self.scale = spec.iod / iod_photo  # frame px per photo px
        self.centre = lm.mean(0)
        brow, chin = lm[17:27, 1].min(), lm[8, 1]
        fh, fw = chin - brow, lm[16, 0] - lm[0, 0]
        cx, cy = self.centre[0], (brow + chin) / 2 - 0.1 * fh
        ax, ay = spec.crop * 0.62 * fw, spec.crop * 0.72 * fh
        x0, x1 = int(max(0, cx - ax - 4)), int(min(img.shape[1], cx + ax + 4))
        y0, y1 = int(max(0, cy - ay - 4)), int(min(img.shape[0], cy + ay + 4))
        self.origin = np.array([x0, y0], np.float64)
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        r = np.hypot((gx - cx) / ax, (gy - cy) / ay)
        self.alpha = np.clip((1.0 - r) / 0.1, 0.0, 1.0).astype(np.float32)
        if self.scale < 1:  # a camera integrates over its pixels: no aliasing of the photo's finer detail
            img = cv2.GaussianBlur(img, (0, 0), AA * (1 / self.scale - 1) ** 0.5)
        self.gx, self.gy, self.img = gx, gy, img
        self.basis = np.zeros((len(SITES), 2, y1 - y0, x1 - x0), np.float32)
        for k, (idx, (sx, sy), (ux, uy)) in enumerate(SITES.values()):
            px, py = lm[list(idx)].mean(0)
            w = np.exp(-0.5 * (((gx - px) / (sx * iod_photo)) ** 2 + ((gy - py) / (sy * iod_photo)) ** 2))
            self.basis[k, 0], self.basis[k, 1] = ux * w / self.scale, uy * w / self.scale  # 1 frame px at the peak
        self.backdrop = background(seed)

    def head_matrix(self, pose: np.ndarray) -> np.ndarray:
        """2x3 similarity: photo px -> frame px for a head pose row (rotation deg, scale, tx, ty)."""
        angle, scale, tx, ty = (float(v) for v in pose)
        m = cv2.getRotationMatrix2D((float(self.centre[0]), float(self.centre[1])), angle, self.scale * scale)
        m[:, 2] += np.array([WIDTH / 2 + tx, HEIGHT / 2 + ty]) - self.centre
        return m

    def landmarks(self, pose: np.ndarray) -> np.ndarray:
        """Where the photo's 68 landmarks land in the frame for a head pose (no micro-motion): [68, 2]."""
        m = self.head_matrix(pose)
        return self.photo_landmarks @ m[:, :2].T + m[:, 2]

    def render(self, sc: Script, t: int) -> np.ndarray:
        """Frame t of a script, uint8 RGB [HEIGHT, WIDTH, 3]."""
        d = np.zeros((2, *self.gx.shape), np.float32)
        for k in np.flatnonzero(sc.coef[t]):
            d += np.float32(sc.coef[t, k]) * self.basis[k]
        m = self.head_matrix(sc.head[t])
        m[:, 2] += m[:, :2] @ self.origin  # patch index -> photo px first
        h, w = self.gx.shape
        xy = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
        x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + 2, (WIDTH, HEIGHT))
        m[:, 2] -= (x0, y0)  # only the box holding the head is resampled
        size = (int(x1 - x0), int(y1 - y0))
        warp = {"dsize": size, "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REPLICATE}
        mapx = cv2.warpAffine(self.gx - d[0], m, **warp)
        mapy = cv2.warpAffine(self.gy - d[1], m, **warp)
        alpha = cv2.warpAffine(self.alpha, m, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        face = cv2.remap(self.img, mapx, mapy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        img = self.backdrop.copy()
        box = img[y0:y1, x0:x1]
        box += alpha * (face - box)
        np.clip(img, 0, 255, out=img)
        if sc.gamma[t] != 1.0:
            img = cv2.pow(img * np.float32(1 / 255), float(sc.gamma[t])) * np.float32(255)
        return (img + np.float32(0.5)).astype(np.uint8)

    def truth(self, sc: Script) -> dict[str, np.ndarray]:
        """Per-frame speeds [T] (row 0 = 0): micro (sum over sites of |displacement change|, frame px), head (RMS
        landmark displacement, frame px) and light (|gamma change|)."""
        micro = np.r_[0.0, np.abs(np.diff(sc.coef, axis=0)).sum(1)]
        lms = np.stack([self.landmarks(p) for p in sc.head])
        head = np.r_[0.0, np.sqrt(((lms[1:] - lms[:-1]) ** 2).sum(2).mean(1))]
        return {"micro": micro, "head": head, "light": np.r_[0.0, np.abs(np.diff(sc.gamma))]}


def write_clip(path, scene: Scene, sc: Script) -> None:
    """Render and encode a clip with OpenCV (Motion-JPEG in AVI, the demo's codec)."""
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not w.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for t in range(sc.n):
            w.write(np.ascontiguousarray(scene.render(sc, t)[:, :, ::-1]))
    finally:
        w.release()
