"""A small dataset in the real Aff-Wild2 layout, made from real faces with known motion, for tests.

    <root>/videos/<video>.mp4|.avi                       one folder, mixed containers (OpenCV-encoded)
    <root>/annotations/VA_Set/{Train_Set,Validation_Set}/<entry>.txt
                                                         header "valence,arousal", a line per frame, -5 = unannotated
    <root>/cropped_aligned/<entry>/<NNNNN>.jpg           112x112, 1-based, missing where no face was found
    <root>/openface/<entry>.csv                          OpenFace 2.0 FeatureExtraction CSV (from dlib's landmarks)

Facts of the released data this mirrors: video ids are file stems such as `1-30-1280x720` or `video10_1`
(an underscore that is not a person suffix); a two-person video has one file and two entries, `<video>_left` and
`<video>_right`, for annotations and crop folders alike; crops are numbered from 00001 and skip frames without a
face; label files often hold one line more than OpenCV decodes (`label_extra`). Real releases also pair a plain
`<video>` with `<video>_right` (or `_left`) for some two-person videos: `pair=("", "_right")` builds that case.

The organisers' crops here are aligned on five points (eye centres, nose tip, mouth corners) to the common 112x112
five-point template (`FIVE_POINT_112`), from the true landmarks: their framing differs from ours on purpose.
`build_affwild2_layout(root)` returns an `Affwild2Layout` whose entries hold the truth (frame counts, labels,
where the person is shown, which crops exist, the landmarks written to the CSVs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from openface_csv import write_openface_csv
from people_video import ASTRONAUT, GRACE_HOPPER, Person, Photo, portrait_landmarks, two_people, write_people_video
from synth_video import Motion, SynthTruth

# The usual five-point template of 112x112 aligned faces (ArcFace / insightface): eyes, nose tip, mouth corners.
FIVE_POINT_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                           [41.5493, 92.3655], [70.7299, 92.2041]])
UNANNOTATED = -5.0


@dataclass
class VideoSpec:
    """One video file of the layout: its people are entries (`suffixes` "" for one person, else one per person)."""

    name: str
    fourcc: str
    ext: str
    size: tuple[int, int]
    n_frames: int
    fps: float
    split: str
    people: list[Person]
    suffixes: tuple[str, ...] = ("",)


def _still(dx: float) -> Motion:
    return lambda u: (dx + 6 * np.sin(2 * np.pi * u), 3 * np.sin(4 * np.pi * u), 5 * np.sin(2 * np.pi * u))


def default_specs(pair: tuple[str, str] = ("_left", "_right")) -> list[VideoSpec]:
    """Four videos: two in Train_Set, two in Validation_Set, one of them with two people."""
    return [
        VideoSpec("1-30-176x144", "mp4v", ".mp4", (176, 144), 60, 30.0, "Train_Set",
                  [Person(ASTRONAUT, _still(0.0), 50.0, (20, 27))]),
        VideoSpec("video10_1", "XVID", ".avi", (176, 144), 60, 30.0, "Train_Set",
                  [Person(GRACE_HOPPER, _still(4.0), 52.0)]),
        VideoSpec("5-30-480x240", "mp4v", ".mp4", (480, 240), 96, 30.0, "Validation_Set", two_people(96), pair),
        VideoSpec("2-24-176x144", "mp4v", ".mp4", (176, 144), 48, 24.0, "Validation_Set",
                  [Person(ASTRONAUT, _still(-4.0), 50.0, (42, 48))]),  # no face in the last frames: no crops there
    ]


@dataclass
class LayoutEntry:
    """One annotated person: the truth a test checks the pipeline against."""

    entry: str  # id of the label file, crop folder and CSV: <video>, <video>_left, <video>_right
    video: str  # the video file's stem
    video_path: Path
    split: str  # Train_Set | Validation_Set
    n_frames: int  # frames OpenCV decodes
    fps: float
    label_path: Path
    labels: np.ndarray  # float [lines, 2] (valence, arousal) as written; -5 where unannotated
    present: np.ndarray  # bool [n_frames]: this person is shown
    crops: np.ndarray  # bool [n_frames]: a crop file exists
    crop_dir: Path
    photo: Photo
    truth: SynthTruth
    openface_csv: Path | None = None
    csv_landmarks: np.ndarray | None = None  # float32 [n_frames, 68, 2], dlib's, NaN where the CSV says failure

    def true_landmarks(self, t: int) -> np.ndarray:
        """Where this person's 68 landmarks are in frame t (the photograph's own, mapped by the known motion)."""
        return self.truth.map_points(portrait_landmarks(self.photo), t)


@dataclass
class Affwild2Layout:
    """The root and its entries by id."""

    root: Path
    entries: dict[str, LayoutEntry] = field(default_factory=dict)

    videos_dir = property(lambda self: self.root / "videos")
    annotations_dir = property(lambda self: self.root / "annotations" / "VA_Set")
    crops_dir = property(lambda self: self.root / "cropped_aligned")
    openface_dir = property(lambda self: self.root / "openface")


def five_points(lm: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners [5, 2] from 68 landmarks (the points 5-point aligners use)."""
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def organiser_crop(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """A 112x112 RGB crop aligned on five points to FIVE_POINT_112 (black outside the frame, as such tools do)."""
    from features.face import similarity_transform

    m = similarity_transform(five_points(lm), FIVE_POINT_112)
    return cv2.warpAffine(frame, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)


def _labels(n: int, rng: np.random.Generator, present: np.ndarray) -> np.ndarray:
    t = np.arange(n) / 30.0
    a, b = rng.uniform(0, 2 * np.pi, 2)
    va = np.stack([0.6 * np.sin(1.3 * t + a), 0.5 * np.cos(0.9 * t + b)], 1)
    va[~present] = UNANNOTATED  # the annotators skip most frames without the person...
    va[rng.choice(n, 2, replace=False)] = UNANNOTATED  # ...and a few others
    return va


def _write_labels(path: Path, va: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["valence,arousal"] + [f"{v:g},{a:g}" if v == UNANNOTATED else f"{v:.3f},{a:.3f}" for v, a in va]
    path.write_text("\n".join(lines) + "\n")


def build_affwild2_layout(root: str | Path, specs: list[VideoSpec] | None = None, openface: bool = True,
                          label_extra: dict[str, int] | None = None, misses: int = 2, seed: int = 0) -> Affwild2Layout:
    """Write the layout under `root`; returns its truth.

    `label_extra` {entry: lines}: label files with that many lines more (or fewer) than the decoded frames
    (default: video10_1 has one more, as real files often do). `misses`: crops left out per entry at frames where
    the face is shown (their detector's misses). `openface`: write CSVs from dlib tracking (FaceTracker, one side
    per entry), the slowest part (~2 s).
    """
    from features.face import FaceTracker
    from features.video import iter_chunks

    layout = Affwild2Layout(Path(root))
    label_extra = {"video10_1": 1} if label_extra is None else label_extra
    rng = np.random.default_rng(seed)
    for spec in specs or default_specs():
        path = layout.videos_dir / f"{spec.name}{spec.ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        truths = write_people_video(path, spec.n_frames, spec.people, spec.size, spec.fps, spec.fourcc, seed)
        frames = np.concatenate([c.frames for c in iter_chunks(path, 64)])
        suffixes = spec.suffixes if len(spec.people) > 1 else ("",)
        sides = ("left", "right") if len(spec.people) > 1 else ("largest",)
        for person, truth, suffix, side in zip(spec.people, truths, suffixes, sides):
            entry = spec.name + suffix
            n = len(frames)
            present = truth.present[:n]
            crops = present.copy()
            crops[rng.choice(np.flatnonzero(present), min(misses, int(present.sum())), replace=False)] = False
            crop_dir = layout.crops_dir / entry
            crop_dir.mkdir(parents=True, exist_ok=True)
            lm68 = portrait_landmarks(person.photo)
            for t in np.flatnonzero(crops):
                crop = organiser_crop(frames[t], truth.map_points(lm68, t))
                cv2.imwrite(str(crop_dir / f"{t + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            extra = label_extra.get(entry, 0)
            va = _labels(n + extra, rng, np.concatenate([present, np.ones(max(0, extra), bool)])[:n + extra])
            label_path = layout.annotations_dir / spec.split / f"{entry}.txt"
            _write_labels(label_path, va)
            layout.entries[entry] = LayoutEntry(entry, spec.name, path, spec.split, n, spec.fps, label_path, va,
                                                present, crops, crop_dir, person.photo, truth)
            if openface:
                tracked = FaceTracker(side=side).process(frames)
                csv_path = layout.openface_dir / f"{entry}.csv"
                csv_path.parent.mkdir(parents=True, exist_ok=True)
                write_openface_csv(csv_path, [(tracked.landmarks, tracked.valid)], fps=spec.fps)
                layout.entries[entry].openface_csv = csv_path
                layout.entries[entry].csv_landmarks = tracked.landmarks
    return layout
