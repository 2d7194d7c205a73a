"""Test videos of several real people, each with its own known motion: two photographs composited.

The astronaut (scikit-image, NASA, public domain) and Grace Hopper (matplotlib's sample `grace_hopper.jpg`, US Navy,
public domain) are warped onto a textured background and encoded with OpenCV. `write_people_video` returns one
`SynthTruth` per person (the affine map from that photograph to each frame, and the frames where the person is
shown), so a test maps the photograph's own dlib landmarks (`portrait_landmarks`) to the truth of every frame.
`two_people` is the scene the two-person tests and bench/ use: import as `from people_video import two_people`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
from synth_video import FACE_CENTRE, FACE_HALF_AXES, Motion, SynthTruth, astronaut, background, face_affine, paste


@dataclass(frozen=True)
class Photo:
    """A public-domain portrait: where its face is (mean of dlib's landmarks), the blend ellipse, dlib's box side."""

    name: str
    load: Callable[[], np.ndarray]  # RGB uint8
    centre: tuple[float, float]
    half_axes: tuple[float, float]
    box: float  # dlib detection box side at scale 1, px: sets the scale for a wanted face size


def grace_hopper() -> np.ndarray:
    """Grace Hopper's portrait shipped with matplotlib, RGB uint8 [600, 512, 3]."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


ASTRONAUT = Photo("astronaut", astronaut, FACE_CENTRE, FACE_HALF_AXES, 90.0)
GRACE_HOPPER = Photo("grace_hopper", grace_hopper, (266.0, 239.0), (105.0, 120.0), 186.0)


@cache
def portrait_landmarks(photo: Photo) -> np.ndarray:
    """dlib's 68 landmarks on the still photograph at full resolution, float64 [68, 2]: mapped per frame, the truth."""
    from features.face import _dlib

    _, detector, predictor = _dlib()
    gray = cv2.cvtColor(photo.load(), cv2.COLOR_RGB2GRAY)
    (box,) = detector(gray, 1)
    return np.array([(p.x, p.y) for p in predictor(gray, box).parts()], float)


@dataclass
class Person:
    """One person of a scene: `motion(u)` = (dx, dy, degrees) of the face centre from the frame centre, u = t/(T-1)."""

    photo: Photo
    motion: Motion
    face_px: float = 70.0  # dlib box side in the frame
    absent: tuple[int, int] | None = None  # frames range(*absent) do not show this person


@lru_cache(maxsize=4)
def _sprite(photo: Photo) -> tuple[np.ndarray, np.ndarray]:
    img = photo.load().astype(np.float32)
    mask = np.zeros(img.shape[:2], np.float32)
    cx, cy = photo.centre
    cv2.ellipse(mask, (int(cx), int(cy) + 10), (int(photo.half_axes[0]), int(photo.half_axes[1])), 0, 0, 360, 1.0, -1)
    return img, cv2.GaussianBlur(mask, (0, 0), 6)


def write_people_video(path: str | Path, n_frames: int, people: list[Person], size: tuple[int, int] = (480, 240),
                       fps: float = 30.0, fourcc: str = "mp4v", seed: int = 0) -> list[SynthTruth]:
    """Encode a scene (people drawn in list order over a background); one SynthTruth per person, in order."""
    w, h = size
    bg = background(size, seed).astype(np.float32)
    affine = np.zeros((len(people), n_frames, 2, 3))
    present = np.ones((len(people), n_frames), bool)
    for k, person in enumerate(people):
        if person.absent is not None:
            present[k, person.absent[0]:person.absent[1]] = False
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with fourcc {fourcc}")
    try:
        for t in range(n_frames):
            u = t / max(1, n_frames - 1)
            frame = bg
            for k, person in enumerate(people):
                scale = person.face_px / person.photo.box
                affine[k, t] = face_affine(size, scale, *person.motion(u), centre=person.photo.centre)
                if present[k, t]:
                    frame = paste(frame, *_sprite(person.photo), affine[k, t])
            writer.write(cv2.cvtColor(frame.clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return [SynthTruth(affine=affine[k], present=present[k], size=size, fps=fps) for k in range(len(people))]


def _ramp(u: float, u0: float, u1: float) -> float:
    """0 before u0, 1 after u1, a smooth step between."""
    x = min(1.0, max(0.0, (u - u0) / (u1 - u0)))
    return x * x * (3 - 2 * x)


def two_people(n_frames: int = 120) -> list[Person]:
    """The astronaut on the left, Grace Hopper on the right of a 480x240 frame, each moving on its own.

    The astronaut leaves (frames 25%..50% of the video) and comes back right of the frame's centre (she walked
    behind the camera), still left of Grace; Grace then leaves for 75%..87.5% while the astronaut is alone in the
    right half. A tracker that chose by frame halves, or by size, takes the wrong person in both stretches.
    """
    def left(u: float) -> tuple[float, float, float]:
        return -95.0 + 115.0 * _ramp(u, 0.2, 0.45) + 6 * np.sin(6 * np.pi * u), 8 * np.sin(4 * np.pi * u), \
            8.0 * np.sin(2 * np.pi * u)

    def right(u: float) -> tuple[float, float, float]:
        return 130.0 + 12 * np.sin(2 * np.pi * u), -6 * np.sin(2 * np.pi * u), -6.0 * np.sin(4 * np.pi * u)

    return [Person(ASTRONAUT, left, 66.0, (n_frames // 4, n_frames // 2)),
            Person(GRACE_HOPPER, right, 74.0, (3 * n_frames // 4, 7 * n_frames // 8))]
