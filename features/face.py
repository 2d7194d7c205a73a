"""Face detection, 68-landmark tracking and similarity alignment (the Python stand-in for OpenFace's -simalign).

Pipeline per frame: dlib's HOG frontal detector finds the face (on a frame resized to `detect_size`), the
iBUG 68-point shape predictor places landmarks, and a similarity transform (rotation, scale, translation)
fitted on the stable landmarks (eye corners and nose) maps the face onto a fixed template, giving a
224x224 RGB crop (spatial stream) and a 48x48 gray crop (temporal stream) from the same transform.

Tracking: between detections the predictor is seeded with the box implied by the previous frame's
landmarks, and each tracked fit is verified by running the HOG detector on a small upright crop
(the face derotated and rescaled by the alignment itself, so this check costs ~1 ms, not a full-frame scan).
A full-frame detection runs every `detect_every` frames, whenever verification fails (score below
`verify_threshold`) and whenever the shape is implausible (Procrustes residual against the mean shape above
`max_shape_residual`, in face-box units). No frame is ever dropped: a frame without a face has
`valid=False`, NaN landmarks and all-zero crops (not filled from neighbours).

Which face (`side`, see features/face_side.py): the largest, or in Aff-Wild2's two-person videos the left or the
right person, acquired by relative order, kept by tracking, and never replaced by the other person.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from features.errors import BadInputError
from features.face_side import SidePicker, iou

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
# Stable under expression: nose bridge and base (27-35), outer and inner eye corners (36, 39, 42, 45).
RIGID = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
# The mean shape's unit box (about the face from brows to chin) spans `scale` of the crop, the centroid of
# the rigid points at the crop's centre: OpenFace's -simalign places its mean shape the same way (0.7 at 112).
TEMPLATE_SCALE = 0.7
# The verification crop: the face box fills 0.85 of 100 px, just above the HOG window (80 px), so the detector
# scans two pyramid levels only; on the test videos faces score >= 1.4 there and background finds nothing.
VERIFY_SIZE = 100
VERIFY_SCALE = 0.85


@lru_cache(maxsize=1)
def model_path() -> Path:
    """Path of dlib's 68-point landmark model shipped by face-recognition-models (located, not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise BadInputError(MODEL_FILE, "the dlib 68-landmark model is missing",
                            "pip install face-recognition-models==0.3.0")
    path = Path(spec.origin).parent / "models" / MODEL_FILE
    if not path.is_file():
        raise BadInputError(path, "the dlib 68-landmark model file is missing",
                            "reinstall: pip install --force-reinstall face-recognition-models==0.3.0")
    return path


@lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """The predictor's own mean shape [68, 2] in detection-box units (box = unit square), read from the model.

    dlib serialises a shape_predictor as: version, initial_shape (a 136x1 float matrix), forests...; integers
    as one byte (length | 0x80 if negative) then little-endian bytes, floats as (mantissa, exponent) integers.
    """
    buf = model_path().read_bytes()[:8192]
    pos = 0

    def read_int() -> int:
        nonlocal pos
        head = buf[pos]
        n = head & 0x0F
        value = int.from_bytes(buf[pos + 1:pos + 1 + n], "little")
        pos += 1 + n
        return -value if head & 0x80 else value

    version, rows, cols = read_int(), abs(read_int()), abs(read_int())
    if version != 1 or rows * cols != 136:
        raise BadInputError(model_path(), "unexpected shape predictor format", "reinstall face-recognition-models")
    values = []
    for _ in range(136):
        mantissa = read_int()
        values.append(mantissa * 2.0 ** read_int())
    return np.asarray(values, np.float64).reshape(68, 2)


@lru_cache(maxsize=1)
def _dlib():
    import dlib

    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_path()))


def template(size: int, scale: float = TEMPLATE_SCALE) -> np.ndarray:
    """Where the 68 landmarks of an aligned face sit in a size x size crop: float64 [68, 2]."""
    pts = mean_shape() * (scale * size)
    return pts - pts[list(RIGID)].mean(0) + size / 2.0


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping points src [N, 2] onto dst [N, 2]: [2, 3]."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    # With complex numbers a similarity is z -> a z + b; least squares gives a = <s, d> / <s, s>.
    zs, zd = s[:, 0] + 1j * s[:, 1], d[:, 0] + 1j * d[:, 1]
    a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)
    rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([rot, (mu_d - rot @ mu_s)[:, None]])


def shape_residual(landmarks: np.ndarray) -> float:
    """RMS distance of landmarks [68, 2] to the mean shape after similarity alignment, in face-box units."""
    m = similarity_transform(landmarks, mean_shape())
    fitted = landmarks @ m[:, :2].T + m[:, 2]
    return float(np.sqrt(((fitted - mean_shape()) ** 2).sum(1).mean()))


