"""Landmarks from OpenFace 2 CSVs instead of dlib: read as the video decodes, then aligned by our own transform.

Format facts (OpenFace 2's RecorderCSV, FeatureExtraction and FaceLandmarkVidMulti): a header line of column names,
`frame, face_id, timestamp, confidence, success`, then (by flags) gaze, `eye_lmk_x_0..55` ... `eye_lmk_Z_*`, pose,
`x_0..x_67, y_0..y_67` (2D landmarks, source pixels, one decimal), `X_*, Y_*, Z_*` (3D, mm), shape parameters and
AUs. OpenFace 2.0 separates fields with ", " (names and values with a leading space), 2.2 with ",". `frame` is
1-based (the first decoded frame is 1; timestamp = (frame - 1) / fps); a frame whose fit failed still has a row,
`success` 0, with meaningless landmarks. FaceLandmarkVidMulti writes one row per tracked face (`face_id`), and none
for a frame without a face; its face ids are not identities (a face found again may get another id).

`OpenFaceLandmarks` has FaceTracker's interface (`process(frames)`, `params`, `reset`, `crop_size`...), so the
pipeline can swap it in: each call takes the next frames' rows from the CSV (streamed, never the whole file).
The CSV and the video must agree on the frame count up to `slack` frames: `process` raises as soon as the video
outruns the CSV by more, `finish` (after the last frame) if the CSV goes on for more.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.errors import BadInputError
from features.face import TEMPLATE_SCALE, AlignedFaces, align_faces, box_from_landmarks, rgb_frames
from features.face_side import SidePicker, iou

LANDMARK_COLUMNS = [f"x_{k}" for k in range(68)] + [f"y_{k}" for k in range(68)]
HINT = "a malformed OpenFace CSV: re-run FeatureExtraction (-2Dfp) on the video"


@dataclass
class OpenFaceRow:
    """One face in one frame: landmarks [68, 2] (source pixels), whether OpenFace's fit succeeded, its confidence."""

    landmarks: np.ndarray
    success: bool
    confidence: float


def iter_openface_frames(path: str | Path) -> Iterator[tuple[int, list[OpenFaceRow]]]:
    """(frame index from 0, that frame's rows) in file order; BadInputError naming the file and line if malformed."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "OpenFace CSV not found", "run FeatureExtraction -2Dfp, or check --openface-dir")
    with path.open(newline="", encoding="utf-8-sig") as fh:   # a byte-order mark is not the first column's name
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        col = {h: i for i, h in enumerate(header)}
        missing = [h for h in ["frame", "success", *LANDMARK_COLUMNS] if h not in col]
        if missing:
            raise BadInputError(path, f"line 1: not an OpenFace 2 video CSV, missing columns {missing[:4]}"
                                      f"{'...' if len(missing) > 4 else ''}", "run FeatureExtraction with -2Dfp")
        xy = [col[h] for h in LANDMARK_COLUMNS]
        i_frame, i_ok, i_conf = col["frame"], col["success"], col.get("confidence")
        frame, rows = -1, []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                if len(row) != len(header):
                    raise ValueError(f"{len(row)} fields, the header has {len(header)}")
                t = int(float(row[i_frame])) - 1
                if t < 0:
                    raise ValueError(f"frame number {t + 1}; OpenFace numbers frames from 1")
                if t < frame:
                    raise ValueError(f"frame {t + 1} after frame {frame + 1}; rows must be in frame order")
                pts = np.array([float(row[i]) for i in xy], np.float64).reshape(2, 68).T
                ok = float(row[i_ok]) > 0.5
                conf = float(row[i_conf]) if i_conf is not None else 0.0
            except ValueError as err:
                raise BadInputError(path, f"line {lineno}: {err}", HINT) from None
            if t != frame and rows:
                yield frame, rows
                rows = []
            frame = t
            rows.append(OpenFaceRow(pts, ok, conf))
        if rows:
            yield frame, rows
        elif frame < 0:
            raise BadInputError(path, "no data rows", HINT)


def read_openface_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole CSV: landmarks float32 [T, 68, 2] (NaN where no successful fit) and valid bool [T].

    T is the last frame number; with several faces in a frame the most confident successful one is kept.
    """
    frames = list(iter_openface_frames(path))
    n = frames[-1][0] + 1
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    valid = np.zeros(n, bool)
    for t, rows in frames:
        ok = [r for r in rows if r.success and np.isfinite(r.landmarks).all()]
        if ok:
            landmarks[t], valid[t] = max(ok, key=lambda r: r.confidence).landmarks, True
    return landmarks, valid


def openface_params(side: str = "largest", crop_size: int = 224, gray_size: int = 48,
                    scale: float = TEMPLATE_SCALE) -> dict:
    """OpenFaceLandmarks' params without a CSV at hand (a fingerprint is computed before any file is read)."""
    return {"landmarks": "openface2.csv", "success_column": True, "side": side, "template_scale": scale,
            "crop_size": crop_size, "gray_size": gray_size, "border": "replicate", "invalid_fill": "zeros"}


