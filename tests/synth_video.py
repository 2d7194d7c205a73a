"""Test videos with a real face: scikit-image's astronaut (public domain, NASA) moved over a textured background.

`write_face_video` encodes with OpenCV and returns the ground truth (the affine map from astronaut pixels to
frame pixels for every frame, and whether the face is shown), so tests can check landmarks against a known
motion. Reused by the pipeline's tests; import it as `from synth_video import write_face_video`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Centre of the astronaut's face in her photograph (mean of dlib's 68 landmarks, rounded): the pivot of the motion.
FACE_CENTRE = (224.0, 127.0)
# Box of the astronaut's face used for the blending mask: wide enough for hair and chin.
FACE_HALF_AXES = (95.0, 115.0)

Motion = Callable[[float], tuple[float, float, float]]  # u in [0, 1] -> (dx, dy, angle in degrees)


@dataclass
class SynthTruth:
    """Ground truth of a written video: `affine[t]` maps astronaut pixels to frame t's pixels."""

    affine: np.ndarray  # float64 [T, 2, 3]
    present: np.ndarray  # bool [T]
    size: tuple[int, int]  # (width, height)
    fps: float

    def map_points(self, points: np.ndarray, t: int) -> np.ndarray:
        """Astronaut-image points [N, 2] -> frame t's pixel coordinates."""
        a = self.affine[t]
        return points @ a[:, :2].T + a[:, 2]


def still(u: float) -> tuple[float, float, float]:
    """No motion."""
    return 0.0, 0.0, 0.0


def translate(u: float) -> tuple[float, float, float]:
    """Smooth translation, a Lissajous path of +-40 x +-20 px (for frames at least 320 px wide)."""
    return 40.0 * np.sin(2 * np.pi * u), 20.0 * np.sin(4 * np.pi * u), 0.0


def translate_rotate(u: float) -> tuple[float, float, float]:
    """Smooth translation with in-plane rotation up to +-15 degrees."""
    dx, dy, _ = translate(u)
    return dx, dy, 15.0 * np.sin(2 * np.pi * u)


MOTIONS: dict[str, Motion] = {"still": still, "translate": translate, "translate_rotate": translate_rotate}


def astronaut() -> np.ndarray:
    """The astronaut photograph, RGB uint8 [512, 512, 3]."""
    from skimage import data

    return data.astronaut()


def background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random texture (low-frequency noise), RGB uint8, so the background is not flat."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 200, size=(max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def face_affine(size: tuple[int, int], scale: float, dx: float, dy: float, angle: float,
                centre: tuple[float, float] = FACE_CENTRE) -> np.ndarray:
    """Affine [2, 3]: the photograph's face `centre` -> frame centre + (dx, dy), rotated by `angle` degrees, scaled."""
    w, h = size
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += np.array([w / 2 + dx, h / 2 + dy]) - np.array(centre)
    return m


def paste(frame: np.ndarray, img: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Blend `img` warped by `affine` into float `frame` through the soft `mask` (same warp)."""
    h, w = frame.shape[:2]
    face = cv2.warpAffine(img, affine, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask, affine, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    return frame * (1 - alpha) + face * alpha


def write_face_video(
    path: str | Path,
    n_frames: int,
    size: tuple[int, int] = (640, 360),
    motion: str | Motion = "translate_rotate",
    fps: float = 30.0,
    scale: float | None = None,
    no_face: tuple[int, int] | None = None,
    fourcc: str = "mp4v",
    seed: int = 0,
    second_face: tuple[float, float, float, int] | None = None,
) -> SynthTruth:
    """Write a video of the astronaut's face moving over a background; return the ground truth.

    size is (width, height); scale defaults to a face of about a third of the frame height; frames in
    range(*no_face) show the background only; motion is a name in MOTIONS or a function of u = t / (T - 1).
    second_face = (dx, dy, scale, first_frame) adds a still copy of the face from that frame on (drawn first).
    """
    w, h = size
    if scale is None:
        scale = 0.33 * h / 87.0  # 87 px: the dlib box of the astronaut's face at scale 1
    move = MOTIONS[motion] if isinstance(motion, str) else motion
    img = astronaut().astype(np.float32)
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.ellipse(mask, (int(FACE_CENTRE[0]), int(FACE_CENTRE[1]) + 10),
                (int(FACE_HALF_AXES[0]), int(FACE_HALF_AXES[1])), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 6)
    bg = background(size, seed).astype(np.float32)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with fourcc {fourcc}")
    affine = np.zeros((n_frames, 2, 3))
    present = np.ones(n_frames, bool)
    if no_face is not None:
        present[no_face[0]:no_face[1]] = False
    try:
        for t in range(n_frames):
            u = t / max(1, n_frames - 1)
            affine[t] = face_affine(size, scale, *move(u))
            frame = bg
            if second_face is not None and t >= second_face[3]:
                frame = paste(frame, img, mask, face_affine(size, second_face[2], *second_face[:2], 0.0))
            if present[t]:
                frame = paste(frame, img, mask, affine[t])
            writer.write(cv2.cvtColor(frame.clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return SynthTruth(affine=affine, present=present, size=size, fps=fps)