def box_from_landmarks(lm: np.ndarray) -> tuple[float, float, float, float]:
    """The detection-like box (left, top, right, bottom) implied by landmarks [68, 2]: the mean shape's unit box."""
    m = similarity_transform(mean_shape(), lm)  # unit box -> this face
    side = float(np.hypot(m[0, 0], m[1, 0]))
    cx, cy = m[:, :2] @ np.array([0.5, 0.5]) + m[:, 2]
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


@dataclass
class AlignedFaces:
    """Per-frame alignment results; one row per input frame, none dropped."""

    landmarks: np.ndarray  # float32 [n, 68, 2] source pixel (x, y); NaN where no face
    valid: np.ndarray  # bool [n]
    face224: np.ndarray  # uint8 [n, 224, 224, 3] RGB; zeros where invalid
    face48: np.ndarray  # uint8 [n, 48, 48] gray; zeros where invalid
    detected: np.ndarray | None = None  # bool [n]: a full-frame detection ran on this frame (tracker only)

    def __len__(self) -> int:
        return len(self.valid)

    @staticmethod
    def concat(parts: list[AlignedFaces]) -> AlignedFaces:
        """Join chunks in order."""
        det = None if any(p.detected is None for p in parts) else np.concatenate([p.detected for p in parts])
        return AlignedFaces(*(np.concatenate([getattr(p, k) for p in parts])
                              for k in ("landmarks", "valid", "face224", "face48")), detected=det)


def gray_crops(faces: np.ndarray, gray_size: int = 48) -> np.ndarray:
    """Gray crops [n, g, g] from RGB crops [n, s, s, 3] of any size: luma, then area averaging (the same framing)."""
    out = np.zeros((len(faces), gray_size, gray_size), np.uint8)
    for i, f in enumerate(faces):
        out[i] = cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (gray_size, gray_size), interpolation=cv2.INTER_AREA)
    return out