class OpenFaceLandmarks:
    """FaceTracker's interface over an OpenFace CSV: `process(frames)` aligns the next frames from the CSV's rows.

    `side`: "largest" keeps the most confident successful face of each frame (FeatureExtraction has one);
    "left"/"right" follow one person of a multi-face CSV by position, as FaceTracker does (features.face_side):
    the face overlapping the last one is kept, and after a loss the side rule re-acquires it.
    """

    def __init__(self, csv_path: str | Path, slack: int = 0, side: str = "largest", crop_size: int = 224,
                 gray_size: int = 48, scale: float = TEMPLATE_SCALE):
        self.path = Path(csv_path)
        self.slack = slack
        self._sides = SidePicker(side)
        self.side = side
        self.crop_size = crop_size
        self.gray_size = gray_size
        self.scale = scale
        self.reset()

    @property
    def params(self) -> dict:
        """What changes the output, for the fingerprint (the CSV itself is the caller's to fingerprint)."""
        return openface_params(self.side, self.crop_size, self.gray_size, self.scale)

    def reset(self) -> None:
        """Start again from the CSV's first row (a new video)."""
        self._rows = iter_openface_frames(self.path)
        self._pending: tuple[int, list[OpenFaceRow]] | None = None  # the next CSV frame not yet handed out
        self._last_csv_frame = -1  # the highest frame index read from the CSV so far
        self._advance()
        self._done = 0  # frames handed out so far
        self._last_box = None
        self._tracking = False
        self._sides.reset()

    def state(self) -> dict:
        """What `process` carries to the next frame, as JSON: the frames handed out and the face followed."""
        box = None if self._last_box is None else [float(v) for v in self._last_box]
        return {"done": self._done, "last_box": box, "tracking": self._tracking, "partner": self._sides.state()}

    def restore(self, state: dict) -> None:
        """Continue from a `state()`: the CSV is read again up to that frame (rows only, no image)."""
        self.reset()
        for t in range(int(state["done"])):
            self._next_rows(t)
        self._done = int(state["done"])
        self._last_box = None if state["last_box"] is None else tuple(state["last_box"])
        self._tracking = bool(state["tracking"])
        self._sides.restore(state["partner"])

    def _advance(self) -> None:
        self._pending = next(self._rows, None)
        if self._pending is not None:
            self._last_csv_frame = self._pending[0]

    def _next_rows(self, t: int) -> list[OpenFaceRow] | None:
        """Rows of frame t (empty if the CSV has none for it), or None when the CSV has ended before t."""
        if self._pending is None:
            return None
        frame, rows = self._pending
        if frame > t:
            return []
        self._advance()
        return rows

    def _choose(self, rows: list[OpenFaceRow], width: int) -> np.ndarray | None:
        ok = [r for r in rows if r.success and np.isfinite(r.landmarks).all()]
        if not ok:
            self._tracking = False
            return None
        if self.side == "largest":
            return max(ok, key=lambda r: r.confidence).landmarks
        boxes = [box_from_landmarks(r.landmarks) for r in ok]
        k = None
        if self._tracking:
            overlap = [iou(self._last_box, b) for b in boxes]
            if max(overlap) > 0.3:
                k = int(np.argmax(overlap))
                self._sides.seen(boxes[k], boxes)
        if k is None:
            k = self._sides.pick(boxes, width, self._last_box)
        self._tracking = k is not None
        if k is None:
            return None
        self._last_box = boxes[k]
        return ok[k].landmarks

    def process(self, frames: np.ndarray) -> AlignedFaces:
        """Align frames [n, H, W, 3] uint8 RGB with the CSV's landmarks for them, continuing from the last call."""
        frames = rgb_frames(frames)
        n = len(frames)
        landmarks = np.full((n, 68, 2), np.nan, np.float32)
        valid = np.zeros(n, bool)
        for i in range(n):
            t = self._done + i
            rows = self._next_rows(t)
            if rows is None:
                if t > self._last_csv_frame + self.slack:
                    raise BadInputError(self.path, f"the CSV ends at frame {self._last_csv_frame + 1} but the video "
                                                   f"goes on (frame {t + 1})" + (f", slack {self.slack}" if self.slack
                                                                                else ""),
                                        "this CSV is from another video or a cut run: re-run FeatureExtraction")
                continue
            lm = self._choose(rows, frames.shape[2])
            if lm is not None:
                landmarks[i], valid[i] = lm, True
        self._done += n
        return align_faces(frames, landmarks, valid, self.crop_size, self.gray_size, self.scale)

    def finish(self) -> int:
        """After the video's last frame: CSV frames minus video frames; raises past `slack` (CSV too long)."""
        while self._pending is not None:
            self._advance()
        extra = self._last_csv_frame + 1 - self._done
        if extra > self.slack:
            raise BadInputError(self.path, f"the CSV has rows up to frame {self._last_csv_frame + 1} but the video "
                                           f"has {self._done} frames" + (f", slack {self.slack}" if self.slack else ""),
                                "this CSV is from another video: re-run FeatureExtraction on it")
        return extra