def rgb_frames(frames) -> np.ndarray:
    """frames as an array, checked to be [n, H, W, 3] uint8 RGB (what every landmark source aligns)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected frames [n, H, W, 3] uint8 RGB, got {frames.shape} {frames.dtype}")
    return frames


def align_faces(frames: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, crop_size: int = 224,
                gray_size: int = 48, scale: float = TEMPLATE_SCALE) -> AlignedFaces:
    """Align frames [n, H, W, 3] uint8 RGB from given landmarks [n, 68, 2] (source pixels) and valid [n]."""
    frames = np.asarray(frames)
    landmarks = np.asarray(landmarks, np.float32)
    n = len(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or landmarks.shape != (n, 68, 2) or len(valid) != n:
        raise ValueError(f"expected frames [n, H, W, 3], landmarks [n, 68, 2], valid [n]; got {frames.shape}, "
                         f"{landmarks.shape}, {np.shape(valid)}")
    valid = np.asarray(valid, bool) & np.isfinite(landmarks).all(axis=(1, 2))
    dst = template(crop_size, scale)[list(RIGID)]
    face224 = np.zeros((n, crop_size, crop_size, 3), np.uint8)
    for i in np.flatnonzero(valid):
        m = similarity_transform(landmarks[i, list(RIGID)], dst)
        # Replicated borders, not black: an edge moving with the head would show up as motion downstream.
        face224[i] = cv2.warpAffine(frames[i], m, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
    face48 = gray_crops(face224, gray_size)
    face48[~valid] = 0
    out_lm = landmarks.copy()
    out_lm[~valid] = np.nan
    return AlignedFaces(landmarks=out_lm, valid=valid, face224=face224, face48=face48)


class FaceTracker:
    """Detect once, then track 68 landmarks frame to frame; `process` keeps its state across successive chunks."""

    def __init__(self, detect_every: int = 30, detect_size: int = 320, upsample: int = 1,
                 verify_threshold: float = -0.2, max_shape_residual: float = 0.1, crop_size: int = 224,
                 gray_size: int = 48, scale: float = TEMPLATE_SCALE, side: str = "largest"):
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        self._sides = SidePicker(side)  # raises on an unknown side
        self.side = side
        self.detect_every = detect_every
        self.detect_size = detect_size
        self.upsample = upsample
        self.verify_threshold = verify_threshold
        self.max_shape_residual = max_shape_residual
        self.crop_size = crop_size
        self.gray_size = gray_size
        self.scale = scale
        self._verify_dst = template(VERIFY_SIZE, VERIFY_SCALE)[list(RIGID)]
        self.reset()

    @property
    def params(self) -> dict:
        """Everything that changes the output, for the pipeline's fingerprint."""
        return {"detector": "dlib.hog_frontal", "predictor": MODEL_FILE, "detect_every": self.detect_every,
                "detect_size": self.detect_size, "upsample": self.upsample,
                "verify_threshold": self.verify_threshold, "verify_size": VERIFY_SIZE, "verify_scale": VERIFY_SCALE,
                "max_shape_residual": self.max_shape_residual, "rigid_points": list(RIGID),
                "template_scale": self.scale, "crop_size": self.crop_size, "gray_size": self.gray_size,
                "border": "replicate", "invalid_fill": "zeros", "side": self.side}

    def reset(self) -> None:
        """Forget the tracked face (start of a new video)."""
        self._prev: np.ndarray | None = None  # last frame's landmarks [68, 2]
        self._since_detect = 0
        self._last_seen: np.ndarray | None = None  # landmarks of the last frame with our face
        self._sides.reset()

    def state(self) -> dict:
        """Everything `process` carries to the next frame, as JSON (floats round-trip exactly): a video resumed
        mid-way from this state tracks its next frames as an uninterrupted run does."""
        return {"prev": _points(self._prev), "since_detect": self._since_detect,
                "last_seen": _points(self._last_seen), "partner": self._sides.state()}

    def restore(self, state: dict) -> None:
        """Continue from a `state()` (taken after the frame before the next one `process` gets)."""
        self._prev = _array(state["prev"])
        self._since_detect = int(state["since_detect"])
        self._last_seen = _array(state["last_seen"])
        self._sides.restore(state["partner"])

    def _predict(self, gray: np.ndarray, box: tuple) -> np.ndarray:
        dlib, _, predictor = _dlib()
        rect = dlib.rectangle(*(round(v) for v in box))
        shape = predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def _detect(self, gray: np.ndarray) -> list[tuple]:
        """Full-frame detection on the frame resized to detect_size: boxes (l, t, r, b) in source pixels."""
        _, detector, _ = _dlib()
        h, w = gray.shape
        f = self.detect_size / max(h, w)
        small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        rects, _, _ = detector.run(small, self.upsample, 0.0)
        return [(r.left() / f, r.top() / f, (r.right() + 1) / f, (r.bottom() + 1) / f) for r in rects]

    def verify_score(self, gray: np.ndarray, lm: np.ndarray) -> float:
        """HOG detector score on the face derotated and rescaled to a small crop; -inf if no face there."""
        _, detector, _ = _dlib()
        m = similarity_transform(lm[list(RIGID)], self._verify_dst)
        crop = cv2.warpAffine(gray, m, (VERIFY_SIZE, VERIFY_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        rects, scores, _ = detector.run(crop, 0, self.verify_threshold)
        # Only a detection near the crop's centre counts: it must be the face we aligned, not a neighbour.
        c = VERIFY_SIZE / 2
        ok = [s for r, s in zip(rects, scores)
              if abs((r.left() + r.right()) / 2 - c) < 0.25 * VERIFY_SIZE
              and abs((r.top() + r.bottom()) / 2 - c) < 0.25 * VERIFY_SIZE]
        return max(ok) if ok else -np.inf

    def _track(self, gray: np.ndarray) -> np.ndarray | None:
        lm = self._predict(gray, box_from_landmarks(self._prev))
        if shape_residual(lm) > self.max_shape_residual:
            return None
        return lm if self.verify_score(gray, lm) >= self.verify_threshold else None

    def _frame(self, gray: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Landmarks for one frame (None if no face) and whether a full-frame detection ran."""
        due = self._since_detect >= self.detect_every
        if self._prev is not None and not due:
            lm = self._track(gray)
            if lm is not None:
                self._since_detect += 1
                return lm, False
        boxes = self._detect(gray)
        self._since_detect = 1
        if self._prev is not None:
            ref = box_from_landmarks(self._prev)
            ious = [iou(ref, b) for b in boxes]
            if ious and max(ious) > 0.3:
                k = int(np.argmax(ious))
                self._sides.seen(boxes[k], boxes)
                return self._predict(gray, boxes[k]), True
            if due and self.detect_every > 1:
                # A scheduled detection that misses the tracked face (the detector misses turned heads)
                # keeps it while the tracked fit still verifies; another face never replaces it.
                lm = self._track(gray)
                if lm is not None:
                    self._sides.seen(box_from_landmarks(lm), boxes)
                    return lm, True
        last = None if self._last_seen is None else box_from_landmarks(self._last_seen)
        k = self._sides.pick(boxes, gray.shape[1], last)
        return (None if k is None else self._predict(gray, boxes[k])), True

    def process(self, frames: np.ndarray) -> AlignedFaces:
        """Track and align frames [n, H, W, 3] uint8 RGB, continuing from the previous call's last frame."""
        frames = rgb_frames(frames)
        n = len(frames)
        landmarks = np.full((n, 68, 2), np.nan, np.float32)
        valid = np.zeros(n, bool)
        detected = np.zeros(n, bool)
        for i, frame in enumerate(frames):
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            lm, detected[i] = self._frame(gray)
            self._prev = lm
            if lm is not None:
                landmarks[i], valid[i] = lm, True
                self._last_seen = lm
        out = align_faces(frames, landmarks, valid, self.crop_size, self.gray_size, self.scale)
        out.detected = detected
        return out


def _points(a: np.ndarray | None) -> list | None:
    return None if a is None else np.asarray(a, np.float64).tolist()


def _array(points: list | None) -> np.ndarray | None:
    return None if points is None else np.asarray(points, np.float64)
